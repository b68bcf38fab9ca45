"""HubSpot: occurrences and contacts routed by `object`, refused before sending where HubSpot would refuse
the whole request, batched under each endpoint's limits, and the answers read (207 partial failures of a
contact batch, 400 split, 401, 429); the stand-in's answers to good and bad requests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.hubspot import HubSpotStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.hubspot import event_uuid

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CONNECTION = {"access_token": "pat-na1-secret-token", "portal_id": "42"}
EVENT = {"object": "events", "eventName": "order_completed", "email": "ada@example.com", "properties": {"n": 1}}
CONTACT = {"object": "contacts", "idProperty": "email", "id": "ada@example.com", "properties": {"firstname": "Ada"}}


def body(request: Request) -> Any:
    return orjson.loads(request.body)


def test_payloads_go_to_their_endpoint_with_the_token_and_the_portals_prefix() -> None:
    vendor = vendor_for("hubspot", CONNECTION)
    built = vendor.build([Item("m-1", CONTACT), Item("m-2", EVENT),
                          Item("m-3", {**EVENT, "eventName": "pe7_signed_up", "uuid": "m-1"})])
    contacts, events = built.requests
    assert contacts.url == "https://api.hubapi.com/crm/objects/2026-03/contacts/batch/upsert"
    assert events.url == "https://api.hubapi.com/events/2026-03/send/batch"
    assert contacts.headers["Authorization"] == "Bearer pat-na1-secret-token" and vendor.secrets() == [
        "pat-na1-secret-token"]
    assert body(contacts) == {"inputs": [{"idProperty": "email", "id": "ada@example.com", "objectWriteTraceId": "0",
                                          "properties": {"firstname": "Ada"}}]}
    first, second = body(events)["inputs"]
    assert first["eventName"] == "pe42_order_completed" and second["eventName"] == "pe7_signed_up"
    assert first["uuid"] == event_uuid("m-2") and second["uuid"] == event_uuid("m-1")  # the kit's uuid wins
    assert "object" not in first and events.items == (1, 2)


def test_uuid_is_the_message_id_when_a_uuid_else_a_stable_uuid5() -> None:
    assert event_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert uuid.UUID(event_uuid("m-1")).version == 5 and event_uuid("m-1") == event_uuid("m-1") != event_uuid("m-2")


def test_legacy_v3_paths() -> None:
    vendor = vendor_for("hubspot", {**CONNECTION, "api_version": "v3"})
    urls = [r.url for r in vendor.build([Item("a", CONTACT), Item("b", EVENT)]).requests]
    assert urls == ["https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
                    "https://api.hubapi.com/events/v3/send/batch"]


def test_what_hubspot_would_refuse_the_request_for_is_refused_before_sending() -> None:
    vendor = vendor_for("hubspot", {"access_token": "pat-na1-secret-token"})  # no portal_id
    items = [Item("a", {**EVENT, "eventName": "pe42_ok"}),
             Item("b", EVENT),
             Item("c", {**EVENT, "eventName": " "}),
             Item("d", {"object": "events", "eventName": "pe42_x", "properties": {}}),
             Item("e", {**EVENT, "eventName": "pe42_x", "properties": {"items": [1]}}),
             Item("f", {**EVENT, "eventName": "pe42_x", "properties": {f"p{i}": i for i in range(51)}}),
             Item("g", {**EVENT, "eventName": "pe42_x", "properties": {"orderId": "1"}}),
             Item("h", {**CONTACT, "id": ""}),
             Item("i", {**CONTACT, "properties": {"address": {"city": "London"}}}),
             Item("j", {"eventName": "pe42_x", "email": "a@b.c"}),
             Item("k", {**EVENT, "eventName": "pe42_x", "utk": "abc", "email": None})]
    built = vendor.build(items)
    assert built.refused == {
        1: "vendor.invalid: eventName must be pe<portal>_<name> (or set connection.portal_id)",
        2: "vendor.invalid: eventName is required",
        3: "vendor.invalid: email, objectId or utk is required",
        4: "vendor.invalid: properties.items must be a text, number or boolean",
        5: "vendor.invalid: at most 50 properties an occurrence",
        6: "vendor.invalid: property 'orderId' is not a HubSpot internal name",
        7: "vendor.invalid: id is required",
        8: "vendor.invalid: properties must be an object of text, number or boolean values",
        9: "vendor.invalid: object must be events or contacts"}
    assert [r.items for r in built.requests] == [(0, 10)]


def test_500_occurrences_and_100_contacts_a_request_and_no_contact_twice_in_one() -> None:
    vendor = vendor_for("hubspot", CONNECTION)
    built = vendor.build([Item(str(i), EVENT) for i in range(1200)])
    assert [len(r.items) for r in built.requests] == [500, 500, 200]
    contacts = [Item(str(i), {**CONTACT, "id": f"u{i}@example.com"}) for i in range(250)]
    assert [len(r.items) for r in vendor.build(contacts).requests] == [100, 100, 50]
    again = [Item("a", CONTACT), Item("b", {**CONTACT, "id": "u@example.com"}),
             Item("c", {**CONTACT, "id": "ADA@example.com"})]
    assert [r.items for r in vendor.build(again).requests] == [(0, 1), (2,)]
    vendor.max_events = 10  # a delivery policy's batch_size caps both
    assert [len(r.items) for r in vendor.build(contacts[:25]).requests] == [10, 10, 5]


def _kind(reply: Any) -> str:
    return "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else \
        next(iter(reply.rejected.values()))


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (204, "delivered"), (400, "split"), (401, "vendor.auth"), (403, "vendor.auth"),
    (413, "split"), (429, "retry"), (500, "retry")])
def test_answers(status: int, expected: str) -> None:
    vendor = vendor_for("hubspot", CONNECTION)
    (request,) = vendor.build([Item("a", EVENT), Item("b", EVENT)]).requests
    assert _kind(vendor.read(request, status, {}, b'{"status":"error","category":"VALIDATION_ERROR"}')) == expected


def test_a_400_for_one_occurrence_alone_is_final_and_429_waits_for_retry_after() -> None:
    vendor = vendor_for("hubspot", CONNECTION)
    (alone,) = vendor.build([Item("a", EVENT)]).requests
    assert vendor.read(alone, 400, {}, b"{}").rejected == {0: "vendor.rejected"}
    reply = vendor.read(alone, 429, {"Retry-After": "7"}, b'{"status":"error","category":"RATE_LIMITS"}')
    assert reply.retry == [0] and reply.retry_after == 7.0


def test_a_207_refuses_the_contacts_its_errors_name_and_delivers_the_others() -> None:
    vendor = vendor_for("hubspot", CONNECTION)
    contacts = [Item(str(i), {**CONTACT, "id": f"u{i}@example.com"}) for i in range(4)]
    (request,) = vendor.build(contacts).requests
    answer = {"status": "COMPLETE", "results": [], "numErrors": 2, "errors": [
        {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid",
         "context": {"objectWriteTraceId": ["1"]}},
        {"status": "error", "category": "VALIDATION_ERROR", "message": "bad", "context": {"ids": ["U3@example.com"]}}]}
    reply = vendor.read(request, 207, {}, orjson.dumps(answer))
    assert reply.delivered == [0, 2] and not reply.retry
    assert reply.rejected == {1: "vendor.invalid: VALIDATION_ERROR Property values were not valid",
                              3: "vendor.invalid: VALIDATION_ERROR bad"}
    unplaced = {"results": [{"id": "9", "objectWriteTraceId": "2"}], "errors": [{"message": "something"}]}
    reply = vendor.read(request, 207, {}, orjson.dumps(unplaced))
    assert reply.delivered == [2] and sorted(reply.rejected) == [0, 1, 3]
    assert set(vendor.read(request, 207, {}, b"<html>").rejected) == {0, 1, 2, 3}


def _send(stand_in: HubSpotStandIn, path: str, value: Any, token: str = HubSpotStandIn.credential) -> Any:
    answer = stand_in.answer(Incoming("POST", path, {}, {"authorization": f"Bearer {token}"}, orjson.dumps(value)))
    return answer.status, orjson.loads(answer.body) if answer.body else None


def test_stand_in_takes_the_golden_requests() -> None:
    stand_in = HubSpotStandIn()
    for shown in json.loads((GOLDEN / "requests" / "hubspot.json").read_text())["requests"]:
        path = shown["url"].removeprefix("https://api.hubapi.com")
        status, _ = _send(stand_in, path, shown["body"])
        assert status in (200, 204)
    assert len(stand_in.accepted) == 2 and len(stand_in.keys) == 1  # contacts carry no dedup key


def test_stand_in_refuses_as_hubspot_does() -> None:
    stand_in = HubSpotStandIn()
    good = {"eventName": "pe42_order_completed", "email": "a@example.com", "uuid": "u1", "properties": {}}
    events = "/events/2026-03/send/batch"
    assert _send(stand_in, "/events/2026-03/send", {"inputs": [good]})[0] == 404
    status, error = _send(stand_in, events, {"inputs": [good]}, token="wrong")
    assert status == 401 and error["category"] == "INVALID_AUTHENTICATION"
    for bad in ({**good, "eventName": "order_completed"}, {**good, "email": ""}, {**good, "properties": {"a": [1]}},
                {**good, "occurredAt": "yesterday"}, {**good, "properties": {"Camel": 1}}):
        status, error = _send(stand_in, events, {"inputs": [good, bad]})
        assert status == 400 and error["category"] == "VALIDATION_ERROR", bad
    assert _send(stand_in, events, {"inputs": [good] * 501})[0] == 400
    assert not stand_in.accepted  # a refused batch keeps nothing
    assert _send(stand_in, "/events/v3/send/batch", {"inputs": [good, good]}) == (204, None)
    assert stand_in.duplicates == 1  # HubSpot keeps the first occurrence of a uuid in an event type


def test_stand_in_upserts_contacts_and_names_the_bad_ones_in_a_207_the_module_reads() -> None:
    stand_in = HubSpotStandIn(CONNECTION["access_token"])
    vendor = vendor_for("hubspot", CONNECTION)
    (request,) = vendor.build([Item("a", CONTACT), Item("b", {**CONTACT, "id": "not-an-email"}),
                               Item("c", {**CONTACT, "id": "u@example.com"})]).requests
    path = request.url.removeprefix("https://api.hubapi.com")
    answer = stand_in.answer(Incoming("POST", path, {}, {k.lower(): v for k, v in request.headers.items()},
                                      request.body))
    assert answer.status == 207
    reply = vendor.read(request, answer.status, answer.headers, answer.body)
    assert reply.delivered == [0, 2] and list(reply.rejected) == [1]
    assert len(stand_in.accepted) == 2
    token = CONNECTION["access_token"]
    status, error = _send(stand_in, path, {"inputs": [{"idProperty": "email", "id": "a@b.co"}] * 2}, token)
    assert status == 400 and "Duplicate IDs" in error["message"]
    assert _send(stand_in, path, {"inputs": [{"id": f"u{i}@b.co"} for i in range(101)]}, token)[0] == 400
    assert _send(stand_in, "/crm/v3/objects/contacts/batch/upsert", {"inputs": [{"id": "a@b.co"}]}, token)[0] == 200


def test_a_spoiled_sample_is_refused_alone_before_sending() -> None:
    vendor = vendor_for("hubspot", HubSpotStandIn.settings(HubSpotStandIn.credential))
    samples = [HubSpotStandIn.sample(i, f"m-{i}", 1_795_730_000) for i in range(3)]
    built = vendor.build([Item(f"m-{i}", p) for i, p in enumerate([samples[0], HubSpotStandIn.spoil(samples[1]),
                                                                    samples[2]])])
    assert list(built.refused) == [1] and [r.items for r in built.requests] == [(0, 2)]


def test_stand_in_over_http() -> None:
    stand_in = HubSpotStandIn().start()
    try:
        vendor = vendor_for("hubspot", stand_in.connection())
        (request,) = vendor.build([Item("m-1", HubSpotStandIn.sample(3, "m-1", 1_795_730_000))]).requests
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as response:
            assert response.status == 204
        assert [HubSpotStandIn.carried(e) for e in stand_in.accepted] == ["m-1"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(request.url, request.body, method="POST"), timeout=5)
        assert refused.value.code == 401
    finally:
        stand_in.stop()


def test_a_207_of_unexpected_shapes_delivers_only_what_it_names_as_done() -> None:
    vendor = vendor_for("hubspot", {"access_token": "hubspot-token"})
    request = Request("https://api.hubapi.com/crm/objects/2026-03/contacts/batch/upsert",
                      orjson.dumps({"inputs": [{"id": f"u{i}@example.com", "idProperty": "email",
                                                "objectWriteTraceId": str(i)} for i in range(3)]}), (0, 1, 2))
    for errors in ([{"context": {"objectWriteTraceId": "12"}}], [{"context": {"objectWriteTraceId": 7}}], ["x"]):
        answer = {"errors": errors, "results": [{"objectWriteTraceId": "0"}]}
        reply = vendor.read(request, 207, {}, orjson.dumps(answer))
        assert reply.delivered == [0] and sorted(reply.rejected) == [1, 2], errors
