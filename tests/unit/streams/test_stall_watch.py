"""The engines' stall watch (streams/stall.py): records waiting and none handed over is a stall; idle is
not, nor is a broker that does not answer; the first remedy is the engine's own, the second a new process."""

from __future__ import annotations

from streams.stall import EXIT, REMEDY, OrphanWatch, StallWatch, waiting_of


def test_records_waiting_and_none_handed_over_is_first_read_again_then_a_stop() -> None:
    watch = StallWatch(30.0)
    assert not watch.due(now=watch.last + 10, generation=1)
    start = watch.last
    assert watch.due(now=start + 30, generation=1)
    assert watch.verdict(now=start + 30, waiting=True) == REMEDY
    assert not watch.due(now=start + 45, generation=1)  # the next look is another 30 s on
    assert watch.due(now=start + 60, generation=1)
    assert watch.verdict(now=start + 60, waiting=True) == EXIT


def test_idle_with_nothing_waiting_is_not_a_stall_and_a_record_handed_over_starts_again() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    watch.due(now=start, generation=1)
    assert watch.verdict(now=start + 31, waiting=False) is None
    assert not watch.due(now=start + 40, generation=1)
    assert watch.due(now=start + 61, generation=1) and watch.verdict(now=start + 61, waiting=True) == REMEDY
    watch.moved(start + 62)
    assert watch.due(now=start + 92, generation=1) and watch.verdict(now=start + 92, waiting=True) == REMEDY


def test_a_new_consumer_generation_starts_the_count_again() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    watch.due(now=start, generation=1)
    assert watch.due(now=start + 30, generation=1)
    assert not watch.due(now=start + 31, generation=2)
    assert watch.due(now=start + 61, generation=2)


def test_a_broker_that_does_not_answer_is_asked_again_later_and_keeps_the_strikes() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    watch.due(now=start, generation=1)
    assert watch.verdict(now=start + 30, waiting=True) == REMEDY
    assert watch.due(now=start + 60, generation=1) and watch.verdict(now=start + 60, waiting=None) is None
    assert not watch.due(now=start + 80, generation=1)  # not asked again at every loop
    assert watch.due(now=start + 90, generation=1) and watch.verdict(now=start + 90, waiting=True) == EXIT
    assert watch.stopped and not watch.due(now=start + 200, generation=1)


def test_waiting_partitions_are_those_whose_log_ends_past_the_committed_offset() -> None:
    assert waiting_of({0: (5, 5), 1: (3, 9), 2: (0, 0)}) == {1: (3, 9)}


def test_a_rebalance_that_does_not_end_is_first_joined_again_then_a_stop() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    assert watch.rebalancing(now=start, busy=True) is None
    assert watch.rebalancing(now=start + 29, busy=True) is None
    assert watch.rebalancing(now=start + 30, busy=True) == REMEDY
    assert watch.rebalancing(now=start + 45, busy=True) is None  # another 30 s for the remedy to work
    assert watch.rebalancing(now=start + 60, busy=True) == EXIT
    assert watch.stopped and watch.rebalancing(now=start + 200, busy=True) is None


def test_a_rebalance_that_ends_in_time_is_no_stall() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    assert watch.rebalancing(now=start, busy=True) is None
    assert watch.rebalancing(now=start + 20, busy=False) is None
    assert watch.rebalancing(now=start + 40, busy=True) is None  # a new rebalance: its own count
    assert watch.rebalancing(now=start + 69, busy=True) is None
    assert watch.rebalancing(now=start + 70, busy=True) == REMEDY


def test_records_waiting_on_partitions_no_member_commits_on_are_orphaned_after_the_wait() -> None:
    watch = OrphanWatch(30.0)
    backlog = {0: (10, 50), 1: (5, 5), 2: (7, 9)}
    assert watch.orphaned(0.0, backlog, mine={0}) == {}
    assert watch.orphaned(29.0, backlog, mine={0}) == {}
    assert watch.orphaned(30.0, backlog, mine={0}) == {2: (7, 9)}  # 1 is idle, 0 is this worker's own
    assert watch.orphaned(45.0, backlog, mine={0}) == {}  # counted anew
    assert watch.orphaned(60.0, {**backlog, 2: (8, 9)}, mine={0}) == {}  # its owner committed: not orphaned
    assert watch.orphaned(89.0, {**backlog, 2: (8, 9)}, mine={0}) == {}
    assert watch.orphaned(90.0, {**backlog, 2: (8, 9)}, mine={0}) == {2: (8, 9)}
    assert watch.orphaned(130.0, {**backlog, 2: (8, 9)}, mine={0, 2}) == {}  # now held here: StallWatch's
