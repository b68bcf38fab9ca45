"""The forwarder's Prometheus metrics, per integration, on a registry of the process.

eventrouter_forwarder_delivered_total{integration}               events the vendor accepted
eventrouter_forwarder_dead_lettered_total{integration,reason}    events given up, by reason
eventrouter_forwarder_retried_total{integration}                 events moved to the retry topic
eventrouter_forwarder_requests_total{integration,status}         HTTP requests by status (0: no answer)
eventrouter_forwarder_latency_seconds{integration}               routed (Outbound record written) -> delivered
eventrouter_forwarder_lag{integration}                           records not yet read, over assigned partitions
eventrouter_forwarder_rate_limit{integration}                    the token bucket's rate now (0: open)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from schemas.runtime.histogram import BatchHistogram


class Families:
    """The forwarder metrics on one registry, labelled by integration: one per process, however many
    integrations it hosts (forwarders/host.py)."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.delivered = Counter("eventrouter_forwarder_delivered", "Events the vendor accepted", ["integration"],
                                 registry=r)
        self.dead = Counter("eventrouter_forwarder_dead_lettered", "Events given up, by reason",
                            ["integration", "reason"], registry=r)
        self.retried = Counter("eventrouter_forwarder_retried", "Events moved to the retry topic", ["integration"],
                               registry=r)
        self.requests = Counter("eventrouter_forwarder_requests", "HTTP requests by status (0: no answer)",
                                ["integration", "status"], registry=r)
        self.latency = BatchHistogram("eventrouter_forwarder_latency_seconds", "Outbound record written -> delivered",
                                      ["integration"], (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                                        3600), r)
        self.lag = Gauge("eventrouter_forwarder_lag", "Records not yet read, over assigned partitions",
                         ["integration"], registry=r)
        self.rate = Gauge("eventrouter_forwarder_rate_limit", "Requests per second allowed now (0: open)",
                          ["integration"], registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


class ForwarderMetrics:
    """One integration's metrics, on a registry of its own or on the process's `Families`."""

    def __init__(self, integration: str, families: Families | None = None) -> None:
        self.families = f = families or Families()
        self.registry = f.registry
        self.integration = integration
        self.delivered = f.delivered.labels(integration)
        self.dead = f.dead
        self.retried = f.retried.labels(integration)
        self.requests = f.requests
        self.latency = f.latency
        self.lag = f.lag.labels(integration)
        self.rate = f.rate.labels(integration)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        return self.families.serve(port, host)
