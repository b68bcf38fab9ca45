"""The Faust engine's stall watch (streams/faust_engine.py StallWatch): records waiting and none handed
over is a stall; idle is not; the first remedy is reading again, the second a new process."""

from __future__ import annotations

from streams.faust_engine import EXIT, SEEK, StallWatch


def test_records_waiting_and_none_handed_over_is_first_read_again_then_a_stop() -> None:
    watch = StallWatch(30.0)
    assert not watch.due(now=watch.last + 10, generation=1)
    start = watch.last
    assert watch.due(now=start + 30, generation=1)
    assert watch.verdict(now=start + 30, waiting=True) == SEEK
    assert not watch.due(now=start + 45, generation=1)  # the next look is another 30 s on
    assert watch.due(now=start + 60, generation=1)
    assert watch.verdict(now=start + 60, waiting=True) == EXIT


def test_idle_with_nothing_waiting_is_not_a_stall_and_a_record_handed_over_starts_again() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    watch.due(now=start, generation=1)
    assert watch.verdict(now=start + 31, waiting=False) is None
    assert not watch.due(now=start + 40, generation=1)
    assert watch.due(now=start + 61, generation=1) and watch.verdict(now=start + 61, waiting=True) == SEEK
    watch.moved(start + 62)
    assert watch.due(now=start + 92, generation=1) and watch.verdict(now=start + 92, waiting=True) == SEEK


def test_a_new_consumer_generation_starts_the_count_again() -> None:
    watch = StallWatch(30.0)
    start = watch.last
    watch.due(now=start, generation=1)
    assert watch.due(now=start + 30, generation=1)
    assert not watch.due(now=start + 31, generation=2)
    assert watch.due(now=start + 61, generation=2)
