"""What a forwarder keeps per assigned partition while it delivers (forwarders/runner.py): records read
and not yet delivered, the batch under way, and the tickets that store offsets once Kafka acknowledged
what a settled batch wrote. Pure."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from forwarders.delivery import BatchReport
from forwarders.vendors import Item
from schemas.errors import DecodeError

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A record of the topic that is not an Outbound record: dead-lettered, never sent."""

    error: DecodeError
    value: bytes


class Ticket:
    """What one settled batch wrote (dead letters, retry records, its receipt): once Kafka has
    acknowledged all of it, the partition's offset can be stored."""

    __slots__ = ("errors", "offset", "pending", "span")

    def __init__(self, offset: tuple[TopicPartitionKey, int] | None,
                 span: tuple[str, int, int, int] | None = None) -> None:
        self.offset = offset
        self.span = span  # the batch's records (topic, partition, first and last offset): the crash guard's
        self.pending = 0
        self.errors: list[str] = []

    def acked(self, error: Any, _message: Any) -> None:  # librdkafka's delivery report, in poll()
        self.pending -= 1
        if error is not None:
            self.errors.append(str(error))


@dataclass(slots=True)
class Flight:
    """A partition's batch under way: its records and their offsets, where its items sit in the request
    batch it went with (shared by the partitions whose batches went together), and the users it holds
    (a per-event vendor's next batch of the partition may go meanwhile, without them)."""

    future: Future[BatchReport]
    batch: list[Item | Undecodable]
    offsets: list[int]
    span: tuple[int, int]     # this partition's items in the request batch (their positions)
    lead: bool                # the first partition of that batch: it reports the requests
    users: frozenset[str]     # userIds and anonymousIds (per-event vendors only)
    alone: bool = False       # a record the process died on, under way with nothing beside it


@dataclass
class PartitionState:
    """One assigned partition: records read and not yet delivered, the batches under way, a pause."""

    buffer: list[Item | Undecodable] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    since: float = 0.0
    flights: deque[Flight] = field(default_factory=deque)  # under way, oldest first; settled in that order
    tickets: deque[Ticket] = field(default_factory=deque)  # settled batches, oldest first
    resume_at: float | None = None   # retry topic: paused until this monotonic time
    full: bool = False               # paused: buffer over its bound
    done: int | None = None          # the next offset not yet settled (delivered, dead-lettered, retried)
    undone: int | None = None        # the first record a batch left undone: no offset stored past it

    def keep(self, item: Item | Undecodable, offset: int, now: float, bound: int) -> bool:
        """Buffer a record read. True when the buffer has just reached `bound`: pause the partition."""
        if not self.buffer:
            self.since = now
        if self.done is None:
            self.done = offset
        self.buffer.append(item)
        self.offsets.append(offset)
        if len(self.buffer) >= bound and not self.full:
            self.full = True
            return True
        return False

    def wake(self, now: float, batch_cap: int) -> bool:
        """True when the paused partition is to be resumed: its retry record is due, or its buffer is down
        below a batch, and nothing else holds it."""
        resume = False
        if self.resume_at is not None and now >= self.resume_at:
            self.resume_at = None
            resume = not self.full
        if self.full and len(self.buffer) < batch_cap:
            self.full = False
            resume = self.resume_at is None
        return resume

    def busy(self) -> frozenset[str]:
        """The users of the batches under way."""
        return frozenset().union(*(flight.users for flight in self.flights))

    def free_prefix(self, take: int) -> int:
        """How many of the first `take` buffered records go before the first one of a user under way."""
        busy = self.busy()
        for position, item in enumerate(self.buffer[:take]):
            if isinstance(item, Item) and (item.user_id in busy or item.anonymous_id in busy):
                return position
        return take


def acknowledged(partitions: dict[TopicPartitionKey, PartitionState]) -> tuple[
        list[tuple[TopicPartitionKey, int]], list[tuple[str, int, int, int]], str | None]:
    """Take the tickets of settled batches whose records Kafka acknowledged, in order per partition: the
    offsets to store, the crash guard's spans now done, and what Kafka refused of a batch's records, if
    anything (that batch's offsets and the later ones are never stored, so whoever takes the partition
    delivers them again: the forwarder stops)."""
    ready: list[tuple[TopicPartitionKey, int]] = []
    spans: list[tuple[str, int, int, int]] = []
    for state in partitions.values():
        while state.tickets and state.tickets[0].pending == 0:
            ticket = state.tickets.popleft()
            if ticket.errors:
                return ready, spans, f"{len(ticket.errors)} records not written ({ticket.errors[0]})"
            if ticket.offset is not None:
                ready.append(ticket.offset)
                state.done = ticket.offset[1]
            if ticket.span is not None:
                spans.append(ticket.span)
    return ready, spans, None
