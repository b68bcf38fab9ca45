"""The hot loops' garbage-collector settings."""

from __future__ import annotations

import gc

from schemas.runtime.process import YOUNG_THRESHOLD, quiet_gc


def test_quiet_gc_freezes_what_start_up_made_and_still_collects_cycles() -> None:
    before = gc.get_threshold()
    try:
        quiet_gc()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD and gc.get_freeze_count() > 0
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # cycles made afterwards are still found
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
