"""A heartbeat carries every counter's total and every gauge of the process's registry, nothing else."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.runtime.heartbeat import snapshot


def test_a_snapshot_is_the_counters_totals_and_the_gauges() -> None:
    registry = CollectorRegistry()
    Counter("eventrouter_forwarder_delivered", "d", ["integration"], registry=registry).labels("amp").inc(3)
    Gauge("eventrouter_forwarder_lag", "l", ["integration"], registry=registry).labels("amp").set(7)
    Histogram("eventrouter_forwarder_latency_seconds", "h", registry=registry).observe(0.1)
    assert sorted(map(tuple, ([m, tuple(labels.items()), v] for m, labels, v in snapshot(registry)))) == [
        ("eventrouter_forwarder_delivered_total", (("integration", "amp"),), 3.0),
        ("eventrouter_forwarder_lag", (("integration", "amp"),), 7.0)]
