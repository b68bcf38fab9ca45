"""The TikTok Events API module (forwarders/vendors/tiktok.py) and its stand-in: TikTok answers HTTP 200
and says in `code` what happened, and refuses a whole request for one bad event."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, Incoming
from eventrouter.dev.standins.tiktok import PATH, TikTokStandIn
from forwarders.vendors import Item, Reply, Request, vendor_for
from forwarders.vendors.tiktok import TikTok

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
HASH = hashlib.sha256(b"ada@example.com").hexdigest()
GOOD: dict[str, Any] = {"event": "CompletePayment", "event_time": 1_795_687_196, "user": {"email": HASH}}
CONNECTION = {"pixel_code": "CTESTPIXEL0000000001", "access_token": "tiktok-token"}


def vendor(**extra: Any) -> TikTok:
    made = vendor_for("tiktok", {**CONNECTION, **extra})
    assert isinstance(made, TikTok)
    return made


def tiktok_reply(code: int, positions: int = 2, headers: dict[str, str] | None = None) -> Reply:
    body = orjson.dumps({"code": code, "message": "x", "request_id": "r", "data": {}})
    return vendor().read(Request("u", b"", tuple(range(positions))), 200, headers or {}, body)


def test_the_stand_in_is_the_catalogues() -> None:
    assert STAND_INS["tiktok"] is TikTokStandIn


def test_a_request_carries_the_pixel_the_token_and_at_most_1000_events() -> None:
    built = vendor(test_event_code="TEST123").build([Item(f"m{i}", GOOD) for i in range(2500)])
    assert [len(r.items) for r in built.requests] == [1000, 1000, 500] and not built.refused
    request = built.requests[0]
    assert request.url == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert request.headers["Access-Token"] == "tiktok-token"
    body = orjson.loads(request.body)
    assert (body["event_source"], body["event_source_id"], body["test_event_code"]) == \
        ("web", "CTESTPIXEL0000000001", "TEST123")
    assert [e["event_id"] for e in body["data"][:2]] == ["m0", "m1"]  # the messageId, where TikTok dedupes
    assert vendor().secrets() == ["tiktok-token"]


def test_the_kits_event_id_wins_over_the_message_id() -> None:
    (request,) = vendor().build([Item("m-1", {**GOOD, "event_id": "order-7"})]).requests
    assert orjson.loads(request.body)["data"][0]["event_id"] == "order-7"


def test_events_tiktok_would_refuse_the_whole_request_for_are_refused_before_sending() -> None:
    items = [Item("a", GOOD), Item("b", {**GOOD, "event": " "}), Item("c", {**GOOD, "event_time": None}),
             Item("d", {**GOOD, "event_time": "2026-11-26T10:00:00Z"}),
             Item("e", {**GOOD, "user": {"email": "ada@example.com"}}),
             Item("f", {**GOOD, "user": {"phone": [HASH, "+15550109999"]}}),
             Item("g", {**GOOD, "user": "ada"}), Item("h", {**GOOD, "user": {"external_id": [HASH], "ip": "1.2.3.4"}})]
    built = vendor().build(items)
    assert built.refused == {1: "vendor.invalid: event is required", 2: "vendor.invalid: event_time is required",
                             3: "vendor.invalid: event_time must be unix seconds",
                             4: "vendor.invalid: user.email must be SHA-256 hex",
                             5: "vendor.invalid: user.phone must be SHA-256 hex",
                             6: "vendor.invalid: user must be an object"}
    assert [r.items for r in built.requests] == [(0, 7)]


@pytest.mark.parametrize("code", [0, 20001])
def test_code_0_is_delivered_whatever_the_status_said(code: int) -> None:
    assert tiktok_reply(code).delivered == [0, 1]


def test_code_40100_is_a_rate_limit_retried_after_retry_after() -> None:
    reply = tiktok_reply(40100, headers={"Retry-After": "3"})
    assert reply.retry == [0, 1] and reply.retry_after == 3.0 and not reply.rejected


@pytest.mark.parametrize("code", [40001, 40104, 40105])
def test_auth_codes_in_a_200_are_final(code: int) -> None:
    assert tiktok_reply(code).rejected == {0: "vendor.auth", 1: "vendor.auth"}


@pytest.mark.parametrize("code", [40700, 50000, 50002])
def test_tiktoks_internal_errors_are_retried(code: int) -> None:
    assert tiktok_reply(code).retry == [0, 1]


def test_a_parameter_error_splits_the_batch_until_the_bad_event_is_alone() -> None:
    split = tiktok_reply(40002, positions=4)
    assert split.split and split.resend and split.retry == [0, 1, 2, 3]
    assert tiktok_reply(40002, positions=1).rejected == {0: "vendor.rejected: 40002 x"}


@pytest.mark.parametrize(("status", "expected"), [
    (429, "retry"), (500, "retry"), (503, "retry"), (401, "vendor.auth"), (403, "vendor.auth"), (413, "split")])
def test_http_statuses_are_read_as_usual(status: int, expected: str) -> None:
    reply = vendor().read(Request("u", b"", (0, 1)), status, {"Retry-After": "2"}, b"<html>")
    got = "split" if reply.split else "retry" if reply.retry else reply.rejected[0]
    assert got == expected
    if expected == "retry":
        assert reply.retry_after == 2.0


def test_a_200_without_a_code_is_delivered() -> None:
    assert vendor().read(Request("u", b"", (0,)), 200, {}, b"").delivered == [0]


def send(stand_in: TikTokStandIn, body: Any, token: str | None = "tiktok-token", path: str = PATH) -> tuple[int, Any]:
    headers = {"access-token": token} if token else {}
    answer = stand_in.answer(Incoming("POST", path, {}, headers, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body) if answer.status == 200 else answer.body


def test_the_stand_in_takes_the_golden_requests() -> None:
    stand_in = TikTokStandIn()
    for shown in json.loads((GOLDEN / "requests" / "tiktok.json").read_text())["requests"]:
        status, answer = send(stand_in, shown["body"], shown["headers"]["Access-Token"])
        assert (status, answer["code"], answer["message"]) == (200, 0, "OK")
    assert len(stand_in.accepted) == len(stand_in.keys) == 4


def test_the_stand_in_answers_in_codes_and_keeps_nothing_of_a_refused_request() -> None:
    stand_in = TikTokStandIn()
    body = {"event_source": "web", "event_source_id": "CTESTPIXEL0000000001", "data": [{**GOOD, "event_id": "m"}]}
    assert send(stand_in, body, path="/open_api/v1.3/pixel/track/")[0] == 404
    assert send(stand_in, body, token=None)[1]["code"] == 40105
    assert send(stand_in, body, token="other-token")[1]["code"] == 40105
    assert send(stand_in, {**body, "event_source_id": "COTHER"})[1]["code"] == 40001
    assert send(stand_in, {**body, "event_source": "app"})[1]["code"] == 40002
    assert send(stand_in, {**body, "data": []})[1]["code"] == 40002
    assert send(stand_in, {**body, "data": [GOOD] * 1001})[1]["code"] == 40002
    status, answer = send(stand_in, {**body, "data": [GOOD, {**GOOD, "user": {"email": "ada@example.com"}}]})
    assert (status, answer["code"]) == (200, 40002) and "data[1]: user.email must be SHA-256 hex" in answer["message"]
    assert stand_in.accepted == []
    assert send(stand_in, body)[1]["code"] == 0
    assert send(stand_in, body)[1]["code"] == 0
    assert stand_in.duplicates == 1  # the same event and event_id: TikTok would keep one


def test_the_stand_in_serves_a_forwarders_request_over_http() -> None:
    stand_in = TikTokStandIn().start()
    try:
        vendor_here = vendor_for("tiktok", stand_in.connection())
        (request,) = vendor_here.build([Item("m-1", stand_in.sample(3, "m-1", 1_795_687_196))]).requests
        sent = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as response:
            status, body = response.status, response.read()
        reply = vendor_here.read(request, status, {}, body)
    finally:
        stand_in.stop()
    assert reply.delivered == [0] and [stand_in.carried(e) for e in stand_in.accepted] == ["m-1"]


def test_a_spoiled_sample_is_refused_by_the_module_alone() -> None:
    items = [Item(f"m{i}", TikTokStandIn.sample(i, f"m{i}", 1_795_687_196)) for i in range(3)]
    items[1] = Item("m1", TikTokStandIn.spoil(items[1].payload))
    built = vendor().build(items)
    assert built.refused == {1: "vendor.invalid: event is required"} and [r.items for r in built.requests] == [(0, 2)]


@pytest.mark.parametrize(("change", "message"), [
    ({"event_time": 1_795_687_196_000}, "data[0]: event_time must be a unix timestamp in seconds"),
    ({"event_time": 1_795_687_196.0}, "data[0]: event_time must be a unix timestamp in seconds"),
    ({"user": {"email": HASH.upper()}}, "data[0]: user.email must be SHA-256 hex"),
    ({"user": {"phone": [HASH, "+15550109999"]}}, "data[0]: user.phone must be SHA-256 hex"),
    ({"user": {"external_id": HASH, "ip": ["203.0.113.7"]}}, "data[0]: user.ip must be a string"),
    ({"event_id": 7}, "data[0]: event_id must be a string"),
    ({"properties": ["x"]}, "data[0]: properties must be an object"),
])
def test_the_stand_in_refuses_by_its_own_checks_an_event_tiktok_refuses(change: dict[str, Any], message: str) -> None:
    stand_in = TikTokStandIn()
    event = {**GOOD, "event_id": "m", **change}
    body = {"event_source": "web", "event_source_id": "CTESTPIXEL0000000001", "data": [GOOD, event]}
    status, answer = send(stand_in, body)
    assert (status, answer["code"], answer["message"]) == (200, 40002, message.replace("data[0]", "data[1]"))
    assert stand_in.accepted == []
