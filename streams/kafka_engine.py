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
from streams.worker import Batch, BatchRouter, OutputWriter, WorkerSettings, start_config

log = logging.getLogger(__name__)


class KafkaEngine:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()

    def stop(self, *_args: Any) -> None:
        self._stop.set()

    def run(self) -> int:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        settings = self.settings
        for sig in (signal.SIGTERM, signal.SIGINT):  # from the start: a stop while starting is a clean stop too
            signal.signal(sig, self.stop)
        metrics, holder, watcher = start_config(settings)
        log_topic = dedup_topic(settings)
        window_s = holder.router.config.settings.dedup_window_s if holder.router else 86_400
        # retention: the window plus a day (set when the topic is made); a restore keeps what is inside the window
        ensure_topics(settings.bootstrap, [log_topic], partitions=holder.partitions, client=settings.client,
                      config={"cleanup.policy": "delete", "retention.ms": str(window_s * 1000 + 86_400_000)})
        store = DedupStore(settings, log_topic)
        writer = OutputWriter(settings.bootstrap, settings.client)
        writer.start()
        overflow = DiskSeen(settings.data_dir / "dedup")
        dedup = Deduplicator(store, log_topic, window_s, per_key=False, overflow=overflow,
                             memory_keys=settings.dedup_memory_keys)
        metrics.dedup_keys.labels("memory").set_function(lambda: len(store))  # read when scraped
        metrics.dedup_keys.labels("disk").set_function(lambda: overflow.size)
        batches = BatchRouter(holder, writer, dedup, metrics)
        raw = settings.topics.raw
        owned: set[int] = set()
        guard = CrashGuard(settings.data_dir, settings.app_id, crashes=settings.quarantine_after)
        for crashed, crashes in guard.recover():
            log.error("the last run died routing %s/%s@%s..%s (%s times in all): those records go one at a time "
                      "now; one that kills the process %s times alone is quarantined", *crashed, crashes,
                      settings.quarantine_after)
        # One batch in flight: its outputs are with the producer while the next batch is routed; it is
        # settled (acknowledged, messageIds marked, offsets stored) before the next one is handed over,
        # and before any rebalance or stop.
        in_flight: list[tuple[Batch, dict[int, int], list[Span]]] = []

        def settle() -> None:
            if not in_flight:
                return
            batch, last, spans = in_flight.pop()
            batches.complete_blocking(batch)
            try:
                consumer.store_offsets(offsets=[TopicPartition(raw, p, o + 1) for p, o in last.items()])
            except KafkaException as exc:  # partitions lost meanwhile: the next owner reads them again
                log.warning("offsets of a finished batch not stored: %s", exc)
            guard.done(spans)

        def one_at_a_time(source: Source) -> None:
            """A record of a span the process died on: alone, committed at once, or quarantined."""
            span = (raw, source.partition, source.offset, source.offset)
            if guard.verdict(raw, source.partition, source.offset) == QUARANTINE:
                writer.write_blocking([batches.quarantined(source, guard, settings.topics.invalid)])
            else:
                guard.begin([span])
                batches.process_blocking([source])
            try:
                consumer.store_offsets(offsets=[TopicPartition(raw, source.partition, source.offset + 1)])
                consumer.commit(asynchronous=False)
            except KafkaException as exc:  # partition lost meanwhile: the next owner reads it again
                log.warning("offset of %s/%s@%s not committed: %s", raw, source.partition, source.offset, exc)
            guard.done([span])

        def assigned(consumer: Any, partitions: list[Any]) -> None:
            rejoin.assigned()
            mine = [tp.partition for tp in partitions if tp.topic == raw]
            started = time.monotonic()
            count = store.restore(mine, dedup)
            owned.update(mine)
            metrics.assigned.set(len(owned))
            log.info("assigned raw partitions %s (dedup state: %s messageIds in %.1f s)", mine, count,
                        time.monotonic() - started)

        def revoked(consumer: Any, partitions: list[Any]) -> None:
            mine = [tp.partition for tp in partitions if tp.topic == raw]
            settle()
            writer.flush(30)  # the dedup records in flight, before the next owner reads the log back
            try:
                consumer.commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - nothing stored to commit, or the group is gone
                log.info("commit on revoke: %s", exc)
            store.forget(mine)
            owned.difference_update(mine)
            metrics.assigned.set(len(owned))
            log.info("revoked raw partitions %s", mine)

        def lost(consumer: Any, partitions: list[Any]) -> None:
            mine = [tp.partition for tp in partitions if tp.topic == raw]
            settle()
            store.forget(mine)
            owned.difference_update(mine)
            metrics.assigned.set(len(owned))
            log.warning("lost raw partitions %s (outputs of an uncommitted batch may be written twice)", mine)
            rejoin.lost()

        def join() -> Any:
            joining = Consumer(consumer_settings(settings.bootstrap, settings.app_id, {
                "auto.commit.interval.ms": 1000, "session.timeout.ms": int(settings.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(settings.session_timeout_s * 200), "max.poll.interval.ms": 600_000,
                # 4 MiB of raw events read ahead (~4,000, a dozen batches): on a backlog of 200k events, 16 MiB
                # made the worker's peak RSS 159 MiB, 4 MiB 128 MiB, at the same events/s
                "queued.max.messages.kbytes": 4096,
                **fetch_settings(int(settings.batch_within_s * 1000)), **settings.client}))
            joining.subscribe([raw], on_assign=assigned, on_revoke=revoked, on_lost=lost)
            return joining

        rejoin = RejoinWatch(max(60.0, 6 * settings.session_timeout_s))
        consumer = join()
        quiet_gc()
        try:
            while not self._stop.is_set():
                if rejoin.overdue():
                    log.warning("no raw partitions assigned %.0f s after losing them: joining the group again "
                                "with a new consumer", rejoin.deadline_s)
                    rejoin.replaced()
                    consumer.close()
                    consumer = join()
                messages = consumer.consume(num_messages=settings.batch_size, timeout=settings.batch_within_s)
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
                spans = [(raw, p, first[p], o) for p, o in last.items()]
                if spans and guard.suspect(spans):  # the process died on some of these: one at a time
                    settle()
                    for source in sources:
                        one_at_a_time(source)
                    continue
                if spans:
                    guard.begin(spans)  # one small file write, before routing
                batch = batches.route_blocking(sources, in_flight[0][0] if in_flight else None) if sources else None
                settle()
                if batch is not None:
                    writer.begin(batch.outputs)
                    in_flight.append((batch, last, spans))
                else:
                    guard.idle()
        finally:
            log.info("stopping: committing and leaving the group")
            settle()
            try:
                consumer.commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - nothing stored to commit
                log.info("final commit: %s", exc)
            else:
                guard.close()
            consumer.close()
            watcher.stop()
            writer.close()
            overflow.close()
        return 0


def run_kafka(settings: WorkerSettings) -> int:
    return KafkaEngine(settings).run()
