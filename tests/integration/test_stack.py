"""The stack as users run it: `eventrouter up CONFIG` in the foreground against a broker, and scaling
out and back mid-load (a second and third worker and forwarder added, then stopped), with every event
accounted for by messageId at the vendor stand-ins (the ledger)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from eventrouter.cli import main
from eventrouter.dev.standins import AmplitudeStandIn, MixpanelStandIn
from eventrouter.stack import Stack, free_port
from eventrouter.status import status as status_of
from producers import Analytics
from schemas import Topics
from schemas.runtime.revisions import ConfigStore
from tests.figures import Figures
from tests.integration.forwarder_helpers import wait_for
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.stack_helpers import up_driven

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SECRETS = {"AMP_KEY": "amp-key", "MP_SECRET": "mp-secret"}
CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp, mp]}}
integrations:
  - {{name: amp, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 50}},
     connection: {{api_key: "${{AMP_KEY}}", endpoint: "{amp}/2/httpapi", allow_http: true, allow_private: true}}}}
  - {{name: mp, kind: mixpanel, playbook: "starter:mixpanel", delivery: {{linger_ms: 50}},
     connection: {{project_id: "42", username: sa.user, secret: "${{MP_SECRET}}", endpoint: "{mp}/import",
                   allow_http: true, allow_private: true}}}}
"""


@pytest.fixture
def vendors() -> Iterator[tuple[AmplitudeStandIn, MixpanelStandIn]]:
    amp, mp = AmplitudeStandIn().start(), MixpanelStandIn().start()
    yield amp, mp
    amp.stop()
    mp.stop()


def config_file(tmp_path: Path, amp: AmplitudeStandIn, mp: MixpanelStandIn) -> Path:
    path = tmp_path / "eventrouter.yaml"
    path.write_text(CONFIG.format(amp=amp.url, mp=mp.url))
    return path


def three_revisions(tmp_path: Path, amp: AmplitudeStandIn, mp: MixpanelStandIn) -> list[Path]:
    """Config files: amp alone; amp and mp; mp disabled."""
    text = CONFIG.format(amp=amp.url, mp=mp.url)
    revisions = [tmp_path / name for name in ("amp.yaml", "both.yaml", "without.yaml")]
    revisions[0].write_text(text.replace("integrations: [amp, mp]", "integrations: [amp]"))
    revisions[1].write_text(text)
    revisions[2].write_text(text.replace("{name: mp, kind", "{name: mp, enabled: false, kind"))
    return revisions


