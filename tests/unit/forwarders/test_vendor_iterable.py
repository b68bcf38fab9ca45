"""The Iterable module builds trackBulk, bulkUpdate and trackPurchase requests and reads Iterable's per-event
failures in a 200; the stand-in answers as Iterable documents. Pure, but for one request over loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.iterable import IterableStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.iterable import EVENTS, PURCHASE, USERS, event_id

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
KEY = "iterable-key"
EVENT = {"object": "events", "eventName": "Video Played", "userId": "u1", "createdAt": 1_795_000_000}
PURCHASE_BODY = {"object": "purchase", "user": {"email": "ada@example.com"}, "total": 25.0,
                 "items": [{"id": "p1", "name": "Shirt", "price": 12.5, "quantity": 2}]}


def vendor(**extra: Any) -> Any:
    return vendor_for("iterable", {"api_key": KEY, **extra})


def bulk(n: int, **fields: Any) -> Request:
    events = [{**EVENT, "userId": f"u{i}", "id": f"m-{i}", **fields} for i in range(n)]
    return Request("https://api.iterable.com" + EVENTS, orjson.dumps({"events": events}), tuple(range(n)))


def test_each_object_goes_to_its_endpoint_with_the_api_key_header() -> None:
    built = vendor(endpoint="https://api.eu.iterable.com").build(
        [Item("m-1", EVENT), Item("m-2", {"object": "users", "userId": "u1", "dataFields": {"plan": "pro"}}),
         Item("m-3", PURCHASE_BODY), Item("m-4", PURCHASE_BODY), Item("m-5", EVENT)])
    assert not built.refused
    assert [(r.url.removeprefix("https://api.eu.iterable.com"), r.items) for r in built.requests] == [
        (EVENTS, (0, 4)), (USERS, (1,)), (PURCHASE, (2,)), (PURCHASE, (3,))]
    assert all(r.headers["Api-Key"] == KEY for r in built.requests)
    events = orjson.loads(built.requests[0].body)["events"]
    assert [e["id"] for e in events] == ["m-1", "m-5"] and "object" not in events[0]
    assert "id" not in orjson.loads(built.requests[1].body)["users"][0]  # users have no id
    assert orjson.loads(built.requests[2].body)["id"] == "m-3"


def test_the_id_is_the_message_id_when_iterable_takes_it_else_a_stable_uuid5() -> None:
    assert event_id("ajs-next-1764151200000-0f8fad5b") == "ajs-next-1764151200000-0f8fad5b"
    for odd in ("m_order", "a:b", "x" * 513, "é"):
        derived = event_id(odd)
        assert uuid.UUID(derived).version == 5 and derived == event_id(odd)
    request = vendor().build([Item("m_1", EVENT), Item("m_2", {**EVENT, "id": "kit.id"})]).requests[0]
    assert [e["id"] for e in orjson.loads(request.body)["events"]] == [event_id("m_1"), event_id("kit.id")]


def test_refuses_before_sending_what_iterable_would_refuse() -> None:
    items = [Item("a", EVENT),
             Item("b", {**EVENT, "object": "cart"}),
             Item("c", {**EVENT, "eventName": " "}),
             Item("d", {"object": "events", "eventName": "x", "email": ""}),
             Item("e", {**EVENT, "createdAt": "2026-11-26T10:00:00Z"}),
             Item("f", {**EVENT, "dataFields": [1]}),
             Item("g", {"object": "users", "dataFields": {}}),
             Item("h", {**PURCHASE_BODY, "total": None}),
             Item("i", {**PURCHASE_BODY, "items": [{"id": "p1", "price": 1, "quantity": 1}]}),
             Item("j", {**PURCHASE_BODY, "user": "ada"})]
    built = vendor().build(items)
    assert built.refused == {1: "vendor.invalid: object must be events, users or purchase",
                             2: "vendor.invalid: eventName is required",
                             3: "vendor.invalid: email or userId is required",
                             4: "vendor.invalid: createdAt must be unix seconds",
                             5: "vendor.invalid: dataFields must be an object",
                             6: "vendor.invalid: email or userId is required",
                             7: "vendor.invalid: total is required",
                             8: "vendor.invalid: items[0].name is required",
                             9: "vendor.invalid: user is required"}
    assert [r.items for r in built.requests] == [(0,)]


def test_bulk_requests_keep_to_1000_events_and_4_mb() -> None:
    many = vendor().build([Item(f"m-{i}", EVENT) for i in range(2500)])
    assert [len(r.items) for r in many.requests] == [1000, 1000, 500]
    big = vendor().build([Item(f"m-{i}", {**EVENT, "dataFields": {"blob": "x" * 900_000}}) for i in range(10)])
    assert len(big.requests) == 3 and all(len(r.body) < 4_000_000 for r in big.requests)
    assert [p for r in big.requests for p in r.items] == list(range(10))


def test_a_200_refuses_the_events_its_failure_lists_name_and_delivers_the_rest() -> None:
    request = bulk(5)
    events = orjson.loads(request.body)["events"]
    events[1]["email"] = "Bad@Example"
    events[4]["eventName"] = "Blocked"
    request = Request(request.url, orjson.dumps({"events": events}), request.items)
    answer = {"successCount": 2, "failCount": 3, "disallowedEventNames": ["Blocked"], "filteredOutFields": ["x"],
              "failedUpdates": {"invalidEmails": ["bad@example"], "notFoundUserIds": ["u2"], "forgottenEmails": []}}
    reply = vendor().read(request, 200, {}, orjson.dumps(answer))
    assert reply.delivered == [0, 3] and not reply.retry
    assert reply.rejected == {1: "vendor.invalid: failedUpdates.invalidEmails",
                              2: "vendor.not_found: failedUpdates.notFoundUserIds",
                              4: "vendor.disallowed: Blocked is disallowed from tracking"}


def test_the_deprecated_top_level_lists_count_too() -> None:
    reply = vendor().read(bulk(2), 200, {}, orjson.dumps({"successCount": 1, "failCount": 1,
                                                            "invalidUserIds": ["u1"]}))
    assert reply.delivered == [0] and reply.rejected == {1: "vendor.invalid: invalidUserIds"}


def test_failures_the_lists_do_not_name_are_split_out_then_refused_alone() -> None:
    answer = orjson.dumps({"successCount": 3, "failCount": 1, "failedUpdates": {}})
    reply = vendor().read(bulk(4), 200, {}, answer)
    assert reply.retry == [0, 1, 2, 3] and reply.split and reply.resend and not reply.delivered
    alone = vendor().read(bulk(1), 200, {}, orjson.dumps({"successCount": 0, "failCount": 1}))
    assert alone.rejected == {0: "vendor.rejected: counted in failCount"}


def test_bulk_update_conflicts_refuse_their_users() -> None:
    users = [{"email": "a@example.com"}, {"userId": "u2"}]
    request = Request("https://api.iterable.com" + USERS, orjson.dumps({"users": users}), (0, 1))
    answer = {"successCount": 1, "failCount": 1, "failedUpdates": {"conflictEmails": ["A@example.com"]}}
    reply = vendor().read(request, 200, {}, orjson.dumps(answer))
    assert reply.delivered == [1] and reply.rejected == {0: "vendor.conflict: failedUpdates.conflictEmails"}


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"msg": "Purchase with id: m-1 tracked.", "code": "Success", "params": {"id": "m-1"}}, "delivered"),
    (400, {"msg": "Invalid parameters", "code": "BadParams"}, "vendor.rejected"),
    (409, {"msg": "Email/userId conflict", "code": "ExternalKeyConflict"}, "vendor.rejected"),
    (401, {"msg": "Invalid API key", "code": "BadApiKey"}, "vendor.auth"),
    (429, {"msg": "Rate limit exceeded", "code": "RateLimitExceeded"}, "retry"),
    (503, {}, "retry")])
def test_purchase_answers(status: int, body: dict[str, Any], expected: str) -> None:
    request = Request("https://api.iterable.com" + PURCHASE, orjson.dumps(PURCHASE_BODY), (0,))
    reply = vendor().read(request, status, {"Retry-After": "3"}, orjson.dumps(body))
    got = "delivered" if reply.delivered else "retry" if reply.retry else reply.rejected[0]
    assert got == expected
    if expected == "retry":
        assert reply.retry_after == 3.0


@pytest.mark.parametrize(("status", "expected"), [
    (400, "split"), (413, "split"), (401, "vendor.auth"), (429, "retry"), (500, "retry")])
def test_bulk_answers_other_than_200(status: int, expected: str) -> None:
    """A 400 refuses a bulk request whole (one field of the wrong type): it is split until the event is alone."""
    reply = vendor().read(bulk(2), status, {"Retry-After": "2"}, b'{"msg": "x", "code": "BadParams"}')
    got = "split" if reply.split else "retry" if reply.retry else reply.rejected[0]
    assert got == expected
    assert vendor().read(bulk(1), 400, {}, b"{}").rejected == {0: "vendor.rejected"}


def test_the_api_key_is_scrubbed() -> None:
    assert vendor().secrets() == [KEY]


# -- the stand-in ------------------------------------------------------------------------------------------
def send(stand_in: IterableStandIn, path: str, body: Any, key: str = KEY) -> tuple[int, dict[str, Any]]:
    answer = stand_in.answer(Incoming("POST", path, {}, {"api-key": key}, orjson.dumps(body)))
    return answer.status, orjson.loads(answer.body)


def test_stand_in_takes_the_golden_requests() -> None:
    stand_in = IterableStandIn()
    shown = json.loads((GOLDEN / "requests" / "iterable.json").read_text())["requests"]
    for request in shown:
        status, answer = send(stand_in, request["url"].removeprefix("https://api.iterable.com"), request["body"])
        assert status == 200 and answer.get("failCount", 0) == 0 and answer.get("code", "Success") == "Success"
    assert len(stand_in.accepted) == sum(len(r["items"]) for r in shown)
    assert set(stand_in.keys) == {"event:m-video", "event:m-page", "purchase:m-order"}


def test_stand_in_enforces_path_key_and_size() -> None:
    stand_in = IterableStandIn()
    good = {"events": [{"eventName": "e", "userId": "u1", "id": "m-1"}]}
    assert send(stand_in, "/api/events/track", good)[0] == 404
    assert send(stand_in, EVENTS, good, key="wrong") == (401, {"msg": "Invalid API key", "code": "BadApiKey",
                                                             "params": {"endpoint": EVENTS}})
    huge = {"events": [{"eventName": "e", "userId": "u1", "dataFields": {"x": "y" * 4_000_000}}]}
    assert send(stand_in, EVENTS, huge)[1]["code"] == "BatchTooLarge"
    answer = stand_in.answer(Incoming("POST", EVENTS, {}, {"api-key": KEY}, b"{"))
    assert (answer.status, orjson.loads(answer.body)["code"]) == (400, "BadJsonBody")
    assert not stand_in.accepted


def test_stand_in_refuses_a_bad_request_whole_and_reports_bad_users_per_event() -> None:
    stand_in = IterableStandIn(disallowed=("Blocked",))
    ok = {"eventName": "e", "userId": "u1", "id": "m-1"}
    for bad in ({"userId": "u1"}, {"eventName": "e"}, {**ok, "id": "m_1"}, {**ok, "createdAt": "today"}):
        status, answer = send(stand_in, EVENTS, {"events": [ok, bad]})
        assert (status, answer["code"]) == (400, "BadParams")
    assert not stand_in.accepted
    status, answer = send(stand_in, EVENTS, {"events": [ok, {**ok, "id": "m-2", "email": "bad@"},
                                                         {**ok, "id": "m-3", "userId": "u" * 53},
                                                         {**ok, "id": "m-4", "eventName": "Blocked"}]})
    assert status == 200 and (answer["successCount"], answer["failCount"]) == (1, 3)
    assert answer["failedUpdates"]["invalidEmails"] == ["bad@"]
    assert answer["failedUpdates"]["invalidUserIds"] == ["u" * 53]
    assert answer["disallowedEventNames"] == ["Blocked"]
    assert [e["id"] for e in stand_in.accepted] == ["m-1"]
    reply = vendor().read(Request("u" + EVENTS, orjson.dumps({"events": [ok, {**ok, "email": "bad@"},
                                                                        {**ok, "userId": "u" * 53},
                                                                        {**ok, "eventName": "Blocked"}]}),
                                  (0, 1, 2, 3)), status, {}, orjson.dumps(answer))
    assert reply.delivered == [0] and sorted(reply.rejected) == [1, 2, 3]


def test_stand_in_purchases_and_users() -> None:
    stand_in = IterableStandIn()
    purchase = {k: v for k, v in PURCHASE_BODY.items() if k != "object"}
    assert send(stand_in, PURCHASE, {**purchase, "id": "m-9"}) == (200, {
        "msg": "Purchase with id: m-9 tracked.", "code": "Success", "params": {"id": "m-9"}})
    assert send(stand_in, PURCHASE, {**purchase, "total": "25"})[1]["code"] == "BadParams"
    no_name = send(stand_in, PURCHASE, {**purchase, "items": [{"id": "p1"}]})[1]["msg"]
    assert no_name.endswith("items[0].name is required")
    assert send(stand_in, PURCHASE, {**purchase, "user": {"email": "ada at example"}})[1]["code"] == \
        "InvalidEmailAddressError"
    status, answer = send(stand_in, USERS, {"users": [{"email": "a@example.com"}, {"email": "nope"}]})
    assert status == 200 and answer["failCount"] == 1 and answer["failedUpdates"]["invalidEmails"] == ["nope"]
    assert len(stand_in.accepted) == 2 and stand_in.keys == {"purchase:m-9": 1}


def test_stand_in_over_loopback_and_sample_round_trip() -> None:
    stand_in = IterableStandIn().start()
    try:
        payload = IterableStandIn.sample(3, "ra-3", 1_795_000_000)
        request = vendor(endpoint=stand_in.url, allow_http=True, allow_private=True).build(
            [Item("ra-3", payload)]).requests[0]
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as answer:
            assert answer.status == 200 and json.loads(answer.read())["successCount"] == 1
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(request.url, request.body, {"Api-Key": "no"}),
                                   timeout=5)
        assert refused.value.code == 401
    finally:
        stand_in.stop()
    assert [IterableStandIn.carried(e) for e in stand_in.accepted] == ["ra-3"]
