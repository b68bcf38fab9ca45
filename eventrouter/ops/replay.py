"""`eventrouter replay deliver INTEGRATION`: deliver a range of an integration's topic to its vendor
again, beside live delivery and without disturbing it.

The replay reads the range on a consumer group of its own (assigned partitions, never the live group's),
with a rate limit of its own, waits out retries in place (nothing goes to the live retry topic) and
stops at the range's end. Records keep their messageIds, so the vendors' idempotency keys (each vendor
module's `dedup_key`: Amplitude insert_id, Meta event_id...) make a second delivery of an event harmless.
What the vendor refuses is dead-lettered as in live delivery; events now older than the vendor accepts
are dead-lettered `vendor.too_old`. `plan()` is the dry run: how many events, the time span they were
written in, and how many the vendor's window will refuse.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from eventrouter.ops.ranges import Span, read_span
from forwarders.runner import Forwarder
from forwarders.vendors import VENDORS
from schemas import Topics, outbound_codec
from schemas.config import Integration
from schemas.errors import DecodeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay would send."""

    events: int
    first_written_ms: int | None
    last_written_ms: int | None
    too_old: int            # older than the vendor's window: they would be dead-lettered vendor.too_old
    undecodable: int
    max_age_s: float | None
    dedup_key: str | None = None  # what the vendor deduplicates on (None: a replay sends duplicates)

    def lines(self) -> list[str]:
        def iso(ms: int | None) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms is not None else "-"

        out = [f"events: {self.events}", f"written: {iso(self.first_written_ms)} .. {iso(self.last_written_ms)}"]
        if self.max_age_s is not None:
            out.append(f"older than the vendor accepts ({self.max_age_s / 3600:g} h): {self.too_old} "
                       "(would be dead-lettered vendor.too_old)")
        if self.undecodable:
            out.append(f"undecodable records: {self.undecodable} (would be dead-lettered)")
        out.append(f"the vendor deduplicates on {self.dedup_key}: events it already has are not counted twice"
                   if self.dedup_key else "the vendor does not deduplicate: events it already has are counted twice")
        return out


def plan(bootstrap: str, span: Span, integration: Integration, *, client: dict[str, Any] | None = None,
         now_ms: int | None = None) -> ReplayPlan:
    """The dry run: read the range, count it, send nothing."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    codec = outbound_codec()
    max_age_s = integration.delivery.max_event_age_s or VENDORS[integration.kind].max_age_s
    events = too_old = undecodable = 0
    first: int | None = None
    last: int | None = None
    for record in read_span(bootstrap, span, client=client):
        events += 1
        first = record.timestamp_ms if first is None else min(first, record.timestamp_ms)
        last = record.timestamp_ms if last is None else max(last, record.timestamp_ms)
        try:
            timestamp = codec.decode(record.value)["timestamp"]
        except DecodeError:
            undecodable += 1
            continue
        if max_age_s is not None and timestamp < now_ms - max_age_s * 1000:
            too_old += 1
    return ReplayPlan(events, first, last, too_old, undecodable, max_age_s, VENDORS[integration.kind].dedup_key)


class ReplayForwarder(Forwarder):
    """A forwarder over one span of the integration's topic: its own group, its own rate, retries in
    place; `run()` returns when every record of the span is settled and its offsets written."""

    def __init__(self, bootstrap: str, topics: Topics, integration: Integration, span: Span, *,
                 rate_per_s: float | None = None, client: dict[str, Any] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        policy = integration.delivery.model_copy(update={"strict_order": True, "rate_per_s": rate_per_s})
        super().__init__(bootstrap, topics, integration.model_copy(update={"delivery": policy}), client=client,
                         environ=environ)
        if span.topic != self.topic:
            raise ValueError(f"a replay of {self.name} reads {self.topic}, not {span.topic}")
        self.span = span
        self.group_id = f"{topics.prefix}-replay-{self.name}-{uuid.uuid4().hex[:8]}"
        self.taken = 0

    def _listen(self) -> None:
        from confluent_kafka import TopicPartition

        parts = self.span.partitions()
        self._consumer.assign([TopicPartition(self.topic, p, self.span.start[p]) for p in parts])
        self._assigned(self._consumer, [TopicPartition(self.topic, p) for p in parts])

    def _take(self, messages: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        inside = []
        for message in messages:
            if message.error() is None and message.offset() >= self.span.end[message.partition()]:
                self._consumer.pause([TopicPartition(self.topic, message.partition())])
                continue
            inside.append(message)
        self.taken += sum(1 for m in inside if m.error() is None)
        super()._take(inside)

    def finished(self) -> bool:
        """Every record of the span read, delivered or dead-lettered, and written down."""
        from confluent_kafka import TopicPartition

        for (_topic, partition), state in self._partitions.items():
            if state.buffer or state.flights or state.tickets:
                return False
            at = self._consumer.position([TopicPartition(self.topic, partition)])[0].offset
            if at < self.span.end[partition]:
                return False
        return True

    def replay(self) -> int:
        """Start, deliver the span, stop; the number of records read."""
        self.start()
        self.run(until=self.finished)
        log.info("%s: replay read %s records of %s", self.name, self.taken, self.span.count)
        return self.taken
