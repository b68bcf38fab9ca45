"""The stream worker's Prometheus metrics, per pipeline and integration, on a registry of its own.

eventrouter_worker_events_in_total{pipeline}                     raw records read (pipeline "-" when unknown)
eventrouter_worker_events_out_total{pipeline,integration}        Outbound records written
eventrouter_worker_invalid_total{pipeline,integration,reason}    dead letters written to the invalid topic
eventrouter_worker_filtered_total{pipeline,integration,rule}     events an integration did not receive, by rule
eventrouter_worker_deduplicated_total{pipeline}                  repeated messageIds dropped
eventrouter_worker_latency_seconds{pipeline}                     raw record's timestamp -> outputs acknowledged
eventrouter_worker_batch_size                                    records per batch
eventrouter_worker_config_revision                               the revision in force
eventrouter_worker_assigned_partitions                           raw topic partitions this worker has now
eventrouter_worker_dedup_keys{where}                             messageIds in the dedup window: memory, disk
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from schemas.runtime.histogram import BatchHistogram

UNKNOWN = "-"


@dataclass
class BatchTally:
    """What one batch did, counted in plain dicts on the hot path and added to the metrics once per batch."""

    events_in: Tally[str] = field(default_factory=Tally)
    out: Tally[tuple[str, str]] = field(default_factory=Tally)
    invalid: Tally[tuple[str, str, str]] = field(default_factory=Tally)
    filtered: Tally[tuple[str, str, str]] = field(default_factory=Tally)
    deduplicated: Tally[str] = field(default_factory=Tally)
    latency: dict[str, list[float]] = field(default_factory=dict)  # per pipeline: record timestamps (ms), then seconds


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("eventrouter_worker_events_in", "Raw records read", ["pipeline"], registry=r)
        self.events_out = Counter("eventrouter_worker_events_out", "Outbound records written",
                                  ["pipeline", "integration"], registry=r)
        self.invalid = Counter("eventrouter_worker_invalid", "Dead letters written to the invalid topic",
                               ["pipeline", "integration", "reason"], registry=r)
        self.filtered = Counter("eventrouter_worker_filtered", "Events an integration did not receive, by rule",
                                ["pipeline", "integration", "rule"], registry=r)
        self.deduplicated = Counter("eventrouter_worker_deduplicated", "Repeated messageIds dropped",
                                    ["pipeline"], registry=r)
        self.latency = BatchHistogram("eventrouter_worker_latency_seconds",
                                      "From the raw record's timestamp to its outputs being acknowledged",
                                      ["pipeline"], (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                      r)
        self.batch_size = Histogram("eventrouter_worker_batch_size", "Records per batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000), registry=r)
        self.assigned = Gauge("eventrouter_worker_assigned_partitions", "Raw topic partitions this worker routes",
                              registry=r)
        self.dedup_keys = Gauge("eventrouter_worker_dedup_keys", "MessageIds the dedup state holds, by where",
                                ["where"], registry=r)
        self.revision = Gauge("eventrouter_worker_config_revision", "The config revision in force", registry=r)
        self.stalls = Counter("eventrouter_worker_stalls", "Times records waited on this worker's partitions and "
                              "its engine handed none over", registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics; port 0 picks a free one. Returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)

    def add(self, tally: BatchTally) -> None:
        for pipeline, n in tally.events_in.items():
            self.events_in.labels(pipeline).inc(n)
        for (pipeline, integration), n in tally.out.items():
            self.events_out.labels(pipeline, integration).inc(n)
        for (pipeline, integration, reason), n in tally.invalid.items():
            self.invalid.labels(pipeline, integration, reason).inc(n)
        for (pipeline, integration, rule), n in tally.filtered.items():
            self.filtered.labels(pipeline, integration, rule).inc(n)
        for pipeline, n in tally.deduplicated.items():
            self.deduplicated.labels(pipeline).inc(n)
        for pipeline, seconds in tally.latency.items():
            self.latency.observe_many((pipeline,), seconds)


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> dict[str, float]:
    """A worker's /metrics as `name{labels}` -> value; {} while nothing answers. For the demo and tests."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
