"""Delivering one batch of one partition to a vendor: build requests, send them, read the answers,
retry what may be retried, and say for every event what became of it. The HTTP call, the clock and
the sleep are passed in, so the whole policy is tested without a network or a broker.

Retries: exponential backoff with full jitter between `min_backoff_s` and `max_backoff_s`, never
sooner than the vendor's `Retry-After`. An event is given up (dead-lettered, reason
`retries_exhausted`, with the vendor's last status and body) only when it has had `max_attempts`
attempts *and* `max_retry_window_s` have passed since its first. A wait longer than
`retry_in_place_s` is not slept here: the event is handed back as `later`, for the retry topic,
unless the integration asks for strict order.

A batch's requests go in lanes (forwarders/lanes.py): requests that share a user (userId, else anonymousId, the
Kafka key) are one lane, sent one after another in order; lanes go at once through the `senders` pool
(`delivery.max_in_flight` threads per process), so a per-event vendor (a webhook) is not held to one
answer at a time, and two events of one user are never in flight together. Without a pool, or with a
single lane (a batched vendor's requests usually share users), the requests go in order as before.

No event can stop the forwarder: a vendor module's `build` raising for a batch is retried event by
event, and the events it raises for are dead-lettered (`forwarder.build_failed`, with the exception's
type); a request that cannot be sent for an unexpected reason is split until the event is alone, then
dead-lettered (`forwarder.send_failed`); an answer the module cannot read is read by its status; and
anything else a batch raises is retried event by event (`forwarder.failed` for the events that raise).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Final

from forwarders.lanes import lanes, user_of
from forwarders.ratelimit import TokenBucket
from forwarders.tokens import Tokens
from forwarders.vendors.base import Built, Item, Reply, Request, Vendor, read_status
from schemas.delivery import Delivery
from schemas.errors import FinalError, RetryableError
from schemas.secrets import SCRUBBER, Scrubber

log = logging.getLogger(__name__)

MAX_BODY_KEPT: Final = 1000
SAMPLES_KEPT: Final = 8      # requests a batch's receipt describes
SAMPLE_CHARS: Final = 300    # of the vendor's answer each keeps
DEFERRED: Final = "deferred: an earlier event of the same user is retried first"


class TransportError(Exception):
    """No answer: a timeout, a refused or reset connection. Retried like a 503."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


Transport = Callable[[Request], Answer]


@dataclass(slots=True)
class Fate:
    """What became of one event of the batch."""

    state: str                    # delivered | dead | later (retry topic) | undone (not to be committed)
    attempts: int
    first_attempt_ms: int
    status: int | None = None     # the vendor's last status (None: no answer)
    reason: str | None = None     # dead: why; later: the last failure
    body: str | None = None       # dead: the vendor's body, trimmed and scrubbed
    not_before_ms: int | None = None  # later: when to try again
    finished_ms: int = 0


@dataclass(frozen=True, slots=True)
class Sent:
    """One request's answer as read: the vendor module's Reply, and what to keep of the answer."""

    reply: Reply
    status: int | None   # None: no answer
    body: str | None     # trimmed, secrets scrubbed
    reason: str          # why the retried events failed, for their fate
    tally: int | None = None  # the status to count the request under (0: no answer; None: not sent)
    at_ms: int = 0       # when the answer came
    took_ms: int = 0     # from sending to the answer


@dataclass(frozen=True, slots=True)
class RequestSample:
    """One request as the console's delivery detail shows it (receipts carry them)."""

    at_ms: int
    events: int
    status: int | None   # None: no answer
    took_ms: int
    answer: str          # the vendor's body, or why there was none; trimmed, secrets scrubbed


@dataclass(slots=True)
class BatchReport:
    fates: dict[int, Fate] = field(default_factory=dict)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # status (0: no answer) -> requests
    samples: list[RequestSample] = field(default_factory=list)  # the first SAMPLES_KEPT requests


def backoff(attempt: int, policy: Delivery, rng: Callable[[], float] = random.random) -> float:
    """Full jitter: a random wait up to min_backoff * 2^(attempt-1), capped, at least min_backoff / 2."""
    ceiling = min(policy.max_backoff_s, policy.min_backoff_s * 2 ** max(0, attempt - 1))
    return float(max(policy.min_backoff_s / 2, ceiling * rng()))


def scrub(text: str, secrets: Sequence[str] | Scrubber = ()) -> str:
    """`text` with `secrets` (and their encodings) and every secret the process resolved replaced with ***."""
    text = SCRUBBER.scrub(text)
    return (secrets if isinstance(secrets, Scrubber) else Scrubber(secrets)).scrub(text)


