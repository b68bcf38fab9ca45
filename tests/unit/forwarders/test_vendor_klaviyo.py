"""The Klaviyo module (Create Event and Create or Update Profile, one request each) and its stand-in:
the JSON:API bodies, refusals before sending, 4xx with JSON:API errors, 401, 429 with Retry-After."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import Incoming
from eventrouter.dev.standins.klaviyo import KlaviyoStandIn
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.klaviyo import body_of

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CONNECTION = {"api_key": "pk_test_klaviyo"}
EVENT = {"metric": "Placed Order", "profile": {"external_id": "u1"}, "properties": {"OrderId": "1"},
         "time": "2026-11-26T10:00:00Z", "value": 25.0, "value_currency": "EUR"}
PROFILE = {"profile": {"external_id": "u1", "email": "ada@example.com", "first_name": "Ada"}}


def _vendor(**settings: Any) -> Any:
    return vendor_for("klaviyo", {**CONNECTION, **settings})


def test_one_request_an_event_with_the_key_the_revision_and_unique_id() -> None:
    built = _vendor().build([Item("m-1", EVENT), Item("m-2", PROFILE)])
    event, profile = built.requests
    assert event.url == "https://a.klaviyo.com/api/events" and event.items == (0,)
    assert profile.url == "https://a.klaviyo.com/api/profile-import" and profile.items == (1,)
    assert event.headers["Authorization"] == "Klaviyo-API-Key pk_test_klaviyo"
    assert event.headers["revision"] == "2026-07-15" and event.headers["Content-Type"] == "application/vnd.api+json"
    attributes = orjson.loads(event.body)["data"]["attributes"]
    assert attributes["unique_id"] == "m-1" and attributes["metric"] == {
        "data": {"type": "metric", "attributes": {"name": "Placed Order"}}}
    assert attributes["profile"] == {"data": {"type": "profile", "attributes": {"external_id": "u1"}}}
    assert "backfill" not in attributes
    assert orjson.loads(profile.body) == {"data": {"type": "profile", "attributes": PROFILE["profile"]}}
    assert _vendor().secrets() == ["pk_test_klaviyo"]


def test_the_kits_unique_id_wins_and_backfill_and_empty_properties_are_added() -> None:
    payload = {k: v for k, v in EVENT.items() if k != "properties"}
    vendor = _vendor(backfill=True, revision="2026-10-15")
    (request,) = vendor.build([Item("m-1", {**payload, "unique_id": "k"})]).requests
    attributes = orjson.loads(request.body)["data"]["attributes"]
    assert attributes["unique_id"] == "k" and attributes["properties"] == {} and attributes["backfill"] is True
    assert request.headers["revision"] == "2026-10-15"


def test_refuses_before_sending_what_klaviyo_would_refuse() -> None:
    items = [Item("a", EVENT),
             Item("b", {**EVENT, "metric": ""}),
             Item("c", {**EVENT, "metric": "x" * 128}),
             Item("d", {**EVENT, "profile": {"first_name": "Ada"}}),
             Item("e", {k: v for k, v in EVENT.items() if k != "profile"}),
             Item("f", {**EVENT, "properties": {f"p{i}": i for i in range(401)}}),
             Item("g", {**EVENT, "value": "25.00"}),
             Item("h", {**EVENT, "properties": {"html": "x" * 100_001}}),
             Item("i", {"profile": {"first_name": "Ada"}}),
             Item("j", {"profile": {"email": "a@b.c", "properties": {"blob": "x" * 100_000}}}),
             Item("k", {**EVENT, "properties": ["x"]}),
             Item("l", {**EVENT, "profile": {"_kx": "abc"}})]
    built = _vendor().build(items)
    needs_id = "vendor.invalid: profile needs one of email, phone_number, external_id, anonymous_id, _kx"
    assert built.refused == {
        1: "vendor.invalid: metric name is required",
        2: "vendor.invalid: metric name must be less than 128 characters",
        3: needs_id, 4: "vendor.invalid: profile is required",
        5: "vendor.invalid: properties must not exceed 400 properties",
        6: "vendor.invalid: value must be a number",
        7: "vendor.too_large: a string over Klaviyo's 100 KB",
        8: needs_id, 9: "vendor.too_large: over Klaviyo's 100 KB per profile",
        10: "vendor.invalid: properties must be an object"}
    assert [r.items for r in built.requests] == [(0,), (11,)]


@pytest.mark.parametrize(("status", "expected"), [
    (202, "delivered"), (200, "delivered"), (201, "delivered"), (401, "vendor.auth"), (403, "vendor.auth"),
    (404, "vendor.rejected"), (429, "retry"), (500, "retry"), (503, "retry"),
    (400, "vendor.invalid: invalid: The metric name is required."),
    (409, "vendor.invalid: duplicate_profile: A profile already exists with one of these identifiers.")])
def test_answers(status: int, expected: str) -> None:
    detail = {400: ("invalid", "The metric name is required."),
              409: ("duplicate_profile", "A profile already exists with one of these identifiers.")}
    code, text = detail.get(status, ("x", "y"))
    body = orjson.dumps({"errors": [{"id": "e", "status": status, "code": code, "title": "t", "detail": text,
                                     "source": {"pointer": "/data/attributes"}}]})
    reply = _vendor().read(Request("u", b"", (0,)), status, {"Retry-After": "12"}, body)
    got = "delivered" if reply.delivered else "retry" if reply.retry else reply.rejected[0]
    assert got == expected
    if status == 429:
        assert reply.retry_after == 12.0
    assert _vendor().read(Request("u", b"", (0,)), 400, {}, b"not json").rejected == {0: "vendor.rejected"}


def _send(stand_in: KlaviyoStandIn, body: Any, path: str = "/api/events", **headers: str) -> tuple[int, Any]:
    sent = {"authorization": "Klaviyo-API-Key pk_test_klaviyo", "revision": "2026-07-15",
            "content-type": "application/vnd.api+json", **headers}
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    answer = stand_in.answer(Incoming("POST", path, {}, sent, raw))
    return answer.status, orjson.loads(answer.body) if answer.body else None


def _wire(payload: dict[str, Any], message_id: str = "m-1") -> dict[str, Any]:
    (request,) = _vendor().build([Item(message_id, payload)]).requests
    return dict(orjson.loads(request.body))


def test_stand_in_takes_the_golden_requests() -> None:
    stand_in = KlaviyoStandIn()
    for shown in json.loads((GOLDEN / "requests" / "klaviyo.json").read_text())["requests"]:
        path = shown["url"].removeprefix("https://a.klaviyo.com")
        headers = {k.lower(): v for k, v in shown["headers"].items()}
        answer = stand_in.answer(Incoming("POST", path, {}, headers, orjson.dumps(shown["body"])))
        assert answer.status in (202, 201)
    assert len(stand_in.accepted) == 4 and len(stand_in.keys) == 3  # the profile import has no dedup key


def test_stand_in_keys_events_by_unique_id_metric_and_profile() -> None:
    stand_in = KlaviyoStandIn()
    assert _send(stand_in, _wire(EVENT)) == (202, None)
    assert _send(stand_in, _wire(EVENT)) == (202, None)
    assert _send(stand_in, _wire({**EVENT, "profile": {"external_id": "u2"}})) == (202, None)
    assert stand_in.duplicates == 1
    assert _send(stand_in, _wire(PROFILE), "/api/profile-import")[0] == 201
    assert _send(stand_in, _wire(PROFILE), "/api/profile-import")[0] == 200


def test_stand_in_refuses_what_klaviyo_refuses() -> None:
    stand_in = KlaviyoStandIn()
    good = _wire(EVENT)
    status, body = _send(stand_in, good, authorization="Klaviyo-API-Key pk_wrong")
    assert status == 401 and body["errors"][0]["code"] == "not_authenticated"
    assert _send(stand_in, good, "/api/track")[0] == 404
    assert _send(stand_in, good, revision="")[0] == 400
    assert _send(stand_in, good, **{"content-type": "text/plain"})[0] == 415
    assert _send(stand_in, b"{nope")[0] == 400
    assert _send(stand_in, good, "/api/profile-import")[0] == 409
    no_metric = {"data": {**good["data"], "attributes": {**good["data"]["attributes"], "metric": None}}}
    status, body = _send(stand_in, no_metric)
    assert status == 400 and body["errors"][0]["detail"] == "metric name is required"
    assert body["errors"][0]["source"] == {"pointer": "/data/attributes"}
    for when in ("1989-12-31T00:00:00Z", "2099-01-01T00:00:00Z", "yesterday"):
        assert _send(stand_in, _wire({**EVENT, "time": when}))[0] == 400
    assert _send(stand_in, body_of({**EVENT, "properties": {"x": "y" * 5_000_000}}, "m-9"))[0] == 413
    assert not stand_in.accepted


def test_stand_in_over_http() -> None:
    stand_in = KlaviyoStandIn().start()
    try:
        vendor = vendor_for("klaviyo", stand_in.connection())
        (request,) = vendor.build([Item("m-1", EVENT)]).requests
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as answer:
            assert answer.status == 202
        bad = urllib.request.Request(request.url, request.body, {**request.headers, "Authorization": "x"},
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 401
        reply = vendor.read(request, 401, {}, refused.value.read())
        assert reply.rejected == {0: "vendor.auth"}
    finally:
        stand_in.stop()
    assert KlaviyoStandIn.carried(stand_in.accepted[0]) == "m-1"


def test_a_spoiled_sample_passes_the_module_and_gets_a_400_of_its_own() -> None:
    stand_in = KlaviyoStandIn()
    spoiled = KlaviyoStandIn.spoil(KlaviyoStandIn.sample(1, "m-1", 1_795_687_196))
    (request,) = _vendor().build([Item("m-1", spoiled)]).requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    answer = stand_in.answer(Incoming("POST", "/api/events", {}, headers, request.body))
    reply = _vendor().read(request, answer.status, answer.headers, answer.body)
    assert answer.status == 400 and not stand_in.accepted
    assert reply.rejected == {0: "vendor.invalid: invalid: time must be after 1990 and at most a year ahead"}


def _with(body: dict[str, Any], **attributes: Any) -> dict[str, Any]:
    return {"data": {**body["data"], "attributes": {**body["data"]["attributes"], **attributes}}}


@pytest.mark.parametrize(("path", "body", "detail"), [
    ("/api/events", _with(body_of(EVENT, "m-1"), profile={"data": {"type": "profile", "attributes": {
        "phone_number": "5550109999"}}}), "phone_number must be in E.164 format"),
    ("/api/events", _with(body_of(EVENT, "m-1"), value="25.00"), "value has the wrong type"),
    ("/api/events", _with(body_of(EVENT, "m-1"), unique_id=7), "unique_id has the wrong type"),
    ("/api/events", _with(body_of(EVENT, "m-1"), properties=None), "properties are required"),
    ("/api/events", _with(body_of(EVENT, "m-1"), metric={"data": {"type": "metric", "attributes": {
        "name": "x" * 128}}}), "metric name must be less than 128 characters"),
    ("/api/events", _with(body_of(EVENT, "m-1"), time="2026-13-01T00:00:00Z"), "time must be an ISO 8601 date-time"),
    ("/api/profile-import", body_of({"profile": {"anonymous_id": "a-1"}}, "m-2"),
     "profile needs one of email, phone_number, external_id, _kx"),
    ("/api/profile-import", body_of({"profile": {"email": "a@b.c", "properties": ["x"]}}, "m-2"),
     "properties must be an object"),
])
def test_stand_in_refuses_by_its_own_checks_a_body_klaviyo_refuses(path: str, body: dict[str, Any],
                                                                     detail: str) -> None:
    stand_in = KlaviyoStandIn()
    status, answer = _send(stand_in, body, path)
    assert status == 400 and answer["errors"][0]["code"] == "invalid" and answer["errors"][0]["detail"] == detail
    assert not stand_in.accepted
