"""The default engine's pure part: a consumed batch as the router's sources and the crash guard's spans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.kafka_engine import sources_of


@dataclass
class Message:  # the confluent-kafka Message methods the engine reads
    partition_: int
    offset_: int
    error_: Any = None

    def error(self) -> Any:
        return self.error_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def value(self) -> bytes:
        return b"v%d" % self.offset_

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (0, 1_700_000_000_000 + self.offset_)


def test_a_batch_becomes_sources_the_last_offset_per_partition_and_one_span_per_partition() -> None:
    messages = [Message(0, 5), Message(1, 9), Message(0, 6), Message(1, 10), Message(0, 7)]
    sources, last, spans = sources_of(messages, "raw")
    assert [(s.partition, s.offset) for s in sources] == [(0, 5), (1, 9), (0, 6), (1, 10), (0, 7)]
    assert sources[0].value == b"v5" and sources[0].headers == ()
    assert last == {0: 7, 1: 10}
    assert spans == [("raw", 0, 5, 7), ("raw", 1, 9, 10)]


def test_consumer_errors_are_skipped_and_an_empty_batch_has_no_span() -> None:
    sources, last, spans = sources_of([Message(0, 1, error_="_PARTITION_EOF")], "raw")
    assert (sources, last, spans) == ([], {}, [])
