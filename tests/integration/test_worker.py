"""The stream worker on the real broker, as a real subprocess: routing in the right shape, dead letters
with reasons, consent and the integrations map, dedup across a restart, live config, two workers and
a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import struct
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from schemas import EventCodec
from schemas.catalogue import KINDS
from schemas.playbook.model import starter_names
from schemas.runtime.revisions import ConfigStore
from tests.figures import Figures
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.worker_helpers import (
    WorkerProcess,
    dead_letters,
    outbound,
    send_events,
    send_raw,
)
from tests.unit.forwarders.test_vendors import referenced

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
GOLDEN = Path(__file__).parents[1] / "golden"
EVENTS: dict[str, dict[str, Any]] = json.loads((GOLDEN / "events.json").read_text())


def _write(tmp_path: Path, text: str, name: str = "eventrouter.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _track(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{i % 40}", "writeKey": "wk1",
            "messageId": f"m-{i}-{uuid.uuid4().hex[:6]}", "originalTimestamp": "2026-11-26T10:00:00.000Z",
            "sentAt": "2026-11-26T10:00:00.000Z", "properties": {"revenue": 10.0 + i, "seq": i}, **extra}


# what each vendor's connection requires, as ${ENV} references (a worker only routes: they need not be set)
CONNECTIONS = {kind: json.dumps(referenced(kind)) for kind in KINDS}

ENGINES = ["kafka", "faust"]  # the worker's fault tests run for both

SIMPLE = """
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, hook]}
integrations:
  - {name: amp, kind: amplitude, connection: {api_key: "${AMP_KEY}"}, playbook: "starter:amplitude",
     consent: analytics}
  - {name: hook, kind: webhook, connection: {url: "https://crm.example/hook"}, playbook: "starter:webhook"}
"""


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_valid_events_reach_exactly_the_right_topics_in_the_golden_shape(bootstrap: str, tmp_path: Path,
                                                                         engine: str) -> None:
    kits = starter_names()
    config = "pipelines:\n  - {name: all, write_keys: [wk1], integrations: [" + ", ".join(kits) + "]}\n" \
             "integrations:\n" + "".join(
                 f"  - {{name: {k}, kind: {k}, playbook: 'starter:{k}', connection: {CONNECTIONS[k]}}}\n" for k in kits)
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=_write(tmp_path, config), engine=engine)
    try:
        worker.wait_for_revision(1)
        sent = {name: {**event, "writeKey": "wk1"} for name, event in EVENTS.items()}
        send_events(bootstrap, topics, sent.values())
        by_id = {event["messageId"]: name for name, event in sent.items()}
        for kit in kits:
            golden = json.loads((GOLDEN / f"{kit}.json").read_text())
            wanted = {name: g for name, g in golden.items() if "payload" in g}
            records = outbound(bootstrap, topics.integration(kit), len(wanted), settle=1.0)
            got = {by_id[r["messageId"]]: r for r in records}
            assert set(got) == set(wanted), kit  # the filtered ones did not arrive, the others once
            for name, record in got.items():
                assert json.loads(record["payload"]) == wanted[name]["payload"], (kit, name)
                assert record["eventName"] == wanted[name]["eventName"]
                assert record["configRevision"] == 1 and record["kind"] == kit and record["pipeline"] == "all"
                event = sent[name]
                assert record["_key"] == (event.get("userId") or event["anonymousId"]).encode()
        assert worker.metric('eventrouter_worker_events_in_total{pipeline="all"}') == len(sent)
    finally:
        worker.stop()


def test_each_invalid_input_is_dead_lettered_with_its_reason_while_the_worker_goes_on(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    config = SIMPLE + """
  - name: broken
    kind: webhook
    connection: {url: "https://x.example/h"}
    playbook: {global: {mappings: [{expr: "properties.revenue * 'x'", to: v}]}}
