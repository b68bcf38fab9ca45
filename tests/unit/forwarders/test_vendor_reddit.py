"""The Reddit Conversions API v3 module (requests, refusals before sending, answers) and its stand-in."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.reddit import RedditStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CONNECTION = {"pixel_id": "a2_standin01", "conversion_token": "reddit-conversion-token"}
HEX = hashlib.sha256(b"u-1").hexdigest()
PATH = "/api/v3/pixels/a2_standin01/conversion_events"


def event(**changes: Any) -> dict[str, Any]:
    good = {"event_at": int(time.time() * 1000) - 60_000, "action_source": "WEBSITE",
            "type": {"tracking_type": "PURCHASE"}, "user": {"external_id": HEX},
            "metadata": {"conversion_id": "c-1", "currency": "EUR", "value": 25.0, "item_count": 1}}
    return {**good, **changes}


def test_a_request_wraps_the_events_in_data_and_carries_the_token_and_the_pixel() -> None:
    vendor = vendor_for("reddit", {**CONNECTION, "test_id": "t2_test"})
    built = vendor.build([Item("m-1", event(metadata={"value": 1.5, "currency": "USD"})), Item("m-2", event())])
    (request,) = built.requests
    body = orjson.loads(request.body)
    assert request.url == "https://ads-api.reddit.com/api/v3/pixels/a2_standin01/conversion_events"
    assert request.headers["Authorization"] == "Bearer reddit-conversion-token"
    assert body["data"]["test_id"] == "t2_test"
    assert [e["metadata"]["conversion_id"] for e in body["data"]["events"]] == ["m-1", "c-1"]  # the kit's wins
    assert vendor.secrets() == ["reddit-conversion-token"]


def test_at_most_1000_events_a_request() -> None:
    built = vendor_for("reddit", CONNECTION).build([Item(str(i), event()) for i in range(2001)])
    assert [len(r.items) for r in built.requests] == [1000, 1000, 1] and not built.refused
    assert "test_id" not in orjson.loads(built.requests[0].body)["data"]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"event_at": None}, "event_at is required"),
    ({"event_at": 1_795_687_200}, "event_at must be unix milliseconds"),
    ({"action_source": "web"}, "action_source must be WEBSITE, APP, PHYSICAL_STORE or OTHER"),
    ({"type": {"tracking_type": "Purchase"}}, "type.tracking_type is not a Reddit tracking type"),
    ({"type": {"tracking_type": "CUSTOM"}}, "type.custom_event_name is required (at most 64 characters)"),
    ({"type": {"tracking_type": "CUSTOM", "custom_event_name": "x" * 65}},
     "type.custom_event_name is required (at most 64 characters)"),
    ({"metadata": {"currency": "eur"}}, "metadata.currency must be an ISO 4217 code"),
    ({"metadata": {"value": "25.00"}}, "metadata.value must be a number"),
    ({"metadata": {"products": [{"name": "Shirt"}]}}, "metadata.products[].id is required"),
    ({"user": {"user_agent": "Mozilla/5.0"}},
     "a match key is required (click_id, or user email, external_id, uuid, ...)"),
])
def test_events_reddit_would_count_invalid_are_refused_before_sending(changes: dict[str, Any], reason: str) -> None:
    built = vendor_for("reddit", CONNECTION).build([Item("a", event()), Item("b", event(**changes))])
    assert built.refused == {1: f"vendor.invalid: {reason}"}
    assert [r.items for r in built.requests] == [(0,)]


def test_a_click_id_alone_is_a_match_key() -> None:
    assert not vendor_for("reddit", CONNECTION).build([Item("a", event(user={}, click_id="9051781416"))]).refused


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (400, "split"), (401, "vendor.auth"), (403, "vendor.auth"), (429, "retry"),
    (500, "retry"), (503, "retry")])
def test_answers(status: int, expected: str) -> None:
    """A 400 refuses the request whole for one invalid event: it is split until that event is alone."""
    vendor = vendor_for("reddit", CONNECTION)
    body = b'{"error": {"code": 400, "message": "There were 1 invalid conversion events. None were processed."}}'
    reply = vendor.read(Request("u", b"", (0, 1)), status, {}, body)
    got = "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else \
        reply.rejected[0]
    assert got == expected
    assert vendor.read(Request("u", b"", (0,)), 400, {}, body).rejected == {0: "vendor.rejected"}


def test_429_waits_for_retry_after() -> None:
    reply = vendor_for("reddit", CONNECTION).read(Request("u", b"", (0,)), 429, {"Retry-After": "12"}, b"")
    assert reply.retry == [0] and reply.retry_after == 12.0


# -- the stand-in ---------------------------------------------------------------------------------

def send(stand_in: RedditStandIn, body: Any, *, path: str = PATH,
         token: str | None = "reddit-conversion-token") -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = stand_in.answer(Incoming("POST", path, {}, headers, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body)


def test_the_stand_in_takes_the_golden_requests() -> None:
    stand_in = RedditStandIn()
    now = int(time.time())
    for request in json.loads((GOLDEN / "requests" / "reddit.json").read_text())["requests"]:
        events = [RedditStandIn.freshen(e, now) for e in request["body"]["data"]["events"]]
        assert send(stand_in, {"data": {"events": events}}) == (200, {"data": {
            "message": f"Successfully processed {len(events)} conversion events."}})
    assert len(stand_in.accepted) == 5 == len(stand_in.keys)
    assert "CUSTOM/Video Played/m-video" in stand_in.keys


def test_the_stand_in_checks_path_token_and_pixel() -> None:
    stand_in = RedditStandIn()
    good = {"data": {"events": [RedditStandIn.sample(0, "m-1", int(time.time()))]}}
    assert send(stand_in, good, path="/api/v2.0/conversions/events/a2_standin01")[0] == 404
    assert send(stand_in, good, token=None) == (401, {"error": {"code": 401, "message": "No bearer token provided"}})
    assert send(stand_in, good, token="other-token") == (401, {"error": {"code": 401, "message": "UNAUTHORIZED"}})
    assert send(stand_in, good, path="/api/v3/pixels/a2_other/conversion_events")[1]["error"]["message"] == \
        "You're not authorized to post conversions to Pixel ID a2_other."
    assert not stand_in.accepted


def test_the_stand_in_refuses_a_request_whole_for_invalid_events() -> None:
    stand_in = RedditStandIn()
    now = int(time.time())
    good = RedditStandIn.sample(0, "m-1", now)
    old = RedditStandIn.spoil(RedditStandIn.sample(1, "m-2", now))  # 8 days old
    assert not vendor_for("reddit", CONNECTION).build([Item("m-2", old)]).refused  # the runner judges age
    v2 = {**RedditStandIn.sample(2, "m-3", now), "type": {"tracking_type": "Purchase"}}
    assert send(stand_in, {"data": {"events": [good, old, v2]}}) == (400, {"error": {
        "code": 400, "message": "There were 2 invalid conversion events. None were processed."}})
    assert send(stand_in, {"data": {"events": [good] * 1001}})[1]["error"]["message"] == "Bad Request"
    assert send(stand_in, {"events": [good]})[0] == 400  # the v2 shape, without `data`
    assert not stand_in.accepted


def test_the_stand_in_keeps_test_events_apart_and_counts_duplicates() -> None:
    stand_in = RedditStandIn()
    good = RedditStandIn.sample(0, "m-1", int(time.time()))
    assert send(stand_in, {"data": {"events": [good], "test_id": "t2_test"}})[0] == 200
    assert not stand_in.accepted and stand_in.tested == [good]
    send(stand_in, {"data": {"events": [good]}})
    send(stand_in, {"data": {"events": [good, {**good, "type": {"tracking_type": "LEAD"}}]}})
    assert len(stand_in.accepted) == 3 and stand_in.duplicates == 1  # a LEAD with the same id is another event


@pytest.mark.parametrize("changes", [
    {"event_at": int(time.time())},  # seconds, not milliseconds
    {"event_at": time.time() * 1000},
    {"action_source": "website"},
    {"type": {"tracking_type": "CUSTOM", "custom_event_name": ""}},
    {"metadata": {"conversion_id": "c-1", "item_count": "1"}},
    {"metadata": {"conversion_id": "c-1", "value": "25.00"}},
    {"metadata": {"conversion_id": 7}},
    {"metadata": {"conversion_id": "c-1", "products": [{"name": "Shirt"}]}},
    {"user": {"email": [HEX]}},
    {"user": {"user_agent": "Mozilla/5.0"}},  # no match key
])
def test_the_stand_in_refuses_by_its_own_checks_an_event_reddit_counts_invalid(changes: dict[str, Any]) -> None:
    stand_in = RedditStandIn()
    good = event()
    assert send(stand_in, {"data": {"events": [good, {**good, **changes}]}}) == (400, {"error": {
        "code": 400, "message": "There were 1 invalid conversion events. None were processed."}})
    assert not stand_in.accepted
