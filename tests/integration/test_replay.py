"""Replay, re-route, dead-letter re-injection and vendor time windows on the real broker, through the
CLI (`eventrouter replay | deadletters | status`, in-process), with the stand-ins as vendors. Every
check compares sets of messageIds (the ledger), not counts."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventrouter.cli import main
from eventrouter.dev.standins import AmplitudeStandIn, GA4StandIn
from forwarders.app import find_integration
from schemas import Topics
from schemas.runtime.revisions import ConfigStore
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderThread, wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.worker_helpers import WorkerProcess, dead_letters, outbound, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

AMP = """
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp]}}
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{AMP_KEY}}", endpoint: "{url}/2/httpapi", allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 50, min_backoff_s: 0.2, batch_size: 50, max_attempts: 1, max_retry_window_s: 0}}
    playbook: "starter:amplitude"
"""


@pytest.fixture
def amplitude(monkeypatch: pytest.MonkeyPatch) -> Iterator[AmplitudeStandIn]:
    monkeypatch.setenv("AMP_KEY", "amp-key")
    stand_in = AmplitudeStandIn().start()
    yield stand_in
    stand_in.stop()


def cli(capsys: pytest.CaptureFixture[str], bootstrap: str, topics: Topics, *args: str) -> str:
    assert main([*args, "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix]) == 0
    out: str = capsys.readouterr().out
    return out


def apply(bootstrap: str, topics: Topics, tmp_path: Path, text: str) -> Any:
    path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    revision, _ = ConfigStore(bootstrap, topics).apply(path)
    return revision


def amp_events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event_type": "Order Completed", "user_id": f"user-{i % 7:03d}", "event_properties": {"n": i}}
            for i in range(start, start + n)]


def live(bootstrap: str, topics: Topics, revision: Any, name: str = "amp") -> ForwarderThread:
    return ForwarderThread(bootstrap, topics, find_integration(revision.config(), name))


def test_replay_redelivers_a_window_with_its_messageids_beside_live_delivery(
        bootstrap: str, tmp_path: Path, amplitude: AmplitudeStandIn, capsys: pytest.CaptureFixture[str],
        figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    revision = apply(bootstrap, topics, tmp_path, AMP.format(url=amplitude.url))
    first = write_outbound(bootstrap, topics, "amp", "amplitude", amp_events(600), prefix="first")
    runner = live(bootstrap, topics, revision)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 600, what="the first 600 delivered live")
        time.sleep(0.05)
        middle = int(time.time() * 1000)
        time.sleep(0.05)
        second = write_outbound(bootstrap, topics, "amp", "amplitude", amp_events(300, 600), prefix="second")
        wait_for(lambda: len(amplitude.accepted) >= 900, what="the next 300 delivered live")

        dry = cli(capsys, bootstrap, topics, "replay", "deliver", "amp", "--until", str(middle), "--dry-run")
        assert "events: 600" in dry and "dry run: nothing sent" in dry
        assert len(amplitude.accepted) == 900

        # the replay (12 requests of 50 at 4/s: the bucket's 4, then 8 more at 0.25 s) runs beside live traffic
        codes: list[int] = []
        replay = threading.Thread(target=lambda: codes.append(main([
            "replay", "deliver", "amp", "--until", str(middle), "--rate", "4", "--bootstrap-servers", bootstrap,
            "--topic-prefix", topics.prefix])))
        started = time.monotonic()
        replay.start()
        third = write_outbound(bootstrap, topics, "amp", "amplitude", amp_events(300, 900), prefix="third")
        wait_for(lambda: all(amplitude.keys[m] >= 1 for m in third), what="live events during the replay")
        live_done = time.monotonic() - started
        replay.join(120)
        assert not replay.is_alive() and codes == [0]
        assert "replayed 600 records" in capsys.readouterr().out
        took = time.monotonic() - started
        wait_for(lambda: len(amplitude.accepted) >= 1800, what="everything")
    finally:
        runner.stop()
    twice = {key for key, n in amplitude.keys.items() if n == 2}
    once = {key for key, n in amplitude.keys.items() if n == 1}
    assert twice == set(first), "the window, and only the window, is delivered again under the same insert_id"
    assert once == set(second) | set(third)
    assert len(amplitude.accepted) == 1800 and amplitude.duplicates == 600
    assert took >= 1.9, "the replay's own rate limit paces it"
    print(f"replay: 600 re-sent in {took:.1f} s; live events delivered {live_done:.1f} s after being written")
    figures.report("replay of a time window for one integration", window=600, resent_same_id=len(twice),
                   outside_window_resent=0, live_delivered_during_replay=300, live_took_s=live_done, lost=0)
    status = cli(capsys, bootstrap, topics, "status")
    line = next(x for x in status.splitlines() if x.startswith("amp "))
    assert line.split()[2:5] == ["1200", "0", "0"], status  # routed, live lag, retrying
    print(status)


def test_events_older_than_the_vendor_accepts_are_dead_lettered_not_sent(
        bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GA4_SECRET", "ga4-secret")
    ga4 = GA4StandIn().start()
    try:
        topics = fresh_topics(bootstrap)
        revision = apply(bootstrap, topics, tmp_path, f"""
