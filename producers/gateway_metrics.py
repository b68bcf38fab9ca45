"""The gateway's Prometheus metrics (GET /metrics), and the ledger of events Kafka had not confirmed in time.

eventrouter_gateway_requests_total{status}          HTTP answers by status
eventrouter_gateway_events_accepted_total           events in 200 answers (acknowledged by Kafka)
eventrouter_gateway_events_rejected_total{reason}   events refused: batch items and whole requests, by reason
eventrouter_gateway_unavailable_total               503 answers (Kafka did not acknowledge within --ack-timeout)
eventrouter_gateway_unconfirmed_total               events still in the producer's queue when their 503 went out
eventrouter_gateway_late_acked_total                of those, acknowledged by Kafka afterwards
eventrouter_gateway_failed_total                    events Kafka failed for good (delivery error, any time)
eventrouter_gateway_unconfirmed_pending             unconfirmed events not settled yet either way

unconfirmed = late_acked + the unconfirmed that failed + unconfirmed_pending: an event the client was told
503 about is either in Kafka (and the client's retry, same messageId, is dropped by the worker's dedup) or
counted as failed; never both lost and unreported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("producers.gateway")


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("eventrouter_gateway_requests", "HTTP answers by status", ["status"], registry=r)
        self.accepted = Counter("eventrouter_gateway_events_accepted", "Events in 200 answers (acknowledged)",
                                registry=r)
        self.rejected = Counter("eventrouter_gateway_events_rejected", "Events refused, by reason", ["reason"],
                                registry=r)
        self.unavailable = Counter("eventrouter_gateway_unavailable", "503 answers: Kafka did not acknowledge in time",
                                   registry=r)
        self.unconfirmed = Counter("eventrouter_gateway_unconfirmed",
                                   "Events still in the producer's queue when their 503 went out", registry=r)
        self.late_acked = Counter("eventrouter_gateway_late_acked",
                                  "Unconfirmed events acknowledged by Kafka after their 503", registry=r)
        self.failed = Counter("eventrouter_gateway_failed", "Events Kafka failed for good (delivery error)",
                              registry=r)
        self.pending = Gauge("eventrouter_gateway_unconfirmed_pending", "Unconfirmed events not settled yet",
                             registry=r)


@dataclass
class Episode:
    """One stretch of Kafka not acknowledging in time: from the first 503 until every event left
    unconfirmed by it is settled (acknowledged late, or failed)."""

    started: float
    answered_503: int = 0
    unconfirmed: int = 0
    late_acked: int = 0
    late_failed: int = 0
    reason: str = ""


class Outages:
    """Counts what the 503s left behind and logs two lines per episode (its start; its end with counts),
    never one per request. Thread-safe: delivery reports arrive on the producer's poller thread."""

    def __init__(self, metrics: GatewayMetrics, ack_timeout: float, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.metrics = metrics
        self.ack_timeout = ack_timeout
        self.clock = clock
        self.log = logger
        self.episode: Episode | None = None
        self.pending = 0
        self._lock = threading.Lock()

    def answered_503(self, unconfirmed: int, reason: str) -> None:
        """A 503 went out with `unconfirmed` of its events still queued (their reports come later)."""
        with self._lock:
            opened = self.episode is None
            if self.episode is None:
                self.episode = Episode(self.clock(), reason=reason)
            self.episode.answered_503 += 1
            self.episode.unconfirmed += unconfirmed
            self.pending += unconfirmed
            self.metrics.pending.set(self.pending)
        self.metrics.unavailable.inc()
        self.metrics.unconfirmed.inc(unconfirmed)
        if opened:
            self.log.warning("kafka did not acknowledge within %.1f s (%s): answering 503 with Retry-After until it "
                             "does; the events left unconfirmed are counted", self.ack_timeout, reason)

    def failed_in_time(self) -> None:
        """A delivery error reported before the answer (which is then a 503 for it)."""
        self.metrics.failed.inc()

    def settled_late(self, ok: bool) -> None:
        """The delivery report of an event whose 503 already went out."""
        (self.metrics.late_acked if ok else self.metrics.failed).inc()
        with self._lock:
            self.pending -= 1
            self.metrics.pending.set(self.pending)
            if self.episode is not None:
                if ok:
                    self.episode.late_acked += 1
                else:
                    self.episode.late_failed += 1
            ended = self._end_if_settled()
        self._report(ended)

    def answered_200(self) -> None:
        with self._lock:
            ended = self._end_if_settled() if self.episode is not None else None
        self._report(ended)

    def _end_if_settled(self) -> Episode | None:
        if self.pending > 0 or self.episode is None:
            return None
        ended, self.episode = self.episode, None
        return ended

    def _report(self, ended: Episode | None) -> None:
        if ended is None:
            return
        level = logging.WARNING if ended.late_failed else logging.INFO
        self.log.log(level, "kafka outage settled %.0f s after its first 503: %d requests answered 503; %d events "
                     "unconfirmed at the answer: %d acknowledged later, %d failed for good",
                     self.clock() - ended.started, ended.answered_503, ended.unconfirmed, ended.late_acked,
                     ended.late_failed)


class RefusalLog:
    """Refused requests logged by reason at most once per `interval` seconds: the first refusal of a reason
    is logged at once, those that follow within the interval are counted, and the next line of that reason
    says how many were left out. A client hammering with a wrong writeKey costs a line per interval, not
    one per request. Peers are logged (ids of the connection, never the key or the body)."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.interval = interval
        self._clock = clock
        self._log = logger
        self._next: dict[str, float] = {}       # reason -> when its next line may be written
        self._suppressed: dict[str, int] = {}   # reason -> lines left out since its last one

    def refused(self, reason: str, status: int, path: str, peer: str | None) -> None:
        now = self._clock()
        if now < self._next.get(reason, now):
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._next[reason] = now + self.interval
        left_out = self._suppressed.pop(reason, 0)
        more = f" (and {left_out} more refused for this reason in the last {self.interval:g} s)" if left_out else ""
        self._log.warning("refused request status=%d reason=%s path=%s peer=%s%s", status, reason, path, peer, more)
