"""The Segment module forwards Segment events into a Segment source's `/v1/batch`, refusing before sending what
Segment would drop behind a 200; the stand-in answers as Segment's edge does. Pure, but for one request over
loopback."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.segment import SegmentStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.segment import message_id

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
KEY = "segment-write-key"
TRACK = {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-1",
         "timestamp": "2026-11-26T10:00:00.000Z", "properties": {"revenue": 25}}


def vendor(**extra: Any) -> Any:
    return vendor_for("segment", {"write_key": KEY, **extra})


def test_a_batch_carries_the_write_key_both_ways_and_no_sent_at() -> None:
    built = vendor(endpoint="https://events.eu1.segmentapis.com/v1/batch").build(
        [Item("m-1", TRACK), Item("m-2", {**TRACK, "messageId": None}), Item("m-3", {"type": "identify",
                                                                                  "anonymousId": "a1"})])
    (request,) = built.requests
    body = orjson.loads(request.body)
    assert request.url == "https://events.eu1.segmentapis.com/v1/batch" and not built.refused
    assert base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")) == f"{KEY}:".encode()
    assert body["writeKey"] == KEY and "sentAt" not in body  # the events' own timestamps stand
    assert [m["messageId"] for m in body["batch"]] == ["m-1", "m-2", "m-3"]  # the event's own, else the record's
    assert body["batch"][0] == TRACK
    assert vendor().secrets() == [KEY]


def test_a_message_id_of_100_characters_or_more_becomes_a_stable_uuid5() -> None:
    assert message_id("x" * 99) == "x" * 99
    derived = message_id("x" * 100)
    assert uuid.UUID(derived).version == 5 and derived == message_id("x" * 100) != message_id("y" * 100)


def test_refuses_before_sending_what_segment_drops_behind_a_200_or_refuses_whole() -> None:
    items = [Item("a", TRACK),
             Item("b", {**TRACK, "type": "purchase"}),
             Item("c", {**TRACK, "userId": None}),
             Item("d", {**TRACK, "event": " "}),
             Item("e", {"type": "group", "userId": "u1"}),
             Item("f", {"type": "alias", "userId": "u1"}),
             Item("g", {**TRACK, "properties": ["x"]}),
             Item("h", {**TRACK, "properties": {"blob": "x" * 33_000}}),
             Item("i", {"type": "page", "anonymousId": "a1", "name": "Home"})]
    built = vendor().build(items)
    assert built.refused == {1: "vendor.invalid: type must be identify, track, page, screen, group or alias",
                             2: "vendor.invalid: userId or anonymousId is required",
                             3: "vendor.invalid: event is required",
                             4: "vendor.invalid: groupId is required",
                             5: "vendor.invalid: previousId is required",
                             6: "vendor.invalid: properties must be an object",
                             7: "vendor.too_large: over Segment's 32 KB per event"}
    assert [r.items for r in built.requests] == [(0, 8)]


def test_batches_keep_to_2500_events_and_500_kb() -> None:
    many = vendor().build([Item(f"m-{i}", {"type": "track", "event": "e", "userId": "u"}) for i in range(6000)])
    assert [len(r.items) for r in many.requests] == [2500, 2500, 1000]
    big = vendor().build([Item(f"m-{i}", {**TRACK, "properties": {"blob": "x" * 30_000}}) for i in range(40)])
    assert len(big.requests) == 3 and all(len(r.body) <= 500_000 for r in big.requests)
    assert [p for r in big.requests for p in r.items] == list(range(40))


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (400, "split"), (413, "split"), (429, "retry"), (500, "retry"), (401, "vendor.auth")])
def test_answers(status: int, expected: str) -> None:
    """Segment answers 200 to all it can read; a 400 (an event over 32 KB) refuses the batch whole: split."""
    reply = vendor().read(Request("u", b"", (0, 1)), status, {"Retry-After": "4"}, b'{"success": true}')
    got = "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else \
        reply.rejected[0]
    assert got == expected
    if expected == "retry":
        assert reply.retry_after == 4.0
    assert vendor().read(Request("u", b"", (0,)), 400, {}, b"").rejected == {0: "vendor.rejected"}


# -- the stand-in ------------------------------------------------------------------------------------------
def send(stand_in: SegmentStandIn, body: Any, headers: dict[str, str] | None = None,
         path: str = "/v1/batch") -> tuple[int, Any]:
    answer = stand_in.answer(Incoming("POST", path, {}, headers or {}, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body) if answer.body.startswith(b"{") else answer.body


def test_stand_in_takes_the_golden_request() -> None:
    stand_in = SegmentStandIn()
    (request,) = json.loads((GOLDEN / "requests" / "segment.json").read_text())["requests"]
    assert send(stand_in, request["body"], {"authorization": request["headers"]["Authorization"]}) == \
        (200, {"success": True})
    assert not stand_in.dropped and len(stand_in.accepted) == len(request["items"]) == len(stand_in.keys)


def test_stand_in_answers_200_and_drops_what_segment_drops() -> None:
    stand_in = SegmentStandIn()
    basic = {"authorization": "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()}
    assert send(stand_in, {"batch": [TRACK]}, basic) == (200, {"success": True})  # Basic auth alone will do
    assert send(stand_in, {"batch": [TRACK], "writeKey": "another-key"}) == (200, {"success": True})
    bad = [{**TRACK, "type": "purchase"}, {**TRACK, "userId": ""}, {**TRACK, "event": None},
           {"type": "group", "userId": "u"}, {"type": "alias", "userId": "u"}, {**TRACK, "messageId": "m" * 100}]
    assert send(stand_in, {"batch": bad, "writeKey": KEY})[0] == 200
    assert send(stand_in, {"batch": [TRACK] * 2501, "writeKey": KEY})[0] == 200
    assert stand_in.dropped[:7] == ["unknown write key", "invalid type 'purchase'", "no_user_anon_id",
                                    "track without event", "group without groupId", "alias without previousId",
                                    "messageId of 100 characters or more"]
    assert stand_in.dropped[7:] == ["over 2,500 events in a batch"] * 2501
    assert [e["messageId"] for e in stand_in.accepted] == ["m-1"]
    assert send(stand_in, {"batch": [TRACK], "writeKey": KEY})[0] == 200
    assert stand_in.duplicates == 1  # Segment would drop it: same messageId


def test_stand_in_refuses_with_400_what_it_cannot_take() -> None:
    stand_in = SegmentStandIn()
    assert send(stand_in, {"batch": [TRACK]})[0] == 400  # no write key at all
    assert send(stand_in, {"batch": [{**TRACK, "properties": {"x": "y" * 33_000}}], "writeKey": KEY})[0] == 400
    assert send(stand_in, {"batch": [{**TRACK, "properties": {"x": "y" * 30_000}}] * 17, "writeKey": KEY})[0] == 400
    answer = stand_in.answer(Incoming("POST", "/v1/batch", {}, {}, b"{not json"))
    assert answer.status == 400
    assert send(stand_in, {"batch": [TRACK], "writeKey": KEY}, path="/v1/track")[0] == 404
    assert not stand_in.accepted and not stand_in.dropped


def test_stand_in_over_loopback_with_a_sample() -> None:
    stand_in = SegmentStandIn().start()
    try:
        connection = stand_in.connection()
        request = vendor_for("segment", connection).build(
            [Item("kill-3", SegmentStandIn.sample(3, "kill-3", 1_795_000_000))]).requests[0]
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as answer:
            assert answer.status == 200 and json.loads(answer.read()) == {"success": True}
    finally:
        stand_in.stop()
    assert [SegmentStandIn.carried(e) for e in stand_in.accepted] == ["kill-3"] and not stand_in.dropped
