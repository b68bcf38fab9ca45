"""`eventrouter forward INTEGRATION`: one confluent-kafka consumer group per integration reading its
topic and its retry topic, delivering batches per partition in parallel (each partition, and so each
user, in order), and storing a partition's offsets only once its batch is delivered, dead-lettered or
handed to the retry topic, and those records are acknowledged (at-least-once).

The main thread only consumes, hands batches to delivery threads and settles what they report; it
keeps polling while they work, so the consumer is never evicted from its group. A partition whose
buffer is full is paused. A retry record not yet due makes its partition seek back and pause until it
is. SIGTERM: no new batch starts; batches under way finish (waits turn into retry records), their
offsets are committed, and the consumer leaves the group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from forwarders.delivery import BatchDelivery
from forwarders.metrics import ForwarderMetrics
from forwarders.outcomes import Outcomes
from forwarders.planning import Planner, Send
from forwarders.ratelimit import TokenBucket
from forwarders.records import (
    ITEM_FIELDS,
    NOT_BEFORE,
    header_int,
    item_from,
)
from forwarders.state import Flight, PartitionState, TopicPartitionKey, Undecodable, acknowledged
from forwarders.transport import HttpTransport
from forwarders.vendors import Item, vendor_for
from schemas import Topics, outbound_codec
from schemas.config import Integration
from schemas.deadletters import utf8
from schemas.errors import DecodeError
from schemas.runtime.kafka import RejoinWatch, consumer_settings, ensure_topics, fetch_settings, producer_settings
from schemas.runtime.quarantine import QUARANTINE, QUARANTINED, CrashGuard, spans_of
from schemas.secrets import SCRUBBER, resolve_secrets, unscrubbed_names

log = logging.getLogger(__name__)

IDLE_WAIT_S = 0.5  # the consuming loop's wait while idle (20 integrations in a process: 40 wake-ups a second)


class Forwarder:
    def __init__(self, bootstrap: str, topics: Topics, integration: Integration, *,
                 client: dict[str, Any] | None = None, metrics: ForwarderMetrics | None = None,
                 environ: dict[str, str] | None = None, state_dir: Path | None = None) -> None:
        self.bootstrap, self.topics, self.integration = bootstrap, topics, integration
        self.client = client or {}
        self.name = integration.name
        self.policy = integration.delivery
        self.vendor = vendor_for(integration.kind, resolve_secrets(integration.connection, environ))
        SCRUBBER.add(*self.vendor.secrets())  # what the vendor builds of them (basic auth), by value from now on
        for name in unscrubbed_names(integration.connection, environ):
            log.warning("%s: $%s is too short to be scrubbed by value from logs and dead letters", self.name, name)
        if self.policy.batch_size:
            self.vendor.max_events = min(self.vendor.max_events, self.policy.batch_size)  # type: ignore[misc]
        if self.policy.batch_bytes:
            self.vendor.max_bytes = min(self.vendor.max_bytes, self.policy.batch_bytes)  # type: ignore[misc]
        self.metrics = metrics or ForwarderMetrics(self.name)
        self.topic, self.retry_topic = topics.integration(self.name), topics.retry(self.name)
        self.dlq = topics.dead_letters(self.name)
        self.group_id = f"{topics.prefix}-forward-{self.name}"
        # a record the process keeps dying on is quarantined (schemas/runtime/quarantine.py), not crash-looped on
        self.guard = CrashGuard(state_dir, self.group_id) if state_dir is not None else None
        self.batch_cap = max(500, self.vendor.max_events)
        self.stopping = threading.Event()
        self._partitions: dict[TopicPartitionKey, PartitionState] = {}
        self._consumer: Any = None
        self._rejoin = RejoinWatch(60.0)  # six session timeouts (10 s)
        self._producer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._outbound = outbound_codec(fields=ITEM_FIELDS)
        # A per-event vendor (one event a request) gains nothing from gathering a batch: its events go as
        # they come (linger 0 unless set), each partition's batch on its own, its users' requests at once.
        # max_in_flight 1 is one request at a time, as before: batches gathered, partitions together.
        self.per_event = self.vendor.max_events == 1 and self.policy.max_in_flight > 1
        self.linger_ms = 0 if self.per_event and "linger_ms" not in self.policy.model_fields_set \
            else self.policy.linger_ms
        self.planner = Planner(self.batch_cap, self.linger_ms / 1000, self.per_event)
        self.transport = HttpTransport(self.policy.connect_timeout_s, self.policy.timeout_s,
                                       self.policy.concurrency + self.policy.max_in_flight + 2,
                                       allowance=self.vendor.allowance)
        self.limiter = TokenBucket(self.policy.rate_per_s)
        self.outcomes = Outcomes(self.name, topics, self.metrics, self.limiter)
        self._senders = ThreadPoolExecutor(self.policy.max_in_flight, thread_name_prefix=f"send-{self.name}") \
            if self.policy.max_in_flight > 1 else None  # threads start with the first lane sent
        self.delivery = BatchDelivery(self.vendor, self.policy, self.transport, self.limiter,
                                      stopping=self.stopping.is_set, senders=self._senders)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self, partitions: int = 6) -> None:
        from confluent_kafka import Producer

        ensure_topics(self.bootstrap, [self.topic, self.retry_topic, self.dlq, self.topics.receipts],
                      partitions=partitions, client=self.client)
        # What this producer writes (receipts, dead letters, retry records) only holds back the offsets of
        # batches already delivered, not delivery: 50 ms of linger gathers the partitions' receipts (one
        # produce request a partition settled its batch, before: ~100 a second per forwarder at 1k/s).
        self._producer = Producer(producer_settings(self.bootstrap, {
            "linger.ms": 50, **self.client}))
        self.outcomes.producer = self._producer
        self._consumer = self._new_consumer()
        self._listen()
        for (topic, partition, first, last), crashes in self.guard.recover() if self.guard is not None else ():
            log.warning("%s: the process died with %s/%s@%s-%s in progress (%s times): those go one at a time",
                        self.name, topic, partition, first, last, crashes)
        # A per-event vendor's batch thread only waits for its lanes (the senders bound what is in flight):
        # one per partition, or batches wait for a thread as well as for their partition's previous batch.
        threads = max(self.policy.concurrency, self.policy.max_in_flight) if self.per_event else self.policy.concurrency
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"deliver-{self.name}")

    def _new_consumer(self) -> Any:
        from confluent_kafka import Consumer

        return Consumer(consumer_settings(self.bootstrap, self.group_id, {
            "max.poll.interval.ms": 600_000, "session.timeout.ms": 10_000, **fetch_settings(self.linger_ms),
            **self.client}))

    def _listen(self) -> None:
        """Join the integration's consumer group on its topic and its retry topic."""
        self._consumer.subscribe([self.topic, self.retry_topic], on_assign=self._assigned, on_revoke=self._revoked,
                                 on_lost=self._lost)

    def _rejoin_if_overdue(self) -> None:
        if not self._rejoin.overdue():
            return
        log.warning("%s: no partitions assigned %.0f s after losing them: joining the group again with a new "
                    "consumer", self.name, self._rejoin.deadline_s)
        self._rejoin.replaced()
        self._consumer.close()
        self._consumer = self._new_consumer()
        self._listen()

    def run(self, until: Callable[[], bool] = lambda: False) -> None:
        """Consume and deliver until `stop()` (or SIGTERM in forwarders/app.py `run_forwarder`) or `until()` is true."""
        last_lag = 0.0
        # Half the linger between looks at the buffers (the broker holds a fetch that long too; a quarter
        # cost 6% more CPU per event at 1k events/s, side by side), or less when a buffer is due sooner:
        # a batch leaves when its linger is up, not up to half a linger later.
        wait = timeout = min(0.05, max(0.005, self.linger_ms / 2000))
        while not self.stopping.is_set() and not until():
            messages = self._consumer.consume(num_messages=self.batch_cap, timeout=timeout)
            self._take(messages)
            self._settle()             # what finished batches need written, without waiting for it
            due = self._dispatch()     # the partitions' next batches are under way while Kafka acknowledges
            self._producer.poll(0)
            self._store_acknowledged()
            self._resume_due()
            self._rejoin_if_overdue()
            if due is not None:
                timeout = min(wait, max(0.001, due - time.monotonic()))
            else:  # nothing buffered: a record ends the wait as soon as it comes; an idle loop seldom wakes
                timeout = IDLE_WAIT_S if self._idle() else wait
            if time.monotonic() - last_lag > 5.0:
                last_lag = time.monotonic()
                self._update_lag()
        self.close()

    def _idle(self) -> bool:
        """Nothing under way or buffered (a record going alone waits in the buffer for the one before it),
        nothing for Kafka to acknowledge, no retry partition waiting to resume."""
        return len(self._producer) == 0 and all(not state.flights and not state.buffer and state.resume_at is None
                                                for state in self._partitions.values())

    def stop(self) -> None:
        self.stopping.set()

    def release(self) -> None:
        """After an error, in a process that goes on (forwarders/host.py): an error, not a crash, for the
        crash guard; leave the group and let go of the clients and threads, settling nothing (what was under
        way is delivered again by the partitions' next owner, this forwarder started again or another)."""
        self.stopping.set()
        for close in (self.guard.close if self.guard is not None else None,
                      self._consumer.close if self._consumer is not None else None,
                      self.transport.close):
            if close is None:
                continue
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - letting go of the rest matters more than this one
                log.warning("%s: releasing after the error: %s: %s", self.name, type(exc).__name__, exc)
        self._consumer = None
        for pool in (self._pool, self._senders):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Finish the batches under way, commit, leave the group."""
        self.stopping.set()
        for key in list(self._partitions):
            self._settle_partition(key, wait=True)
        self.outcomes.flush()
        self._store_acknowledged()
        if self._consumer is not None:
            try:
                self._consumer.commit(asynchronous=False)
            except Exception as exc:  # noqa: BLE001 - nothing stored to commit is not an error here
                log.info("%s: final commit: %s", self.name, exc)
            self._consumer.close()
            self._consumer = None
        if self.guard is not None:
            self.guard.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._senders is not None:
            self._senders.shutdown(wait=True)
        self.transport.close()

    # -- rebalances -----------------------------------------------------------------------------------
    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        self._rejoin.assigned()
        for tp in partitions:
            self._partitions.setdefault((tp.topic, tp.partition), PartitionState())
        log.info("%s: assigned %s", self.name, sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoked(consumer, partitions)
        self._rejoin.lost()

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions if (tp.topic, tp.partition) in self._partitions]
        for key in keys:
            self._settle_partition(key, wait=True)
        self.outcomes.flush()
        self._store_acknowledged()
        for key in keys:
            del self._partitions[key]
        try:
            self._consumer.commit(asynchronous=False)
        except Exception as exc:  # noqa: BLE001 - no stored offsets: nothing to commit
            log.info("%s: commit on revoke: %s", self.name, exc)

    # -- reading --------------------------------------------------------------------------------------
    def _take(self, messages: list[Any]) -> None:
        reading: list[tuple[str, int, int, int]] = []
        if self.guard is not None and messages:  # decoding is compiled code too: a record it dies on is named
            reading = spans_of((m.topic(), m.partition(), m.offset()) for m in messages if m.error() is None)
            self.guard.begin(reading)
        self._read(messages)
        if reading and self.guard is not None:
            self.guard.end(reading)
            if self.guard.suspects:  # on disk at once: a record going alone must be alone in progress there
                self.guard.idle()

    def _read(self, messages: list[Any]) -> None:
        sought: set[TopicPartitionKey] = set()
        now, now_ms = time.monotonic(), int(time.time() * 1000)
        for message in messages:
            if message.error() is not None:
                log.warning("%s: consume error: %s", self.name, message.error())
                continue
            key = (message.topic(), message.partition())
            state = self._partitions.get(key)
            if state is None or key in sought:
                continue
            headers = None  # only the retry topic's records carry our er-* headers
            if key[0] == self.retry_topic:
                headers = message.headers()
                due = header_int(headers, NOT_BEFORE) or 0
                if due > now_ms:  # not yet: read it again when it is due
                    sought.add(key)
                    self._consumer.seek(TopicPartition(key[0], key[1], message.offset()))
                    self._consumer.pause([TopicPartition(key[0], key[1])])
                    state.resume_at = now + (due - now_ms) / 1000
                    continue
            item: Item | Undecodable
            try:
                if self.guard is not None and self.guard.suspects and \
                        self.guard.verdict(key[0], key[1], message.offset()) == QUARANTINE:
                    crashes = self.guard.crashes_of(key[0], key[1], message.offset())
                    raise DecodeError(QUARANTINED, f"the process exited {crashes} times on this record (consumer "
                                                   f"group {self.group_id}); skipped so the stream goes on")
                item = item_from(self._outbound, message.value(), topic=key[0], partition=key[1],
                                 offset=message.offset(), written_ms=message.timestamp()[1], headers=headers)
            except DecodeError as exc:
                item = Undecodable(exc, message.value() or b"")
            except Exception as exc:  # noqa: BLE001 - whatever a record does to the decoder, it is that record's
                log.warning("%s: %s/%s@%s not decodable: %s", self.name, key[0], key[1], message.offset(),
                            type(exc).__name__)
                item = Undecodable(DecodeError("decode.corrupt", utf8(f"{type(exc).__name__}: {exc}", 500)),
                                   message.value() or b"")
            if state.keep(item, message.offset(), now, 4 * self.batch_cap):
                self._consumer.pause([TopicPartition(key[0], key[1])])

    def _resume_due(self) -> None:
        now = time.monotonic()
        for (topic, partition), state in self._partitions.items():
            if state.wake(now, self.batch_cap):
                self._consumer.resume([TopicPartition(topic, partition)])

    # -- delivering -----------------------------------------------------------------------------------
    def _dispatch(self) -> float | None:
        """Send the batches the planner says are due (forwarders/planning.py), each in a delivery thread.
        Returns when the oldest buffer left waiting is due (monotonic seconds), None if none is."""
        assert self._pool is not None
        if self.stopping.is_set():
            return None
        now = time.monotonic()
        while True:
            verdict = self.guard.verdict if self.guard is not None and self.guard.suspects else None
            step = self.planner.next(self._partitions, now, verdict)
            if not isinstance(step, Send):
                return step
            if self.guard is not None:  # in progress until its offsets are stored: one small file write
                self.guard.begin(step.spans())
            future = self._pool.submit(self.delivery.deliver, step.items)
            for position, share in enumerate(step.shares):
                share.state.flights.append(Flight(future, share.batch, share.offsets, share.span, position == 0,
                                                  share.users, alone=step.alone))

    def _settle(self) -> None:
        for key, state in self._partitions.items():
            while state.flights and state.flights[0].future.done():
                self.outcomes.settle(key, state, state.flights.popleft())

    def _store_acknowledged(self) -> None:
        """Store the offsets of settled batches whose records Kafka acknowledged, in order per partition.
        A record Kafka refused stops the forwarder: its offsets are never stored, so the batch is
        delivered again by whoever takes the partition."""
        ready, spans, refused = acknowledged(self._partitions)
        if refused is not None:
            raise RuntimeError(f"{self.name}: {refused}")
        if ready:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, offset) for (t, p), offset in ready])
        if spans and self.guard is not None:
            self.guard.done(spans)
            self.guard.idle()

    def _settle_partition(self, key: TopicPartitionKey, *, wait: bool) -> None:
        """Settle the partition's finished batches, oldest first (with `wait`, every batch under way)."""
        state = self._partitions[key]
        while state.flights and (wait or state.flights[0].future.done()):
            self.outcomes.settle(key, state, state.flights.popleft())

    def _update_lag(self) -> None:
        """Lag: records not yet settled (read ahead into the buffer counts as not settled), from the high
        watermarks librdkafka caches from each fetch. Never ask the broker here: a ListOffsets request
        waits behind the connection's long-polling fetch (up to fetch.wait.max.ms), and one per partition
        stalled the consuming loop for seconds (measured: one batch per 6 s)."""
        tps = [TopicPartition(t, p) for t, p in self._partitions]
        try:
            positions = self._consumer.position(tps)
            lag = 0
            for tp in positions:
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                done = self._partitions[(tp.topic, tp.partition)].done
                start = done if done is not None else tp.offset
                lag += max(0, high - start) if start >= 0 and high >= 0 else 0
            self.metrics.lag.set(lag)
        except Exception as exc:  # noqa: BLE001 - a metric: never stop delivery for it
            log.info("%s: lag not measured: %s", self.name, exc)
