"""The delivery policy without a network: what becomes of each event for each kind of answer, the
retry budget (attempts *and* time), Retry-After, splitting to isolate a refused event, the retry
topic for long waits, strict order, and the adaptive rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from forwarders.delivery import SAMPLES_KEPT, Answer, BatchDelivery, TransportError, backoff
from forwarders.ratelimit import TokenBucket
from forwarders.records import receipts
from forwarders.vendors import Item, Request, vendor_for
from schemas.delivery import Delivery


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make(answer: Callable[[Request], Answer], clock: Clock, **policy: object) -> BatchDelivery:
    vendor = vendor_for("amplitude", {"api_key": "secret-key-1"})
    return BatchDelivery(vendor, Delivery.model_validate({"min_backoff_s": 1, **policy}), answer,
                         TokenBucket(None, clock=clock.time, sleep=clock.sleep), clock=clock.time, sleep=clock.sleep)


def events(n: int) -> list[Item]:
    return [Item(f"m{i}", {"event_type": "e", "user_id": f"user-{i}"}) for i in range(n)]


def test_2xx_delivers_everything_in_one_request() -> None:
    calls: list[Request] = []
    clock = Clock()
    report = make(lambda r: calls.append(r) or Answer(200, {}, b"{}"), clock).deliver(events(10))
    assert len(calls) == 1 and {f.state for f in report.fates.values()} == {"delivered"}
    assert all(f.attempts == 1 for f in report.fates.values())


def test_retries_honour_retry_after_and_then_deliver() -> None:
    answers = [Answer(429, {"Retry-After": "7"}, b""), Answer(503, {}, b""), Answer(200, {}, b"{}")]
    clock = Clock()
    report = make(lambda r: answers.pop(0), clock).deliver(events(3))
    assert clock.slept[0] >= 7  # then the backoff, and the bucket that 429 slowed down
    assert {f.state for f in report.fates.values()} == {"delivered"} and report.fates[0].attempts == 3


def test_an_event_is_given_up_only_after_both_attempts_and_the_window() -> None:
    clock = Clock()
    delivery = make(lambda r: Answer(500, {}, b'{"error":"down for secret-key-1"}'), clock, max_attempts=3,
                    max_retry_window_s=120, retry_in_place_s=3600, max_backoff_s=5)
    report = delivery.deliver(events(2))
    fate = report.fates[0]
    assert fate.state == "dead" and fate.reason == "retries_exhausted" and fate.status == 500
    assert fate.attempts > 3  # three attempts came well inside the 120 s window: it kept trying
    assert clock.now - 1_000_000.0 >= 120
    assert "secret-key-1" not in (fate.body or "") and "***" in (fate.body or "")


def test_long_waits_go_to_the_retry_topic_unless_order_is_strict() -> None:
    clock = Clock()
    report = make(lambda r: Answer(503, {"Retry-After": "600"}, b""), clock, retry_in_place_s=10).deliver(events(2))
    fate = report.fates[1]
    assert fate.state == "later" and fate.not_before_ms == int((1_000_000.0 + 600) * 1000)
    assert fate.attempts == 1 and not clock.slept
    answers = [Answer(503, {"Retry-After": "600"}, b""), Answer(200, {}, b"{}")]
    strict = make(lambda r: answers.pop(0), Clock(), retry_in_place_s=10, strict_order=True).deliver(events(2))
    assert {f.state for f in strict.fates.values()} == {"delivered"}


def test_transport_errors_are_retried() -> None:
    answers: list[Answer | Exception] = [TransportError("timeout"), Answer(200, {}, b"{}")]

    def answer(request: Request) -> Answer:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item
    report = make(answer, Clock()).deliver(events(1))
    assert report.fates[0].state == "delivered" and report.statuses == {0: 1, 200: 1}


def test_a_vendor_that_refuses_whole_batches_is_bisected_to_the_bad_event() -> None:
    """Meta refuses a request for one bad event: halves until it is alone; the others are delivered."""
    vendor = vendor_for("meta_capi", {"pixel_id": "1", "access_token": "t"})
    sizes = []

    def answer(request: Request) -> Answer:
        data = orjson.loads(request.body)["data"]
        sizes.append(len(data))
        if any(e["event_name"] == "Poison" for e in data):
            return Answer(400, {}, b'{"error":{"message":"Invalid parameter","code":100}}')
        return Answer(200, {}, b'{"events_received":1}')
    clock = Clock()
    clock.now = time.time()  # Meta's 7-day window is checked against the real clock
    items = [Item(f"m{i}", {"event_name": "Poison" if i == 5 else "Purchase", "event_time": int(clock.now),
                            "action_source": "website", "user_data": {"external_id": "a" * 64}},
                  timestamp_ms=int(clock.now * 1000)) for i in range(8)]
    delivery = BatchDelivery(vendor, Delivery(), answer, TokenBucket(None), clock=clock.time, sleep=clock.sleep)
    report = delivery.deliver(items)
    assert report.fates[5].state == "dead" and report.fates[5].status == 400
    assert all(report.fates[i].state == "delivered" for i in range(8) if i != 5)
    assert sizes == [8, 4, 4, 2, 2, 1, 1] and not clock.slept


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = Delivery(min_backoff_s=1, max_backoff_s=30)
    assert backoff(1, policy, lambda: 1.0) == 1 and backoff(4, policy, lambda: 1.0) == 8
    assert backoff(10, policy, lambda: 1.0) == 30 and backoff(3, policy, lambda: 0.0) == 0.5


def test_the_rate_limit_halves_on_429_and_recovers_slowly() -> None:
    clock = Clock()
    bucket = TokenBucket(100, clock=clock.time, sleep=clock.sleep)
    bucket.throttled()
    assert bucket.rate == 50
    clock.now += 2
    bucket.succeeded()
    assert bucket.rate == pytest.approx(55)
    for _ in range(100):
        clock.now += 1
        bucket.succeeded()
    assert bucket.rate == 100


def test_the_rate_limit_paces_requests() -> None:
    clock = Clock()
    bucket = TokenBucket(10, burst=1, clock=clock.time, sleep=clock.sleep)
    for _ in range(11):
        bucket.acquire()
    assert clock.now - 1_000_000.0 == pytest.approx(1.0)


def test_an_open_bucket_learns_a_rate_when_first_throttled() -> None:
    clock = Clock()
    bucket = TokenBucket(None, clock=clock.time, sleep=clock.sleep)
    for _ in range(40):
        bucket.acquire()
        clock.now += 0.01
    bucket.throttled()
    assert bucket.rate == 20


def test_events_older_than_the_vendor_accepts_are_dead_lettered_not_sent() -> None:
    clock = Clock()
    clock.now = time.time()  # Meta's own check of event_time uses the real clock
    sent: list[Request] = []
    now_ms = int(clock.now * 1000)
    vendor = vendor_for("meta_capi", {"pixel_id": "1", "access_token": "t"})
    bucket = TokenBucket(None, clock=clock.time, sleep=clock.sleep)
    delivery = BatchDelivery(vendor, Delivery(), lambda r: sent.append(r) or Answer(200, {}, b"{}"), bucket,
                             clock=clock.time, sleep=clock.sleep)
    day = 86_400_000
    items = [Item(f"m{i}", {"event_name": "Purchase", "event_time": (now_ms - age) // 1000, "action_source": "website",
                            "user_data": {"external_id": "a" * 64}}, timestamp_ms=now_ms - age)
             for i, age in enumerate((0, 6 * day, 8 * day))]
    report = delivery.deliver(items)
    assert [report.fates[i].state for i in range(3)] == ["delivered", "delivered", "dead"]
    assert report.fates[2].reason == "vendor.too_old: older than the 7 days meta_capi accepts"
    assert len(orjson.loads(sent[0].body)["data"]) == 2


def test_the_age_window_is_the_vendors_unless_the_policy_sets_one() -> None:
    clock = Clock()
    now_ms = int(clock.now * 1000)
    ga4 = vendor_for("ga4", {"measurement_id": "G-1", "api_secret": "s"})
    bucket = TokenBucket(None, clock=clock.time, sleep=clock.sleep)
    ok = lambda r: Answer(204, {}, b"")  # noqa: E731
    default = BatchDelivery(ga4, Delivery(), ok, bucket, clock=clock.time, sleep=clock.sleep)
    assert default.max_age_s == 72 * 3600
    item = Item("m", {"client_id": "c", "name": "page_view", "params": {}}, timestamp_ms=now_ms - 73 * 3_600_000)
    assert default.deliver([item]).fates[0].reason == "vendor.too_old: older than the 72 h ga4 accepts"
    amplitude = make(lambda r: Answer(200, {}, b"{}"), clock)
    assert amplitude.max_age_s is None
    assert amplitude.deliver([Item("m", {"event_type": "e", "user_id": "user-1"})]).fates[0].state == "delivered"
    strict = make(lambda r: Answer(200, {}, b"{}"), clock, max_event_age_s=60)
    old = Item("m", {"event_type": "e", "user_id": "user-1"}, timestamp_ms=now_ms - 61_000)
    assert strict.deliver([old]).fates[0].reason == "vendor.too_old: older than the 60 s amplitude accepts"


def test_each_request_is_described_for_the_delivery_detail_with_the_answer_scrubbed() -> None:
    clock = Clock()

    def refuse(_request: Request) -> Answer:
        clock.now += 0.25  # the vendor takes 250 ms
        return Answer(401, {}, b'{"error": "invalid api_key secret-key-1"}')

    report = make(refuse, clock).deliver(events(3))
    (sample,) = report.samples
    assert (sample.status, sample.events, sample.took_ms) == (401, 3, 250)
    assert "***" in sample.answer and "secret-key-1" not in sample.answer
    (receipt,) = receipts("amp", events(3), report.fates, requests=report.requests, samples=report.samples)
    parsed = orjson.loads(receipt)
    assert parsed["samples"][0]["status"] == 401 and parsed["samples"][0]["tookMs"] == 250
    (outcome,) = parsed["outcomes"]
    assert (outcome["state"], outcome["reason"], outcome["count"]) == ("dead", "vendor.auth", 3)
    assert "invalid api_key ***" in outcome["answer"]


def test_a_batch_describes_at_most_a_few_requests() -> None:
    clock = Clock()
    vendor = vendor_for("webhook", {"url": "https://hooks.example.com/in"})  # one event a request
    report = BatchDelivery(vendor, Delivery(), lambda r: Answer(200, {}, b"ok"),
                           TokenBucket(None, clock=clock.time, sleep=clock.sleep), clock=clock.time,
                           sleep=clock.sleep).deliver(events(20))
    assert report.requests == 20 and len(report.samples) == SAMPLES_KEPT
