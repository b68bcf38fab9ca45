"""No record can stop a forwarder, on the real broker: a record the vendor module cannot build and one
that is not an Outbound record, between good ones, are dead-lettered with their reasons while the good
ones are delivered and the forwarder keeps running; 700 events with 600-character messageIds (a receipt
of 1.26 MB before it was split) are each delivered once, and their receipts account for every one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from eventrouter.dev.standins import AmplitudeStandIn
from schemas import Topics, outbound_codec
from schemas.runtime.kafka import ensure_topics, producer_settings
from tests.integration.crashing_forwarder import CRASH_MARKER
from tests.integration.forwarder_helpers import ForwarderThread, integration, outbound_records, wait_for
from tests.integration.kafka_helpers import consume_all, fresh_topics
from tests.integration.worker_helpers import LoggedProcess, _produce, dead_letters


@pytest.fixture
def amplitude() -> Iterator[AmplitudeStandIn]:
    stand_in = AmplitudeStandIn().start()
    yield stand_in
    stand_in.stop()


def run(bootstrap: str, topics: Topics, stand_in: AmplitudeStandIn) -> ForwarderThread:
    return ForwarderThread(bootstrap, topics, integration("amp", "amplitude", {
        "api_key": "amp-key", "endpoint": stand_in.url + "/2/httpapi",
        "allow_http": True, "allow_private": True}))


def poison(message_id: str) -> bytes:
    """An Outbound record whose payload is JSON (so it is read) nested deeper than a vendor's JSON encoder
    goes (orjson: 254 levels): Amplitude's `build` raises for it."""
    deep = '{"event_type": "Deep", "user_id": "user-deep", "p": ' + "[" * 300 + "]" * 300 + "}"
    return outbound_codec().encode({
        "messageId": message_id, "integration": "amp", "kind": "amplitude", "pipeline": "web", "type": "track",
        "eventName": "Deep", "userId": "user-deep", "anonymousId": None, "timestamp": 1_795_000_000_000,
        "receivedAt": 1_795_000_000_000, "payload": deep, "configRevision": 1, "replayed": False,
        "sourceTopic": "t.raw", "sourcePartition": 0, "sourceOffset": 0})


def write(bootstrap: str, topics: Topics, records: list[tuple[bytes | None, bytes]]) -> None:
    topic = topics.integration("amp")
    ensure_topics(bootstrap, [topic], partitions=1)
    producer = Producer(producer_settings(bootstrap))
    for key, value in records:
        _produce(producer, topic, value, key)
    assert producer.flush(30) == 0


def good(n: int, start: int) -> list[tuple[bytes, bytes, str]]:
    return outbound_records("amp", "amplitude", [
        {"event_type": "Good", "user_id": f"user-{i % 7:03d}", "_messageId": f"good-{i}"}
        for i in range(start, start + n)])


def test_a_poison_record_between_good_ones_is_dead_lettered_and_the_forwarder_keeps_going(
        bootstrap: str, amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap)
    first, last = good(20, 0), good(20, 20)
    write(bootstrap, topics, [(k, v) for k, v, _ in first] + [(b"user-deep", poison("deep-1"))] +
          [(b"user-junk", b"not an outbound record")] + [(k, v) for k, v, _ in last])
    runner = run(bootstrap, topics, amplitude)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 40, what="the 40 good events")
        dead = dead_letters(bootstrap, topics.dead_letters("amp"), 2)
        assert runner.thread.is_alive() and runner.error is None
        # and it goes on: the next good events arrive too
        more = good(5, 40)
        write(bootstrap, topics, [(k, v) for k, v, _ in more])
        wait_for(lambda: len(amplitude.accepted) >= 45, what="5 more good events")
    finally:
        runner.stop()  # asserts the forwarder never failed
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(m for *_, m in first + last + more)
    assert amplitude.duplicates == 0
    by_reason = {d["reason"]: d for d in dead}
    assert set(by_reason) == {"forwarder.build_failed", "decode.bad_magic"}, by_reason.keys()
    built = by_reason["forwarder.build_failed"]
    assert built["message"].startswith("forwarder.build_failed: TypeError: ") and built["messageId"] == "deep-1"
    assert built["sourceOffset"] == 20 and built["originalBytes"] == poison("deep-1")
    assert by_reason["decode.bad_magic"]["originalBytes"] == b"not an outbound record"


