"""The Snapchat Conversions API v3 module (forwarders/vendors/snapchat.py) and its stand-in: Snap refuses a
request with a 400 for one bad event, naming it; the others are sent again at once."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, Incoming
from eventrouter.dev.standins.snapchat import SnapchatStandIn
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.snapchat import Snapchat

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
HASH = hashlib.sha256(b"ada@example.com").hexdigest()
PIXEL = "1ec32188-754e-4be2-8e55-c949a984a39f"
GOOD: dict[str, Any] = {"event_name": "SIGN_UP", "event_time": 1_795_687_196, "action_source": "WEB",
                        "event_source_url": "https://shop.example/", "user_data": {"em": [HASH]}}


def vendor() -> Snapchat:
    made = vendor_for("snapchat", {"pixel_id": PIXEL, "access_token": "snap-capi-token"})
    assert isinstance(made, Snapchat)
    return made


def test_the_stand_in_is_the_catalogues() -> None:
    assert STAND_INS["snapchat"] is SnapchatStandIn


def test_a_request_names_the_pixel_carries_the_token_and_at_most_2000_events() -> None:
    built = vendor().build([Item(f"m{i}", GOOD) for i in range(4500)])
    assert [len(r.items) for r in built.requests] == [2000, 2000, 500] and not built.refused
    request = built.requests[0]
    assert request.url == f"https://tr.snapchat.com/v3/{PIXEL}/events?access_token=snap-capi-token"
    assert [e["event_id"] for e in orjson.loads(request.body)["data"][:2]] == ["m0", "m1"]
    assert vendor().secrets() == ["snap-capi-token"]
    assert Snapchat.max_age_s == 37 * 86_400


def test_the_kits_event_id_wins_over_the_message_id() -> None:
    (request,) = vendor().build([Item("m-1", {**GOOD, "event_id": "order-7"})]).requests
    assert orjson.loads(request.body)["data"][0]["event_id"] == "order-7"


def test_events_snap_would_refuse_the_whole_request_for_are_refused_before_sending() -> None:
    items = [Item("a", GOOD), Item("b", {**GOOD, "event_source_url": ""}), Item("c", {**GOOD, "action_source": None}),
             Item("d", {**GOOD, "event_time": 1_795_687_196.5}), Item("e", {**GOOD, "user_data": None}),
             Item("f", {**GOOD, "user_data": {"em": ["ada@example.com"]}}),
             Item("g", {**GOOD, "user_data": {"client_ip_address": "203.0.113.7"}}),
             Item("h", {**GOOD, "event_name": "PURCHASE", "custom_data": {"value": 10.0}}),
             Item("i", {**GOOD, "user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": "UA"}}),
             Item("j", {**GOOD, "event_name": "PURCHASE", "custom_data": {"value": 0, "currency": "EUR"}})]
    built = vendor().build(items)
    assert built.refused == {
        1: "vendor.invalid: event_source_url is required", 2: "vendor.invalid: action_source is required",
        3: "vendor.invalid: event_time must be unix seconds", 4: "vendor.invalid: user_data is required",
        5: "vendor.invalid: user_data.em must be SHA-256 hex",
        6: "vendor.invalid: user_data needs em, ph, madid, or client_ip_address with client_user_agent",
        7: "vendor.invalid: a PURCHASE needs custom_data.value and custom_data.currency"}
    assert [r.items for r in built.requests] == [(0, 8, 9)]


def test_a_400_naming_an_event_dead_letters_it_and_resends_the_others_at_once() -> None:
    body = orjson.dumps({"status": "INVALID", "reason": "x", "event": 2,
                         "errors": {"codes": ["INVALID_EVENT"], "error_msgs": ["Unhashed PII"]}})
    reply = vendor().read(Request("u", b"", (0, 1, 2, 3)), 400, {}, body)
    assert reply.rejected == {2: "vendor.invalid: Unhashed PII"}
    assert reply.retry == [0, 1, 3] and reply.resend and not reply.delivered


def test_a_400_naming_no_event_splits_the_batch_and_is_final_for_one() -> None:
    body = orjson.dumps({"status": "INVALID", "reason": "Insufficient PII"})
    split = vendor().read(Request("u", b"", (0, 1)), 400, {}, body)
    assert split.split and split.resend and split.retry == [0, 1]
    assert vendor().read(Request("u", b"", (0,)), 400, {}, body).rejected == {0: "vendor.rejected"}
    out_of_range = orjson.dumps({"status": "INVALID", "reason": "x", "event": 7})
    assert vendor().read(Request("u", b"", (0, 1)), 400, {}, out_of_range).split


def test_a_200_is_delivered_unless_it_says_invalid() -> None:
    assert vendor().read(Request("u", b"", (0, 1)), 200, {}, b'{"status":"VALID"}').delivered == [0, 1]
    assert vendor().read(Request("u", b"", (0, 1)), 200, {}, b"").delivered == [0, 1]
    invalid = vendor().read(Request("u", b"", (0, 1)), 200, {}, b'{"status":"INVALID","event":0}')
    assert invalid.rejected == {0: "vendor.invalid: refused"} and invalid.retry == [1]


@pytest.mark.parametrize(("status", "expected"), [
    (429, "retry"), (500, "retry"), (503, "retry"), (401, "vendor.auth"), (403, "vendor.auth"), (413, "split")])
def test_other_statuses_are_read_as_usual(status: int, expected: str) -> None:
    reply = vendor().read(Request("u", b"", (0, 1)), status, {"Retry-After": "4"}, b'{"status":"INVALID"}')
    got = "split" if reply.split else "retry" if reply.retry else reply.rejected[0]
    assert got == expected
    if expected == "retry":
        assert reply.retry_after == 4.0


def send(stand_in: SnapchatStandIn, body: Any, token: str | None = "snap-capi-token",
         pixel: str = PIXEL) -> tuple[int, Any]:
    query = {"access_token": token} if token else {}
    answer = stand_in.answer(Incoming("POST", f"/v3/{pixel}/events", query, {}, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body) if answer.status != 404 else answer.body


def test_the_stand_in_takes_the_golden_requests_made_fresh() -> None:
    stand_in = SnapchatStandIn()
    now = int(time.time())
    for shown in json.loads((GOLDEN / "requests" / "snapchat.json").read_text())["requests"]:
        body = {"data": [stand_in.freshen(e, now) for e in shown["body"]["data"]]}
        assert send(stand_in, body) == (200, {"status": "VALID", "reason": "All events are valid"})
    assert [stand_in.carried(e) for e in stand_in.accepted] == ["m-order"]


def test_the_stand_in_refuses_a_bad_request_whole_and_names_the_event() -> None:
    stand_in = SnapchatStandIn()
    good = {**GOOD, "event_time": int(time.time()), "event_id": "m"}
    assert send(stand_in, {"data": [good]}, pixel="other")[0] == 404
    assert send(stand_in, {"data": [good]}, token=None)[0] == 401
    assert send(stand_in, {"data": [good]}, token="other-token")[0] == 401
    assert send(stand_in, {"data": []})[0] == 400
    assert send(stand_in, {"data": [good] * 2001})[0] == 400
    status, answer = send(stand_in, {"data": [good, {**good, "user_data": {"em": ["ada@example.com"]}}]})
    assert (status, answer["status"], answer["event"]) == (400, "INVALID", 1)
    assert answer["errors"]["error_msgs"] == ["user_data.em must be SHA-256 hex"]
    status, answer = send(stand_in, {"data": [{**good, "event_time": int(time.time()) - 38 * 86_400}]})
    assert (status, answer["reason"], answer["event"]) == (400, "Timestamp invalid or out of range", 0)
    assert stand_in.accepted == []
    assert send(stand_in, {"data": [good]})[0] == 200
    assert send(stand_in, {"data": [good]})[0] == 200
    assert stand_in.duplicates == 1


def test_the_stand_in_serves_a_forwarders_request_over_http() -> None:
    stand_in = SnapchatStandIn().start()
    try:
        vendor_here = vendor_for("snapchat", stand_in.connection())
        (request,) = vendor_here.build([Item("m-1", stand_in.sample(3, "m-1", int(time.time())))]).requests
        sent = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as response:
            status, body = response.status, response.read()
        reply = vendor_here.read(request, status, {}, body)
    finally:
        stand_in.stop()
    assert reply.delivered == [0] and [stand_in.carried(e) for e in stand_in.accepted] == ["m-1"]


def test_a_spoiled_sample_is_named_by_the_stand_ins_400_and_the_others_go_again() -> None:
    stand_in = SnapchatStandIn()
    now = int(time.time())
    samples = [stand_in.sample(i, f"m{i}", now) for i in range(3)]
    samples[1] = stand_in.spoil(samples[1])
    (request,) = vendor().build([Item(f"m{i}", s) for i, s in enumerate(samples)]).requests
    answer = stand_in.answer(Incoming("POST", f"/v3/{PIXEL}/events", {"access_token": "snap-capi-token"}, {},
                                      request.body))
    reply = vendor().read(request, answer.status, dict(answer.headers), answer.body)
    assert reply.rejected == {1: "vendor.invalid: Timestamp invalid or out of range"} and reply.retry == [0, 2]
    assert stand_in.accepted == []


@pytest.mark.parametrize(("change", "reason"), [
    ({"user_data": {"em": HASH}}, "user_data.em must be a list of SHA-256 hex"),  # Snap takes a list
    ({"user_data": {"em": [HASH.upper()]}}, "user_data.em must be SHA-256 hex"),
    ({"user_data": {"client_ip_address": "203.0.113.7"}},
     "Insufficient PII: user_data needs em, ph, madid, or client_ip_address with client_user_agent"),
    ({"event_time": "now"}, "event_time must be unix seconds"),
    ({"event_source_url": None}, "event_source_url is required"),
    ({"event_name": "PURCHASE", "custom_data": {"value": "10.00", "currency": "USD"}},
     "custom_data.value must be a number"),
    ({"event_name": "PURCHASE", "custom_data": {"value": 10.0}},
     "a PURCHASE needs custom_data.value and custom_data.currency"),
])
def test_the_stand_in_refuses_by_its_own_checks_an_event_snap_refuses(change: dict[str, Any], reason: str) -> None:
    stand_in = SnapchatStandIn()
    good = {**GOOD, "event_time": int(time.time()), "event_id": "m"}
    status, answer = send(stand_in, {"data": [good, {**good, **change}]})
    assert (status, answer["status"], answer["event"], answer["errors"]["error_msgs"]) == (400, "INVALID", 1, [reason])
    assert stand_in.accepted == []


def test_the_stand_in_refuses_an_event_time_in_milliseconds_as_out_of_range() -> None:
    stand_in = SnapchatStandIn()
    status, answer = send(stand_in, {"data": [{**GOOD, "event_time": int(time.time() * 1000), "event_id": "m"}]})
    assert (status, answer["reason"], answer["event"]) == (400, "Timestamp invalid or out of range", 0)
    assert stand_in.accepted == []