pipelines: [{{name: web, write_keys: [wk1], integrations: [ga4]}}]
integrations:
  - name: ga4
    kind: ga4
    connection: {{measurement_id: G-TEST, api_secret: "${{GA4_SECRET}}", endpoint: "{ga4.url}/mp/collect",
                  allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 50}}
    playbook: "starter:ga4"
""")
        now = int(time.time() * 1000)
        old = now - 80 * 3_600_000  # 80 hours: past GA4's 72

        def hits(n: int, ms: int) -> list[dict[str, Any]]:
            return [{"client_id": f"c{i}", "name": "purchase", "timestamp_micros": ms * 1000,
                     "params": {"value": i}} for i in range(n)]
        fresh_ids = write_outbound(bootstrap, topics, "ga4", "ga4", hits(10, now), timestamp_ms=now, prefix="new")
        old_ids = write_outbound(bootstrap, topics, "ga4", "ga4", hits(10, old), timestamp_ms=old, prefix="old")
        dry = cli(capsys, bootstrap, topics, "replay", "deliver", "ga4", "--dry-run")
        assert "events: 20" in dry and "older than the vendor accepts (72 h): 10" in dry
        runner = live(bootstrap, topics, revision, "ga4")
        try:
            letters = dead_letters(bootstrap, topics.dead_letters("ga4"), 10, settle=0.5)
            wait_for(lambda: len(ga4.accepted) >= 10, what="the fresh hits")
        finally:
            runner.stop()
        assert {m["messageId"] for m in letters} == set(old_ids)
        assert {m["reason"] for m in letters} == {"vendor.too_old"}
        assert "older than the 72 h ga4 accepts" in letters[0]["message"]
        assert len(ga4.accepted) == 10 and not ga4.dropped, "nothing sent that GA4 would silently drop"
        assert len(fresh_ids) == 10
    finally:
        ga4.stop()


REROUTE = """
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp{hook}]}}
integrations:
  - {{name: amp, kind: amplitude, connection: {{api_key: "${{AMP_KEY}}"}}, playbook: "starter:amplitude"}}
{hook_spec}"""
HOOK = """  - name: hook
    kind: webhook
    connection: {url: "https://crm.example/hook"}
    playbook:
      filter: {deny: {event: ["Debug *"]}}
      global: {mappings: [{from: userId, to: user}, {%s, to: value}]}
