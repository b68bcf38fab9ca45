"""What every engine of `eventrouter worker` shares to route raw events to the integration topics.

Wiring only; the decisions are streams/router.py's. An engine reads the raw topic in a consumer group
(streams/kafka_engine.py with confluent-kafka, the default; streams/faust_engine.py with Faust) and
hands each batch of raw records to BatchRouter here; streams/app.py picks the engine. Each batch:
admit every record (decode, writeKey, validation), drop messageIds already seen in the window, route
the rest through the playbooks, write every Outbound record and dead letter with one confluent-kafka
producer (idempotent, acks=all, murmur2 so each user's records stay in one partition), wait until
Kafka acknowledged all of them, then mark the messageIds seen and only then ack the input records,
so an offset is committed only after its outputs are durable. A failed write is written again, never
skipped: the batch waits. One bad record never stops the worker; every record ends as outputs, a
filter count with its rule, a dedup count, or a dead letter with its reason.

The config comes from the config topic (schemas/runtime/revisions.py): a new revision is compiled in the
watcher thread and swapped in between batches; every Outbound record carries the revision that shaped it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import EventCodec, SchemaRegistryClient, Topics, deadletter_codec
from schemas.config import Config
from schemas.runtime.heartbeat import Heartbeat
from schemas.runtime.kafka import ensure_topics, flush_until_acknowledged, partition_count, producer_settings
from schemas.runtime.quarantine import QUARANTINED, CrashGuard
from schemas.runtime.revisions import ConfigStore, Revision, RevisionWatcher
from streams.dedup import Deduplicator
from streams.metrics import UNKNOWN, BatchTally, WorkerMetrics
from streams.router import Output, Rejected, Router, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    bootstrap: str
    topics: Topics = field(default_factory=Topics)
    data_dir: Path = Path(".eventrouter/worker")
    config_file: Path | None = None      # applied as a revision at start when it differs from the newest
    metrics_port: int | None = None      # 0: a free port (logged)
    metrics_host: str = "127.0.0.1"
    # At most this many records per batch: a batch's outputs are written once all of it is routed, so a
    # batch of 1,000 (~100 ms of routing) held its first events back that long (chain at 5k/s: the worker's
    # hop p99 300 ms with 1,000, 197 ms with 300; a backlog still goes through at the same rate).
    batch_size: int = 300
    # How long a batch gathers when records come slower than batch_size at once: each batch costs produce
    # requests (a partition of each output topic, and of the dedup log) and wakes a cold process. Two
    # workers side by side at 2.5k events/s: 180 us per event with 20 ms, 164 with 50. The whole chain at
    # 5k/s, 30 against 50 (two runs each): the worker's hop p99 107-124 ms against 134-138, its CPU per
    # event no higher (67-81 us against 74-87).
    batch_within_s: float = 0.03
    # messageIds the dedup state keeps in memory (~130 bytes each); older ones within the window go to a
    # file in data_dir/dedup (streams/seen_disk.py), so memory stays flat at any rate and window
    dedup_memory_keys: int = 100_000
    partitions: int = 6                  # of the raw topic, when the worker has to create it
    replication_factor: int = 1
    store: str = "memory://"             # the dedup table's store; "rocksdb://" with faust[rocksdict]
    client: Mapping[str, Any] = field(default_factory=dict)  # extra librdkafka settings (security)
    log_level: str = "WARNING"
    session_timeout_s: float = 10.0      # a worker that died is replaced after this long
    stall_after_s: float = 30.0          # records waiting and none handed over this long: a stall
    engine: str = "kafka"                # "kafka" (confluent-kafka, the default) or "faust"
    schema_registry: str | None = None   # a Confluent-compatible registry: records framed with its ids decode
    # a record on which the process died this many times, processed alone, is dead-lettered as `quarantined`
    # and skipped (the default engine; schemas/runtime/quarantine.py)
    quarantine_after: int = 3

    @property
    def app_id(self) -> str:
        return f"{self.topics.prefix}-router"


class RouterHolder:
    """The compiled config in force, swapped by the watcher thread, read once per batch."""

    def __init__(self, settings: WorkerSettings, partitions: int, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.partitions = partitions
        self.metrics = metrics
        self.router: Router | None = None
        self.ready = threading.Event()
        registry = SchemaRegistryClient(settings.schema_registry) if settings.schema_registry else None
        self.codec = EventCodec(registry=registry)  # one for every revision: it caches the writers it has seen

    def take(self, revision: Revision, config: Config) -> None:
        router = Router(config, revision.number, self.settings.topics, codec=self.codec)
        ensure_topics(self.settings.bootstrap, router.integration_topics(), partitions=self.partitions,
                      client=self.settings.client)
        self.router = router
        self.metrics.revision.set(revision.number)
        self.ready.set()
        log.info("config revision %s in force: %s pipelines, %s integrations routed", revision.number,
                    len(config.pipelines), len(router.routes))


class OutputWriter:
    """One confluent-kafka producer for every output; `write` returns once Kafka acknowledged them all."""

    def __init__(self, bootstrap: str, client: Mapping[str, Any]) -> None:
        self._settings = producer_settings(bootstrap, {
            "linger.ms": 5, "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
            "delivery.report.only.error": True, "on_delivery": self._failed, **client})
        self._producer: Any = None
        self._failures: list[tuple[Output, str]] = []

    def start(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer(self._settings)

    def _failed(self, error: Any, message: Any) -> None:
        if error is not None:
            output = Output(message.topic(), message.key(), message.value(), partition=message.partition())
            self._failures.append((output, str(error)))

    async def write(self, outputs: Sequence[Output]) -> None:
        """Write every output; return once Kafka acknowledged all of them. A failed one is written again."""
        pending, attempt = list(outputs), 0
        while pending:
            self._send(pending)
            await asyncio.to_thread(flush_until_acknowledged, self._producer, "outputs")
            pending, attempt, pause = self._failed_again(attempt)
            await asyncio.sleep(pause)

    def write_blocking(self, outputs: Sequence[Output]) -> None:
        """`write` for a thread that may block (the confluent engine's loop)."""
        self.begin(outputs)
        self.wait_blocking()

    def begin(self, outputs: Sequence[Output]) -> None:
        """Hand the outputs to the producer; `wait_blocking` then returns once Kafka acknowledged them
        (the confluent engine routes the next batch in between)."""
        self._send(outputs)

    def wait_blocking(self) -> None:
        attempt = 0
        while True:
            flush_until_acknowledged(self._producer, "outputs")
            pending, attempt, pause = self._failed_again(attempt)
            if not pending:
                return
            time.sleep(pause)
            self._send(pending)

    def send(self, outputs: Sequence[Output]) -> None:
        """Hand records over without waiting: the next write's flush (or close) waits for them too, and
        one that fails is written again by that write. For the dedup records: they must follow the
        outputs they mark, but the input's offsets need not wait for them (if they are lost in a crash,
        a later repeat of those messageIds is not caught: a duplicate downstream, never a loss)."""
        for output in outputs:
            self._produce(output)

    def flush(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout)) if self._producer is not None else 0

    def _send(self, pending: Sequence[Output]) -> None:
        self._failures.clear()
        produce = self._producer.produce
        for output in pending:
            if output.partition is not None:
                self._produce(output)
                continue
            try:
                produce(output.topic, output.value, output.key)
            except BufferError:  # the producer's queue is full: _produce waits for room
                self._produce(output)

    def _failed_again(self, attempt: int) -> tuple[list[Output], int, float]:
        """What to write again after a flush, the attempt number, and how long to wait first."""
        if not self._failures:
            return [], attempt, 0.0
        attempt += 1
        log.warning("%s outputs not acknowledged (%s); writing them again (attempt %s)", len(self._failures),
                    self._failures[0][1], attempt)
        return [output for output, _ in self._failures], attempt, min(30.0, 0.5 * 2 ** min(attempt, 6))

    def _produce(self, output: Output) -> None:
        while True:
            try:
                if output.partition is None:
                    self._producer.produce(output.topic, output.value, output.key)
                else:
                    self._producer.produce(output.topic, output.value, output.key, partition=output.partition)
                return
            except BufferError:
                self._producer.poll(0.1)

    def close(self, timeout: float = 30.0) -> int:
        return int(self._producer.flush(timeout)) if self._producer is not None else 0


