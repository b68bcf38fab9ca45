"""The worker's stateful parts without Kafka: the dedup window and its changelog records, the offset guard."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from streams.dedup import Deduplicator, pack_seen
from streams.faust_engine import OffsetGuard


def test_a_message_id_is_seen_within_the_window_and_forgotten_after() -> None:
    store: dict[str, Any] = {}
    dedup = Deduplicator(store, "cl", window_s=10, per_key=True)
    changes = dedup.mark([(2, "web\x1fm1")], now_ms=1_000)
    assert dedup.seen("web\x1fm1", 5_000) and not dedup.seen("web\x1fm2", 5_000)
    assert not dedup.seen("web\x1fm1", 11_000)
    assert [(c.topic, c.partition, orjson.loads(c.key or b""), orjson.loads(c.value or b"")) for c in changes] == \
        [("cl", 2, "web\x1fm1", [1_000, 2])]
    tombstones = dedup.expire(11_000)
    assert store == {} and [(t.partition, t.value) for t in tombstones] == [(2, None)]


def test_the_batched_log_writes_one_record_per_partition_and_no_tombstones() -> None:
    store: dict[str, Any] = {}
    dedup = Deduplicator(store, "log", window_s=10, per_key=False)
    records = dedup.mark([(0, "a"), (1, "b"), (0, "c")], now_ms=500)
    assert sorted((r.partition, orjson.loads(r.value or b"")["k"]) for r in records) == [(0, ["a", "c"]), (1, ["b"])]
    assert all(r.key is None and orjson.loads(r.value or b"")["t"] == 500 for r in records)
    assert store["c"] == pack_seen(500, 0) and dedup.expire(20_000) == [] and store == {}


def test_the_batched_log_expires_its_oldest_keys_from_the_front_and_a_key_marked_again_moves_to_the_end() -> None:
    store: dict[str, Any] = {}
    dedup = Deduplicator(store, "log", window_s=10, per_key=False)
    dedup.mark([(0, "a"), (1, "b")], now_ms=1_000)
    dedup.mark([(0, "c")], now_ms=5_000)
    dedup.mark([(0, "a")], now_ms=12_000)  # expired, not yet forgotten, seen again
    assert list(store) == ["b", "c", "a"]
    assert dedup.expire(12_000) == [] and list(store) == ["c", "a"]
    dedup.expire(30_000)
    assert store == {}


def test_entries_a_faust_table_recovered_as_lists_are_read_too() -> None:
    dedup = Deduplicator({"k": [1_000, 3]}, "cl", window_s=10, per_key=True)
    assert dedup.seen("k", 5_000) and not dedup.seen("k", 12_000)
    assert [t.partition for t in dedup.expire(12_000)] == [3]


@dataclass
class _Message:
    partition: int
    offset: int


@dataclass
class _Event:
    message: _Message


def _events(partition: int, *offsets: int) -> list[_Event]:
    return [_Event(_Message(partition, o)) for o in offsets]


def _split(guard: OffsetGuard, events: list[_Event], generation: int = 1) -> tuple[Any, Any, Any]:
    ready, redelivered, seek = asyncio.run(guard.split(events, generation))
    return [e.message.offset for e in ready], [e.message.offset for e in redelivered], seek


def test_records_in_order_from_the_committed_offset_are_routed() -> None:
    guard = OffsetGuard(lambda partitions: dict.fromkeys(partitions, 10))
    assert _split(guard, _events(0, 10, 11, 12)) == ([10, 11, 12], [], {})
    assert _split(guard, _events(0, 13)) == ([13], [], {})


def test_a_gap_seeks_back_and_holds_the_records_after_it() -> None:
    guard = OffsetGuard(lambda partitions: dict.fromkeys(partitions, 10))
    assert _split(guard, _events(0, 68, 69) + _events(1, 10)) == ([10], [], {0: 10})
    # read again from 10: the records before the expected one were routed already: ack only
    assert _split(guard, _events(0, 10, 11)) == ([10, 11], [], {})
    assert _split(guard, _events(0, 5, 12)) == ([12], [5], {})


def test_a_new_generation_reads_the_committed_offsets_again() -> None:
    committed = {0: 10}
    guard = OffsetGuard(lambda partitions: {p: committed[p] for p in partitions})
    _split(guard, _events(0, 10, 11))
    committed[0] = 11
    assert _split(guard, _events(0, 11), generation=2) == ([11], [], {})


def test_a_gap_that_is_still_there_after_seeking_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("streams.faust_engine.time.monotonic", lambda: clock[0])
    guard = OffsetGuard(lambda partitions: dict.fromkeys(partitions, 10))
    assert _split(guard, _events(0, 12))[2] == {0: 10}
    clock[0] += 6
    assert _split(guard, _events(0, 12)) == ([12], [], {})  # offsets 10-11 do not exist (transaction markers)