"""
    config = config.replace("integrations: [amp, hook]", "integrations: [amp, hook, broken]")
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=_write(tmp_path, config))
    codec = EventCodec()
    good = codec.encode(_track(1))
    try:
        worker.wait_for_revision(1)
        send_raw(bootstrap, topics.raw, [
            os.urandom(200),                                   # decode.bad_magic (or another decode.*)
            b"\xc3\x01" + b"\x00" * 3,                         # decode.truncated
            b"\xc3\x01" + struct.pack("<Q", 12345) + b"xx",    # decode.unknown_schema
            None,                                              # decode.empty
            good[:-3],                                         # decode.truncated / corrupt
        ])
        bad_events = [
            {**_track(2), "writeKey": "wk_unknown"},                       # auth.unknown_write_key
            {**_track(3), "userId": None},                                 # invalid.identity
            {**_track(4), "event": None},                                  # invalid.missing_field
            {**_track(5), "timestamp": "yesterday"},                       # invalid.timestamp
            {**_track(6), "properties": {"big": "x" * 40_000}},            # limit.event_size
        ]
        send_events(bootstrap, topics, bad_events)
        after = [_track(i) for i in range(100, 110)]
        send_events(bootstrap, topics, after)
        letters = dead_letters(bootstrap, topics.invalid, 10 + 10, settle=1.0)
        reasons = Counter(d["reason"] for d in letters)
        assert sum(n for r, n in reasons.items() if r.startswith("decode.")) == 5, reasons
        assert reasons["decode.empty"] == 1 and reasons["decode.unknown_schema"] == 1
        for reason in ("auth.unknown_write_key", "invalid.identity", "invalid.missing_field", "invalid.timestamp",
                       "limit.event_size"):
            assert reasons[reason] == 1, reasons
        # the playbook that raises fails for its integration only, on every good event
        assert reasons["playbook.expression"] == 10
        for letter in letters:
            assert letter["sourceTopic"] == topics.raw and letter["sourceOffset"] >= 0 and letter["message"]
            assert "wk_unknown" not in letter["message"]
            if letter["reason"] == "playbook.expression":
                assert letter["integration"] == "broken" and letter["stage"] == "playbook"
        # the worker went on: every good event reached both healthy integrations
        assert {r["messageId"] for r in outbound(bootstrap, topics.integration("hook"), 10)} == \
            {e["messageId"] for e in after}
        assert len(outbound(bootstrap, topics.integration("amp"), 10)) == 10
        assert worker.process.poll() is None
        decode = {r: n for r, n in reasons.items() if r.startswith("decode.")}
        figures.report("malformed Avro: random bytes, truncated, unknown fingerprint, empty", dead_letters=decode,
                       worker_alive=True, good_after=10)
        figures.report("missing ids; track without event; unparsable timestamp; unknown writeKey", lost=0,
                       dead_letters={r: n for r, n in reasons.items() if r.split(".")[0] in ("auth", "invalid",
                                                                                                "limit")})
        figures.report("a playbook raising on a value", dead_letters={"playbook.expression": 10},
                       other_integrations_delivered=10)
    finally:
        worker.stop()


def test_consent_and_the_integrations_map_hold(bootstrap: str, tmp_path: Path) -> None:
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=_write(tmp_path, SIMPLE))
    try:
        worker.wait_for_revision(1)
        events = {
            "both": _track(1),
            "analytics_off": _track(2, context={"consent": {"categoryPreferences": {"analytics": False}}}),
            "all_off": _track(3, integrations={"All": False}),
            "all_off_but_hook": _track(4, integrations={"All": False, "hook": True}),
            "amplitude_off": _track(5, integrations={"Amplitude": False}),
        }
        send_events(bootstrap, topics, events.values())
        names = {e["messageId"]: n for n, e in events.items()}
        amp = {names[r["messageId"]] for r in outbound(bootstrap, topics.integration("amp"), 1, settle=2.0)}
        hook = {names[r["messageId"]] for r in outbound(bootstrap, topics.integration("hook"), 4, settle=0.5)}
        assert amp == {"both"}
        assert hook == {"both", "analytics_off", "all_off_but_hook", "amplitude_off"}
        filtered = worker.metrics()
        rule = 'eventrouter_worker_filtered_total{integration="amp",pipeline="web",rule="%s"}'
        assert filtered[rule % "consent.analytics"] == 1
        assert filtered[rule % "integrations_map"] == 3
    finally:
        worker.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicates_are_dropped_across_a_worker_restart(bootstrap: str, tmp_path: Path, figures: Figures,
                                                        engine: str) -> None:
    topics = fresh_topics(bootstrap)
    config = _write(tmp_path, SIMPLE)
    first = [_track(i) for i in range(300)]
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=config, engine=engine)
    try:
        worker.wait_for_revision(1)
        send_events(bootstrap, topics, first + first[:50])  # 50 repeats in the same run
        assert len(outbound(bootstrap, topics.integration("hook"), 300, settle=1.0)) == 300
        time.sleep(2)  # let the consumer commit
    finally:
        assert worker.stop() == 0
    again = WorkerProcess(bootstrap, topics, tmp_path, name="w2", config=config, engine=engine)
    try:
        again.wait_for_revision(1)
        fresh = [_track(i) for i in range(1000, 1100)]
        send_events(bootstrap, topics, first[100:] + fresh)  # 200 repeats after the restart
        records = outbound(bootstrap, topics.integration("hook"), 400, settle=2.0)
        ids = Counter(r["messageId"] for r in records)
        assert len(records) == 400 and set(ids) == {e["messageId"] for e in first + fresh}
        assert again.metric("eventrouter_worker_deduplicated_total") == 200
        figures.report("the same messageId twice within the window", engine=engine, sent=650, repeats_after_restart=200,
                       delivered_once=400, duplicates=0, lost=0)
    finally:
        again.stop()


def test_past_its_memory_limit_the_dedup_state_goes_to_disk_and_still_drops_every_repeat(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    config = _write(tmp_path, SIMPLE)
    events = [_track(i) for i in range(3000)]
    limit = ("--dedup-memory-keys", "1000")
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=config, extra=limit)
    try:
        worker.wait_for_revision(1)
        send_events(bootstrap, topics, events)
        assert len(outbound(bootstrap, topics.integration("hook"), 3000)) == 3000
        send_events(bootstrap, topics, events[:1000])  # the oldest: on disk by now
        deadline = time.monotonic() + 60
        while worker.metric("eventrouter_worker_deduplicated_total") < 1000 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.metric("eventrouter_worker_deduplicated_total") == 1000
        in_memory = worker.metric('eventrouter_worker_dedup_keys{where="memory"}')
        on_disk = worker.metric('eventrouter_worker_dedup_keys{where="disk"}')
        assert in_memory <= 1000 and in_memory + on_disk == 3000, (in_memory, on_disk)
        assert list((tmp_path / "w1-data" / "dedup").glob("dedup-*.sqlite"))
        time.sleep(2)  # let the consumer commit
    finally:
        assert worker.stop() == 0
    assert not list((tmp_path / "w1-data" / "dedup").glob("dedup-*.sqlite"))  # removed on stop
    again = WorkerProcess(bootstrap, topics, tmp_path, name="w2", config=config, extra=limit)
    try:  # the restore of 3,000 messageIds spills as well
        again.wait_for_revision(1)
        send_events(bootstrap, topics, [*events[::3], _track(5000)])
        records = outbound(bootstrap, topics.integration("hook"), 3001, settle=2.0)
        assert len(records) == 3001 and len({r["messageId"] for r in records}) == 3001
        assert again.metric("eventrouter_worker_deduplicated_total") == 1000
        assert again.metric('eventrouter_worker_dedup_keys{where="memory"}') <= 1000
        figures.report("dedup past its memory limit (1,000 messageIds)", sent=5001, repeats=2000,
                       dropped_as_repeats=2000, delivered_once=3001)
    finally:
        again.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_config_applied_while_running_takes_effect_without_a_restart(bootstrap: str, tmp_path: Path,
                                                                       engine: str) -> None:
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=_write(tmp_path, SIMPLE), engine=engine)
    store = ConfigStore(bootstrap, topics)
    try:
        worker.wait_for_revision(1)
        send_events(bootstrap, topics, [_track(i) for i in range(5)])
        assert {r["configRevision"] for r in outbound(bootstrap, topics.integration("hook"), 5)} == {1}
        changed = SIMPLE.replace('playbook: "starter:webhook"',
                                 'playbook: {keep_event: true, filter: {deny: {event: ["Order *"]}}}')
        revision, created = store.apply(_write(tmp_path, changed, "v2.yaml"))
        assert created and revision.number == 2
        worker.wait_for_revision(2, timeout=30)
        send_events(bootstrap, topics, [_track(i) for i in range(5, 10)])
        amp = outbound(bootstrap, topics.integration("amp"), 10, settle=1.0)
        assert Counter(r["configRevision"] for r in amp) == {1: 5, 2: 5}
        assert len(outbound(bootstrap, topics.integration("hook"), 5, settle=1.0)) == 5  # now denied
        rolled = store.rollback(1)
        assert rolled.number == 3 and [r.number for r in store.history()] == [1, 2, 3]
        worker.wait_for_revision(3, timeout=30)
        send_events(bootstrap, topics, [_track(i) for i in range(10, 12)])
        hook = outbound(bootstrap, topics.integration("hook"), 7, settle=1.0)
        assert Counter(r["configRevision"] for r in hook) == {1: 5, 3: 2}
        assert worker.process.poll() is None
    finally:
        worker.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_two_workers_share_the_load_and_sigkill_of_one_loses_nothing(bootstrap: str, tmp_path: Path,
                                                                     engine: str, figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    config = _write(tmp_path, SIMPLE)
    store = ConfigStore(bootstrap, topics)
    store.apply(config)
    one = WorkerProcess(bootstrap, topics, tmp_path, name="w1", batch_size=50, engine=engine)
    two = WorkerProcess(bootstrap, topics, tmp_path, name="w2", batch_size=50, engine=engine)
    events = [_track(i) for i in range(6000)]
    try:
        one.wait_for_revision(1)
        two.wait_for_revision(1)
        deadline = time.monotonic() + 60
        shares = (0.0, 0.0)
        while time.monotonic() < deadline:  # both in the group, the 3 partitions split between them
            shares = (one.metric("eventrouter_worker_assigned_partitions"),
                      two.metric("eventrouter_worker_assigned_partitions"))
            if min(shares) > 0 and sum(shares) == 3:
                break
            time.sleep(0.5)
        assert min(shares) > 0 and sum(shares) == 3, shares
        send_events(bootstrap, topics, events[:1000])
        for start in range(1000, 6000, 1000):  # keep the load on while one worker dies
            send_events(bootstrap, topics, events[start:start + 1000])
            if start == 2000:
                one.stop(signal.SIGKILL)
        records = outbound(bootstrap, topics.integration("hook"), len(events), timeout=120, settle=2.0)
        got = Counter(r["messageId"] for r in records)
        missing = {e["messageId"] for e in events} - set(got)
        assert not missing, f"{len(missing)} lost: {sorted(missing)[:5]}"
        duplicates = sum(n - 1 for n in got.values())
        assert two.metric("eventrouter_worker_events_in_total") > 0
        print(f"\nsigkill of one of two workers: sent={len(events)} lost=0 duplicates={duplicates}")
        figures.report("SIGKILL a stream worker mid-load", engine=engine, sent=len(events), lost=0,
                       duplicates=duplicates)
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_mid_load_drains_and_commits_so_a_new_worker_duplicates_nothing(bootstrap: str, tmp_path: Path,
                                                                                 figures: Figures, engine: str) -> None:
    topics = fresh_topics(bootstrap)
    config = _write(tmp_path, SIMPLE)
    events = [_track(i) for i in range(8000)]
    send_events(bootstrap, topics, events)  # a backlog, so the stop lands in the middle of it
    first = WorkerProcess(bootstrap, topics, tmp_path, name="w1", config=config, batch_size=100, engine=engine)
    try:
        deadline = time.monotonic() + 60
        seen = 0.0
        while seen < 300 and time.monotonic() < deadline:
            seen = first.metric("eventrouter_worker_events_in_total")
            time.sleep(0.02)
        assert 0 < seen < len(events), seen
        assert first.stop(signal.SIGTERM) == 0  # the batch in hand is finished and committed
    finally:
        first.stop()
    second = WorkerProcess(bootstrap, topics, tmp_path, name="w2", config=config, engine=engine)
    try:
        records = outbound(bootstrap, topics.integration("hook"), len(events), timeout=120, settle=2.0)
        got = Counter(r["messageId"] for r in records)
        assert set(got) == {e["messageId"] for e in events}
        assert max(got.values()) == 1
        # nothing was read twice: the second worker started exactly where the first one committed
        assert second.metric("eventrouter_worker_deduplicated_total") == 0
        assert 0 < second.metric("eventrouter_worker_events_in_total") < len(events)
        figures.report("SIGTERM a stream worker mid-load", engine=engine, sent=len(events),
                       read_before_stop=int(seen), lost=0, duplicates=0)
    finally:
        second.stop()


def test_a_restore_reads_the_dedup_log_from_the_windows_start(bootstrap: str, tmp_path: Path) -> None:
    """The log keeps a day more than the window: records written before the window's start are not read."""
    from confluent_kafka import Producer

    from schemas.runtime.kafka import ensure_topics, producer_settings
    from streams.dedup import Deduplicator
    from streams.dedup_log import DedupStore
    from streams.worker import WorkerSettings

    topic = f"log-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [topic], partitions=2)
    now_ms = int(time.time() * 1000)
    producer = Producer(producer_settings(bootstrap))
    for written_h, keys in ((30, ["old1", "old2"]), (2, ["new1"]), (1, ["new2", "new3"])):
        for partition in (0, 1):
            # "t" says 1 h ago for all: only the write time tells the first record is before the window
            value = json.dumps({"t": now_ms - 3_600_000, "k": [f"{k}-{partition}" for k in keys]}).encode()
            producer.produce(topic, value, partition=partition, timestamp=now_ms - written_h * 3_600_000)
    assert producer.flush(30) == 0
    store = DedupStore(WorkerSettings(bootstrap), topic)
    dedup = Deduplicator(store, topic, 86_400, per_key=False)
    assert store.restore([0, 1], dedup) == 6
    assert sorted(store) == sorted(f"new{i}-{p}" for i in (1, 2, 3) for p in (0, 1))
    empty = f"log-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [empty], partitions=1)
    assert DedupStore(WorkerSettings(bootstrap), empty).restore([0], dedup) == 0


def test_the_faust_engines_log_is_plain_lines_at_every_level(bootstrap: str, tmp_path: Path) -> None:
    """At WARNING, Faust's spinner wrote terminal codes (ESC[?25l) to the log file and nothing else."""
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=_write(tmp_path, SIMPLE), engine="faust",
                           extra=("--log-level", "WARNING"))
    try:
        worker.wait_for_revision(1)
        send_events(bootstrap, topics, [{**_track(i), "writeKey": "wk1"} for i in range(5)])
        assert len(outbound(bootstrap, topics.integration("amp"), 5)) == 5
    finally:
        worker.stop()
    text = worker.log_path.read_bytes()
    assert b"\x1b[" not in text, text[-2000:]

