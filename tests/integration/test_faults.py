"""Rows of the fault table not covered elsewhere: a vendor failing for a while then recovering, a vendor
that takes seconds per request, the gateway SIGKILLed mid-load, and the secrets canary. Each reports
its figures (tests/figures.py) and compares sets of messageIds."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from eventrouter.dev.standins import AmplitudeStandIn
from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from schemas import EventCodec, Topics, deadletter_codec
from streams.metrics import scrape
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderProcess, ForwarderThread, integration, wait_for, write_outbound
from tests.integration.kafka_helpers import consume_all, fresh_topics
from tests.integration.test_forwarders import amplitude_events
from tests.integration.worker_helpers import WorkerProcess, free_port, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


class DownFor(AmplitudeStandIn):
    """Answers 500 to everything until `until` (monotonic), then works."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.until = time.monotonic() + seconds

    def answer(self, incoming: Incoming) -> Answer:
        if time.monotonic() < self.until:
            return json_answer(500, {"code": 500, "error": "internal"})
        return super().answer(incoming)


def test_a_vendor_down_for_a_while_then_back_gets_everything_and_nothing_is_dead_lettered(
        bootstrap: str, figures: Figures) -> None:
    stand_in = DownFor(8.0).start()
    topics = fresh_topics(bootstrap)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(1000))
    spec = integration("amp", "amplitude", {"api_key": "amp-key", "endpoint": stand_in.url + "/2/httpapi",
                                            "allow_http": True, "allow_private": True},
                       max_attempts=3, max_retry_window_s=3600, max_backoff_s=2.0)
    runner = ForwarderThread(bootstrap, topics, spec)
    try:
        wait_for(lambda: set(ids) <= set(stand_in.keys), timeout=90, what="every event once the vendor is back")
        recovered = time.monotonic() - stand_in.until
        time.sleep(1.0)
        dead = runner.forwarder.metrics.dead._metrics
    finally:
        runner.stop()
        stand_in.stop()
    failures = stand_in.statuses[500]
    figures.report("vendor 500 for a while, then 200", down_s=8.0, failed_requests=failures, lost=0,
                   dead_letters=len(dead), duplicates=stand_in.duplicates, recovery_s=recovered)
    assert failures >= 3, "the forwarder kept trying while the vendor was down"
    assert not dead and stand_in.duplicates == 0
    assert recovered < 5.0, "delivered within a few seconds of the vendor's return"


