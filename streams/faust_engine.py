"""The Faust engine (`eventrouter worker --engine faust`): faust-streaming on the aiokafka transport.

Faust consumes the raw topic as raw bytes in a consumer group, in batches (`noack_take`), keeps the
dedup table (a Faust table, changelog-backed) and acks each record only after its outputs are durable.
What it needs beyond the default engine (streams/kafka_engine.py), each for a failure we saw: the
OffsetGuard (no offset skipped after a rebalance), a consumer thread that reads the group coordinator's
errors (streams/faust_transport.py), and watches for a stall, a rebalance that does not end and
partitions no member holds (streams/stall.py). docs/engines.md says what each engine guarantees and costs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.runtime.kafka import security_settings
from schemas.runtime.quarantine import QUARANTINE, CrashGuard, spans_of
from streams.dedup import Deduplicator
from streams.faust_security import faust_credentials
from streams.faust_transport import checked_transport, read_errors
from streams.metrics import WorkerMetrics
from streams.router import Source
from streams.stall import (
    EXIT,
    STALLED,
    OrphanWatch,
    StallWatch,
    backlog_lookup,
    committed_lookup,
    owners_lookup,
    report,
    waiting_on,
)
from streams.worker import BatchRouter, OutputWriter, RouterHolder, WorkerSettings, start_config

log = logging.getLogger(__name__)


class OffsetGuard:
    """Routes each partition's records in offset order without a gap, whatever Faust hands over.

    Found by tests/integration/test_worker.py (two workers, one SIGKILLed under load): after the
    rebalance, faust-streaming 0.15.3 delivered a partition's records starting 58 offsets past the
    group's committed offset; the 58 were never delivered, and would have been lost if later acks had
    been committed (a read offset Faust wrote after the revocation drops them: docs/decisions.md,
    "Engines"). So the worker keeps, per partition, the next offset it must route (the group's
    committed offset, or the log start, when a partition is first seen in a consumer generation). A record
    past it is a gap: the consumer is sought back and that partition's later records in the batch wait,
    unacked, to be read again. A record before it was routed already (a re-delivery) and is only acked.
    A gap still there 5 s after seeking back is real (transaction markers leave such gaps) and accepted."""

    def __init__(self, lookup: Callable[[list[int]], dict[int, int]]) -> None:
        self._lookup = lookup  # partitions -> next offset to route; blocking, run in a thread
        self.expected: dict[int, int] = {}
        self.generation: int | None = None
        self._sought: dict[int, tuple[int, float]] = {}
        self._logged: dict[int, int] = {}
        self.gaps_sought = 0

    async def split(self, events: Sequence[Any], generation: int) -> tuple[list[Any], list[Any], dict[int, int]]:
        """(records to route, records only to ack, partition -> offset to seek back to)."""
        if generation != self.generation:
            self.generation = generation
            self.expected.clear()
        unknown = sorted({e.message.partition for e in events} - set(self.expected))
        if unknown:
            self.expected.update(await asyncio.to_thread(self._lookup, unknown))
        route: list[Any] = []
        redelivered: list[Any] = []
        seek: dict[int, int] = {}
        now = time.monotonic()
        for event in events:
            partition, offset = event.message.partition, event.message.offset
            if partition in seek:
                continue
            expected = self.expected.get(partition, offset)
            if offset < expected:
                redelivered.append(event)
                continue
            if offset > expected:
                first = self._sought.get(partition)
                if first is None or first[0] != expected:
                    self._sought[partition] = (expected, now)
                if first is None or first[0] != expected or now - first[1] < 5.0:
                    seek[partition] = expected
                    continue
                log.warning("raw partition %s: offsets %s..%s do not exist; going on", partition, expected, offset - 1)
            route.append(event)
            self.expected[partition] = offset + 1
        if seek:
            self.gaps_sought += 1
            fresh = {p: o for p, o in seek.items() if self._logged.get(p) != o}
            if fresh:  # once per gap: stale records keep arriving until the seek takes effect
                self._logged.update(fresh)
                log.warning("raw partitions %s: records past an undelivered offset; reading again from %s",
                            sorted(fresh), fresh)
        return route, redelivered, seek


def _source(event: Any) -> Source:
    message = event.message
    headers = message.headers or ()
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    return Source(message.value, message.topic, message.partition, message.offset,
                  int(message.timestamp * 1000), headers)


def build_app(settings: WorkerSettings, holder: RouterHolder, writer: OutputWriter,
              metrics: WorkerMetrics, watch: StallWatch | None = None) -> Any:
    """The Faust app: one agent over the raw topic, the dedup table, a timer that counts partitions and one
    that watches for a stall."""
    import faust
    from confluent_kafka import KafkaException
    from faust.types import TP

    app = faust.App(
        settings.app_id, broker=f"kafka://{settings.bootstrap}", datadir=str(settings.data_dir),
        web_enabled=False, topic_replication_factor=settings.replication_factor,
        topic_partitions=holder.partitions, consumer_auto_offset_reset="earliest", store=settings.store,
        broker_commit_interval=1.0, producer_acks=-1, stream_buffer_maxsize=8192,
        topic_allow_declare=True, table_cleanup_interval=3600.0, stream_wait_empty=False,
        broker_session_timeout=settings.session_timeout_s, broker_heartbeat_interval=settings.session_timeout_s / 5,
        broker_credentials=faust_credentials(security_settings()),
    )
    watch = watch or StallWatch(settings.stall_after_s)

    streak = {"first": 0.0, "last": 0.0}  # a run of coordinator errors, each within stall_after_s of the last

    def coordinator_failed(exc: BaseException, ended: bool) -> None:
        """(In the consumer's thread.) The group coordinator had parked on an error: read now, it joins the
        group again; one whose task ended for good cannot, and one that keeps failing (errors for twice
        `stall_after_s`, none more than `stall_after_s` apart) does not, so the worker stops to be started
        afresh."""
        now = time.monotonic()
        if now - streak["last"] > settings.stall_after_s:
            streak["first"] = now
        streak["last"] = now
        ended = ended or now - streak["first"] >= 2 * settings.stall_after_s
        if not ended:
            if streak["first"] == now:  # once per run of errors: a repeating one is not logged every fetch
                metrics.stalls.inc()
                log.error("the consumer's group coordinator had stopped on %s (%s): it joins the group again",
                          type(exc).__name__, exc)
        elif not watch.stopped:
            watch.stopped = True
            metrics.stalls.inc()
            log.error("the consumer's group coordinator cannot go on (%s: %s): stopping with exit code %s so that the "
                      "supervisor starts a new worker (eventrouter up does)", type(exc).__name__, exc, STALLED)
            os.kill(os.getpid(), signal.SIGTERM)

    # before any topic: the app makes its transport with the first one
    app.transport = checked_transport(coordinator_failed)(app.conf.broker_consumer, app)
    raw = app.topic(settings.topics.raw, value_type=bytes, value_serializer="raw", key_type=bytes,
                    key_serializer="raw", allow_empty=True, partitions=holder.partitions)
    table = app.Table("dedup", default=None, partitions=holder.partitions)  # json keys and values
    dedup = Deduplicator(table.data, table.changelog_topic.get_topic_name(), 86_400, per_key=True)
    batches = BatchRouter(holder, writer, dedup, metrics)

    guard = OffsetGuard(committed_lookup(settings, settings.topics.raw))
    crashes = CrashGuard(settings.data_dir, settings.app_id, crashes=settings.quarantine_after)
    for crashed, count in crashes.recover():
        log.error("the last run died routing %s/%s@%s..%s (%s times in all): those records go one at a time "
                  "now; one that kills the process %s times alone is quarantined", *crashed, count,
                  settings.quarantine_after)

    async def one_at_a_time(source: Source) -> None:
        """A record of a span the process died on: alone, or quarantined."""
        span = (source.topic, source.partition, source.offset, source.offset)
        if crashes.verdict(*span[:3]) == QUARANTINE:
            await writer.write([batches.quarantined(source, crashes, settings.topics.invalid)])
        else:
            crashes.begin([span])
            await batches.process([source])
        crashes.done([span])

    backlog = backlog_lookup(settings, settings.topics.raw)

    # a stop lets the batch in hand finish (outputs written, records acked) before Faust commits and leaves
    stopping, idle = asyncio.Event(), asyncio.Event()
    idle.set()

    @app.agent(raw, concurrency=1)
    async def route(stream: Any) -> None:
        async for events in stream.noack_take(settings.batch_size, within=settings.batch_within_s):
            if stopping.is_set():
                continue  # neither routed nor acked: whoever owns the partition next reads them again
            idle.clear()
            try:
                await route_batch(stream, events)
            finally:
                idle.set()

    async def route_batch(stream: Any, events: Sequence[Any]) -> None:
        watch.moved(time.monotonic())
        ready, redelivered, seek = await guard.split(events, app.consumer_generation_id)
        if seek:
            # Consumer.seek() calls aiokafka from this thread, while aiokafka runs in Faust's consumer
            # thread (it did not take effect in our test); seek_wait hops to that thread and waits.
            await app.consumer._thread.seek_wait(  # type: ignore[attr-defined]
                {TP(settings.topics.raw, p): o for p, o in seek.items()})
        sources = [_source(e) for e in ready]
        spans = spans_of((s.topic, s.partition, s.offset) for s in sources)
        alone = crashes.suspect(spans)
        if alone:  # the process died on some of these: one at a time, each acked
            for source, event in zip(sources, ready, strict=True):
                await one_at_a_time(source)
                await stream.ack(event)
        elif sources:
            crashes.begin(spans)  # one small file write, before routing
            await batches.process(sources)
            crashes.done(spans)
        for event in redelivered if alone else ready + redelivered:
            await stream.ack(event)
        crashes.idle()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def count_partitions() -> None:
        metrics.assigned.set(len(mine(app.consumer.assignment())))

    def mine(partitions: Any) -> list[int]:
        return sorted(tp.partition for tp in partitions if tp.topic == settings.topics.raw)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: Any, assigned: Any, **_kwargs: Any) -> None:
        log.info("assigned raw partitions %s (consumer generation %s; dedup table: %s messageIds)", mine(assigned),
                 app.consumer_generation_id, len(table.data))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(_app: Any, revoked: Any, **_kwargs: Any) -> None:
        log.info("revoked raw partitions %s", mine(revoked))

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def watch_progress() -> None:
        now = time.monotonic()
        stuck = watch.rebalancing(now, bool(app.rebalancing))
        if stuck is not None:
            await rebalance_stalled(stuck)
        if app.rebalancing or not watch.due(now, app.consumer_generation_id):
            return
        waiting = await asyncio.to_thread(waiting_on, backlog, mine(app.consumer.assignment()))
        verdict = watch.verdict(time.monotonic(), None if waiting is None else bool(waiting))
        if not waiting or verdict is None:
            return
        metrics.stalls.inc()
        report(verdict, settings.stall_after_s, waiting, "reading them again from their committed offsets")
        if verdict == EXIT:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        await app.consumer._thread.seek_wait(  # type: ignore[attr-defined]
            {TP(settings.topics.raw, p): ends[0] for p, ends in waiting.items()})

    orphans = OrphanWatch(settings.stall_after_s)
    group_backlog, owners = backlog_lookup(settings, settings.topics.raw), owners_lookup(settings, settings.topics.raw)

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def watch_group() -> None:
        """Records waiting on raw partitions that no member commits on: this member may have missed a
        rebalance (a peer died and none followed); joining the group again makes the coordinator assign them."""
        if app.rebalancing:
            return
        held = set(mine(app.consumer.assignment()))
        try:
            everything = await asyncio.to_thread(group_backlog, list(range(holder.partitions)))
        except KafkaException as exc:
            log.warning("whether records wait on the raw topic is not known: %s", exc)
            return
        orphaned = orphans.orphaned(time.monotonic(), everything, held)
        if orphaned:
            owned = await asyncio.to_thread(owners)
            orphaned = {} if owned is None else {p: ends for p, ends in orphaned.items() if p not in owned}
        if orphaned:
            metrics.stalls.inc()
            log.error("raw partitions %s hold records past their committed offsets (committed, end: %s) and no "
                      "member holds them or has committed on them for %.0f s: joining the group again",
                      sorted(orphaned), orphaned, settings.stall_after_s)
            await rejoin()

    async def rejoin() -> None:
        thread = app.consumer._thread  # type: ignore[attr-defined]

        async def request() -> None:  # in the consumer's thread, where aiokafka runs
            coordinator = thread._ensure_consumer()._coordinator
            error = read_errors(coordinator)  # a coordinator parked on an error would not hear the request
            if error is not None:
                coordinator_failed(*error)
            coordinator.request_rejoin()
        await thread.call_thread(request)

    async def rebalance_stalled(verdict: str) -> None:
        """A rebalance that has not ended in `stall_after_s`: join the group again, then stop (75)."""
        metrics.stalls.inc()
        log.error("the rebalance of consumer generation %s has not ended after %.0f s (raw partitions held: %s)",
                  app.consumer_generation_id, settings.stall_after_s, mine(app.consumer.assignment()))
        if verdict == EXIT:
            log.error("still rebalancing: stopping with exit code %s so that the supervisor starts a new worker "
                      "(eventrouter up does)", STALLED)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        log.error("joining the consumer group again")
        await rejoin()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _flush(app: Any, **_kwargs: Any) -> None:
        stopping.set()
        try:
            await asyncio.wait_for(idle.wait(), timeout=60.0)
        except TimeoutError:
            log.warning("the batch in hand did not finish in 60 s: its records are read again by the next owner")
        log.info("stopping: committing and leaving the group")
        writer.close()
        crashes.close()

    return app


def run_faust(settings: WorkerSettings) -> int:
    import faust

    metrics, holder, watcher = start_config(settings)
    writer = OutputWriter(settings.bootstrap, settings.client)
    writer.start()
    watch = StallWatch(settings.stall_after_s)
    app = build_app(settings, holder, writer, metrics, watch)
    # override_logging=False: mode would otherwise replace the root logger's handlers, and with them our
    # format and the filter that scrubs secrets. No spinner: at WARNING and above Faust's writes terminal
    # codes (ESC[?25l) to the log even when it is a file, and turns the root logger to DEBUG.
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                          override_logging=False)
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return STALLED if watch.stopped else int(exc.code or 0)
    finally:
        watcher.stop()
        left = writer.close()
        if left:
            log.error("%s outputs were not acknowledged at shutdown; their inputs were not committed", left)
    return 0
