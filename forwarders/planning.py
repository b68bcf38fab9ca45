"""Which buffered records a forwarder sends next, and in which request batch (forwarders/runner.py sends
them). Pure: the planner takes records from the partitions' buffers and says what goes together; it
starts no thread and touches no consumer.

- Once a partition's buffer is due (its linger is up, or a batch is full), it goes together with the
  buffers of the other partitions not under way, up to a batch: at a moderate rate one request carries
  every partition's events (one per partition per linger was ~120 requests a second per forwarder at
  5k events/s); a backlog fills a batch per partition, and those go in parallel.
- A batched vendor's partition has one batch under way at a time, so each partition (and user) stays in
  order.
- A per-event vendor's partitions go each on its own (one request an event anyway), and a partition's
  next batch goes while earlier ones are under way (up to FLIGHTS), taking the buffer up to the first
  event of a user still under way: one user's events never overtake each other, and a slow answer holds
  back only its user (offsets are stored in order, below the oldest unsettled).
- A record that was in progress when the process died (the crash guard's verdict is not BATCH) goes
  alone: once everything before it is settled and written, with nothing else under way beside it, so
  that a next crash names it and an innocent record is never charged with another's crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from forwarders.state import PartitionState, TopicPartitionKey, Undecodable
from forwarders.vendors import Item
from schemas.runtime.quarantine import BATCH

FLIGHTS = 8  # a per-event vendor's batches under way per partition at once (their requests: max_in_flight)

Verdict = Callable[[str, int, int], str]  # the crash guard's word on a record (topic, partition, offset)


@dataclass(slots=True)
class Share:
    """One partition's records in a request batch."""

    key: TopicPartitionKey
    state: PartitionState
    batch: list[Item | Undecodable]
    offsets: list[int]
    span: tuple[int, int]    # its items' positions in the request batch
    users: frozenset[str]    # userIds and anonymousIds (per-event vendors only)


@dataclass(slots=True)
class Send:
    """A request batch to send: its items, and the partitions' shares of it (the first one reports)."""

    shares: list[Share]
    items: list[Item]
    alone: bool = False      # a record the process died on, with nothing beside it

    def spans(self) -> list[tuple[str, int, int, int]]:
        """Its records per partition, (topic, partition, first offset, last offset): the crash guard's."""
        return [(*share.key, share.offsets[0], share.offsets[-1]) for share in self.shares]


class Planner:
    def __init__(self, batch_cap: int, linger_s: float, per_event: bool) -> None:
        self.batch_cap, self.linger_s, self.per_event = batch_cap, linger_s, per_event
        self.flights = FLIGHTS if per_event else 1

    def next(self, partitions: dict[TopicPartitionKey, PartitionState], now: float,
             verdict: Verdict | None = None) -> Send | float | None:
        """The next batch to send, taken out of the buffers. When none is due: when the oldest buffer left
        waiting will be (monotonic seconds), or None if none is or while a record that goes alone waits.
        `verdict` is the crash guard's, None when it suspects no record."""
        if verdict is not None:
            suspects = [(key, state) for key, state in partitions.items()
                        if state.buffer and verdict(key[0], key[1], state.offsets[0]) != BATCH]
            if suspects or any(flight.alone for state in partitions.values() for flight in state.flights):
                return self._alone(partitions, suspects)
        idle = [(key, state) for key, state in partitions.items()
                if state.buffer and len(state.flights) < self.flights]
        if not any(len(state.buffer) >= self.batch_cap or now - state.since >= self.linger_s for _k, state in idle):
            return min(state.since for _k, state in idle) + self.linger_s if idle else None
        idle.sort(key=lambda pair: pair[1].since)  # the longest waiting first
        shares: list[Share] = []
        items: list[Item] = []
        room = self.batch_cap
        for key, state in idle:
            if room <= 0 or (self.per_event and shares):
                break
            take = room if verdict is None else self.take_size(key, state, room, verdict)
            if state.flights:
                take = state.free_prefix(take)
                if take == 0:
                    continue
            share = self._share(key, state, take, now, len(items))
            room -= len(share.batch)
            items += [item for item in share.batch if isinstance(item, Item)]
            shares.append(share)
        return Send(shares, items) if shares else None

    @staticmethod
    def take_size(key: TopicPartitionKey, state: PartitionState, room: int, verdict: Verdict) -> int:
        """How many of the partition's buffered records its next batch takes: it stops before a record that
        was in progress when the process died (that one goes alone)."""
        for position, offset in enumerate(state.offsets[:room]):
            if verdict(key[0], key[1], offset) != BATCH:
                return max(position, 1)
        return room

    def _alone(self, partitions: dict[TopicPartitionKey, PartitionState],
               suspects: list[tuple[TopicPartitionKey, PartitionState]]) -> Send | None:
        """The batch of the first suspect record, alone; None while one is under way, or while others are
        under way or not yet acknowledged beside it."""
        if not suspects or any(state.flights or state.tickets for state in partitions.values()):
            return None
        key, state = suspects[0]
        share = self._share(key, state, 1, state.since, 0, users=False)
        return Send([share], [item for item in share.batch if isinstance(item, Item)], alone=True)

    def _share(self, key: TopicPartitionKey, state: PartitionState, take: int, now: float, start: int, *,
               users: bool = True) -> Share:
        batch, state.buffer = state.buffer[:take], state.buffer[take:]
        offsets, state.offsets = state.offsets[:take], state.offsets[take:]
        state.since = now
        mine = [item for item in batch if isinstance(item, Item)]
        held = frozenset(u for item in mine for u in (item.user_id, item.anonymous_id) if u) \
            if self.per_event and users else frozenset()
        return Share(key, state, batch, offsets, (start, start + len(mine)), held)
