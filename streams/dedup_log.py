"""The dedup table's Kafka side: its log topic, and the store of the partitions a worker owns, read back
from that log on assignment (streams/dedup.py Deduplicator writes the log and decides what is a repeat)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from schemas.runtime.kafka import consumer_settings, watermarks
from streams.dedup import Deduplicator
from streams.worker import WorkerSettings

log = logging.getLogger(__name__)


def dedup_topic(settings: WorkerSettings) -> str:
    return f"{settings.app_id}-dedup-log"


class DedupStore(dict[str, Any]):
    """The dedup state of the partitions this worker owns, read back from the dedup log (streams/dedup.py
    Deduplicator, batched format): keys seen within the window, with when and in which partition."""

    def __init__(self, settings: WorkerSettings, topic: str) -> None:
        super().__init__()
        self.settings = settings
        self.topic = topic

    def restore(self, partitions: Iterable[int], dedup: Deduplicator) -> int:
        """Read each partition of the log, from the window's start to its end, into `dedup`; returns the
        messageIds still within the window. Fails only when the log stops answering for a minute: a day's
        log at a high rate takes minutes, and a fixed deadline made such a worker fail every start."""
        from confluent_kafka import Consumer, TopicPartition

        wanted = list(partitions)
        if not wanted:
            return 0
        consumer = Consumer(consumer_settings(self.settings.bootstrap, f"restore-{uuid.uuid4().hex[:8]}",
                                              {"enable.auto.commit": False, **self.settings.client}))
        try:
            now_ms, window_ms = int(time.time() * 1000), dedup.window_ms
            ends = {p: watermarks(consumer, self.topic, p, 30)[1] for p in wanted}
            starts = self._window_starts(consumer, [p for p, end in ends.items() if end > 0], now_ms - window_ms)
            todo = {p for p, start in starts.items() if start < ends[p]}
            consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in todo])
            count = 0
            heard = reported = time.monotonic()
            while todo:
                messages = consumer.consume(num_messages=10_000, timeout=0.5)
                if messages:
                    heard = time.monotonic()
                elif time.monotonic() - heard > 60:
                    raise TimeoutError(f"dedup log partitions {sorted(todo)}: nothing read for 60 s")
                for message in messages:
                    if message.error() is not None:
                        continue
                    partition, offset = message.partition(), message.offset()
                    try:
                        record = orjson.loads(message.value() or b"{}")
                        seen_at, keys = int(record["t"]), record["k"]
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        log.error("dedup log %s/%s@%s is not a dedup record; skipped", self.topic, partition, offset)
                        continue
                    if now_ms - seen_at < window_ms:
                        count += dedup.load(seen_at, partition or 0, keys)
                    if offset is not None and partition is not None and offset + 1 >= ends[partition]:
                        todo.discard(partition)
                if time.monotonic() - reported > 15:
                    reported = time.monotonic()
                    log.info("restoring the dedup state: %s messageIds so far, partitions %s to go", count,
                                sorted(todo))
            return count
        finally:
            consumer.close()

    def _window_starts(self, consumer: Any, partitions: list[int], since_ms: int) -> dict[int, int]:
        """Per partition, the first offset written at or after `since_ms` (the log keeps a day more than
        the window: half of it need not be read); its end when there is none."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        if not partitions:
            return {}
        try:
            found = consumer.offsets_for_times([TopicPartition(self.topic, p, since_ms) for p in partitions], 30)
        except KafkaException as exc:
            log.warning("dedup log: no offsets for the window's start (%s); read from the beginning", exc)
            return dict.fromkeys(partitions, OFFSET_BEGINNING)
        return {tp.partition: (tp.offset if tp.offset >= 0 else 2**62) if tp.error is None else OFFSET_BEGINNING
                for tp in found}

    def forget(self, partitions: Iterable[int]) -> None:
        """Memory only: what went to disk stays until it leaves the window. It was seen (and logged), so it
        cannot make a new event look like a duplicate; a worker given the partition back reads it again."""
        gone = set(partitions)
        for key in [k for k, v in self.items() if v & 0xFFFF in gone]:
            del self[key]
