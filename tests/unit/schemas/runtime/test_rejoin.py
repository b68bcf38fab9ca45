"""RejoinWatch: overdue only after a loss that no assignment followed within the deadline."""

from __future__ import annotations

import time

from schemas.runtime.kafka import RejoinWatch


def test_overdue_only_after_a_loss_with_no_assignment_within_the_deadline() -> None:
    watch = RejoinWatch(0.05)
    assert not watch.overdue()
    watch.lost()
    assert not watch.overdue()
    time.sleep(0.1)
    assert watch.overdue()
    watch.assigned()
    assert not watch.overdue()
    watch.lost()
    watch.assigned()
    time.sleep(0.1)
    assert not watch.overdue()


def test_a_replacement_that_is_not_assigned_either_is_overdue_in_turn() -> None:
    """A consumer made while the broker was still frozen can be stuck too: it gets the same deadline."""
    watch = RejoinWatch(0.05)
    watch.lost()
    time.sleep(0.1)
    assert watch.overdue()
    watch.replaced()
    assert not watch.overdue()
    time.sleep(0.1)
    assert watch.overdue()
    watch.replaced()
    watch.assigned()  # an empty assignment counts: the group answered
    time.sleep(0.1)
    assert not watch.overdue()
