"""Ranges of a topic, for replay, re-route and dead-letter tools: from a time or offset range to the
offsets per partition, and reading a range once, in order per partition, then stopping.

Times are Kafka record timestamps (when our producer, worker or forwarder wrote the record), in epoch
ms. `parse_when` reads what a user types: an ISO-8601 time, epoch milliseconds, or a duration ago
(`90m`, `2h`, `3d`).
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ConfigurationError, RetryableError
from schemas.runtime.kafka import consumer_settings, partition_count, watermarks

_AGO = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_when(text: str, now_ms: int | None = None) -> int:
    """Epoch ms of `2026-11-26T10:00:00Z`, `1795730000000`, or `2h` (two hours ago)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return now_ms - int(float(ago.group(1)) * _UNIT_S[ago.group(2)] * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"{text!r}: give an ISO-8601 time, epoch ms, or a duration ago like 2h") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Span:
    """Offsets [start, end) per partition of one topic."""

    topic: str
    start: Mapping[int, int]
    end: Mapping[int, int]

    @property
    def count(self) -> int:
        """Records in the span (compaction or retention may have removed some of them)."""
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)

    def partitions(self) -> list[int]:
        return [p for p in sorted(self.start) if self.end[p] > self.start[p]]


def find_span(bootstrap: str, topic: str, *, since_ms: int | None = None, until_ms: int | None = None,
              from_offset: int | None = None, to_offset: int | None = None,
              client: Mapping[str, Any] | None = None, timeout: float = 30.0) -> Span:
    """The records written in [since_ms, until_ms), or at offsets [from_offset, to_offset) of every
    partition; open ends mean the topic's start or its current end."""
    from confluent_kafka import Consumer, TopicPartition

    count = partition_count(bootstrap, topic, timeout=timeout, client=client)
    if count is None:
        raise ConfigurationError(f"topic {topic} does not exist")
    consumer = Consumer(consumer_settings(bootstrap, f"span-{uuid.uuid4().hex[:8]}",
                                          {"enable.auto.commit": False, **(client or {})}))
    try:
        marks = {p: watermarks(consumer, topic, p, timeout) for p in range(count)}

        def at(ms: int | None, offset: int | None, default: int, p: int) -> int:
            low, high = marks[p]
            if offset is not None:
                return min(max(offset, low), high)
            if ms is None:
                return default
            found = consumer.offsets_for_times([TopicPartition(topic, p, ms)], timeout=timeout)[0].offset
            return high if found < 0 else min(max(found, low), high)

        start = {p: at(since_ms, from_offset, marks[p][0], p) for p in range(count)}
        end = {p: at(until_ms, to_offset, marks[p][1], p) for p in range(count)}
        return Span(topic, start, end)
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def read_span(bootstrap: str, span: Span, *, client: Mapping[str, Any] | None = None,
              idle_timeout: float = 30.0) -> Iterator[Record]:
    """Every record of the span, in order per partition; stops at the span's end. RetryableError if the
    broker gives nothing for `idle_timeout` seconds while records are still due."""
    from confluent_kafka import Consumer, TopicPartition

    parts = span.partitions()
    if not parts:
        return
    consumer = Consumer(consumer_settings(bootstrap, f"span-reader-{uuid.uuid4().hex[:8]}",
                                          {"enable.auto.commit": False, **(client or {})}))
    try:
        consumer.assign([TopicPartition(span.topic, p, span.start[p]) for p in parts])
        position = {p: span.start[p] for p in parts}
        quiet_since = time.monotonic()
        while any(position[p] < span.end[p] for p in parts):
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            if messages:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > idle_timeout:
                raise RetryableError(f"{span.topic}: nothing read for {idle_timeout:.0f} s before the span's end")
            for message in messages:
                if message.error() is not None:
                    continue
                p, offset = message.partition() or 0, message.offset() or 0
                if offset >= span.end[p]:
                    position[p] = span.end[p]
                    continue
                position[p] = offset + 1
                headers: Any = message.headers() or ()
                yield Record(p, offset, message.timestamp()[1], message.key(), message.value(), list(headers))
            for p in parts:  # records removed by compaction or retention leave gaps: ask where we are
                if position[p] < span.end[p]:
                    at = consumer.position([TopicPartition(span.topic, p)])[0].offset
                    if at >= span.end[p]:
                        position[p] = span.end[p]
    finally:
        consumer.close()