@dataclass
class Batch:
    outputs: list[Output] = field(default_factory=list)
    marks: list[tuple[int, str]] = field(default_factory=list)
    tally: BatchTally = field(default_factory=BatchTally)
    now_ms: int = 0
    size: int = 0
    keys: set[str] = field(default_factory=set)  # the messageIds it routes (marked seen once it is written)


class BatchRouter:
    """What a worker does with each batch of raw records, whichever engine reads them."""

    def __init__(self, holder: RouterHolder, writer: OutputWriter, dedup: Deduplicator | None,
                 metrics: WorkerMetrics) -> None:
        self.holder = holder
        self.writer = writer
        self.dedup = dedup
        self.metrics = metrics
        self._expired_at = int(time.time() * 1000)

    def quarantined(self, source: Source, guard: CrashGuard, invalid_topic: str) -> Output:
        """The `quarantined` dead letter of a record the process keeps dying on (it is not routed), counted
        with the invalid ones."""
        letter = guard.letter(stage="route", topic=source.topic, partition=source.partition, offset=source.offset,
                              value=source.value, headers=source.headers)
        tally = BatchTally()
        tally.events_in[UNKNOWN] += 1
        tally.invalid[(UNKNOWN, UNKNOWN, QUARANTINED)] += 1
        self.metrics.add(tally)
        log.error("quarantined %s/%s@%s: the process exited %s times on it; dead-lettered and skipped", source.topic,
                  source.partition, source.offset, guard.crashes_of(source.topic, source.partition, source.offset))
        return Output(invalid_topic, None, deadletter_codec().encode(letter))

    async def process(self, sources: Sequence[Source]) -> BatchTally:
        while self.holder.router is None:
            await asyncio.sleep(0.1)
        batch = self.prepare(sources, self.holder.router)
        await self.writer.write(batch.outputs)
        self.writer.send(self.dedup_changes(batch))
        log.debug("batch of %s records: %s outputs written, %s messageIds marked seen", batch.size,
                  len(batch.outputs), len(batch.marks))
        return self.finish(batch)

    def process_blocking(self, sources: Sequence[Source]) -> BatchTally:
        batch = self.route_blocking(sources)
        self.writer.begin(batch.outputs)
        return self.complete_blocking(batch)

    def route_blocking(self, sources: Sequence[Source], in_flight: Batch | None = None) -> Batch:
        """Route a batch (once a config is in force). `in_flight`: the batch before it, handed to the
        producer but not yet acknowledged, whose messageIds count as seen."""
        while self.holder.router is None:
            self.holder.ready.wait(0.5)
        assert self.holder.router is not None
        return self.prepare(sources, self.holder.router, in_flight.keys if in_flight is not None else None)

    def complete_blocking(self, batch: Batch) -> BatchTally:
        """Wait until Kafka acknowledged the batch's outputs (writing failed ones again), then mark its
        messageIds seen."""
        self.writer.wait_blocking()
        self.writer.send(self.dedup_changes(batch))
        log.debug("batch of %s records: %s outputs written, %s messageIds marked seen", batch.size,
                  len(batch.outputs), len(batch.marks))
        return self.finish(batch)

    def prepare(self, sources: Sequence[Source], router: Router, seen: set[str] | None = None) -> Batch:
        """Admit, dedupe and route every record: the outputs to write and the messageIds to mark."""
        if self.dedup is not None:
            self.dedup.window_ms = router.config.settings.dedup_window_s * 1000
        batch = Batch(now_ms=int(time.time() * 1000), size=len(sources))
        tally, outputs, marks = batch.tally, batch.outputs, batch.marks
        latency = tally.latency
        batch_keys = batch.keys
        in_flight: Set[str] = seen or frozenset()
        admissions = [router.admit(source) for source in sources]
        if self.dedup is not None:  # the batch's keys the dedup state keeps on disk, in one lookup
            self.dedup.prefetch([a.dedup_key for a in admissions if not isinstance(a, Rejected)], batch.now_ms)
        for source, admitted in zip(sources, admissions, strict=True):
            if isinstance(admitted, Rejected):
                pipeline = admitted.pipeline or UNKNOWN
                tally.events_in[pipeline] += 1
                tally.invalid[(pipeline, UNKNOWN, admitted.reason)] += 1
                outputs.append(admitted.dead_letter)
                log.info("dead-lettered %s/%s@%s: %s", source.topic, source.partition, source.offset, admitted.reason)
                continue
            pipeline = admitted.pipeline.name
            tally.events_in[pipeline] += 1
            key = admitted.dedup_key
            try:
                if key in batch_keys or key in in_flight or \
                        (self.dedup is not None and self.dedup.seen(key, batch.now_ms)):
                    tally.deduplicated[pipeline] += 1
                    continue
                routed = router.route(admitted)
            except Exception as exc:  # noqa: BLE001 - one record never stops the worker: dead-lettered, not marked
                log.error("routing %s/%s@%s failed: %s", source.topic, source.partition, source.offset,
                          type(exc).__name__)
                tally.invalid[(pipeline, UNKNOWN, "error.route")] += 1
                outputs.append(router.error_letter(admitted, exc))
                continue
            batch_keys.add(key)
            marks.append((source.partition, key))
            outputs.extend(routed.outputs)
            for output in routed.outputs:
                tally.out[(pipeline, output.integration or UNKNOWN)] += 1
            for integration, rule in routed.filtered:
                tally.filtered[(pipeline, integration, rule)] += 1
            for integration, reason, dead in routed.failed:
                tally.invalid[(pipeline, integration, reason)] += 1
                outputs.append(dead)
            stamps = latency.get(pipeline)
            if stamps is None:
                stamps = latency[pipeline] = []
            stamps.append(source.timestamp_ms)
        return batch

    def dedup_changes(self, batch: Batch) -> list[Output]:
        """The changelog records for the batch's messageIds (and, once a minute, tombstones for expired ones)."""
        if self.dedup is None:
            return []
        changes = self.dedup.mark(batch.marks, batch.now_ms)
        if batch.now_ms - self._expired_at > 60_000:  # in the batch loop: one writer, never two at once
            self._expired_at = batch.now_ms
            tombstones = self.dedup.expire(batch.now_ms)
            log.info("dedup: %s messageIds older than the window forgotten", len(tombstones))
            changes.extend(tombstones)
        return changes

    def finish(self, batch: Batch) -> BatchTally:
        done = time.time()
        tally = batch.tally
        tally.latency = {p: [max(0.0, done - ts / 1000) for ts in stamps] for p, stamps in tally.latency.items()}
        self.metrics.add(tally)
        self.metrics.batch_size.observe(batch.size)
        return tally


