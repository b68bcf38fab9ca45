"""The Customer.io module (Track API v2 /batch) and its stand-in: refusals before sending, the 500 KB and
32 KB limits, ULID ids from messageIds, the 207 partial failure, 400 split, 401, 429."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import Incoming
from eventrouter.dev.standins.customerio import CustomerIOStandIn
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.customerio import event_ulid, is_ulid

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CONNECTION = {"site_id": "cio-site", "api_key": "cio-track-key"}
EVENT = {"type": "person", "identifiers": {"id": "u1"}, "action": "event", "name": "Order Completed",
         "timestamp": 1_795_687_196, "attributes": {"revenue": 25.0}}


def _vendor() -> Any:
    return vendor_for("customerio", CONNECTION)


def test_requests_carry_basic_auth_and_a_ulid_id_per_event() -> None:
    identify = {"type": "person", "identifiers": {"email": "ada@example.com"}, "action": "identify",
                "attributes": {"plan": "pro"}}
    (request,) = _vendor().build([Item("m-1", EVENT), Item("m-2", identify)]).requests
    assert request.url == "https://track.customer.io/api/v2/batch"
    assert base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")) == b"cio-site:cio-track-key"
    first, second = orjson.loads(request.body)["batch"]
    assert first["id"] == event_ulid("m-1", EVENT["timestamp"]) and is_ulid(first["id"])
    assert "id" not in second  # identify takes no dedup id
    assert _vendor().secrets() == ["cio-track-key"]


def test_ulids_are_stable_keep_the_event_time_and_pass_real_ulids_through() -> None:
    assert event_ulid("m-1", 1_795_687_196) == event_ulid("m-1", 1_795_687_196) != event_ulid("m-2", 1_795_687_196)
    assert event_ulid("m-1", 1_795_687_196)[:10] == event_ulid("m-2", 1_795_687_196)[:10]  # the time part
    assert event_ulid("01arz3ndektsv4rrffq69g5fav") == "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    assert is_ulid(event_ulid("m-1")) and not is_ulid("8ZZZZZZZZZZZZZZZZZZZZZZZZZ") and not is_ulid("m-1")
    kit_id = _vendor().build([Item("m-9", {**EVENT, "id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})]).requests[0]
    assert orjson.loads(kit_id.body)["batch"][0]["id"] == "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def test_refuses_before_sending_what_customerio_would_refuse() -> None:
    items = [Item("a", EVENT),
             Item("b", {**EVENT, "identifiers": {"id": "u1", "email": "a@b.c"}}),
             Item("c", {**EVENT, "identifiers": {}}),
             Item("d", {**EVENT, "name": " "}),
             Item("e", {**EVENT, "action": "track"}),
             Item("f", {**EVENT, "timestamp": "2026-11-26T10:00:00Z"}),
             Item("g", {**EVENT, "attributes": {"blob": "x" * 33_000}}),
             Item("h", {k: v for k, v in EVENT.items() if k != "type"}),
             Item("i", {**EVENT, "identifiers": {"id": "u" * 151}})]
    built = _vendor().build(items)
    assert built.refused == {
        1: "vendor.invalid: identifiers must hold exactly one of id, email, phone, cio_id",
        2: "vendor.invalid: identifiers must hold exactly one of id, email, phone, cio_id",
        3: "vendor.invalid: name is required",
        4: "vendor.invalid: action 'track' is not a person action",
        5: "vendor.invalid: timestamp must be unix seconds",
        6: "vendor.too_large: over Customer.io's 32 KB per operation",
        7: "vendor.invalid: type must be person, object or delivery",
        8: "vendor.invalid: identifiers.id is over 150 bytes"}
    assert [r.items for r in built.requests] == [(0,)]


def test_keeps_a_request_under_500_kb() -> None:
    items = [Item(str(i), {**EVENT, "attributes": {"blob": "x" * 30_000}}) for i in range(40)]
    built = _vendor().build(items)
    assert not built.refused and len(built.requests) == 3
    assert all(len(r.body) < 500_000 for r in built.requests)
    assert [p for r in built.requests for p in r.items] == list(range(40))


def test_207_rejects_the_listed_operations_and_delivers_the_rest() -> None:
    request = Request("u", b"{}", (4, 5, 6))
    body = orjson.dumps({"errors": [{"batch_index": 1, "reason": "required", "field": "name", "message": "x"}]})
    reply = _vendor().read(request, 207, {}, body)
    assert reply.delivered == [0, 2] and reply.rejected == {1: "vendor.invalid: name: required"}
    assert not reply.retry


def test_a_207_that_does_not_say_which_operation_it_refused_sends_the_others_again() -> None:
    request = Request("u", b"{}", (4, 5, 6))
    body = orjson.dumps({"errors": [{"batch_index": 1, "reason": "required"}, {"batch_index": 9, "reason": "x"}]})
    reply = _vendor().read(request, 207, {}, body)
    assert reply.retry == [0, 2] and not reply.delivered and reply.rejected == {1: "vendor.invalid: required"}
    for unreadable in (b"<html>", b'{"errors": []}', b'{"errors": [{"reason": "invalid"}]}'):
        reply = _vendor().read(request, 207, {}, unreadable)
        assert reply.retry == [0, 1, 2] and not reply.delivered and not reply.rejected, unreadable


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (400, "split"), (401, "vendor.auth"), (413, "split"), (429, "retry"), (503, "retry")])
def test_answers(status: int, expected: str) -> None:
    reply = _vendor().read(Request("u", b"", (0, 1)), status, {"Retry-After": "3"}, b'{"errors": []}')
    got = "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else \
        reply.rejected[0]
    assert got == expected
    if status == 429:
        assert reply.retry_after == 3.0
    alone = _vendor().read(Request("u", b"", (0,)), 400, {}, b'{"errors": []}')
    assert alone.rejected == {0: "vendor.rejected"}


def _send(stand_in: CustomerIOStandIn, body: Any, *, auth: str = "cio-site:cio-track-key",
          path: str = "/api/v2/batch") -> tuple[int, Any]:
    headers = {"authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    answer = stand_in.answer(Incoming("POST", path, {}, headers, raw))
    return answer.status, orjson.loads(answer.body) if answer.body.startswith(b"{") else answer.body


def test_stand_in_takes_the_golden_requests() -> None:
    stand_in = CustomerIOStandIn()
    for shown in json.loads((GOLDEN / "requests" / "customerio.json").read_text())["requests"]:
        headers = {k.lower(): v for k, v in shown["headers"].items()}
        answer = stand_in.answer(Incoming("POST", "/api/v2/batch", {}, headers, orjson.dumps(shown["body"])))
        assert (answer.status, orjson.loads(answer.body)) == (200, {})
    assert len(stand_in.accepted) == 4 and len(stand_in.keys) == 3  # the identify has no dedup key


def test_stand_in_lists_bad_operations_in_a_207_and_keeps_the_rest() -> None:
    stand_in = CustomerIOStandIn()
    good = {**EVENT, "id": event_ulid("m-1", EVENT["timestamp"])}
    status, body = _send(stand_in, {"batch": [good, {**good, "name": ""}, {**good, "id": "m-2"},
                                              {**good, "identifiers": {"id": "u1", "email": "a@b.c"}}]})
    assert status == 207
    assert [(e["batch_index"], e["field"]) for e in body["errors"]] == [(1, "name"), (2, "id"), (3, "identifiers")]
    assert stand_in.accepted == [good] and stand_in.keys[good["id"]] == 1
    _send(stand_in, {"batch": [good]})
    assert stand_in.duplicates == 1


def test_stand_in_refuses_bad_requests_whole() -> None:
    stand_in = CustomerIOStandIn()
    assert _send(stand_in, {"batch": [EVENT]}, path="/api/v1/batch")[0] == 404
    assert _send(stand_in, {"batch": [EVENT]}, auth="cio-site:wrong") == \
        (401, {"meta": {"error": "Unauthorized request"}})
    assert _send(stand_in, b"{not json")[0] == 400
    assert _send(stand_in, {"batch": {"type": "person"}})[0] == 400
    assert _send(stand_in, {"batch": [{**EVENT, "attributes": {"x": "y" * 500_000}}]})[0] == 413
    assert not stand_in.accepted


def test_stand_in_over_http() -> None:
    stand_in = CustomerIOStandIn().start()
    try:
        vendor = vendor_for("customerio", stand_in.connection())
        (request,) = vendor.build([Item("m-1", EVENT)]).requests
        sent = urllib.request.Request(request.url, request.body, dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as answer:
            assert answer.status == 200
        bad = urllib.request.Request(request.url, request.body, {"Authorization": "Basic eDp5"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=5)
        assert refused.value.code == 401
    finally:
        stand_in.stop()
    assert stand_in.accepted[0]["id"] == event_ulid("m-1", EVENT["timestamp"])


def test_a_spoiled_sample_passes_the_module_and_is_listed_in_the_207() -> None:
    stand_in = CustomerIOStandIn()
    samples = [CustomerIOStandIn.sample(i, f"m-{i}", 1_795_687_196) for i in range(3)]
    samples[1] = CustomerIOStandIn.spoil(samples[1])
    (request,) = _vendor().build([Item(f"m-{i}", s) for i, s in enumerate(samples)]).requests
    answer = stand_in.answer(Incoming("POST", "/api/v2/batch", {}, {"authorization": request.headers["Authorization"]},
                                      request.body))
    reply = _vendor().read(request, answer.status, answer.headers, answer.body)
    assert answer.status == 207 and reply.delivered == [0, 2]
    assert reply.rejected == {1: "vendor.invalid: identifiers: required"}
    assert [CustomerIOStandIn.carried(e) for e in stand_in.accepted] == ["m-0", "m-2"]
    good_object = {"type": "object", "identifiers": {"object_type_id": "1", "object_id": "acme"}, "action": "identify"}
    assert _send(stand_in, {"batch": [good_object]}) == (200, {})
