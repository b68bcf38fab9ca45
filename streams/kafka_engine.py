"""The default engine (`eventrouter worker`): a confluent-kafka consumer group reading the raw topic in
batches (`consume(N)`), the dedup state restored per partition from the dedup log on assignment.

Each batch: route it (streams/worker.py BatchRouter) while the batch before it is still being written,
then wait until Kafka acknowledged every output of that one, hand over its dedup records (the next
wait covers them), and only then store its offsets (librdkafka commits stored offsets every second and
on revoke and close); then hand this batch's outputs to the producer. SIGTERM or SIGINT:
the batch in hand is finished and committed before the consumer leaves the group, so a graceful stop
leaves no duplicate behind.

A record that kills the process outright (no exception to catch: a segfault, os._exit) is not crash-looped
on: the crash guard (schemas/runtime/quarantine.py, its file in --data-dir) notes each batch's spans before
routing it; after a crash those records go one at a time, each committed on its own, and one that killed
the process `quarantine_after` times alone is dead-lettered as `quarantined` and skipped.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from schemas.runtime.kafka import RejoinWatch, consumer_settings, ensure_topics, fetch_settings
from schemas.runtime.process import quiet_gc
from schemas.runtime.quarantine import QUARANTINE, CrashGuard, Span
from streams.dedup import Deduplicator
from streams.dedup_log import DedupStore, dedup_topic
from streams.router import Source
from streams.seen_disk import DiskSeen
from streams.stall import EXIT, STALLED, StallWatch, backlog_lookup, report, waiting_on
from streams.worker import Batch, BatchRouter, OutputWriter, WorkerSettings, start_config

log = logging.getLogger(__name__)


def sources_of(messages: list[Any], raw: str) -> tuple[list[Source], dict[int, int], list[Span]]:
    """A consumed batch as the router's sources, the last offset read per partition, and its spans
    (topic, partition, first and last offset: the crash guard's). Consumer errors are logged and skipped."""
    sources = []
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for message in messages:
        error = message.error()
        if error is not None:
            log.warning("consumer: %s", error)
            continue
        partition, offset = message.partition() or 0, message.offset() or 0
        headers: Any = message.headers() or ()
        sources.append(Source(message.value(), raw, partition, offset, message.timestamp()[1], headers))
        if partition not in first:
            first[partition] = offset
        last[partition] = offset
    return sources, last, [(raw, p, first[p], o) for p, o in last.items()]


class KafkaEngine:
    """One worker process: its consumer, the batch in flight, the dedup state of the partitions it owns."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.raw = settings.topics.raw
        self._stop = threading.Event()
        self.owned: set[int] = set()
        # One batch in flight: its outputs are with the producer while the next batch is routed; it is
        # settled (acknowledged, messageIds marked, offsets stored) before the next one is handed over,
        # and before any rebalance or stop.
        self.in_flight: list[tuple[Batch, dict[int, int], list[Span]]] = []
        self.rejoin = RejoinWatch(max(60.0, 6 * settings.session_timeout_s))
        self.watch = StallWatch(settings.stall_after_s)
        self.generation = 0  # assignments so far: a new one starts the stall watch's count again
        self.backlog = backlog_lookup(settings, self.raw, timeout_s=10.0)
        self.consumer: Any = None

    def stop(self, *_args: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        settings = self.settings
        for sig in (signal.SIGTERM, signal.SIGINT):  # from the start: a stop while starting is a clean stop too
            signal.signal(sig, self.stop)
        self.metrics, holder, watcher = start_config(settings)
        log_topic = dedup_topic(settings)
        window_s = holder.router.config.settings.dedup_window_s if holder.router else 86_400
        # retention: the window plus a day (set when the topic is made); a restore keeps what is inside the window
        ensure_topics(settings.bootstrap, [log_topic], partitions=holder.partitions, client=settings.client,
                      config={"cleanup.policy": "delete", "retention.ms": str(window_s * 1000 + 86_400_000)})
        self.store = store = DedupStore(settings, log_topic)
        self.writer = OutputWriter(settings.bootstrap, settings.client)
        self.writer.start()
        overflow = DiskSeen(settings.data_dir / "dedup")
        self.dedup = Deduplicator(store, log_topic, window_s, per_key=False, overflow=overflow,
                                  memory_keys=settings.dedup_memory_keys)
        self.metrics.dedup_keys.labels("memory").set_function(lambda: len(store))  # read when scraped
        self.metrics.dedup_keys.labels("disk").set_function(lambda: overflow.size)
        self.batches = BatchRouter(holder, self.writer, self.dedup, self.metrics)
        self.guard = CrashGuard(settings.data_dir, settings.app_id, crashes=settings.quarantine_after)
        for crashed, crashes in self.guard.recover():
            log.error("the last run died routing %s/%s@%s..%s (%s times in all): those records go one at a time "
                      "now; one that kills the process %s times alone is quarantined", *crashed, crashes,
                      settings.quarantine_after)
        self.consumer = self._join()
        quiet_gc()
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            log.info("stopping: committing and leaving the group")
            self._settle()
            try:
                self.consumer.commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - nothing stored to commit
                log.info("final commit: %s", exc)
            else:
                self.guard.close()
            self.consumer.close()
            watcher.stop()
            self.writer.close()
            overflow.close()
        return STALLED if self.watch.stopped else 0

    def _step(self) -> None:
        """Consume a batch and route it while the one before it is being written; then settle that one."""
        if self.rejoin.overdue():
            log.warning("no raw partitions assigned %.0f s after losing them: joining the group again "
                        "with a new consumer", self.rejoin.deadline_s)
            self.rejoin.replaced()
            self.consumer.close()
            self.consumer = self._join()
        messages = self.consumer.consume(num_messages=self.settings.batch_size, timeout=self.settings.batch_within_s)
        sources, last, spans = sources_of(messages, self.raw)
        now = time.monotonic()
        if sources:
            self.watch.moved(now)
        elif self.owned and self.watch.due(now, self.generation):
            self._look_for_a_stall(now)
        if spans and self.guard.suspect(spans):  # the process died on some of these: one at a time
            self._settle()
            for source in sources:
                self._one_at_a_time(source)
            return
        if spans:
            self.guard.begin(spans)  # one small file write, before routing
        in_flight = self.in_flight
        batch = self.batches.route_blocking(sources, in_flight[0][0] if in_flight else None) if sources else None
        self._settle()
        if batch is not None:
            self.writer.begin(batch.outputs)
            in_flight.append((batch, last, spans))
        else:
            self.guard.idle()

    def _settle(self) -> None:
        """Wait until Kafka acknowledged the batch in flight, then store its offsets."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self.in_flight:
            return
        batch, last, spans = self.in_flight.pop()
        self.batches.complete_blocking(batch)
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(self.raw, p, o + 1) for p, o in last.items()])
        except KafkaException as exc:  # partitions lost meanwhile: the next owner reads them again
            log.warning("offsets of a finished batch not stored: %s", exc)
        self.guard.done(spans)

    def _one_at_a_time(self, source: Source) -> None:
        """A record of a span the process died on: alone, committed at once, or quarantined."""
        from confluent_kafka import KafkaException, TopicPartition

        raw, guard = self.raw, self.guard
        span = (raw, source.partition, source.offset, source.offset)
        if guard.verdict(raw, source.partition, source.offset) == QUARANTINE:
            self.writer.write_blocking([self.batches.quarantined(source, guard, self.settings.topics.invalid)])
        else:
            guard.begin([span])
            self.batches.process_blocking([source])
        try:
            self.consumer.store_offsets(offsets=[TopicPartition(raw, source.partition, source.offset + 1)])
            self.consumer.commit(asynchronous=False)
        except KafkaException as exc:  # partition lost meanwhile: the next owner reads it again
            log.warning("offset of %s/%s@%s not committed: %s", raw, source.partition, source.offset, exc)
        guard.done([span])

    def _look_for_a_stall(self, now: float) -> None:
        """Records wait on owned partitions and none came for `stall_after_s`: a new consumer, then a stop."""
        waiting = waiting_on(self.backlog, sorted(self.owned))
        verdict = self.watch.verdict(now, None if waiting is None else bool(waiting))
        if not waiting or verdict is None:
            return
        self.metrics.stalls.inc()
        report(verdict, self.settings.stall_after_s, waiting, "joining the group again with a new consumer")
        if verdict == EXIT:
            self._stop.set()
            return
        self._settle()
        self.rejoin.replaced()
        self.consumer.close()
        self.consumer = self._join()

    # -- rebalances -----------------------------------------------------------------------------------
    def _join(self) -> Any:
        from confluent_kafka import Consumer

        settings = self.settings
        joining = Consumer(consumer_settings(settings.bootstrap, settings.app_id, {
            "auto.commit.interval.ms": 1000, "session.timeout.ms": int(settings.session_timeout_s * 1000),
            "heartbeat.interval.ms": int(settings.session_timeout_s * 200), "max.poll.interval.ms": 600_000,
            # 4 MiB of raw events read ahead (~4,000, a dozen batches): on a backlog of 200k events, 16 MiB
            # made the worker's peak RSS 159 MiB, 4 MiB 128 MiB, at the same events/s
            "queued.max.messages.kbytes": 4096,
            **fetch_settings(int(settings.batch_within_s * 1000)), **settings.client}))
        joining.subscribe([self.raw], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        return joining

    def _mine(self, partitions: list[Any]) -> list[int]:
        return [tp.partition for tp in partitions if tp.topic == self.raw]

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        self.rejoin.assigned()
        self.generation += 1
        mine = self._mine(partitions)
        started = time.monotonic()
        count = self.store.restore(mine, self.dedup)
        self._own(mine, True)
        log.info("assigned raw partitions %s (dedup state: %s messageIds in %.1f s)", mine, count,
                 time.monotonic() - started)

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        mine = self._mine(partitions)
        self._settle()
        self.writer.flush(30)  # the dedup records in flight, before the next owner reads the log back
        try:
            consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - nothing stored to commit, or the group is gone
            log.info("commit on revoke: %s", exc)
        self._own(mine, False)
        log.info("revoked raw partitions %s", mine)

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        mine = self._mine(partitions)
        self._settle()
        self._own(mine, False)
        log.warning("lost raw partitions %s (outputs of an uncommitted batch may be written twice)", mine)
        self.rejoin.lost()

    def _own(self, partitions: list[int], owned: bool) -> None:
        if owned:
            self.owned.update(partitions)
        else:
            self.store.forget(partitions)
            self.owned.difference_update(partitions)
        self.metrics.assigned.set(len(self.owned))


def run_kafka(settings: WorkerSettings) -> int:
    return KafkaEngine(settings).run()