"""


def raw_event(i: int, *, event: str = "Order Completed", write_key: str = "wk1", **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": f"user-{i % 9}", "writeKey": write_key,
            "messageId": f"r-{i}-{uuid.uuid4().hex[:6]}", "originalTimestamp": "2026-11-26T10:00:00.000Z",
            "sentAt": "2026-11-26T10:00:00.000Z", "properties": {"price": 10 + i, **properties}}


def test_reroute_sends_a_raw_window_through_the_current_playbook_into_a_new_integration(
        bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = fresh_topics(bootstrap)
    apply(bootstrap, topics, tmp_path, REROUTE.format(hook="", hook_spec=""))
    good = [raw_event(i) for i in range(200)]
    debug = [raw_event(1000 + i, event="Debug Ping") for i in range(10)]
    strangers = [raw_event(2000 + i, write_key="wk-unknown") for i in range(5)]
    send_events(bootstrap, topics, good + debug + strangers)
    revision = apply(bootstrap, topics, tmp_path, REROUTE.format(
        hook=", hook", hook_spec=HOOK % "from: properties.price"))  # the hook integration is added
    out = cli(capsys, bootstrap, topics, "replay", "reroute", "hook", "--since", "1h")
    for line in ("raw events read: 215", "routed to hook: 200", "filtered by filter.deny: 10",
                 "not valid now (auth.unknown_write_key): 5"):
        assert line in out, out
    records = outbound(bootstrap, topics.integration("hook"), 200, settle=1.0)
    assert {r["messageId"] for r in records} == {e["messageId"] for e in good}
    assert all(r["replayed"] and r["configRevision"] == revision.number for r in records)
    assert all(r["_key"] == r["userId"].encode() for r in records), "keyed by user, as live routing does"


def test_dead_letters_are_listed_shown_and_reinjected_once_without_resending_what_was_delivered(
        bootstrap: str, tmp_path: Path, amplitude: AmplitudeStandIn, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    topics = fresh_topics(bootstrap)
    revision = apply(bootstrap, topics, tmp_path, AMP.format(url=amplitude.url))
    monkeypatch.setenv("AMP_KEY", "a-wrong-key")
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amp_events(100), prefix="dl")
    runner = live(bootstrap, topics, revision)
    try:
        letters = dead_letters(bootstrap, topics.dead_letters("amp"), 100, settle=0.5)
    finally:
        runner.stop()
    assert {m["messageId"] for m in letters} == set(ids) and not amplitude.accepted

    listing = cli(capsys, bootstrap, topics, "deadletters", "list", "amp", "--limit", "3")
    assert "100 dead letters in" in listing and "vendor.rejected: 100" in listing, listing
    at = listing.splitlines()[0].split()[0]
    shown = cli(capsys, bootstrap, topics, "deadletters", "show", "amp", at)
    assert '"reason": "vendor.rejected"' in shown and '"event_type": "Order Completed"' in shown
    assert "a-wrong-key" not in listing + shown, "the secret is scrubbed from what the vendor echoed"

    # the key is fixed; 30 of the events get delivered meanwhile by another path (written again, same ids)
    monkeypatch.setenv("AMP_KEY", "amp-key")
    runner = live(bootstrap, topics, revision)
    try:
        from tests.integration.forwarder_helpers import outbound_records  # the same records, same ids
        from tests.integration.worker_helpers import _produce

        again = [r for r in outbound_records("amp", "amplitude", [{**e, "_messageId": m} for e, m in
                                                                   zip(amp_events(100), ids, strict=True)])][:30]
        from confluent_kafka import Producer

        from schemas.runtime.kafka import producer_settings
        producer = Producer(producer_settings(bootstrap))
        for key, value, _ in again:
            _produce(producer, topics.integration("amp"), value, key)
        assert producer.flush(30) == 0
        wait_for(lambda: runner.forwarder.metrics.delivered._value.get() >= 30, what="30 delivered")
        time.sleep(1.0)  # their receipt written
        out = cli(capsys, bootstrap, topics, "deadletters", "reinject", "amp")
        assert "re-injected into amp: 70" in out and "skipped, delivered since: 30" in out, out
        wait_for(lambda: len(amplitude.accepted) >= 100, what="all 100 delivered")
        out = cli(capsys, bootstrap, topics, "deadletters", "reinject", "amp")
        assert "re-injected into" not in out and "skipped, re-injected before: 70" in out, out
        time.sleep(1.0)
    finally:
        runner.stop()
    assert set(amplitude.keys) == set(ids) and amplitude.duplicates == 0, "every event delivered exactly once"


def test_the_workers_dead_letters_are_reinjected_after_the_fix(bootstrap: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    topics = fresh_topics(bootstrap)
    broken = REROUTE.format(hook=", hook", hook_spec=HOOK % "expr: \"properties.price * 'x'\"")
    apply(bootstrap, topics, tmp_path, broken)
    worker = WorkerProcess(bootstrap, topics, tmp_path)
    try:
        events = [raw_event(i) for i in range(40)]
        strangers = [raw_event(100 + i, write_key="wk2") for i in range(5)]
        send_events(bootstrap, topics, events + strangers)
        letters = dead_letters(bootstrap, topics.invalid, 45, settle=0.5)
        amp_before = outbound(bootstrap, topics.integration("amp"), 40, settle=0.5)
    finally:
        worker.stop()
    reasons = sorted({(m["reason"], m["integration"]) for m in letters}, key=str)
    assert reasons == [("auth.unknown_write_key", None), ("playbook.expression", "hook")], reasons
    fixed = REROUTE.format(hook=", hook", hook_spec=HOOK % "from: properties.price").replace(
        "write_keys: [wk1]", "write_keys: [wk1, wk2]")
    revision = apply(bootstrap, topics, tmp_path, fixed)
    out = cli(capsys, bootstrap, topics, "deadletters", "reinject", "invalid", "--reason", "playbook")
    assert "re-injected into hook: 40" in out, out
    out = cli(capsys, bootstrap, topics, "deadletters", "reinject", "invalid")
    assert "re-injected into amp: 5" in out and "re-injected into hook: 5" in out, out
    assert "skipped, re-injected before: 40" in out, out
    hook = outbound(bootstrap, topics.integration("hook"), 45, settle=1.0)
    amp = outbound(bootstrap, topics.integration("amp"), 45, settle=1.0)
    assert {r["messageId"] for r in hook} == {e["messageId"] for e in events + strangers}
    assert {r["messageId"] for r in amp} == {r["messageId"] for r in amp_before} | {e["messageId"] for e in strangers}
    assert len(amp) == 45, "amp already had the 40: they are not routed to it again"
    assert all(r["replayed"] and r["configRevision"] == revision.number for r in hook)