def track(i: int, tag: str) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{i % 50}", "messageId": f"{tag}-{i}",
            "properties": {"revenue": 1.5 * i, "seq": i}}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_up_runs_the_stack_until_sigterm_and_status_shows_it(bootstrap: str, tmp_path: Path, engine: str,
                                                             vendors: tuple[AmplitudeStandIn, MixpanelStandIn],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    amp, mp = vendors
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    port = free_port()
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115 - closed below
    up = subprocess.Popen([sys.executable, "-m", "eventrouter", "up", str(config_file(tmp_path, amp, mp)),
                           "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix, "--gateway-port",
                           str(port), "--partitions", "3", "--logs", str(tmp_path / "logs"), "--progress-every", "1",
                           "--engine", engine],
                          cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **SECRETS})
    try:
        url = f"http://127.0.0.1:{port}/v1/batch"
        wait_for(lambda: _posts(url, []), timeout=60, what="the gateway")
        ids = []
        for start in range(0, 300, 50):
            batch = [track(i, "up") for i in range(start, start + 50)]
            assert _posts(url, batch)
            ids += [e["messageId"] for e in batch]
        wait_for(lambda: len(amp.keys) >= 300 and len(mp.keys) >= 300, timeout=90, what="300 events at both")
        wait_for(lambda: all(i.topic.lag == 0 for i in status_of(bootstrap, topics).integrations), timeout=30,
                 what="the forwarders' commits (every 5 s)")
        assert main(["status", "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix]) == 0
        status = capsys.readouterr().out
        assert re.search(r"^amp\s+amplitude\s+300\s+0\s+0\s+0$", status, re.M), status
        assert "raw: 300 records, worker lag 0" in status, status
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(120)
        log.close()
    out = (tmp_path / "up.log").read_text()
    assert code == 0, out[-3000:]
    pids = [int(p) for p in re.findall(r": pid (\d+)", out)]
    assert len(pids) == 4 and not any(_alive(p) for p in pids), out  # worker, two forwarders, gateway
    assert re.search(r"produced 300 .*amp 300>300 .*mp 300>300", out), out[-2000:]
    assert set(amp.keys) == {f"up-{i}" for i in range(300)} and amp.duplicates == 0
    # what an operator reads of a healthy run: the lifecycle at INFO, nothing at WARNING or above
    logs = {role: (tmp_path / "logs" / f"{role}.log").read_text() for role in ("worker-1", "forward-amp")}
    assert re.search(rf" INFO streams\.{engine}_engine assigned raw partitions \[", logs["worker-1"]), logs["worker-1"]
    assert re.search(rf" INFO streams\.{engine}_engine stopping: committing", logs["worker-1"]), logs["worker-1"]
    assert re.search(r" INFO forwarders\.\w+ amp: ", logs["forward-amp"]), logs["forward-amp"]
    for role, text in logs.items():
        assert not re.search(r" (WARNING|ERROR|CRITICAL) ", text), (role, text[-3000:])


def _posts(url: str, batch: list[dict[str, Any]]) -> bool:
    try:
        reply = requests.post(url, json={"batch": batch}, auth=("wk1", ""), timeout=10)
    except requests.ConnectionError:
        return False
    return reply.status_code == 200


def test_scaling_out_to_three_workers_and_forwarders_and_back_mid_load_loses_nothing(
        bootstrap: str, tmp_path: Path, vendors: tuple[AmplitudeStandIn, MixpanelStandIn], figures: Figures) -> None:
    amp, mp = vendors
    topics = fresh_topics(bootstrap, partitions=6)
    config = config_file(tmp_path, amp, mp)
    ConfigStore(bootstrap, topics).apply(config)
    stack = Stack(bootstrap, topics, config, tmp_path / "logs", gateway_port=None, env=SECRETS, partitions=6).start()
    sent: list[str] = []
    stop, done = threading.Event(), threading.Event()

    def produce() -> None:  # ~1,000 events/s through the SDK, until the scale-out and back are over
        with Analytics("wk1", bootstrap, topic=topics.raw) as analytics:
            started = time.monotonic()
            i = 0
            while not stop.is_set():
                event = track(i, "scale")
                analytics.track(event["userId"], event["event"], event["properties"], message_id=event["messageId"])
                sent.append(event["messageId"])
                i += 1
                if i % 100 == 0:
                    time.sleep(max(0.0, started + i / 1000 - time.monotonic()))
            assert analytics.flush(60) == 0
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        wait_for(lambda: len(amp.keys) > 500, timeout=60, what="delivery under way")
        added = [stack.add_worker(2), stack.add_worker(3), stack.add_forwarder("amp", 2), stack.add_forwarder("amp", 3),
                 stack.add_forwarder("mp", 2), stack.add_forwarder("mp", 3)]
        for child in added:  # the groups rebalance onto three members each, mid-load
            wait_for(lambda c=child: "assigned" in (stack.folder / f"{c.role}.log").read_text(), timeout=60,
                     what=f"{child.role} to take partitions")
        assert not stack.exited(), stack.exited()
        for child in added:
            assert stack.stop_child(child) == 0, child.role  # back to one of each, still mid-load
            stack.children.remove(child)
        time.sleep(2.0)  # the load goes on a little with one of each
        stop.set()
        assert done.wait(120)
        total = len(sent)
        wait_for(lambda: len(amp.keys) >= total and len(mp.keys) >= total, timeout=120,
                 what=f"{total} events at both vendors")
        time.sleep(1.0)
    finally:
        stack.stop()
    for stand_in in (amp, mp):
        lost = set(sent) - set(stand_in.keys)
        duplicates = stand_in.duplicates
        print(f"{stand_in.name}: sent={len(sent)} delivered={len(stand_in.keys)} lost={len(lost)} "
              f"duplicates={duplicates}")
        assert not lost and set(stand_in.keys) == set(sent)
        figures.report("scale out from 1 to 3 workers and forwarders mid-load, then back", vendor=stand_in.name,
                       sent=len(sent), lost=len(lost), duplicates=duplicates)


def test_a_child_that_exits_is_started_again_and_nothing_is_lost(
        bootstrap: str, tmp_path: Path, vendors: tuple[AmplitudeStandIn, MixpanelStandIn], figures: Figures) -> None:
    """A SIGKILLed forwarder is started again (its events still arrive, its counters stay counted); a child
    that cannot start (an integration the config lacks) is tried again and again with back-off, reported."""
    amp, mp = vendors
    topics = fresh_topics(bootstrap, partitions=3)
    config = config_file(tmp_path, amp, mp)
    ConfigStore(bootstrap, topics).apply(config)
    stack = Stack(bootstrap, topics, config, tmp_path / "logs", gateway_port=None, env=SECRETS, partitions=3).start()
    sent = [track(i, "revive") for i in range(1500)]
    try:
        with Analytics("wk1", bootstrap, topic=topics.raw) as analytics:
            for event in sent[:500]:
                analytics.track(event["userId"], event["event"], event["properties"], message_id=event["messageId"])
            assert analytics.flush(30) == 0
            wait_for(lambda: len(amp.keys) >= 500, timeout=90, what="the first 500 at Amplitude")
            wait_for(lambda: stack.progress().lanes["amp"].delivered >= 500, timeout=30, what="the counters")
            killed = next(c for c in stack.children if c.role == "forward-amp")
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait(10)
            assert stack.exited() == []  # down, but to be started again
            revived: list[str] = []
            wait_for(lambda: bool(revived.extend(stack.revive()) or any("started again" in r for r in revived)),
                     timeout=10, what="a restart")
            assert [line.split(" ")[0] for line in revived] == ["forward-amp", "forward-amp"], revived
            assert "exited (-9); starting it again in 1 s" in revived[0], revived
            again = next(c for c in stack.children if c.role == "forward-amp")
            assert again.process.pid != killed.process.pid and again.process.poll() is None
            for event in sent[500:]:
                analytics.track(event["userId"], event["event"], event["properties"], message_id=event["messageId"])
            assert analytics.flush(30) == 0
        wait_for(lambda: {e["messageId"] for e in sent} <= amp.keys.keys() and len(mp.keys) >= len(sent),
                 timeout=120, what="every event at both vendors")
        # the killed forwarder's 500 stay counted beside what the new one delivered (a batch sent before the
        # kill and not committed is sent again: counted twice, as the vendor would see it)
        wait_for(lambda: stack.progress().lanes["amp"].delivered >= len(sent), timeout=30, what="the account")

        stack.add_forwarder("nope")  # no such integration in the config: exits at once, every time
        wait_for(lambda: (stack.revive() or True) and stack.restarts.get("forward-nope", 0) > stack.max_restarts,
                 timeout=120, what="more restarts than the old limit: never given up")
        assert [line.split(" (")[0] for line in stack.exited()] == ["forward-nope"]  # keeps failing
        assert [line.split(" (")[0] for line in stack.failing()] == ["forward-nope"]
        assert stack.restarts["forward-amp"] == 1 and stack.last_exit["forward-nope"] == 1
        assert "no integration named 'nope'" in (stack.folder / "forward-nope.log").read_text()
    finally:
        stack.stop()
    lost = {e["messageId"] for e in sent} - amp.keys.keys()
    assert not lost
    figures.report("SIGKILL a forwarder under `eventrouter up`: started again", sent=len(sent), lost=len(lost),
                   resent=amp.duplicates, restarts=stack.restarts.get("forward-amp", 0))


BAD_HOOK_CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp, hook, mp]}}
integrations:
  - {{name: amp, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 50}},
     connection: {{api_key: "${{AMP_KEY}}", endpoint: "{amp}/2/httpapi", allow_http: true, allow_private: true}}}}
  - {{name: hook, kind: webhook, playbook: "starter:webhook", connection: {{url: "http://127.0.0.1:9/hook"}}}}
  - {{name: mp, kind: mixpanel, playbook: "starter:mixpanel", delivery: {{linger_ms: 50}},
     connection: {{project_id: "42", username: sa.user, secret: "${{MP_SECRET}}", endpoint: "{mp}/import",
                   allow_http: true, allow_private: true}}}}
