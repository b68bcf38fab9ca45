"""An integration's delivery detail: its recent requests (when, how many events, the vendor's status, how
long it took, its answer, scrubbed where it was written) and its error classes (why events were
dead-lettered or sent to be retried, how many, first and last seen), from the newest receipts its
forwarder wrote (forwarders/records.py). `detail` is pure; KafkaDelivery reads the receipts from the end
of the topic, on demand, on a consumer that never commits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import orjson

from eventrouter.console.pii import masked_text
from eventrouter.ops.ranges import Span, find_span, read_span
from schemas import Topics
from schemas.errors import ConfigurationError

LOOK_BACK: Final = 1_000  # the receipts per partition a page reads, from the end
REQUESTS_SHOWN: Final = 50


@dataclass(frozen=True)
class RequestRow:
    at_ms: int
    events: int
    status: int | None  # None: no answer (a timeout, a refused connection)
    took_ms: int
    answer: str


@dataclass
class ErrorClass:
    state: str           # dead | later (sent to the retry topic)
    reason: str          # the reason's class: vendor.auth, vendor.status_503...
    status: int | None
    events: int
    first_ms: int
    last_ms: int
    answer: str          # the vendor's newest answer of this class, if any


@dataclass
class DeliveryDetail:
    integration: str
    receipts: int = 0                 # read for this page
    delivered: int = 0
    dead: int = 0
    retried: int = 0
    requests: list[RequestRow] = field(default_factory=list)
    errors: list[ErrorClass] = field(default_factory=list)
    since_ms: int | None = None       # the oldest receipt read


def detail(integration: str, receipts: Iterable[Mapping[str, Any]]) -> DeliveryDetail:
    """What the page shows from the integration's receipts (any order)."""
    out = DeliveryDetail(integration)
    classes: dict[tuple[str, str, int | None], ErrorClass] = {}
    requests: list[RequestRow] = []
    for receipt in receipts:
        at = int(receipt.get("at") or 0)
        out.receipts += 1
        out.since_ms = at if out.since_ms is None else min(out.since_ms, at)
        for sample in receipt.get("samples") or []:
            requests.append(RequestRow(int(sample.get("at") or at), int(sample.get("events") or 0),
                                       sample.get("status"), int(sample.get("tookMs") or 0),
                                       str(sample.get("answer") or "")))
        for outcome in receipt.get("outcomes") or []:
            state, count = str(outcome.get("state")), int(outcome.get("count") or 0)
            if state == "delivered":
                out.delivered += count
                continue
            if state == "dead":
                out.dead += count
            elif state == "later":
                out.retried += count
            else:
                continue
            reason = str(outcome.get("reason") or "?").split(":")[0]
            key = (state, reason, outcome.get("status"))
            seen = classes.get(key)
            if seen is None:
                classes[key] = ErrorClass(state, reason, outcome.get("status"), count, at, at,
                                          str(outcome.get("answer") or ""))
                continue
            seen.events += count
            seen.first_ms = min(seen.first_ms, at)
            if at >= seen.last_ms:
                seen.last_ms = at
                seen.answer = str(outcome.get("answer") or "") or seen.answer
    out.requests = sorted(requests, key=lambda r: r.at_ms, reverse=True)[:REQUESTS_SHOWN]
    out.errors = sorted(classes.values(), key=lambda c: c.last_ms, reverse=True)
    return out


def masked_detail(shown: DeliveryDetail) -> DeliveryDetail:
    """The detail with personal data in the vendor's answers masked (for a viewer)."""
    return replace(shown, requests=[replace(r, answer=masked_text(r.answer)) for r in shown.requests],
                   errors=[replace(e, answer=masked_text(e.answer)) for e in shown.errors])


class Delivery(Protocol):
    """What the console's handlers need of the receipts (a fake in the handler tests)."""

    def detail(self, integration: str) -> DeliveryDetail: ...


@dataclass(frozen=True)
class KafkaDelivery:
    bootstrap: str
    topics: Topics
    client: Mapping[str, Any] | None = None

    def detail(self, integration: str) -> DeliveryDetail:
        """RetryableError when the broker does not answer."""
        try:
            span = find_span(self.bootstrap, self.topics.receipts, client=self.client, timeout=10.0)
        except ConfigurationError:
            return DeliveryDetail(integration)  # no receipt yet
        recent = Span(span.topic, {p: max(low, span.end[p] - LOOK_BACK) for p, low in span.start.items()}, span.end)
        key = integration.encode()
        return detail(integration, (orjson.loads(r.value) for r in read_span(
            self.bootstrap, recent, client=self.client, idle_timeout=10.0) if r.key == key and r.value))