def test_a_vendor_taking_3s_per_request_causes_no_rebalance_and_the_lag_drains(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    stand_in = AmplitudeStandIn().start()
    stand_in.delay = 3.0
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(f"""
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{AMP_KEY}}", endpoint: "{stand_in.url}/2/httpapi", allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 50, batch_size: 100, timeout_s: 10}}
    playbook: "starter:amplitude"
""")
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(1500))
    forwarder = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env={"AMP_KEY": "amp-key"})
    lags: list[float] = []
    try:
        started = time.monotonic()

        def drained() -> bool:
            lag = sum(v for k, v in scrape(forwarder.port).items() if k.startswith("eventrouter_forwarder_lag"))
            lags.append(lag)
            return set(ids) <= set(stand_in.keys)
        wait_for(drained, timeout=120, what="the backlog delivered at 3 s per request")
        took = time.monotonic() - started
        time.sleep(5.5)  # one more lag measurement (every 5 s)
        final_lag = sum(v for k, v in scrape(forwarder.port).items() if k.startswith("eventrouter_forwarder_lag"))
    finally:
        forwarder.stop()
        stand_in.stop()
    assignments = forwarder.log().count(": assigned ")
    figures.report("vendor 3 s per request", events=len(ids), requests=stand_in.requests, took_s=took,
                   most_lag=max(lags), final_lag=final_lag, assignments=assignments, lost=0,
                   duplicates=stand_in.duplicates)
    assert assignments == 1, "no rebalance: the consumer kept polling while requests took 3 s"
    assert max(lags) > 0 and final_lag == 0 and stand_in.duplicates == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_gateway_stopped_mid_load_loses_nothing_it_acknowledged(bootstrap: str, tmp_path: Path, sig: int,
                                                                     figures: Figures) -> None:
    """SIGKILL: what it acknowledged is in Kafka; a batch written but not answered comes again from the
    client (duplicates, same messageIds). SIGTERM: it finishes what it holds: no duplicates either."""
    topics = fresh_topics(bootstrap)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-m", "eventrouter", "gateway", "--bootstrap-servers", bootstrap,
                                    "--topic-prefix", topics.prefix, "--write-key", "wk", "--port", str(port)],
                                   cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _healthy(url), timeout=30, what="the gateway")
        return process

    gateway = start()
    acked: set[str] = set()
    answered_error = 0
    stop = threading.Event()
    batches = [[{"type": "track", "event": "E", "userId": f"u{i % 13}", "messageId": f"g-{n}-{i}"}
                for i in range(20)] for n in range(10_000)]

    def client() -> None:  # what Segment's libraries do: a batch not answered 200 is sent again later
        nonlocal answered_error
        pending = list(batches)
        while pending and not stop.is_set():
            batch = pending[0]
            try:
                reply = requests.post(f"{url}/v1/batch", json={"batch": batch}, auth=("wk", ""), timeout=10)
                ok = reply.status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                acked.update(e["messageId"] for e in batch)
                pending.pop(0)
            else:
                answered_error += 1
                time.sleep(0.1)

    sender = threading.Thread(target=client, daemon=True)
    sender.start()
    wait_for(lambda: len(acked) >= 2000, timeout=60, what="load under way")
    gateway.send_signal(sig)
    gateway.wait(40)
    killed_at = len(acked)
    down = time.monotonic()
    time.sleep(1.0)
    gateway = start()
    recovery = time.monotonic() - down
    try:
        wait_for(lambda: len(acked) >= killed_at + 4000, timeout=120, what="load after the restart")
        stop.set()
        sender.join(30)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    codec = EventCodec()
    received: dict[str, int] = {}
    for message in consume_all(bootstrap, topics.raw, len(acked), timeout=60, settle=1.0):
        key = codec.decode(message.value())["messageId"]
        received[key] = received.get(key, 0) + 1
    lost = acked - set(received)
    duplicates = sum(n - 1 for n in received.values()) + len(set(received) - acked)
    row = "SIGKILL the gateway mid-load; restart" if sig == signal.SIGKILL else "SIGTERM the gateway mid-load"
    figures.report(row, acked=len(acked), acked_before_stop=killed_at, lost=len(lost), duplicates=duplicates,
                   failed_requests=answered_error, recovery_s=recovery)
    assert not lost, f"{len(lost)} acknowledged events lost"
    assert answered_error > 0, "the client saw the gateway go away"
    if sig == signal.SIGTERM:
        assert duplicates == 0, "a drained gateway answered everything it wrote"


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


class EchoStandIn(StandIn):
    """A vendor whose 400 echoes the whole request it was sent: method, path, query, headers and body."""

    name = "echo"

    def answer(self, incoming: Incoming) -> Answer:
        return json_answer(400, {"error": "bad request", "request": {
            "method": incoming.method, "path": incoming.path, "query": dict(incoming.query),
            "headers": dict(incoming.headers), "body": incoming.body.decode("utf-8", "replace")}})


CANARY_SECRET = f"CANARY-s3cr3t-{uuid.uuid4().hex[:8]}"
CANARY_EMAIL = f"canary-{uuid.uuid4().hex[:6]}@example.com"