class _Progress:
    """One batch under way: attempts and first attempt per position, the last failure, the fates so far."""

    def __init__(self, items: Sequence[Item], now_ms: int) -> None:
        self.items = items
        self.report = BatchReport()
        self.first = {p: item.first_attempt_ms or now_ms for p, item in enumerate(items)}
        self.attempts = {p: item.attempts for p, item in enumerate(items)}
        self.last: dict[int, tuple[int | None, str, str | None]] = {}  # position -> (status, reason, body)

    def settle(self, position: int, fate: Fate) -> None:
        fate.attempts = self.attempts[position]
        fate.first_attempt_ms = self.first[position]
        self.report.fates[position] = fate


class BatchDelivery:
    """Delivers batches for one integration; one instance shared by the runner's delivery threads."""

    def __init__(self, vendor: Vendor, policy: Delivery, transport: Transport, limiter: TokenBucket, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 stopping: Callable[[], bool] = lambda: False, senders: Executor | None = None) -> None:
        self.vendor = vendor
        self.policy = policy
        self.transport = transport
        self.limiter = limiter
        self.clock, self.sleep, self.stopping = clock, sleep, stopping
        self.senders = senders  # lanes at once (None: one request at a time)
        self.secrets = Scrubber(vendor.secrets())  # and the process's (SCRUBBER): scrub()
        self.cap = 1 << 30  # events per build(): all of a batch, until a vendor asks to split
        self.max_age_s = policy.max_event_age_s or vendor.max_age_s
        # a vendor whose requests carry a short-lived access token (forwarders/tokens.py)
        self.tokens = Tokens(vendor, transport, clock) if vendor.token_request() is not None else None

    def deliver(self, items: Sequence[Item]) -> BatchReport:
        try:
            return self._deliver(items)
        except Exception as exc:  # noqa: BLE001 - a bug some event meets: find which, deliver the others
            if len(items) == 1:
                return self._failed(items[0], exc)
            log.warning("%s: a batch of %s events raised %s; delivering them one by one", self.vendor.kind,
                        len(items), type(exc).__name__)
        report = BatchReport()
        for position, item in enumerate(items):
            try:
                one = self._deliver([item])
            except Exception as exc:  # noqa: BLE001 - this event's own failure: dead-letter it
                one = self._failed(item, exc)
            if 0 in one.fates:  # a vendor module that left an event unanswered leaves it undone
                report.fates[position] = one.fates[0]
            report.requests += one.requests
            report.samples += one.samples[:max(0, SAMPLES_KEPT - len(report.samples))]
            for status, n in one.statuses.items():
                report.statuses[status] = report.statuses.get(status, 0) + n
        return report

    def _failed(self, item: Item, exc: Exception) -> BatchReport:
        now_ms = self._now_ms()
        log.warning("%s: %s/%s@%s raised %s: dead-lettered", self.vendor.kind, item.topic, item.partition,
                    item.offset, type(exc).__name__)
        return BatchReport({0: Fate("dead", item.attempts, item.first_attempt_ms or now_ms, None,
                                    self._failure("forwarder.failed", exc), finished_ms=now_ms)})

    def _deliver(self, items: Sequence[Item]) -> BatchReport:
        state = _Progress(items, int(self.clock() * 1000))
        pending, cap = list(range(len(items))), self.cap
        while pending:
            retry, wait, cap, deferred = self._round(state, pending, cap)
            now_ms = int(self.clock() * 1000)
            pending = []
            for position in retry:
                status, _, body = state.last[position]
                if position not in deferred and state.attempts[position] >= self.policy.max_attempts and \
                        now_ms - state.first[position] >= self.policy.max_retry_window_s * 1000:
                    state.settle(position, Fate("dead", 0, 0, status, "retries_exhausted", body, finished_ms=now_ms))
                else:
                    pending.append(position)
            if not pending:
                break
            stopping = self.stopping()
            if (wait > self.policy.retry_in_place_s or stopping) and not self.policy.strict_order:
                for position in pending:
                    status, reason, _ = state.last[position]
                    state.settle(position, Fate("later", 0, 0, status, reason, not_before_ms=now_ms + int(wait * 1000),
                                                finished_ms=now_ms))
                break
            if stopping:  # strict order: nothing may overtake these; the next owner of the partition sends them
                for position in pending:
                    state.settle(position, Fate("undone", 0, 0, finished_ms=now_ms))
                break
            if wait > 0:
                log.info("%s: %s events wait %.1f s before their next attempt", self.vendor.kind, len(pending), wait)
                self.sleep(wait)
        return state.report

    def _round(self, state: _Progress, pending: list[int], cap: int) -> tuple[list[int], float, int, set[int]]:
        """Send every pending event once (but an event whose user has an earlier one to retry waits for
        it); the positions to retry, how long to wait first, the next cap, and the positions deferred."""
        retry: list[int] = []
        deferred: set[int] = set()  # not attempted this round (waiting behind their user's retried event)
        wait = 0.0
        failed_attempt = False
        next_cap = cap
        if self.max_age_s is not None:
            pending = self._too_old(state, pending)
        for start in range(0, len(pending), cap):
            group, built = self._build(state, pending[start:start + cap])
            now_ms = int(self.clock() * 1000)
            for index, reason in built.refused.items():
                state.settle(group[index], Fate("dead", 0, 0, None, reason, finished_ms=now_ms))
            answers = self._send_all(built.requests, [state.items[p] for p in group])
            for request, sent in zip(built.requests, answers, strict=True):
                positions = [group[i] for i in request.items]
                if sent is None:  # not sent: an earlier event of its user is to be retried; it goes after it
                    for position in positions:
                        retry.append(position)
                        deferred.add(position)
                        state.last.setdefault(position, (None, DEFERRED, None))
                    continue
                state.report.requests += 1
                if len(state.report.samples) < SAMPLES_KEPT:
                    state.report.samples.append(RequestSample(sent.at_ms, len(positions), sent.status, sent.took_ms,
                                                              (sent.body or sent.reason)[:SAMPLE_CHARS]))
                if sent.tally is not None:
                    state.report.statuses[sent.tally] = state.report.statuses.get(sent.tally, 0) + 1
                reply = sent.reply
                now_ms = sent.at_ms
                resent = {positions[i] for i in reply.retry} if reply.resend else set()
                for position in positions:
                    if position not in resent:  # sent again at once for another's fault: not an attempt
                        state.attempts[position] += 1
                for i in reply.delivered:
                    state.settle(positions[i], Fate("delivered", 0, 0, sent.status, finished_ms=now_ms))
                for i, reason in reply.rejected.items():
                    state.settle(positions[i], Fate("dead", 0, 0, sent.status, reason, sent.body, finished_ms=now_ms))
                for i in reply.retry:
                    retry.append(positions[i])
                    state.last[positions[i]] = (sent.status, sent.reason, sent.body)
                if reply.split:
                    next_cap = min(next_cap, max(1, len(positions) // 2))
                if reply.retry and not reply.resend:
                    failed_attempt = True
                    wait = max(wait, reply.retry_after or 0.0)
        retry = [p for p in dict.fromkeys(retry) if p not in state.report.fates]  # once each, none settled
        attempted = [p for p in retry if p not in deferred]
        if failed_attempt and attempted:
            wait = max(wait, backoff(min(state.attempts[p] for p in attempted), self.policy))
        return retry, wait, next_cap, deferred

    def _build(self, state: _Progress, group: list[int]) -> tuple[list[int], Built]:
        """The vendor module's requests for `group`, and the positions they are for: when `build` raises,
        the events it raises for alone are dead-lettered and the others built together again."""
        try:
            return group, self.vendor.build([state.items[p] for p in group])
        except Exception as exc:  # noqa: BLE001 - some event the module cannot take: find which
            log.warning("%s: building %s events raised %s; building them one by one", self.vendor.kind, len(group),
                        type(exc).__name__)
        good: list[int] = []
        for position in group:
            try:
                self.vendor.build([state.items[position]])
                good.append(position)
            except Exception as exc:  # noqa: BLE001 - this event's own failure: dead-letter it
                item = state.items[position]
                log.warning("%s: %s/%s@%s cannot be built (%s): dead-lettered", self.vendor.kind, item.topic,
                            item.partition, item.offset, type(exc).__name__)
                state.settle(position, Fate("dead", 0, 0, None, self._failure("forwarder.build_failed", exc),
                                            finished_ms=self._now_ms()))
        if not good:
            return good, Built([])
        return good, self.vendor.build([state.items[p] for p in good])

    def _failure(self, reason: str, exc: BaseException) -> str:
        """A fate's reason for an exception: ours, its type, its text (secrets scrubbed, trimmed)."""
        return scrub(f"{reason}: {type(exc).__name__}: {exc}", self.secrets)[:500]

    def _too_old(self, state: _Progress, pending: list[int]) -> list[int]:
        """Dead-letter the events older than the vendor accepts (also those that aged while retried)."""
        assert self.max_age_s is not None
        now_ms = int(self.clock() * 1000)
        oldest = now_ms - int(self.max_age_s * 1000)
        keep = []
        for position in pending:
            if state.items[position].timestamp_ms < oldest:
                state.settle(position, Fate("dead", 0, 0, None, f"vendor.too_old: older than the "
                                            f"{_span(self.max_age_s)} {self.vendor.kind} accepts", finished_ms=now_ms))
            else:
                keep.append(position)
        return keep

    def _send_all(self, requests: Sequence[Request], items: Sequence[Item]) -> list[Sent | None]:
        """Each request's answer in the requests' order (None: held back this round); lanes at once when
        there is a pool."""
        # a per-event vendor's requests always go through the pool: it alone bounds what is in flight
        order = lanes(requests, items) if self.senders is not None else []
        answers: list[Sent | None] = [None] * len(requests)

        def send_lane(lane: Sequence[int]) -> None:
            """The lane's requests in order; once a user has an event to retry, its later ones wait for it
            (they are retried after it, not sent now), so a user's events never overtake each other."""
            waiting: set[str] = set()
            for index in lane:
                request = requests[index]
                users = {u for u in (user_of(items[p]) for p in request.items) if u}
                if users & waiting:
                    waiting |= users
                    continue
                answers[index] = sent = self._send(request)
                if sent.reply.retry:
                    waiting |= {u for u in (user_of(items[request.items[i]]) for i in sent.reply.retry) if u}

        if len(order) <= 1 and (self.senders is None or self.vendor.max_events > 1):
            send_lane(range(len(requests)))  # one request after another in this thread, as without lanes
        else:
            assert self.senders is not None
            for future in [self.senders.submit(send_lane, lane) for lane in order]:
                future.result()
        return answers

    def _send(self, request: Request) -> Sent:
        everyone = range(len(request.items))
        started_ms = self._now_ms()
        generation = 0
        try:
            self.vendor.before_send(request)
            if self.tokens is not None:
                token, generation = self.tokens.current()
                request = self.vendor.signed(request, token)
            self.limiter.acquire()
            started_ms = self._now_ms()
            answer = self.transport(request)
        except FinalError as exc:
            return Sent(Reply(rejected=dict.fromkeys(everyone, exc.reason)), None, scrub(exc.message, self.secrets),
                        exc.reason, at_ms=self._now_ms())
        except (TransportError, RetryableError) as exc:
            at_ms = self._now_ms()
            return Sent(Reply(retry=list(everyone)), None, scrub(str(exc), self.secrets)[:200],
                        "vendor.unreachable", 0, at_ms, at_ms - started_ms)
        except Exception as exc:  # noqa: BLE001 - not sendable (a header, a body): split to find the event
            reason = self._failure("forwarder.send_failed", exc)
            log.warning("%s: a request of %s events cannot be sent: %s", self.vendor.kind, len(request.items),
                        type(exc).__name__)
            reply = Reply(retry=list(everyone), split=True, resend=True) if len(request.items) > 1 else \
                Reply(rejected={0: reason})
            return Sent(reply, None, None, reason, at_ms=self._now_ms())
        at_ms = self._now_ms()
        if self.tokens is not None and self.tokens.answered(generation, answer.status):
            # the access token expired or was revoked: sent again at once with a new one
            return Sent(Reply(retry=list(everyone), resend=True), answer.status, None, "vendor.token_expired",
                        answer.status, at_ms, at_ms - started_ms)
        if answer.status == 429:
            self.limiter.throttled()
        elif 200 <= answer.status < 300:
            self.limiter.succeeded()
        try:
            reply = self.vendor.read(request, answer.status, answer.headers, answer.body)
        except Exception as exc:  # noqa: BLE001 - an answer the module cannot read: its status says enough
            log.warning("%s: reading a %s answer raised %s; reading its status", self.vendor.kind, answer.status,
                        type(exc).__name__)
            reply = read_status(request, answer.status, answer.headers, answer.body)
        body = scrub(answer.body[:MAX_BODY_KEPT].decode("utf-8", "replace"), self.secrets)
        log.debug("%s: %s events -> %s: delivered %s, retry %s, rejected %s", self.vendor.kind, len(request.items),
                  answer.status, len(reply.delivered), len(reply.retry), len(reply.rejected))
        return Sent(reply, answer.status, body, f"vendor.status_{answer.status}", answer.status, at_ms,
                    at_ms - started_ms)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _span(seconds: float) -> str:
    if seconds >= 7 * 86_400 and seconds % 86_400 == 0:
        return f"{int(seconds // 86_400)} days"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    return f"{seconds:g} s"