def start_config(settings: WorkerSettings) -> tuple[WorkerMetrics, RouterHolder, RevisionWatcher]:
    """Apply --config if it changed, make the topics, serve metrics, start following the config topic."""
    store = ConfigStore(settings.bootstrap, settings.topics, settings.client)
    if settings.config_file is not None:
        revision, created = store.apply(settings.config_file)
        log.info("config %s: %s revision %s", settings.config_file, "applied as" if created else "already",
                    revision.number)
    partitions = partition_count(settings.bootstrap, settings.topics.raw, client=settings.client)
    if partitions is None:
        partitions = settings.partitions
        ensure_topics(settings.bootstrap, [settings.topics.raw], partitions=partitions, client=settings.client)
    ensure_topics(settings.bootstrap, [settings.topics.invalid], partitions=partitions, client=settings.client)
    metrics = WorkerMetrics()
    if settings.metrics_port is not None:
        port = metrics.serve(settings.metrics_port, settings.metrics_host)
        log.info("metrics on http://%s:%s/metrics", settings.metrics_host, port)
    heartbeat = Heartbeat(settings.bootstrap, settings.topics, "worker", f"{settings.engine} engine", metrics.registry,
                          client=settings.client).start()
    atexit.register(heartbeat.stop)  # its last one says the worker stopped
    holder = RouterHolder(settings, partitions, metrics)
    watcher = RevisionWatcher(store, holder.take)
    watcher.start()
    if not holder.ready.wait(30.0):
        log.warning("no config revision in %s yet: waiting for `eventrouter config apply`", settings.topics.config)
    return metrics, holder, watcher

