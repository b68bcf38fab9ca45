"""The forwarder's dispatch plan (forwarders/planning.py) and a partition's state (forwarders/state.py),
without a broker: which records go together, in what order, and when the rest is due."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from forwarders.delivery import BatchReport
from forwarders.planning import FLIGHTS, Planner, Send
from forwarders.state import Flight, PartitionState, Ticket, acknowledged
from forwarders.vendors import Item
from schemas.runtime.quarantine import ALONE, BATCH


def _buffered(topic: str, partition: int, offsets: range, *, since: float = 0.0,
              user: str = "u") -> tuple[tuple[str, int], PartitionState]:
    state = PartitionState()
    for offset in offsets:
        state.keep(Item(f"m{partition}-{offset}", {}, user_id=f"{user}{offset}"), offset, since, 10_000)
    return (topic, partition), state


def _fly(step: Send) -> None:
    """What the runner does with a Send: the batch is under way in each partition."""
    future: Future[BatchReport] = Future()
    for position, share in enumerate(step.shares):
        share.state.flights.append(Flight(future, share.batch, share.offsets, share.span, position == 0,
                                          share.users, alone=step.alone))


def test_nothing_goes_before_the_linger_is_up_and_the_plan_says_when_it_will_be() -> None:
    partitions = dict([_buffered("t", 0, range(3), since=10.0), _buffered("t", 1, range(2), since=10.2)])
    planner = Planner(batch_cap=500, linger_s=0.5, per_event=False)
    assert planner.next(partitions, now=10.1) == pytest.approx(10.5)
    assert planner.next({}, now=10.1) is None


def test_once_one_buffer_is_due_every_idle_partition_goes_in_the_same_batch_oldest_first() -> None:
    partitions = dict([_buffered("t", 1, range(2), since=10.2), _buffered("t", 0, range(3), since=10.0)])
    step = Planner(batch_cap=500, linger_s=0.5, per_event=False).next(partitions, now=10.6)
    assert isinstance(step, Send) and not step.alone
    assert [share.key for share in step.shares] == [("t", 0), ("t", 1)]
    assert [share.span for share in step.shares] == [(0, 3), (3, 5)]
    assert [item.message_id for item in step.items] == ["m0-0", "m0-1", "m0-2", "m1-0", "m1-1"]
    assert step.spans() == [("t", 0, 0, 2), ("t", 1, 0, 1)]
    assert all(not state.buffer for state in partitions.values())


def test_a_full_batch_goes_at_once_and_a_batch_never_exceeds_the_cap() -> None:
    partitions = dict([_buffered("t", 0, range(7), since=10.0), _buffered("t", 1, range(4), since=10.0)])
    planner = Planner(batch_cap=5, linger_s=60.0, per_event=False)
    first = planner.next(partitions, now=10.0)
    assert isinstance(first, Send) and len(first.items) == 5 and first.shares[0].offsets == [0, 1, 2, 3, 4]
    _fly(first)
    # partition 0 is under way (one batch at a time for a batched vendor): partition 1 is not yet due
    assert planner.next(partitions, now=10.0) == pytest.approx(70.0)


def test_a_batched_vendors_partition_has_one_batch_under_way_at_a_time() -> None:
    partitions = dict([_buffered("t", 0, range(3))])
    planner = Planner(batch_cap=2, linger_s=0.0, per_event=False)
    first = planner.next(partitions, now=1.0)
    assert isinstance(first, Send)
    _fly(first)
    assert planner.next(partitions, now=1.0) is None  # the third record waits for the first batch
    partitions[("t", 0)].flights.clear()
    second = planner.next(partitions, now=1.0)
    assert isinstance(second, Send) and second.shares[0].offsets == [2]


def test_a_per_event_vendor_sends_each_partition_on_its_own_and_never_lets_a_user_overtake_itself() -> None:
    key, state = ("t", 0), PartitionState()
    for offset, user in enumerate(["ann", "bob", "ann", "cid"]):
        state.keep(Item(f"m{offset}", {}, user_id=user), offset, 0.0, 10_000)
    partitions = {key: state, ("t", 1): _buffered("t", 1, range(1))[1]}
    planner = Planner(batch_cap=2, linger_s=0.0, per_event=True)
    first = planner.next(partitions, now=1.0)
    assert isinstance(first, Send) and len(first.shares) == 1  # one partition per batch
    assert first.shares[0].users == frozenset({"ann", "bob"})
    _fly(first)
    second = planner.next(partitions, now=1.0)
    assert isinstance(second, Send) and second.shares[0].key == ("t", 1)
    _fly(second)
    # partition 0's next record is ann's, whose first event is under way: it waits
    assert planner.next(partitions, now=1.0) is None
    assert state.offsets == [2, 3]


def test_a_per_event_partition_has_up_to_FLIGHTS_batches_under_way() -> None:
    partitions = dict([_buffered("t", 0, range(FLIGHTS + 3))])
    planner = Planner(batch_cap=1, linger_s=0.0, per_event=True)
    sent = 0
    while isinstance(step := planner.next(partitions, now=1.0), Send):
        _fly(step)
        sent += 1
    assert sent == FLIGHTS and len(partitions[("t", 0)].buffer) == 3


def test_a_suspect_record_waits_for_the_rest_to_settle_then_goes_alone() -> None:
    partitions = dict([_buffered("t", 0, range(5)), _buffered("t", 1, range(2))])
    verdict = lambda _t, p, o: ALONE if (p, o) == (0, 2) else BATCH  # noqa: E731
    planner = Planner(batch_cap=500, linger_s=0.0, per_event=False)
    first = planner.next(partitions, now=1.0, verdict=verdict)
    assert isinstance(first, Send) and first.spans() == [("t", 0, 0, 1), ("t", 1, 0, 1)]  # stops before it
    _fly(first)
    assert planner.next(partitions, now=1.0, verdict=verdict) is None  # the others are still under way
    for state in partitions.values():
        state.flights.clear()
    alone = planner.next(partitions, now=1.0, verdict=verdict)
    assert isinstance(alone, Send) and alone.alone and alone.spans() == [("t", 0, 2, 2)]
    _fly(alone)
    assert planner.next(partitions, now=1.0, verdict=verdict) is None  # nothing beside it
    partitions[("t", 0)].flights.clear()
    rest = planner.next(partitions, now=1.0, verdict=verdict)
    assert isinstance(rest, Send) and rest.spans() == [("t", 0, 3, 4)]


def test_a_buffer_pauses_at_its_bound_and_resumes_below_a_batch() -> None:
    state = PartitionState()
    assert [state.keep(Item(f"m{o}", {}), o, 5.0, 3) for o in range(4)] == [False, False, True, False]
    assert state.since == 5.0 and state.done == 0 and state.full
    assert not state.wake(now=6.0, batch_cap=2)
    state.buffer, state.offsets = state.buffer[3:], state.offsets[3:]
    assert state.wake(now=6.0, batch_cap=2) and not state.full


def test_a_retry_not_yet_due_resumes_when_it_is_unless_the_buffer_is_full() -> None:
    state = PartitionState(resume_at=10.0)
    assert not state.wake(now=9.0, batch_cap=5)
    assert state.wake(now=10.0, batch_cap=5) and state.resume_at is None
    full = PartitionState(resume_at=10.0, full=True, buffer=[Item(f"m{o}", {}) for o in range(9)])
    assert not full.wake(now=10.0, batch_cap=5) and full.resume_at is None


def test_offsets_are_stored_in_order_only_once_kafka_acknowledged_what_a_batch_wrote() -> None:
    key = ("t", 0)
    state = PartitionState()
    first, second = Ticket((key, 10), span=("t", 0, 0, 9)), Ticket((key, 20), span=("t", 0, 10, 19))
    first.pending = 1
    state.tickets.extend([first, second])
    assert acknowledged({key: state}) == ([], [], None)  # the second waits behind the first
    first.acked(None, None)
    assert acknowledged({key: state}) == ([(key, 10), (key, 20)], [("t", 0, 0, 9), ("t", 0, 10, 19)], None)
    assert state.done == 20 and not state.tickets


def test_a_record_kafka_refused_stops_the_offsets_there() -> None:
    key = ("t", 0)
    state = PartitionState()
    refused = Ticket((key, 10))
    refused.pending = 1
    refused.acked("Broker: Message size too large", None)
    state.tickets.append(refused)
    state.tickets.append(Ticket((key, 20)))
    assert acknowledged({key: state}) == ([], [], "1 records not written (Broker: Message size too large)")
    assert len(state.tickets) == 1  # the later batch's offset is never stored
