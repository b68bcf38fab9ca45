"""The overview's numbers over time, from the processes' heartbeats (schemas/runtime/heartbeat.py): which
workers and forwarders are alive and what they last reported, and how much each counter grew per minute
over the last day, summed over the processes. A counter that went down belongs to a process started again
(its growth is its new value). Pure: eventrouter/console/store.py follows the topic and feeds `take`.

What the overview shows per window (5 minutes, an hour, a day), per pipeline: received, not routed (the
worker's dead letters); per integration: routed, filtered by rule, dropped for consent, delivered,
retried, dead-lettered by reason, the delivery rate, and a chart of delivered and dead-lettered per bucket.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

MINUTE_MS: Final = 60_000
KEPT_MINUTES: Final = 24 * 60 + 5
FRESH_MS: Final = 25_000    # a process heard first within this of its start: all it counted is new
ALIVE_S: Final = 35.0        # a process not heard from for this long is not alive (heartbeats every 10 s)
WINDOWS: Final = {"5m": 5, "1h": 60, "1d": 24 * 60}  # minutes
BUCKETS: Final = {"5m": 5, "1h": 30, "1d": 48}       # chart points per window
STEP: Final = {"5m": 1, "1h": 1, "1d": 30}           # minutes a stored bucket holds (a day: half-hours, so a
# page sums 48 of them, not 1,440; its window is the last 48 half-hours, the one under way among them)
Key = tuple[str, tuple[tuple[str, str], ...]]        # metric, sorted labels
DELIVERED: Final = "eventrouter_forwarder_delivered_total"
DEAD: Final = "eventrouter_forwarder_dead_lettered_total"


@dataclass
class Process:
    role: str
    runs_for: str
    host: str
    pid: int
    started_ms: int
    last_ms: int
    stopped: bool
    counters: dict[Key, float]

    def alive(self, now_ms: int) -> bool:
        return not self.stopped and now_ms - self.last_ms <= ALIVE_S * 1000

    def reported(self) -> str:
        """What it last said, in a line."""
        def total(metric: str) -> float:
            return sum(v for (m, _), v in self.counters.items() if m == metric)

        if self.role == "worker":
            return (f"read {total('eventrouter_worker_events_in_total'):,.0f}, routed "
                    f"{total('eventrouter_worker_events_out_total'):,.0f}, partitions "
                    f"{total('eventrouter_worker_assigned_partitions'):,.0f}, revision "
                    f"{total('eventrouter_worker_config_revision'):,.0f}")
        return (f"delivered {total('eventrouter_forwarder_delivered_total'):,.0f}, dead-lettered "
                f"{total('eventrouter_forwarder_dead_lettered_total'):,.0f}, lag "
                f"{total('eventrouter_forwarder_lag'):,.0f}")


@dataclass
class Pulse:
    processes: dict[str, Process] = field(default_factory=dict)           # by role:host:pid
    steps: dict[int, dict[int, dict[Key, float]]] = field(default_factory=lambda: {1: {}, 30: {}})
    # minutes a bucket holds -> (minute // that) -> growth
    keys: dict[Key, Key] = field(default_factory=dict)  # one object per key, however many minutes hold it

    def _key(self, metric: str, labels: Mapping[str, Any]) -> Key:
        key = (metric, tuple(sorted((str(k), str(v)) for k, v in labels.items())))
        return self.keys.setdefault(key, key)

    def take(self, record: Mapping[str, Any]) -> None:
        """One heartbeat, in the order they were written."""
        try:
            who = f"{record['role']}:{record['host']}:{record['pid']}"
            at, pid, started = int(record["at"]), int(record["pid"]), int(record.get("started") or record["at"])
            counters = {self._key(str(m), labels): float(value) for m, labels, value in record.get("counters") or []}
        except (KeyError, TypeError, ValueError):
            return  # not a heartbeat
        before = self.processes.get(who)
        grown: dict[Key, float] = {}
        for key, value in counters.items():
            if not key[0].endswith("_total"):
                continue  # a gauge: its value, not its growth
            previous = before.counters.get(key, 0.0) if before else 0.0
            grown[key] = value - previous if value >= previous else value
        if before is None and at - started > FRESH_MS:
            grown.clear()  # a process heard first long after it started: its totals grew before we watched
        minute = at // MINUTE_MS
        for step, buckets in self.steps.items():
            slot = minute // step
            if slot not in buckets:
                buckets[slot] = {}
                for old in [m for m in buckets if m < slot - KEPT_MINUTES // step - 1]:
                    del buckets[old]
            _add(buckets[slot], grown)
        self.processes[who] = Process(str(record["role"]), str(record.get("for", "")), str(record["host"]), pid,
                                      started, at, bool(record.get("stopped")), counters)

    @property
    def minutes(self) -> dict[int, dict[Key, float]]:
        return self.steps[1]

    def grown(self, window: str, now_ms: int | None = None) -> dict[Key, float]:
        """Each counter's growth over the window."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        step = STEP[window]
        first = now_ms // MINUTE_MS // step - WINDOWS[window] // step + 1
        out: dict[Key, float] = {}
        for slot, bucket in self.steps[step].items():
            if slot >= first:
                _add(out, bucket)
        return out

    def series(self, window: str, metrics: tuple[str, ...], label: str, *,
               now_ms: int | None = None) -> dict[tuple[str, str], list[float]]:
        """(metric, the value of `label`) -> the metric's growth per chart point of the window, oldest
        first, for each of `metrics`: one pass over the window's buckets."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        step, points = STEP[window], BUCKETS[window]
        slots = WINDOWS[window] // step
        last = now_ms // MINUTE_MS // step
        per = slots / points
        out: dict[tuple[str, str], list[float]] = {}
        for slot, bucket in self.steps[step].items():
            age = last - slot
            if not 0 <= age < slots:
                continue
            point = points - 1 - int(age / per)
            for (metric, labels), value in bucket.items():
                if metric in metrics:
                    which = next((v for k, v in labels if k == label), "")
                    out.setdefault((metric, which), [0.0] * points)[point] += value
        return out


def _add(into: dict[Key, float], grown: Mapping[Key, float]) -> None:
    for key, value in grown.items():
        if value:
            into[key] = into.get(key, 0.0) + value


@dataclass(frozen=True)
class IntegrationWindow:
    name: str
    routed: float
    filtered: dict[str, float]       # rule -> events (consent rules apart)
    consent: float
    delivered: float
    retried: float
    dead: dict[str, float]           # reason -> events
    delivered_series: list[float]
    dead_series: list[float]

    @property
    def chart_top(self) -> float:
        """The chart's scale: both lines against the taller."""
        return max([*self.delivered_series, *self.dead_series, 1.0])

    @property
    def rate(self) -> float | None:
        """Delivered of those settled (delivered or dead-lettered), or None when none was."""
        settled = self.delivered + sum(self.dead.values())
        return self.delivered / settled if settled else None


