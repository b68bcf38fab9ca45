"""The dedup state of a worker: the messageIds it has seen within the window, and the records that keep
them across restarts and rebalances (streams/dedup_log.py DedupStore reads them back). Pure."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from itertools import islice
from typing import Any, Final, Protocol

import orjson

from schemas.runtime.kafka import RECORD_BYTES
from streams.router import Output

LOG_RECORD_BYTES: Final = RECORD_BYTES // 4  # a dedup-log record's bytes at most, well under the broker's limit


class Overflow(Protocol):
    """Where the oldest seen keys go when memory holds its limit (streams/seen_disk.py DiskSeen)."""

    size: int

    def put(self, entries: Sequence[tuple[str, int]]) -> None: ...
    def find(self, keys: Sequence[str], since_packed: int) -> dict[str, int]: ...
    def drop_before(self, cutoff_packed: int) -> int: ...


class Deduplicator:
    """Seen messageIds per pipeline: a mapping key -> (first seen epoch ms, partition), co-partitioned
    with the raw topic and written to a topic of its own, so it survives restarts and rebalances.

    Two record formats, by engine. `per_key` (the Faust engine: its table's compacted changelog, one
    record per messageId, tombstones when they expire). Batched (the confluent-kafka engine's dedup log):
    one record per partition and batch, `{"t": ms, "k": [keys]}`, on a topic whose time retention is
    the window plus a day, so expiry needs no tombstones and a restore reads a window's worth of records
    of a few hundred keys each: one produce per batch instead of one per event.

    The records are written by the worker's own producer after the batch's outputs were acknowledged:
    a messageId is marked seen only once what it produced is durable (a crash in between gives a
    duplicate downstream, never a loss). Written with every batch: gathering 250 ms of batches into one
    record saved produce requests, but a SIGKILLed worker then took the newest keys with it and the
    worker that took over let 675 of 6,000 events through twice (none when written per batch).

    Memory holds at most `memory_keys` keys when there is an `overflow` (batched format): a window of
    24 h at 1,000 events/s is 86 million messageIds, ~11 GB as a dict. Past the limit the oldest go to
    the overflow, SPILL at a time; `prefetch(keys)` before a batch's `seen()` calls brings back those of its keys that
    are there, in one lookup per batch."""

    CHUNK = 2000  # keys per batched record (~100 KB of UUIDs)
    SPILL = 2000  # keys moved to the overflow at once (~5-10 ms of SQLite inserts)

    def __init__(self, data: MutableMapping[str, Any], topic: str, window_s: int, *, per_key: bool,
                 overflow: Overflow | None = None, memory_keys: int = 100_000) -> None:
        self.data = data
        self.topic = topic
        self.window_ms = window_s * 1000
        self.per_key = per_key
        self.overflow = overflow
        self.memory_keys = max(2, memory_keys)
        self.fetched: dict[str, int] = {}  # the batch's keys found in the overflow (prefetch)

    def seen(self, key: str, now_ms: int) -> bool:
        value = self.data.get(key)
        if value is None:
            value = self.fetched.get(key)
        return value is not None and now_ms - _unpack(value)[0] < self.window_ms

    def prefetch(self, keys: Iterable[str], now_ms: int) -> None:
        """Before a batch asks `seen()`: look up, at once, those of its keys that are not in memory."""
        overflow = self.overflow
        if overflow is None or not overflow.size:
            if self.fetched:
                self.fetched = {}
            return
        data = self.data
        self.fetched = overflow.find([k for k in keys if k not in data], pack_seen(now_ms - self.window_ms, 0))

    def load(self, seen_ms: int, partition: int, keys: Iterable[str]) -> int:
        """Keys read back from the dedup log (a restore); returns how many."""
        entry = pack_seen(seen_ms, partition)
        data = self.data
        count = 0
        for key in keys:
            data[key] = entry
            count += 1
        self._spill()
        return count

    def mark(self, marks: Sequence[tuple[int, str]], now_ms: int) -> list[Output]:
        """Set the keys in the local store; return the records that make them durable."""
        data = self.data
        by_partition: dict[int, list[str]] = {}
        for partition, key in marks:
            if key in data:  # seen before the window: marked again at the end, so the oldest stay first
                del data[key]
            data[key] = pack_seen(now_ms, partition)
            by_partition.setdefault(partition, []).append(key)
        self._spill()
        if self.per_key:
            return [Output(self.topic, orjson.dumps(key), orjson.dumps([now_ms, partition]), partition=partition)
                    for partition, key in marks]
        out: list[Output] = []
        for partition, keys in by_partition.items():
            for i in range(0, len(keys), self.CHUNK):
                self._log_records(out, partition, now_ms, keys[i:i + self.CHUNK])
        return out

    def _log_records(self, out: list[Output], partition: int, now_ms: int, keys: list[str]) -> None:
        """`keys` as one dedup-log record, or halves of them until each is at most LOG_RECORD_BYTES: a batch's
        keys are ~300 UUIDs (~15 KB), but ids may have Limits.id_chars (512) characters, each up to six
        bytes as JSON, and a worker may be run with a large --batch-size."""
        value = orjson.dumps({"t": now_ms, "k": keys})
        if len(value) > LOG_RECORD_BYTES and len(keys) > 1:
            half = len(keys) // 2
            self._log_records(out, partition, now_ms, keys[:half])
            self._log_records(out, partition, now_ms, keys[half:])
            return
        out.append(Output(self.topic, None, value, partition=partition))

    def expire(self, now_ms: int) -> list[Output]:
        """Forget keys older than the window; return the tombstones to write (per-key format only).
        Batched format: our own dict, in the order keys were marked (a restore reads the log in order), so
        only its expired front is read; a scan of 300,000 keys stopped the worker for 135 ms a minute."""
        if self.per_key:  # a Faust table's store, in whatever order it keeps
            old = [(k, _unpack(v)[1]) for k, v in list(self.data.items())
                   if now_ms - _unpack(v)[0] >= self.window_ms]
        else:
            old = []
            for key, value in self.data.items():
                seen, partition = _unpack(value)
                if now_ms - seen < self.window_ms:
                    break
                old.append((key, partition))
        for key, _partition in old:
            self.data.pop(key, None)
        if self.overflow is not None:
            self.overflow.drop_before(pack_seen(now_ms - self.window_ms, 0))
        if not self.per_key:
            return []
        return [Output(self.topic, orjson.dumps(key), None, partition=partition) for key, partition in old]

    def _spill(self) -> None:
        """Past the memory limit: the oldest keys go to the overflow, SPILL at a time (the batch loop waits
        for it: spilling half of 100,000 at once stopped it for ~300 ms, a p99 spike every 10 s at 5k/s)."""
        data = self.data
        if self.overflow is None or len(data) <= self.memory_keys:
            return
        oldest = list(islice(data.items(), len(data) - self.memory_keys + min(self.SPILL, self.memory_keys // 2)))
        for key, _value in oldest:
            del data[key]
        self.overflow.put(oldest)


def pack_seen(seen_ms: int, partition: int) -> int:
    """A seen-set entry as one int (when << 16 | partition): a dict of str -> int is not tracked by Python's
    garbage collector, so millions of entries cost no collection time (a list per entry did)."""
    return (seen_ms << 16) | partition


def _unpack(value: Any) -> tuple[int, int]:
    """(seen ms, partition) of an entry: our packed int, or the [ms, partition] a Faust table recovers."""
    if type(value) is int:
        return value >> 16, value & 0xFFFF
    return int(value[0]), int(value[1])