def test_700_events_with_600_character_message_ids_are_each_delivered_once(
        bootstrap: str, amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap)
    # 600 characters of 3 bytes each: 700 such ids made one receipt of 1.26 MB, over the broker's 1 MB
    ids = [f"{i:04d}-" + "€" * 595 for i in range(700)]
    records = outbound_records("amp", "amplitude", [
        {"event_type": "Long", "user_id": f"user-{i % 7:03d}", "_messageId": message_id}
        for i, message_id in enumerate(ids)])
    write(bootstrap, topics, [(k, v) for k, v, _ in records])
    runner = run(bootstrap, topics, amplitude)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 700, what="700 events")
        receipts = [orjson.loads(m.value()) for m in consume_all(bootstrap, topics.receipts, 2, settle=2.0)]
        assert runner.thread.is_alive() and runner.error is None
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids) and amplitude.duplicates == 0
    counted = sum(o["count"] for r in receipts for o in r["outcomes"] if o["state"] == "delivered")
    assert counted == 700 and len(receipts) >= 2 and max(r["parts"] for r in receipts) >= 2


@pytest.mark.parametrize("first", [False, True], ids=["mid-batch", "first read"])
def test_a_record_that_kills_the_forwarder_at_every_start_is_quarantined_and_the_rest_delivered(
        first: bool, bootstrap: str, amplitude: AmplitudeStandIn, tmp_path: Path) -> None:
    """The forwarder's process dies outright on one record (os._exit, as a segfault would;
    tests/integration/crashing_forwarder.py), and is started again each time, as `up` would. Its crash
    guard sends the crashed batch's records one at a time, pins the record, and after 3 crashes on it
    alone dead-letters it as `quarantined`: every good record before and after it is delivered."""
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(f"""
pipelines: [{{name: web, write_keys: [wk], integrations: [amp]}}]
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{AMP_TEST_KEY}}", endpoint: "{amplitude.url}/2/httpapi",
                  allow_http: true, allow_private: true}}
    playbook: "starter:amplitude"
    delivery: {{linger_ms: 50}}
""")
    before, after = ([], good(12, 100)) if first else (good(6, 0), good(6, 100))
    (crash,) = outbound_records("amp", "amplitude", [{"event_type": CRASH_MARKER, "_messageId": "poison-1"}])
    write(bootstrap, topics, [(k, v) for k, v, _ in before] + [(b"user-000", crash[1])] +
          [(k, v) for k, v, _ in after])
    exits: list[int] = []
    forwarder: LoggedProcess | None = None
    try:
        while True:
            assert len(exits) <= 6, f"still crash-looping after {len(exits)} starts: {exits}"
            forwarder = LoggedProcess(["forward", "amp", "--bootstrap-servers", bootstrap, "--topic-prefix",
                                       topics.prefix, "--config", str(config), "--partitions", "1",
                                       "--data-dir", str(tmp_path / "guard")],
                                      tmp_path / f"forward-{len(exits)}.log", {"AMP_TEST_KEY": "amp-key"},
                                      module="tests.integration.crashing_forwarder")
            deadline = time.monotonic() + 120
            while forwarder.process.poll() is None and time.monotonic() < deadline and \
                    len({e["insert_id"] for e in amplitude.accepted}) < 12:
                time.sleep(0.2)
            code = forwarder.process.poll()
            if code is None:
                break  # running, past the record
            exits.append(code)
            forwarder.stop()
        assert exits == [70] * 5, exits  # twice in its batch, then 3 times alone
        (letter,) = dead_letters(bootstrap, topics.dead_letters("amp"), 1, timeout=60, settle=1.0)
        assert letter["reason"] == "quarantined" and "exited 3 times" in letter["message"], letter["message"]
        assert letter["originalBytes"] == crash[1] and letter["sourceOffset"] == len(before)
        assert {e["insert_id"] for e in amplitude.accepted} == {m for *_, m in before + after}
        assert forwarder.process.poll() is None, forwarder.log()
    finally:
        if forwarder is not None:
            forwarder.stop()
