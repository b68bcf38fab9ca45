"""Intercom: one data event or contact a request, routed by `object`, refused before sending where Intercom
would refuse it; its answers read (404 unknown user, 409 an existing contact (delivered), 429 waiting for
X-RateLimit-Reset); the stand-in's answers to good and bad requests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins.intercom import IntercomStandIn
from eventrouter.dev.standins.server import Incoming
from forwarders.vendors import Item, Request, vendor_for

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CONNECTION = {"access_token": "intercom-secret-token"}
EVENT = {"object": "events", "event_name": "placed-order", "created_at": 1_795_730_000, "user_id": "u1",
         "metadata": {"order_id": "7"}}
CONTACT = {"object": "contacts", "role": "user", "external_id": "u1", "email": "ada@example.com"}
EVENTS = Request("https://api.intercom.io/events", b"{}", (0,))
CONTACTS = Request("https://api.intercom.io/contacts", b"{}", (0,))


def test_one_request_an_event_to_its_endpoint_with_token_and_version() -> None:
    vendor = vendor_for("intercom", {**CONNECTION, "endpoint": "https://api.eu.intercom.io", "api_version": "2.16"})
    events, contacts = vendor.build([Item("a", EVENT), Item("b", CONTACT)]).requests
    assert (events.url, events.items) == ("https://api.eu.intercom.io/events", (0,))
    assert (contacts.url, contacts.items) == ("https://api.eu.intercom.io/contacts", (1,))
    assert events.headers["Authorization"] == "Bearer intercom-secret-token"
    assert events.headers["Intercom-Version"] == "2.16" and vendor.secrets() == ["intercom-secret-token"]
    assert orjson.loads(events.body) == {k: v for k, v in EVENT.items() if k != "object"}
    assert orjson.loads(contacts.body) == {"role": "user", "external_id": "u1", "email": "ada@example.com"}
    assert vendor.max_events == 1 and vendor.dedup_key is not None


def test_what_intercom_would_refuse_is_refused_before_sending() -> None:
    vendor = vendor_for("intercom", CONNECTION)
    rich = {"article": {"url": "https://example.org/a", "value": "A"}, "price": {"amount": 2999, "currency": "usd"}}
    items = [Item("a", {**EVENT, "metadata": rich}),
             Item("b", {**EVENT, "event_name": ""}),
             Item("c", {**EVENT, "created_at": "2026-11-26T10:00:00Z"}),
             Item("d", {**EVENT, "user_id": None}),
             Item("e", {**EVENT, "metadata": {"products": [{"id": "p1"}]}}),
             Item("f", {**EVENT, "metadata": {"address": {"city": "London"}}}),
             Item("g", {**EVENT, "user_id": None, "email": "ada@example.com"}),
             Item("h", {"object": "contacts", "role": "user"}),
             Item("i", {**CONTACT, "custom_attributes": {"plan": {"name": "pro"}}}),
             Item("j", {"event_name": "x"})]
    built = vendor.build(items)
    assert built.refused == {
        1: "vendor.invalid: event_name is required",
        2: "vendor.invalid: created_at (unix seconds) is required",
        3: "vendor.invalid: user_id, email or id is required",
        4: "vendor.invalid: metadata.products is nested (only {url, value} or {amount, currency})",
        5: "vendor.invalid: metadata.address is nested (only {url, value} or {amount, currency})",
        7: "vendor.invalid: external_id or email is required",
        8: "vendor.invalid: custom_attributes must be an object of flat values",
        9: "vendor.invalid: object must be events or contacts"}
    assert [r.items for r in built.requests] == [(0,), (6,)]


def _kind(request: Request, status: int, headers: dict[str, str] | None = None) -> Any:
    reply = vendor_for("intercom", CONNECTION).read(request, status, headers or {}, b'{"type":"error.list"}')
    return "delivered" if reply.delivered else "retry" if reply.retry else reply.rejected[0]


@pytest.mark.parametrize(("request_", "status", "expected"), [
    (EVENTS, 202, "delivered"), (CONTACTS, 200, "delivered"), (EVENTS, 400, "vendor.rejected"),
    (EVENTS, 401, "vendor.auth"), (CONTACTS, 403, "vendor.auth"), (EVENTS, 500, "retry"), (EVENTS, 503, "retry"),
    (EVENTS, 404, "vendor.not_found: Intercom has no contact with this user_id, email or id"),
    (CONTACTS, 409, "delivered"),  # the contact exists: what identify ensures for the data events
    (CONTACTS, 404, "vendor.rejected")])
def test_answers(request_: Request, status: int, expected: str) -> None:
    assert _kind(request_, status) == expected


def test_429_waits_for_retry_after_else_for_the_rate_limit_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1_795_730_000.0)
    vendor = vendor_for("intercom", CONNECTION)
    assert vendor.read(EVENTS, 429, {"Retry-After": "3"}, b"").retry_after == 3.0
    reset = vendor.read(EVENTS, 429, {"X-RateLimit-Limit": "167", "X-RateLimit-Remaining": "0",
                                      "X-RateLimit-Reset": "1795730007"}, b"")
    assert reset.retry == [0] and reset.retry_after == 7.0
    assert vendor.read(EVENTS, 429, {"x-ratelimit-reset": "1795739999"}, b"").retry_after == 60.0  # capped
    assert vendor.read(EVENTS, 429, {}, b"").retry_after is None


def _send(stand_in: IntercomStandIn, path: str, value: Any, token: str = IntercomStandIn.credential) -> Any:
    answer = stand_in.answer(Incoming("POST", path, {}, {"authorization": f"Bearer {token}"}, orjson.dumps(value)))
    return answer.status, orjson.loads(answer.body) if answer.body else None


def test_stand_in_takes_the_golden_requests() -> None:
    stand_in = IntercomStandIn()
    for shown in json.loads((GOLDEN / "requests" / "intercom.json").read_text())["requests"]:
        status, _ = _send(stand_in, shown["url"].removeprefix("https://api.intercom.io"), shown["body"])
        assert status == (202 if shown["url"].endswith("/events") else 200)
    assert len(stand_in.accepted) == 3 and stand_in.duplicates == 0


def test_stand_in_refuses_as_intercom_does_and_keeps_the_first_10_metadata_keys() -> None:
    stand_in = IntercomStandIn()
    good = {k: v for k, v in EVENT.items() if k != "object"}
    assert _send(stand_in, "/events/summaries", good)[0] == 404
    status, error = _send(stand_in, "/events", good, token="wrong")
    assert status == 401 and error["type"] == "error.list" and error["errors"][0]["code"] == "unauthorized"
    for bad in ({**good, "event_name": ""}, {**good, "created_at": "now"}, {**good, "user_id": ""},
                {**good, "metadata": {"items": [1]}}, {**good, "metadata": {"a": {"b": 1}}}):
        assert _send(stand_in, "/events", bad)[0] == 400, bad
    assert not stand_in.accepted
    many = {**good, "created_at": good["created_at"] - 1, "metadata": {f"k{i}": i for i in range(12)}}
    assert _send(stand_in, "/events", many) == (202, None)
    assert list(stand_in.accepted[0]["metadata"]) == [f"k{i}" for i in range(10)]
    assert _send(stand_in, "/events", good) == (202, None)
    assert _send(stand_in, "/events", good) == (202, None)  # Intercom ignores it: the same user, name and time
    assert stand_in.duplicates == 1


def test_stand_in_knows_its_users_and_answers_a_second_create_with_409() -> None:
    stand_in = IntercomStandIn(users={"u1"})
    vendor = vendor_for("intercom", CONNECTION)
    event = {k: v for k, v in EVENT.items() if k != "object"}
    status, error = _send(stand_in, "/events", {**event, "user_id": "u2"})
    assert status == 404 and error["errors"][0] == {"code": "not_found", "message": "User Not Found"}
    contact = {"role": "user", "external_id": "u2"}
    status, made = _send(stand_in, "/contacts", contact)
    assert status == 200 and made["type"] == "contact" and made["external_id"] == "u2"
    assert _send(stand_in, "/events", {**event, "user_id": "u2"})[0] == 202  # known once created
    status, error = _send(stand_in, "/contacts", {**contact, "email": "b@example.com"})
    assert status == 409 and error["errors"][0]["code"] == "conflict"
    assert vendor.read(CONTACTS, status, {}, orjson.dumps(error)).delivered == [0]
    assert _send(stand_in, "/contacts", {"role": "user"})[0] == 400


def test_a_spoiled_sample_is_refused_alone_before_sending() -> None:
    vendor = vendor_for("intercom", IntercomStandIn.settings(IntercomStandIn.credential))
    samples = [IntercomStandIn.sample(i, f"m-{i}", 1_795_730_000) for i in range(3)]
    built = vendor.build([Item(f"m-{i}", p) for i, p in enumerate([samples[0], IntercomStandIn.spoil(samples[1]),
                                                                    samples[2]])])
    assert list(built.refused) == [1] and [r.items for r in built.requests] == [(0,), (2,)]
    assert _send(IntercomStandIn(), "/events", {k: v for k, v in IntercomStandIn.spoil(samples[1]).items()
                                                 if k != "object"})[0] == 400


def test_stand_in_over_http() -> None:
    stand_in = IntercomStandIn().start()
    try:
        vendor = vendor_for("intercom", stand_in.connection())
        (request,) = vendor.build([Item("m-1", IntercomStandIn.sample(3, "m-1", 1_795_730_000))]).requests
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as response:
            assert response.status == 202 and response.read() == b""
        assert [IntercomStandIn.carried(e) for e in stand_in.accepted] == ["m-1"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(request.url, request.body, method="POST"), timeout=5)
        assert refused.value.code == 401
    finally:
        stand_in.stop()
