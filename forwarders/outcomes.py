"""What a forwarder writes once a batch is settled (forwarders/runner.py): dead letters, retry records and
delivery receipts, each under the batch's ticket, which stores the partition's next offset once Kafka
has acknowledged all of it; and the metrics of the batch's fates."""

from __future__ import annotations

import logging
from typing import Any, cast

from forwarders.delivery import Fate
from forwarders.metrics import ForwarderMetrics
from forwarders.ratelimit import TokenBucket
from forwarders.records import dead_letter_value, receipts, retry_fits, retry_headers
from forwarders.state import Flight, PartitionState, Ticket, TopicPartitionKey, Undecodable
from forwarders.vendors import Item
from schemas import Topics, deadletter_codec
from schemas.deadletters import dead_letter
from schemas.runtime.kafka import flush_until_acknowledged

log = logging.getLogger(__name__)


class Outcomes:
    """Constructed with the forwarder; `producer` is set when it starts."""

    def __init__(self, name: str, topics: Topics, metrics: ForwarderMetrics, limiter: TokenBucket) -> None:
        self.name, self.topics, self.metrics, self.limiter = name, topics, metrics, limiter
        self.dlq, self.retry_topic = topics.dead_letters(name), topics.retry(name)
        self.producer: Any = None
        self._deadletters = deadletter_codec()

    def settle(self, key: TopicPartitionKey, state: PartitionState, flight: Flight) -> None:
        """Write (not wait for) what a finished batch needs written, under a ticket that stores the
        partition's next offset once Kafka has acknowledged all of it."""
        report = flight.future.result()
        start, end = flight.span
        clean = end - start == len(flight.batch)  # no Undecodable among them: the batch is its items
        items = cast(list[Item], flight.batch) if clean else [i for i in flight.batch if isinstance(i, Item)]
        fates = {p - start: f for p, f in report.fates.items() if start <= p < end}  # this partition's
        # one pass over the batch: what is delivered (counted and observed once per batch), what is not,
        # the first offset to do again
        delivered, latencies, others, undone = 0, [], [], -1
        for position, item in enumerate(items):
            fate = fates.get(position)
            if fate is not None and fate.state == "delivered":
                delivered += 1
                if item.written_ms:
                    latencies.append(max(0.0, fate.finished_ms - item.written_ms) / 1000)
            elif fate is None or fate.state == "undone":
                undone = item.offset if undone < 0 else min(undone, item.offset)
            else:
                if fate.state == "later" and not retry_fits(item):  # the retry topic would refuse it
                    fates[position] = fate = Fate(
                        "dead", fate.attempts, fate.first_attempt_ms, fate.status,
                        f"forwarder.too_large: {len(item.raw)} bytes, too large to retry ({fate.reason})",
                        fate.body, finished_ms=fate.finished_ms)
                others.append((item, fate))
        next_offset = undone if undone >= 0 else flight.offsets[-1] + 1
        if undone >= 0:  # the next owner of the partition starts there; later batches store no offset past it
            state.undone = undone if state.undone is None else min(state.undone, undone)
        if state.undone is not None:
            next_offset = min(next_offset, state.undone)
        ticket = Ticket((key, next_offset) if next_offset > flight.offsets[0] else None,
                        (*key, flight.offsets[0], flight.offsets[-1]))
        state.tickets.append(ticket)
        for bad, offset in () if clean else zip(flight.batch, flight.offsets, strict=True):
            if isinstance(bad, Undecodable):
                record = dead_letter(reason=bad.error.reason, message=bad.error.message, stage="deliver",
                                     original=bad.value, source_topic=key[0], source_partition=key[1],
                                     source_offset=offset, integration=self.name)
                self._produce(ticket, self.dlq, self._deadletters.encode(record), None)
                self.metrics.dead.labels(self.name, bad.error.reason).inc()
        for item, fate in others:
            self._account(ticket, item, fate)
        if delivered:
            self.metrics.delivered.inc(delivered)
            self.metrics.latency.observe_many((self.name,), latencies)
        requests = report.requests if flight.lead else 0  # the batch's requests, counted once
        samples = report.samples if flight.lead else []
        for part in receipts(self.name, items, fates, requests=requests, samples=samples) if items else ():
            self._produce(ticket, self.topics.receipts, part, self.name.encode())
        for status, n in report.statuses.items() if flight.lead else ():
            self.metrics.requests.labels(self.name, str(status)).inc(n)
        self.metrics.rate.set(self.limiter.rate or 0)

    def _account(self, ticket: Ticket, item: Item, fate: Fate) -> None:
        """An item that was not delivered: dead-lettered, or written to the retry topic."""
        user = item.user_id or item.anonymous_id
        if fate.state == "dead":
            self._produce(ticket, self.dlq, dead_letter_value(self._deadletters, item, fate, self.name), None)
            self.metrics.dead.labels(self.name, (fate.reason or "").split(":")[0]).inc()
            log.info("%s: dead-lettered %s/%s@%s: %s", self.name, item.topic, item.partition, item.offset,
                     (fate.reason or "").split(":")[0])
        elif fate.state == "later":
            self._produce(ticket, self.retry_topic, item.raw, user.encode() if user else None, retry_headers(fate))
            self.metrics.retried.inc()

    def _produce(self, ticket: Ticket, topic: str, value: bytes, key: bytes | None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=ticket.acked)
                ticket.pending += 1
                return
            except BufferError:
                self.producer.poll(0.1)

    def flush(self) -> None:
        """Wait until Kafka acknowledged every record written (the tickets then hold their outcome)."""
        flush_until_acknowledged(self.producer, f"{self.name}: records")
