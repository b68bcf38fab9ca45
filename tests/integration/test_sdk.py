"""The SDK against a real broker: round trips, refusals, fork/exit without flush, threads, sync, async."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import multiprocessing
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from producers import Analytics, DeliveryError, QueueFullError, ValidationError
from schemas import EventCodec
from tests.figures import Figures
from tests.integration.kafka_helpers import consume_all, deep_object, fresh_topics

pytestmark = pytest.mark.kafka
CODEC = EventCodec()

CONTEXT = {"ip": "203.0.113.7", "userAgent": "curl/8", "locale": "de-DE",
           "library": {"name": "my-service", "version": "3.1"},
           "page": {"path": "/p", "referrer": "https://r.example", "search": "?q=1", "title": "T", "url": "https://x/p"},
           "consent": {"categoryPreferences": {"analytics": True, "advertising": False}},
           "campaign": {"source": "news", "medium": "email"}, "traits": {"plan": "pro"}}
PROPS = {"revenue": 19.99, "count": 3, "ok": True, "none": None, "nested": {"list": [1, "two", {"three": 3.0}]},
         "text": "caf\u00e9 \U0001F600 e\u0301 \u202e \x00"}
CALLS: dict[str, dict[str, Any]] = {
    "track": {"user_id": "u-1", "event": "Order Completed", "properties": PROPS},
    "identify": {"user_id": "u-1", "traits": {"email": "a@example.com", "age": 41}},
    "page": {"user_id": "u-1", "category": "Docs", "name": "Intro", "properties": PROPS},
    "screen": {"user_id": "u-1", "category": "App", "name": "Home", "properties": PROPS},
    "group": {"user_id": "u-1", "group_id": "g-9", "traits": {"name": "Acme"}},
    "alias": {"previous_id": "anon-1", "user_id": "u-1"},
}


def _decoded(bootstrap: str, topic: str, expected: int, settle: float = 0.0) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value()) for m in consume_all(bootstrap, topic, expected, settle=settle)]


def test_every_call_type_round_trips_with_every_field(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    sent = {}
    with Analytics("wk_test", bootstrap, topic=topics.raw) as analytics:
        for call, args in CALLS.items():
            extra = {"context": CONTEXT, "integrations": {"All": True, "Mixpanel": False},
                     "timestamp": dt.datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
                     "message_id": f"mid-{call}"}
            if call != "alias":
                extra["anonymous_id"] = "anon-1"
            ok, message = getattr(analytics, call)(**args, **extra)
            assert ok
            sent[message["messageId"]] = copy.deepcopy(message)
        mutable = {"items": [1, 2]}
        _ok, message = analytics.track("u-1", "Mutated Later", mutable, message_id="mid-mutated")
        sent["mid-mutated"] = copy.deepcopy(message)
        mutable["items"].append(3)  # after the call: the event was encoded at the call, so it is unaffected
        assert analytics.flush() == 0
        assert analytics.stats()["acked"] == 7
    records = consume_all(bootstrap, topics.raw, 7)
    received = {CODEC.decode(r.value())["messageId"]: (CODEC.decode(r.value()), r) for r in records}
    assert received.keys() == sent.keys()
    for message_id, (message, record) in received.items():
        assert message == sent[message_id]  # every field, byte for byte
        assert record.key() == b"u-1"
        # the caller's clock (2020) is never the Kafka record timestamp
        assert abs(record.timestamp()[1] / 1000 - time.time()) < 120
    assert received["mid-track"][0]["properties"] == PROPS
    assert received["mid-track"][0]["context"]["library"] == {"name": "my-service", "version": "3.1"}


def test_bad_input_is_refused_at_the_call_and_nothing_is_queued(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    deep = deep_object(200)
    bad_calls = [
        ("track", {"user_id": "u"}, "event"),
        ("track", {"event": "E"}, "userId"),
        ("group", {"user_id": "u"}, "groupId"),
        ("alias", {"user_id": "u"}, "previousId"),
        ("track", {"user_id": "u", "event": "E", "properties": {"big": "x" * 40_000}}, "properties.big"),
        ("track", {"user_id": "u", "event": "E", "properties": {f"p{i}": "v" * 30 for i in range(900)}}, ""),
        ("track", {"user_id": "u", "event": "E", "properties": deep}, "properties" + ".d" * 32),
        ("track", {"user_id": "u", "event": "E", "properties": {f"k{i}": i for i in range(10_000)}}, "properties"),
        ("identify", {"user_id": "u", "traits": {"name": "lone \ud800"}}, "traits.name"),
        ("track", {"user_id": "u", "event": "E", "properties": {"x": float("nan")}}, "properties.x"),
        ("track", {"user_id": "u", "event": "E", "properties": {"x": object()}}, "properties.x"),
        ("track", {"user_id": "u", "event": "E", "timestamp": "not a time"}, "timestamp"),
    ]
    analytics = Analytics("wk_test", bootstrap, topic=topics.raw)
    for call, args, field in bad_calls:
        started = time.monotonic()
        with pytest.raises(ValidationError) as caught:
            getattr(analytics, call)(**args)
        assert caught.value.field == field, caught.value
        assert time.monotonic() - started < 1.0  # at once, never a timeout
    assert analytics.stats()["queued"] == 0
    assert analytics.stats()["rejected"] == len(bad_calls)
    analytics.close()


_CHILD = """
import sys
from producers import Analytics
a = Analytics("wk_test", sys.argv[1], topic=sys.argv[2])
for i in range(300):
    a.track(f"user-{i % 7}", "From Script", {"i": i}, message_id=f"script-{i}")