def test_the_canary_secret_and_email_appear_in_no_log_dead_letter_or_error(bootstrap: str, tmp_path: Path,
                                                                          figures: Figures) -> None:
    """A vendor that echoes the key it was sent (Amplitude does), a webhook vendor whose 400 echoes the
    whole request (the secret in a header, in Bearer and Basic auth, in the URL's query), a playbook that
    raises, invalid events, literal secrets in config files (a key, a header, a URL): the secret is in no
    log line, no dead letter (any byte of it), no `deadletters show` output and no error text; the email,
    which the events carry, is in no log line and no dead letter's message or vendor body (a dead letter
    keeps the original event's bytes, by design)."""
    stand_in = AmplitudeStandIn(api_key="the-right-key").start()  # ours is wrong: 400 echoing our key
    echo = EchoStandIn().start()
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(f"""
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp, broken, echo]}}
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{CANARY_KEY}}", endpoint: "{stand_in.url}/2/httpapi",
                  allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 50}}
    playbook: "starter:amplitude"
  - name: broken
    kind: webhook
    connection: {{url: "https://crm.example/hook", secret: "${{CANARY_KEY}}"}}
    playbook: {{global: {{mappings: [{{expr: "context.traits.email * 2", to: v}}]}}}}
  - name: echo
    kind: webhook
    connection: {{url: "{echo.url}/hook?token=${{CANARY_KEY}}", allow_http: true, allow_private: true,
                  secret: "${{CANARY_KEY}}", username: canary-user, password: "${{CANARY_KEY}}",
                  headers: {{X-Api-Key: "${{CANARY_KEY}}", X-Auth: "Token ${{CANARY_KEY}}"}}}}
    delivery: {{linger_ms: 50}}
    playbook: {{global: {{mappings: [{{from: event, to: name}}]}}}}
""")
    env = {"CANARY_KEY": CANARY_SECRET}
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=config)
    forwarder = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=env)
    echoed = ForwarderProcess(bootstrap, topics, config, "echo", tmp_path, env=env)
    try:
        worker.wait_for_revision(1)
        good = [_event(i) for i in range(20)]
        bad = [{**_event(100), "userId": None}, {**_event(101), "writeKey": "wk-unknown"}]
        send_events(bootstrap, topics, good + bad)
        vendor_letters = consume_all(bootstrap, topics.dead_letters("amp"), 20, timeout=60, settle=1.0)
        echo_letters = consume_all(bootstrap, topics.dead_letters("echo"), 20, timeout=60, settle=1.0)
        worker_letters = consume_all(bootstrap, topics.invalid, 22, timeout=60, settle=1.0)
    finally:
        forwarder.stop()
        echoed.stop()
        worker.stop()
        stand_in.stop()
        echo.stop()
    codec = deadletter_codec()
    letters = [codec.decode(m.value()) for m in vendor_letters + echo_letters + worker_letters]
    shown = _deadletters_shown(bootstrap, topics, [("echo", m) for m in echo_letters[:3]] +
                               [("amp", m) for m in vendor_letters[:2]])
    texts = [worker.log(), forwarder.log(), echoed.log()] + [f"{d['message']} {d.get('vendorBody')}" for d in letters]
    errors = _config_errors(tmp_path)
    raw_letters = b"".join(m.value() for m in vendor_letters + echo_letters + worker_letters)
    basic = base64.b64encode(f"canary-user:{CANARY_SECRET}".encode()).decode()  # the echoed Basic auth
    secret_hits = sum(t.count(CANARY_SECRET) + t.count(basic) for t in [*texts, errors, shown]) + \
        raw_letters.count(CANARY_SECRET.encode()) + raw_letters.count(basic.encode())
    # (`show` decodes the original event: the email is there by design, the secret never)
    email_hits = sum(t.count(CANARY_EMAIL) for t in [*texts, errors])
    reasons = sorted({d["reason"] for d in letters})
    figures.report("canary secret and canary email in config and events; errors forced", secret_found=secret_hits,
                   email_found=email_hits, dead_letters=len(letters), reasons="/".join(reasons))
    assert any(d["vendorStatus"] == 400 for d in letters), "the vendor refused the key and echoed it"
    echoed_bodies = [d.get("vendorBody") or "" for d in letters if d.get("integration") == "echo"]
    assert echoed_bodies and all("x-api-key" in b and "authorization" in b for b in echoed_bodies), \
        "the webhook vendor echoed the request's headers"
    assert "x-api-key" in shown, "`deadletters show` printed the echoed request"
    assert {"playbook.expression", "invalid.identity", "auth.unknown_write_key"} <= set(reasons)
    assert secret_hits == 0 and email_hits == 0


def _event(i: int) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{i}", "writeKey": "wk1",
            "messageId": f"canary-{i}-{uuid.uuid4().hex[:6]}", "properties": {"revenue": 1.0},
            "context": {"traits": {"email": CANARY_EMAIL}}}