@dataclass(frozen=True)
class PipelineWindow:
    name: str
    received: float
    invalid: float


@dataclass(frozen=True)
class Window:
    window: str
    pipelines: list[PipelineWindow]
    integrations: list[IntegrationWindow]
    processes: list[tuple[Process, bool]]   # with whether it is alive
    heard: bool                             # any heartbeat at all


def window(pulse: Pulse, name: str, pipelines: list[str], integrations: list[str],
           now_ms: int | None = None) -> Window:
    """What the overview shows for the window `name` (one of WINDOWS)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    grown = pulse.grown(name, now_ms)

    def total(metric: str, **where: str) -> float:
        return sum(v for (m, labels), v in grown.items()
                   if m == metric and all((k, w) in labels for k, w in where.items()))

    def by(metric: str, label: str, **where: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (m, labels), v in grown.items():
            if m == metric and all((k, w) in labels for k, w in where.items()):
                name = dict(labels).get(label, "?")
                out[name] = out.get(name, 0.0) + v
        return {k: v for k, v in sorted(out.items()) if v}

    charted = pulse.series(name, (DELIVERED, DEAD), "integration", now_ms=now_ms)
    empty = [0.0] * BUCKETS[name]
    rows = []
    for integration in integrations:
        rules = by("eventrouter_worker_filtered_total", "rule", integration=integration)
        consent = sum(v for rule, v in rules.items() if rule.startswith("consent."))
        rows.append(IntegrationWindow(
            integration, total("eventrouter_worker_events_out_total", integration=integration),
            {rule: v for rule, v in rules.items() if not rule.startswith("consent.")}, consent,
            total(DELIVERED, integration=integration),
            total("eventrouter_forwarder_retried_total", integration=integration),
            by(DEAD, "reason", integration=integration),
            charted.get((DELIVERED, integration), empty), charted.get((DEAD, integration), empty)))
    lines = [PipelineWindow(p, total("eventrouter_worker_events_in_total", pipeline=p),
                            total("eventrouter_worker_invalid_total", pipeline=p)) for p in pipelines]
    processes = sorted(pulse.processes.values(), key=lambda p: (p.role != "worker", p.runs_for, p.pid))
    return Window(name, lines, rows, [(p, p.alive(now_ms)) for p in processes], bool(pulse.processes))


def spark(values: list[float], top: float | None = None, width: int = 120, height: int = 24) -> str:
    """An SVG polyline's points for `values`, `top` (else the tallest value) at the top."""
    if not values:
        return ""
    top = top or max(values) or 1.0
    step = width / max(1, len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - v / top * (height - 2) - 1:.1f}" for i, v in enumerate(values))