# exits without flush() or close()
"""


def test_a_process_that_exits_without_flush_loses_nothing(bootstrap: str, figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), bootstrap, topics.raw], check=True, timeout=120)
    ids = {m["messageId"] for m in _decoded(bootstrap, topics.raw, 300)}
    assert ids == {f"script-{i}" for i in range(300)}
    figures.report("process exits without calling flush", sent=300, received=len(ids), lost=300 - len(ids))


def _forked_child(analytics: Analytics) -> None:
    for i in range(200):
        analytics.track(f"user-{i % 5}", "From Child", message_id=f"child-{i}")
    # returns without flushing: multiprocessing ends the child with os._exit after its finalizers


def test_forked_child_gets_its_own_producer_and_loses_nothing(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    analytics = Analytics("wk_test", bootstrap, topic=topics.raw)
    analytics.track("parent", "Before Fork", message_id="parent-0")  # the parent's producer exists now
    child = multiprocessing.get_context("fork").Process(target=_forked_child, args=(analytics,))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    analytics.track("parent", "After Fork", message_id="parent-1")
    assert analytics.close() == 0
    ids = {m["messageId"] for m in _decoded(bootstrap, topics.raw, 202)}
    assert ids == {f"child-{i}" for i in range(200)} | {"parent-0", "parent-1"}


def test_many_threads_share_one_client(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    analytics = Analytics("wk_test", bootstrap, topic=topics.raw)

    def work(t: int) -> None:
        for i in range(500):
            analytics.track(f"user-{t}", "Threaded", {"i": i}, message_id=f"t{t}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert analytics.flush() == 0
    assert analytics.stats()["acked"] == 2000
    messages = _decoded(bootstrap, topics.raw, 2000)
    assert {m["messageId"] for m in messages} == {f"t{t}-{i}" for t in range(4) for i in range(500)}
    for t in range(4):  # one user's events stay in order (same key, same partition)
        order = [int(m["properties"]["i"]) for m in messages if m["userId"] == f"user-{t}"]
        assert order == sorted(order)
    analytics.close()


def test_sync_mode_returns_after_the_broker_acknowledged(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    analytics = Analytics("wk_test", bootstrap, topic=topics.raw, sync_mode=True)
    for i in range(5):
        analytics.identify(f"user-{i}", {"n": i})
        assert analytics.stats()["acked"] == i + 1
    analytics.close()


def test_awaitable_calls_resolve_on_acknowledgement(bootstrap: str) -> None:
    topics = fresh_topics(bootstrap)
    analytics = Analytics("wk_test", bootstrap, topic=topics.raw)

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(analytics.atrack(f"user-{i}", "Async", properties={"i": i}) for i in range(100)),
                                    analytics.aidentify("user-1", {"a": 1}), analytics.apage("user-1", name="P"),
                                    analytics.ascreen("user-1", name="S"), analytics.agroup("user-1", "g"),
                                    analytics.aalias("anon", "user-1"))

    results = asyncio.run(main())
    assert analytics.stats()["acked"] == 105
    assert {m["messageId"] for m in _decoded(bootstrap, topics.raw, 105)} == {m["messageId"] for m in results}
    analytics.close()


def test_full_buffer_blocks_then_raises_or_drops_and_reports(figures: Figures) -> None:
    """No broker at all: the buffer fills; the policy decides; nothing vanishes without a report."""
    reports: list[tuple[Exception, list[dict[str, Any]]]] = []
    dead = "127.0.0.1:9"  # discard port: nothing listens
    config = {"message.timeout.ms": 1500, "socket.connection.setup.timeout.ms": 1000}
    blocking = Analytics("wk", dead, topic="t.raw", max_queue_size=5, block_timeout=0.5, producer_config=config,
                         on_error=lambda e, batch: reports.append((e, batch)))
    for i in range(5):
        blocking.track("u", "E", message_id=f"b-{i}")
    started = time.monotonic()
    with pytest.raises(QueueFullError, match=r"still full after 0\.5s"):
        blocking.track("u", "E", message_id="b-5")
    assert 0.4 < time.monotonic() - started < 3.0

    dropping = Analytics("wk", dead, topic="t.raw", max_queue_size=5, on_full="drop", producer_config=config,
                         on_error=lambda e, batch: reports.append((e, batch)))
    for i in range(5):
        dropping.track("u", "E", message_id=f"d-{i}")
    assert dropping.track("u", "E", message_id="d-5")[0] is False

    assert blocking.close() == 0  # returns once every event is reported: none can be acknowledged
    assert dropping.close() == 0
    failed = {batch[0]["messageId"]: type(error) for error, batch in reports}
    assert failed == {**{f"b-{i}": DeliveryError for i in range(5)}, **{f"d-{i}": DeliveryError for i in range(5)},
                      "d-5": QueueFullError}
    assert blocking.stats()["failed"] == 5 and dropping.stats()["dropped"] == 1
    figures.report("producer buffer full", block="raised QueueFullError after 0.5 s", drop="reported QueueFullError",
                   unreported=0)


def test_module_level_api_like_analytics_python(bootstrap: str) -> None:
    import producers as analytics

    topics = fresh_topics(bootstrap)
    analytics.write_key, analytics.bootstrap_servers, analytics.topic = "wk_mod", bootstrap, topics.raw
    try:
        analytics.track("user-1", "Module Level", {"a": 1})
        analytics.identify("user-1", {"b": 2})
        analytics.flush()
        assert [m["writeKey"] for m in _decoded(bootstrap, topics.raw, 2)] == ["wk_mod", "wk_mod"]
    finally:
        analytics.shutdown()
        analytics.default_client = None