"""


def test_an_integration_whose_forwarder_cannot_start_is_isolated_and_retried_while_the_rest_delivers(
        bootstrap: str, tmp_path: Path, vendors: tuple[AmplitudeStandIn, MixpanelStandIn],
        capsys: pytest.CaptureFixture[str]) -> None:
    """`hook`'s forwarder refuses its URL at every start (`config validate` would have refused it; applied
    here past validation): under `up` it is retried with back-off and reported as failing (progress line,
    `up.json`, `eventrouter status`, the exit summary) while the gateway, the worker and the other two
    integrations deliver every event; the stack never stops on its account."""
    from eventrouter.progress import Progress, read_snapshot

    amp, mp = vendors
    topics = fresh_topics(bootstrap, partitions=3)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(BAD_HOOK_CONFIG.format(amp=amp.url, mp=mp.url))
    ConfigStore(bootstrap, topics).apply(config)
    stack = Stack(bootstrap, topics, config, tmp_path / "logs", gateway_port=0, env=SECRETS, partitions=3)
    seen: dict[str, Any] = {}

    def drive() -> None:
        url = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        wait_for(lambda: _posts(url, []), timeout=90, what="the gateway")
        for start in range(0, 300, 50):
            wait_for(lambda s=start: _posts(url, [track(i, "iso") for i in range(s, s + 50)]), timeout=30,
                     what="the gateway to take a batch")
        wait_for(lambda: len(amp.keys) >= 300 and len(mp.keys) >= 300, timeout=120, what="300 at amp and mp")
        wait_for(lambda: stack.failures.get("forward-hook", 0) >= 3, timeout=120, what="hook's third exit")
        assert _posts(url, [track(i, "iso") for i in range(20)])  # sent again: dropped as duplicates
        wait_for(lambda: getattr(read_snapshot(stack.folder, topics.prefix), "progress", Progress()).deduplicated
                 >= 20, timeout=60, what="up.json with the 20 duplicates")
        snapshot = read_snapshot(stack.folder, topics.prefix)
        assert snapshot is not None
        seen["snapshot_failing"] = snapshot.progress.failing
        seen["prom"] = (stack.folder / "up.prom").read_text()
        seen["alive"] = {c.role: c.process.poll() is None for c in stack.children}
        seen["status"] = main(["status", "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix,
                               "--logs", str(stack.folder)])

    code, captured = up_driven(stack, drive, capsys)
    assert set(amp.keys) == set(mp.keys) == {f"iso-{i}" for i in range(300)}
    assert seen["alive"]["worker-1"] and seen["alive"]["gateway"] and seen["alive"]["forward-amp"], seen
    assert not any(role in stack.restarts for role in ("worker-1", "gateway", "forward-amp", "forward-mp"))
    assert stack.restarts["forward-hook"] >= 2
    assert any(f.startswith("forward-hook (exit 1, ") for f in seen["snapshot_failing"]), seen
    assert 'eventrouter_up_child_failing{role="forward-hook"} 1.0' in seen["prom"], seen["prom"]
    assert 'eventrouter_up_child_failing{role="forward-amp"} 0.0' in seen["prom"], seen["prom"]
    assert "scheme http is not allowed" in (stack.folder / "forward-hook.log").read_text()
    assert re.search(r"forward-hook exited \(1\); starting it again in [124] s", captured.err), captured.err
    assert re.search(r"failing: forward-hook \(exit 1, \d+ exits in a row, (retrying in \d+ s|started again)",
                     captured.out), captured.out[-3000:]
    assert seen["status"] == 0
    assert re.search(r"^  failing: forward-hook \(exit 1", captured.out, re.M), captured.out[-3000:]
    # status explains raw minus routed: 320 records = 20 duplicates dropped + 300 routable, each routed to all
    assert re.search(r"^raw: 320 records, worker lag \d+; dead letters in \S+\.invalid \(rejected before routing, "
                     r"and playbook errors\): 0$", captured.out, re.M), captured.out[-3000:]
    assert "workers: read 320 = rejected before routing 0 + duplicates dropped 20 + routable 300" in captured.out
    assert "  amp: routed 300, filtered 0, playbook errors 0, delivered 300, dead-lettered 0" in captured.out
    assert "failing when stopped: forward-hook" in captured.err
    assert code == 1  # stopped on request; the exit status says an integration was failing


def test_under_up_a_new_revision_starts_and_stops_forwarders(
        bootstrap: str, tmp_path: Path, vendors: tuple[AmplitudeStandIn, MixpanelStandIn],
        capsys: pytest.CaptureFixture[str]) -> None:
    """An integration the console (or `config apply`) adds gets its forwarder and its events; one disabled
    loses its forwarder; the others keep going untouched."""
    amp, mp = vendors
    topics = fresh_topics(bootstrap, partitions=3)
    revisions = three_revisions(tmp_path, amp, mp)
    store = ConfigStore(bootstrap, topics)
    store.apply(revisions[0])
    stack = Stack(bootstrap, topics, revisions[0], tmp_path / "logs", env=SECRETS, partitions=3)
    seen: dict[str, Any] = {}

    def drive() -> None:
        url = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        wait_for(lambda: _posts(url, []), timeout=90, what="the gateway")
        seen["before"] = [c.role for c in stack.children if c.role.startswith("forward-")]
        store.apply(revisions[1])
        wait_for(lambda: any(c.role == "forward-mp" and not c.stopped for c in stack.children), timeout=30,
                 what="a forwarder for the integration the new revision adds")
        wait_for(lambda: "config revision 2 in force" in (stack.folder / "worker-1.log").read_text(),
                 timeout=60, what="the worker on revision 2")
        assert _posts(url, [track(i, "follow") for i in range(20)])
        wait_for(lambda: len(mp.keys) >= 20, timeout=120, what="20 events at the added integration's vendor")
        amp_forwarder = next(c for c in stack.children if c.role == "forward-amp")
        store.apply(revisions[2])
        wait_for(lambda: all(c.stopped for c in stack.children if c.role == "forward-mp"), timeout=60,
                 what="the disabled integration's forwarder stopped")
        seen["amp untouched"] = not amp_forwarder.stopped and amp_forwarder.process.poll() is None

    code, captured = up_driven(stack, drive, capsys)
    assert seen["before"] == ["forward-amp"] and seen["amp untouched"], seen
    assert "forward-mp started: revision 2 delivers to it" in captured.out, captured.out[-3000:]
    assert "forward-mp stopped: revision 3 no longer delivers to it" in captured.out, captured.out[-3000:]
    assert code == 0 and amp.duplicates == 0