def _deadletters_shown(bootstrap: str, topics: Topics, which: list[tuple[str, Any]]) -> str:
    """What `eventrouter deadletters show NAME PARTITION:OFFSET` prints for each of `which`."""
    out = []
    for name, message in which:
        done = subprocess.run([sys.executable, "-m", "eventrouter", "deadletters", "show", name,
                               f"{message.partition()}:{message.offset()}", "--bootstrap-servers", bootstrap,
                               "--topic-prefix", topics.prefix], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        out.append(done.stdout + done.stderr)
    return "\n".join(out)


def _config_errors(folder: Path) -> str:
    """What `config validate` and a forwarder with an unusable connection print, with the canary in them."""
    literal = folder / "literal.yaml"
    literal.write_text(f"""
integrations:
  - {{name: amp, kind: amplitude, connection: {{api_key: "{CANARY_SECRET}"}}, playbook: "starter:amplitude"}}
""")
    bad_url = folder / "bad-url.yaml"
    bad_url.write_text("""
integrations:
  - {name: hook, kind: webhook, connection: {url: "${HOOK_URL}", secret: "${CANARY_KEY}"}, playbook: {}}
""")
    header = folder / "literal-header.yaml"
    header.write_text(f"""
integrations:
  - {{name: hook, kind: webhook, playbook: {{}}, connection: {{url: "https://crm.example/hook",
     headers: {{Authorization: "Bearer {CANARY_SECRET}", X-Api-Key: "{CANARY_SECRET}"}}}}}}
""")
    in_url = folder / "literal-url.yaml"
    in_url.write_text(f"""
integrations:
  - {{name: hook, kind: webhook, playbook: {{}},
     connection: {{url: "https://user:{CANARY_SECRET}@crm.example/hook?api_key={CANARY_SECRET}"}}}}
  - {{name: amp, kind: amplitude, playbook: "starter:amplitude",
     connection: {{api_key: "${{K}}", endpoint: "https://api2.amplitude.com/2/httpapi?token={CANARY_SECRET}"}}}}
""")
    out = []
    env = {**os.environ, "CANARY_KEY": CANARY_SECRET, "HOOK_URL": f"http://10.0.0.1/hook?token={CANARY_SECRET}"}
    for args in (["config", "validate", str(literal)], ["config", "validate", str(header)],
                 ["config", "validate", str(in_url)], ["forward", "hook", "--config", str(bad_url),
                                                        "--bootstrap-servers", "127.0.0.1:9", "--topic-prefix",
                                                        Topics(f"c{uuid.uuid4().hex[:6]}").prefix]):
        done = subprocess.run([sys.executable, "-m", "eventrouter", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.returncode != 0, done.stdout + done.stderr
        out.append(done.stdout + done.stderr)
    text = "\n".join(out)
    assert re.search(r"secret|literal|\$\{", text, re.I), text  # the error says what is wrong...
    return text  # ...and the caller checks it never says the value


def test_a_forwarder_left_out_of_its_group_after_losing_its_partitions_joins_again_with_a_new_consumer(
        bootstrap: str) -> None:
    """Past the rejoin deadline after `on_lost` with no `on_assign`, the forwarder replaces its consumer,
    is given the partitions again and delivers what came meanwhile (once the first events are settled)."""
    stand_in = AmplitudeStandIn().start()
    topics = fresh_topics(bootstrap)
    first = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(50), prefix="a")
    spec = integration("amp", "amplitude", {"api_key": "amp-key", "endpoint": stand_in.url + "/2/httpapi",
                                            "allow_http": True, "allow_private": True})
    runner = ForwarderThread(bootstrap, topics, spec)
    try:
        wait_for(lambda: set(first) <= set(stand_in.keys), timeout=60, what="the first events")
        forwarder = runner.forwarder
        old = forwarder._consumer
        forwarder._rejoin.deadline_s = 0.5
        forwarder._rejoin.lost()  # as if the session timed out and no assignment followed
        wait_for(lambda: forwarder._consumer is not old, timeout=30, what="a new consumer")
        later = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(50, 50), prefix="b")
        wait_for(lambda: set(later) <= set(stand_in.keys), timeout=90, what="the events after the new consumer")
    finally:
        runner.stop()
        stand_in.stop()
