"""A batch's requests in lanes: one user's requests in one lane, in order, never in flight together;
different users' lanes at once through a bounded pool; the answers read as if sent one by one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import orjson

from forwarders.delivery import Answer, BatchDelivery
from forwarders.lanes import lanes
from forwarders.ratelimit import TokenBucket
from forwarders.vendors import Item, Request, vendor_for
from schemas.delivery import Delivery


def request(*positions: int) -> Request:
    return Request("https://hooks.example/in", b"{}", positions)


def item(user: str | None, anonymous: str | None = None) -> Item:
    return Item(f"m-{user}-{anonymous}", {}, user_id=user, anonymous_id=anonymous)


def test_one_users_requests_share_a_lane_in_their_order() -> None:
    items = [item("a"), item("b"), item("a"), item("c"), item("b"), item("a")]
    assert lanes([request(i) for i in range(6)], items) == [[0, 2, 5], [1, 4], [3]]


def test_the_anonymous_id_is_the_key_without_a_user_id_and_no_id_constrains_nothing() -> None:
    items = [item(None, "anon-1"), item(None, None), item(None, "anon-1"), item(None, None)]
    assert lanes([request(i) for i in range(4)], items) == [[0, 2], [1], [3]]


def test_a_request_carrying_two_users_ties_their_lanes_together() -> None:
    items = [item("a"), item("b"), item("a"), item("b"), item("c"), item("b")]
    # request 2 holds a and b: from then on a and b are one lane, and each keeps its order within it
    order = lanes([request(0), request(1), request(2, 3), request(4), request(5)], items)
    assert order == [[0, 1, 2, 4], [3]]


def test_a_batched_vendors_requests_of_the_same_users_are_one_lane() -> None:
    items = [item(f"user-{i % 7}") for i in range(30)]
    assert lanes([request(*range(0, 10)), request(*range(10, 20)), request(*range(20, 30))], items) == [[0, 1, 2]]


class Receiver:
    """A webhook that answers after `latency` s, recording for each user the order of arrival and whether
    one of its requests was already in flight."""

    def __init__(self, latency: float = 0.02, fail_first: dict[str, int] | None = None) -> None:
        self.latency = latency
        self.lock = threading.Lock()
        self.busy: set[str] = set()
        self.overlaps = 0
        self.in_flight = self.most_in_flight = 0
        self.seen: dict[str, list[int]] = {}
        self.fail_first = dict(fail_first or {})

    def __call__(self, req: Request) -> Answer:
        event = orjson.loads(req.body)
        user, n = event["user"], event["n"]
        with self.lock:
            self.overlaps += user in self.busy
            self.busy.add(user)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.latency)
        with self.lock:
            self.busy.discard(user)
            self.in_flight -= 1
            if self.fail_first.get(user):
                self.fail_first[user] -= 1
                return Answer(503, {"Retry-After": "0.3"}, b"")  # (a 429 would also slow the bucket)
            self.seen.setdefault(user, []).append(n)
        return Answer(200, {}, b"ok")


def webhook_items(users: int, per_user: int) -> list[Item]:
    return [Item(f"m-{u}-{n}", {"user": f"u{u}", "n": n}, user_id=f"u{u}")
            for n in range(per_user) for u in range(users)]


def webhook(receiver: Receiver, pool: ThreadPoolExecutor | None, **policy: object) -> BatchDelivery:
    vendor = vendor_for("webhook", {"url": "http://127.0.0.1:9/in", "allow_http": True, "allow_private": True})
    return BatchDelivery(vendor, Delivery.model_validate({"min_backoff_s": 0.05, **policy}), receiver,
                         TokenBucket(None), senders=pool)


def test_per_event_requests_go_at_once_up_to_the_bound_and_each_user_in_order() -> None:
    receiver = Receiver(latency=0.02)
    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        report = webhook(receiver, pool).deliver(webhook_items(users=20, per_user=4))
        seconds = time.monotonic() - started
    assert {f.state for f in report.fates.values()} == {"delivered"} and len(report.fates) == 80
    assert report.requests == 80 and report.statuses == {200: 80}
    assert receiver.overlaps == 0 and receiver.most_in_flight <= 8 and receiver.most_in_flight >= 2
    assert all(ns == [0, 1, 2, 3] for ns in receiver.seen.values()) and len(receiver.seen) == 20
    assert seconds < 80 * 0.02  # one at a time would take 1.6 s


def test_without_a_pool_requests_go_one_at_a_time() -> None:
    receiver = Receiver(latency=0.001)
    report = webhook(receiver, None).deliver(webhook_items(users=5, per_user=2))
    assert len(report.fates) == 10 and receiver.most_in_flight == 1


def test_retry_after_is_still_honoured_with_lanes_at_once() -> None:
    receiver = Receiver(latency=0.01, fail_first={"u3": 1})
    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        report = webhook(receiver, pool).deliver(webhook_items(users=10, per_user=1))
        seconds = time.monotonic() - started
    assert {f.state for f in report.fates.values()} == {"delivered"}
    assert report.fates[3].attempts == 2 and report.fates[3].status == 200
    assert all(report.fates[p].attempts == 1 for p in range(10) if p != 3)
    assert report.statuses == {200: 10, 503: 1} and seconds >= 0.3


def test_a_users_later_events_wait_for_its_retried_one_and_are_not_counted_as_attempts() -> None:
    receiver = Receiver(latency=0.005, fail_first={"u1": 1})
    with ThreadPoolExecutor(4) as pool:
        report = webhook(receiver, pool).deliver(webhook_items(users=3, per_user=3))
    assert {f.state for f in report.fates.values()} == {"delivered"}
    assert receiver.seen["u1"] == [0, 1, 2]  # the 503 on u1's first did not let its second overtake it
    u1 = [p for p in range(9) if p % 3 == 1]
    assert [report.fates[p].attempts for p in u1] == [2, 1, 1]


def test_without_a_pool_a_users_later_events_wait_for_its_retried_one_too() -> None:
    receiver = Receiver(latency=0.0, fail_first={"u0": 2})
    report = webhook(receiver, None).deliver(webhook_items(users=2, per_user=3))
    assert receiver.seen["u0"] == [0, 1, 2] and receiver.seen["u1"] == [0, 1, 2]
    assert report.statuses == {200: 6, 503: 2} and report.fates[0].attempts == 3


def test_a_wait_too_long_sends_the_user_s_held_back_events_to_the_retry_topic_after_it() -> None:
    class Slow(Receiver):
        def __call__(self, req: Request) -> Answer:
            if orjson.loads(req.body)["user"] == "u0":
                return Answer(503, {"Retry-After": "600"}, b"")
            return super().__call__(req)

    report = webhook(Slow(latency=0.0), None, retry_in_place_s=10).deliver(webhook_items(users=2, per_user=2))
    assert [(report.fates[p].state, report.fates[p].attempts) for p in (0, 2)] == [("later", 1), ("later", 0)]
    assert report.fates[2].not_before_ms == report.fates[0].not_before_ms
    assert report.fates[1].state == report.fates[3].state == "delivered"


def test_a_vendor_refusal_dead_letters_that_users_events_while_the_other_lanes_deliver() -> None:
    class Refusing(Receiver):
        def __call__(self, req: Request) -> Answer:
            if orjson.loads(req.body)["user"] == "u2":
                return Answer(400, {}, b'{"error": "bad field"}')
            return super().__call__(req)

    with ThreadPoolExecutor(8) as pool:
        report = webhook(Refusing(latency=0.005), pool).deliver(webhook_items(users=5, per_user=3))
    dead = {p for p, f in report.fates.items() if f.state == "dead"}
    assert dead == {p for p in range(15) if p % 5 == 2}  # u2's three, each with the vendor's status
    assert all(report.fates[p].status == 400 and report.fates[p].attempts == 1 for p in dead)
    assert all(report.fates[p].state == "delivered" for p in range(15) if p not in dead)


def test_the_configured_bound_is_the_forwarders_pool_and_one_is_one_request_at_a_time() -> None:
    from forwarders.runner import Forwarder
    from schemas import Topics
    from schemas.config import parse_config

    def forwarder(max_in_flight: int) -> Forwarder:
        config = parse_config(
            "pipelines: [{name: web, write_keys: [wk], integrations: [hook]}]\n"
            "integrations: [{name: hook, kind: webhook, playbook: 'starter:webhook', delivery: "
            f"{{max_in_flight: {max_in_flight}}}, connection: {{url: 'http://127.0.0.1:9/in', allow_http: true, "
            "allow_private: true}}]\n")
        return Forwarder("127.0.0.1:9", Topics("t"), config.integrations[0])

    four = forwarder(4)
    assert four.per_event and four._senders is not None
    receiver = Receiver(latency=0.02)
    try:
        report = webhook(receiver, four._senders).deliver(webhook_items(users=20, per_user=2))
    finally:
        four._senders.shutdown()
    assert len(report.fates) == 40 and 2 <= receiver.most_in_flight <= 4 and receiver.overlaps == 0
    one = forwarder(1)
    assert not one.per_event and one._senders is None
