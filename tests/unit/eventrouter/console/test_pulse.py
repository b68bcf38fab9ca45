"""The overview's numbers from heartbeats: growth per minute summed over processes, a restarted process's
counters taken from zero, totals from before we watched not counted, windows, charts and liveness."""

from __future__ import annotations

from eventrouter.console.pulse import MINUTE_MS, Pulse, spark, window

NOW = 1_800_000_000_000 // MINUTE_MS * MINUTE_MS + 30_000  # half a minute into a minute
DELIVERED = "eventrouter_forwarder_delivered_total"


def beat(pid: int, at: int, delivered: float, *, started: int | None = None,
         stopped: bool = False) -> dict[str, object]:
    return {"role": "forwarder", "for": "amp", "host": "h", "pid": pid, "at": at, "started": started or at - 5_000,
            "stopped": stopped, "counters": [[DELIVERED, {"integration": "amp"}, delivered],
                                             ["eventrouter_forwarder_lag", {"integration": "amp"}, 7]]}


def test_growth_is_summed_over_processes_and_a_restart_counts_from_zero() -> None:
    pulse = Pulse()
    pulse.take(beat(1, NOW - 20_000, 100))          # new process: its first 100 count
    pulse.take(beat(2, NOW - 20_000, 50))
    pulse.take(beat(1, NOW - 10_000, 160))          # +60
    pulse.take(beat(1, NOW, 30, started=NOW - 4_000))  # started again: 30 new
    pulse.take(beat(2, NOW, 80))                    # +30
    shown = window(pulse, "5m", [], ["amp"], now_ms=NOW)
    (amp,) = shown.integrations
    assert amp.delivered == 100 + 50 + 60 + 30 + 30 and amp.rate == 1.0
    assert sum(amp.delivered_series) == amp.delivered and len(amp.delivered_series) == 5
    assert [alive for _p, alive in shown.processes] == [True, True]
    assert "lag 7" in shown.processes[0][0].reported()


def test_totals_from_before_we_watched_are_not_counted_and_old_minutes_leave_the_window() -> None:
    pulse = Pulse()
    pulse.take(beat(1, NOW - 2 * 3600_000, 10_000, started=NOW - 3 * 3600_000))  # heard long after its start
    pulse.take(beat(1, NOW - 2 * 3600_000 + 10_000, 10_010))  # +10, two hours ago
    pulse.take(beat(1, NOW - 10_000, 10_030))                 # +20, now
    assert window(pulse, "5m", [], ["amp"], now_ms=NOW).integrations[0].delivered == 20
    assert window(pulse, "1h", [], ["amp"], now_ms=NOW).integrations[0].delivered == 20
    assert window(pulse, "1d", [], ["amp"], now_ms=NOW).integrations[0].delivered == 30


def test_a_process_not_heard_from_or_stopped_is_not_alive() -> None:
    pulse = Pulse()
    pulse.take(beat(1, NOW - 60_000, 1))
    pulse.take(beat(2, NOW - 1_000, 1, stopped=True))
    assert [alive for _p, alive in window(pulse, "5m", [], [], now_ms=NOW).processes] == [False, False]
    assert not Pulse().processes and not window(Pulse(), "5m", [], [], now_ms=NOW).heard


def test_a_record_that_is_not_a_heartbeat_is_ignored_and_the_chart_fits_its_box() -> None:
    pulse = Pulse()
    pulse.take({"role": "forwarder"})
    pulse.take({"role": "x", "host": "h", "pid": "not a number", "at": NOW})
    assert not pulse.processes
    points = [tuple(map(float, p.split(","))) for p in spark([0, 5, 10]).split()]
    assert points[0] == (0.0, 23.0) and points[-1] == (120.0, 1.0)
