"""The Pinterest Conversions API module (requests, refusals before sending, per-event answers) and its stand-in."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.pinterest import PinterestStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
NOW = 1_795_730_000
CONNECTION = {"ad_account_id": "549755885175", "conversion_token": "pina-conversion-token"}
HEX = hashlib.sha256(b"ada@example.com").hexdigest()


def event(**changes: Any) -> dict[str, Any]:
    good = {"event_name": "checkout", "action_source": "web", "event_time": NOW - 60, "event_id": "e-1",
            "user_data": {"em": [HEX]}, "custom_data": {"value": "25.00", "currency": "EUR"}}
    return {**good, **changes}


def shown(answer_status: int, answer: dict[str, Any], positions: int = 3) -> Any:
    vendor = vendor_for("pinterest", CONNECTION)
    return vendor.read(Request("u", b"", tuple(range(positions))), answer_status, {}, orjson.dumps(answer))


def test_a_request_carries_the_token_the_account_and_the_message_id_as_event_id() -> None:
    vendor = vendor_for("pinterest", {**CONNECTION, "test": True})
    built = vendor.build([Item("m-1", {k: v for k, v in event().items() if k != "event_id"}), Item("m-2", event())])
    (request,) = built.requests
    assert request.url == "https://api.pinterest.com/v5/ad_accounts/549755885175/events?test=true"
    assert request.headers["Authorization"] == "Bearer pina-conversion-token"
    assert [e["event_id"] for e in orjson.loads(request.body)["data"]] == ["m-1", "e-1"]
    assert vendor.secrets() == ["pina-conversion-token"]


def test_at_most_1000_events_a_request() -> None:
    vendor = vendor_for("pinterest", CONNECTION)
    built = vendor.build([Item(str(i), event(event_id=str(i))) for i in range(2500)])
    assert [len(r.items) for r in built.requests] == [1000, 1000, 500] and not built.refused


@pytest.mark.parametrize(("changes", "reason"), [
    ({"event_name": None}, "event_name is required"),
    ({"user_data": {}}, "user_data is required"),
    ({"event_name": "Purchase"}, "event_name is not a Pinterest event name"),
    ({"action_source": "website"}, "action_source must be app_android, app_ios, web or offline"),
    ({"event_time": "2026-11-26T10:00:00Z"}, "event_time must be unix seconds"),
    ({"properties": {}}, "properties is not a Pinterest event field"),
    ({"custom_data": {"video_id": "v1"}}, "custom_data.video_id is not a Pinterest field"),
    ({"user_data": {"em": ["ada@example.com"]}}, "user_data.em must be a list of SHA-256 hex"),
    ({"user_data": {"em": HEX}}, "user_data.em must be a list of SHA-256 hex"),
    ({"user_data": {"external_id": [HEX], "client_ip_address": "203.0.113.5"}},
     "user_data needs em, hashed_maids, or client_ip_address with client_user_agent"),
])
def test_events_pinterest_would_refuse_are_refused_before_sending(changes: dict[str, Any], reason: str) -> None:
    vendor = vendor_for("pinterest", CONNECTION)
    built = vendor.build([Item("a", event()), Item("b", event(**changes))])
    assert built.refused == {1: f"vendor.invalid: {reason}"}
    assert [r.items for r in built.requests] == [(0,)]


def test_an_ip_address_with_a_user_agent_is_enough_to_match() -> None:
    user = {"client_ip_address": "203.0.113.5", "client_user_agent": "Mozilla/5.0", "click_id": "dj0y"}
    assert not vendor_for("pinterest", CONNECTION).build([Item("a", event(user_data=user))]).refused


def test_failed_events_of_a_200_are_dead_lettered_and_the_others_delivered() -> None:
    reply = shown(200, {"num_events_received": 3, "num_events_processed": 2, "events": [
        {"status": "processed"}, {"status": "failed", "error_message": "event_time is too old"},
        {"status": "processed", "warning_message": "unknown currency"}]})
    assert reply.delivered == [0, 2] and reply.rejected == {1: "vendor.invalid: event_time is too old"}
    assert not reply.retry


def test_a_422_is_read_per_event_from_its_details() -> None:
    reply = shown(422, {"code": 4, "message": "Not all events were successfully processed", "details": {
        "events": [{"status": "failed", "error_message": "bad em"}, {"status": "processed"},
                   {"status": "processed"}]}})
    assert reply.delivered == [1, 2] and reply.rejected == {0: "vendor.invalid: bad em"}


def test_a_422_without_per_event_results_is_split_until_the_event_is_alone() -> None:
    reply = shown(422, {"code": 4, "message": "Not all events were successfully processed", "details": {}})
    assert reply.split and reply.resend and reply.retry == [0, 1, 2]
    alone = shown(422, {"code": 4, "message": "Not all events were successfully processed"}, positions=1)
    assert alone.rejected == {0: "vendor.rejected"}


def test_a_200_without_per_event_results_delivers_all() -> None:
    assert shown(200, {"num_events_received": 3}).delivered == [0, 1, 2]


@pytest.mark.parametrize(("status", "expected"), [
    (400, "split"), (401, "vendor.auth"), (403, "vendor.auth"), (429, "retry"), (503, "retry")])
def test_whole_request_answers(status: int, expected: str) -> None:
    reply = shown(status, {"code": 1, "message": "x"})
    got = "split" if reply.split else "retry" if reply.retry else reply.rejected[0]
    assert got == expected


def test_429_waits_for_retry_after() -> None:
    vendor = vendor_for("pinterest", CONNECTION)
    reply = vendor.read(Request("u", b"", (0, 1)), 429, {"Retry-After": "30"}, b'{"code": 8}')
    assert reply.retry == [0, 1] and reply.retry_after == 30.0


# -- the stand-in ---------------------------------------------------------------------------------

def send(stand_in: PinterestStandIn, body: Any, *, path: str = "/v5/ad_accounts/549755885175/events",
         token: str | None = "pina-conversion-token", query: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = stand_in.answer(Incoming("POST", path, query or {}, headers, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body)


def test_the_stand_in_takes_the_golden_requests() -> None:
    stand_in = PinterestStandIn()
    for request in json.loads((GOLDEN / "requests" / "pinterest.json").read_text())["requests"]:
        data = [PinterestStandIn.freshen(e, int(time.time())) for e in request["body"]["data"]]
        status, answer = send(stand_in, {"data": data})
        assert status == 200 and answer["num_events_processed"] == len(data)
    assert len(stand_in.accepted) == 1 and list(stand_in.keys) == ["m-order"]


def test_the_stand_in_checks_path_token_and_account() -> None:
    stand_in = PinterestStandIn()
    good = {"data": [PinterestStandIn.sample(0, "m-1", NOW)]}
    assert send(stand_in, good, path="/v5/events")[0] == 404
    assert send(stand_in, good, token=None) == (401, {"code": 2, "message": "Authentication failed."})
    assert send(stand_in, good, token="other-token")[0] == 401
    assert send(stand_in, good, path="/v5/ad_accounts/1/events") == (
        403, {"code": 29, "message": "You are not permitted to access that resource."})
    assert not stand_in.accepted


def test_the_stand_in_refuses_a_request_whole_for_one_event_the_schema_refuses() -> None:
    stand_in = PinterestStandIn()
    good = PinterestStandIn.sample(0, "m-1", int(time.time()))
    status, answer = send(stand_in, {"data": [good, {**good, "event_id": "m-2", "properties": {"x": 1}}]})
    assert status == 400 and answer["message"].startswith("Invalid request: data[1]: properties")
    assert send(stand_in, {"data": [good] * 1001})[0] == 400
    assert send(stand_in, {"data": []})[0] == 400
    assert not stand_in.accepted


def test_the_stand_in_fails_an_old_event_alone_and_the_module_reads_it() -> None:
    stand_in = PinterestStandIn()
    now = int(time.time())
    data = [PinterestStandIn.sample(i, f"m-{i}", now) for i in range(3)]
    data[1] = PinterestStandIn.spoil(data[1])  # 8 days old
    assert not vendor_for("pinterest", CONNECTION).build([Item("m-1", data[1])]).refused  # the runner judges age
    status, answer = send(stand_in, {"data": data})
    assert status == 422 and answer["details"]["num_events_processed"] == 2
    assert [e["event_id"] for e in stand_in.accepted] == ["m-0", "m-2"]
    reply = vendor_for("pinterest", CONNECTION).read(Request("u", b"", (0, 1, 2)), status, {}, orjson.dumps(answer))
    assert reply.delivered == [0, 2] and reply.rejected == {1: "vendor.invalid: event_time is more than 7 days in "
                                                               "the past"}


def test_the_stand_in_keeps_nothing_in_test_mode_and_counts_duplicates() -> None:
    stand_in = PinterestStandIn()
    now = int(time.time())
    body = {"data": [PinterestStandIn.sample(0, "m-1", now)]}
    assert send(stand_in, body, query={"test": "true"})[0] == 200 and not stand_in.accepted
    send(stand_in, body)
    send(stand_in, body)
    assert stand_in.duplicates == 1


@pytest.mark.parametrize(("changes", "reason"), [
    ({"custom_data": {"value": 25.0, "currency": "EUR"}}, "custom_data.value has the wrong type"),  # a string
    ({"custom_data": {"contents": [{"id": "p1", "price": "12.50"}]}},
     "custom_data.contents[0].price is not a Pinterest field"),
    ({"custom_data": {"contents": [{"id": "p1", "quantity": "2"}]}},
     "custom_data.contents[0].quantity has the wrong type"),
    ({"user_data": {"em": HEX}}, "user_data.em must be a list of strings"),
    ({"user_data": {"client_ip_address": "203.0.113.5"}},
     "user_data needs em, hashed_maids, or client_ip_address with client_user_agent"),
    ({"event_time": float(NOW)}, "event_time has the wrong type"),
    ({"event_id": 7}, "event_id has the wrong type"),
    ({"opt_out": "false"}, "opt_out has the wrong type"),
])
def test_the_stand_in_refuses_by_its_own_schema_a_request_pinterest_refuses(changes: dict[str, Any],
                                                                           reason: str) -> None:
    stand_in = PinterestStandIn()
    now = int(time.time())
    good = event(event_time=now - 60)
    status, answer = send(stand_in, {"data": [good, {**good, "event_id": "e-2", **changes}]})
    assert (status, answer) == (400, {"code": 1, "message": f"Invalid request: data[1]: {reason}"})
    assert not stand_in.accepted


def test_the_stand_in_fails_alone_an_event_whose_hash_is_not_lowercase_sha256_hex() -> None:
    stand_in = PinterestStandIn()
    good = event(event_time=int(time.time()) - 60)
    status, answer = send(stand_in, {"data": [good, {**good, "event_id": "e-2", "user_data": {"em": [HEX.upper()]}}]})
    assert status == 422 and [e["status"] for e in answer["details"]["events"]] == ["processed", "failed"]
    assert answer["details"]["events"][1]["error_message"] == "user_data.em must be SHA-256 hex"
    assert [e["event_id"] for e in stand_in.accepted] == ["e-1"]
