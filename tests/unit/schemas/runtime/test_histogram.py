"""BatchHistogram: the same exposition as prometheus_client's Histogram for the same values."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from schemas.runtime.histogram import BatchHistogram

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def test_a_batch_observed_at_once_reads_as_each_value_observed() -> None:
    rng = random.Random(3)
    values = [rng.choice([0.0, 0.005, 0.01, 1.0, 11.0]) if rng.random() < 0.2 else rng.expovariate(2)
              for _ in range(5000)]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lat_seconds", "latency", ["pipeline"], BUCKETS, ours)
    plain = Histogram("lat_seconds", "latency", ["pipeline"], buckets=BUCKETS, registry=theirs)
    for start in range(0, len(values), 700):
        batch.observe_many(["web"], values[start:start + 700])
    for value in values:
        plain.labels("web").observe(value)
    batch.observe_many(["app"], [])

    def samples(registry: CollectorRegistry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return {line.rsplit(" ", 1)[0]: round(float(line.rsplit(" ", 1)[1]), 6) for line in lines
                if line.startswith("lat_seconds") and "_created" not in line and 'pipeline="web"' in line}

    assert samples(ours) == samples(theirs)
    assert batch.count(["web"]) == 5000
    assert ours.get_sample_value("lat_seconds_count", {"pipeline": "app"}) == 0
