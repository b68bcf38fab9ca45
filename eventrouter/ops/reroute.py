"""`eventrouter replay reroute INTEGRATION`: raw events of a time range through the current playbooks
into one integration, after a playbook fix or for an integration added since.

Each raw record is admitted and routed by a Router of the newest config revision, for the one
integration alone, and written to that integration's topic marked `replayed` (the live forwarder
delivers it; vendors with idempotency keys do not count an event twice). The dedup table is not asked:
these messageIds were seen before, on purpose. Records that are not valid now are counted, not
dead-lettered again (they were when they first came); a playbook that fails on an event dead-letters it
with the integration, as live routing does. `dry_run` routes and counts, and writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eventrouter.ops.ranges import Record, Span, read_span
from streams.router import Output, Rejected, Router, Source
from streams.worker import OutputWriter


@dataclass
class RerouteReport:
    integration: str
    read: int = 0
    routed: int = 0
    not_in_pipeline: int = 0               # the event's pipeline does not send to the integration
    invalid: Counter[str] = field(default_factory=Counter)   # reason -> events not valid now
    filtered: Counter[str] = field(default_factory=Counter)  # rule -> events the playbook filters
    failed: Counter[str] = field(default_factory=Counter)    # reason -> events dead-lettered by the playbook

    def lines(self) -> list[str]:
        out = [f"raw events read: {self.read}", f"routed to {self.integration}: {self.routed}"]
        out += [f"filtered by {rule}: {n}" for rule, n in sorted(self.filtered.items())]
        out += [f"dead-lettered ({reason}): {n}" for reason, n in sorted(self.failed.items())]
        out += [f"not valid now ({reason}): {n}" for reason, n in sorted(self.invalid.items())]
        if self.not_in_pipeline:
            out.append(f"from pipelines without {self.integration}: {self.not_in_pipeline}")
        return out

    @property
    def accounted(self) -> int:
        return (self.routed + self.not_in_pipeline + sum(self.invalid.values()) + sum(self.filtered.values())
                + sum(self.failed.values()))


def route_one(router: Router, record: Record, topic: str, integration: str | None,
              report: RerouteReport) -> list[Output]:
    """The outputs of one raw record re-routed (to `integration`, or to all of its pipeline's)."""
    source = Source(record.value, topic, record.partition, record.offset, record.timestamp_ms, record.headers)
    admitted = router.admit(source)
    if isinstance(admitted, Rejected):
        report.invalid[admitted.reason] += 1
        return []
    if integration is not None and integration not in admitted.pipeline.integrations:
        report.not_in_pipeline += 1
        return []
    routed = router.route(admitted, replayed=True, only=integration)
    report.routed += len(routed.outputs)
    for _name, rule in routed.filtered:
        report.filtered[rule] += 1
    outputs = list(routed.outputs)
    for _name, reason, dead in routed.failed:
        report.failed[reason] += 1
        outputs.append(dead)
    return outputs


def reroute(bootstrap: str, router: Router, integration: str, span: Span, *, dry_run: bool = False,
            client: Mapping[str, Any] | None = None) -> RerouteReport:
    """Re-route the raw records of `span` into `integration`; returns once Kafka acknowledged every output."""
    if integration not in router.routes:
        raise KeyError(f"integration {integration!r} is not enabled in config revision {router.revision}")
    report = RerouteReport(integration)
    writer = None if dry_run else OutputWriter(bootstrap, client or {})
    if writer is not None:
        writer.start()
    pending: list[Output] = []
    for record in read_span(bootstrap, span, client=client):
        report.read += 1
        pending.extend(route_one(router, record, span.topic, integration, report))
        if writer is not None and len(pending) >= 2000:
            writer.write_blocking(pending)
            pending = []
    if writer is not None:
        writer.write_blocking(pending)
        writer.close()
    return report
