"""Each vendor module builds the requests its vendor documents (golden fixtures, from the starter kits'
golden payloads) and reads its answers, partial failures included. Pure: no network.

Regenerate the fixtures after a deliberate change: EVENTROUTER_REGENERATE=1 pytest tests/unit/forwarders"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, Incoming, PostHogStandIn
from forwarders.vendors import VENDORS, Item, Request, read_status, retry_after, vendor_for
from forwarders.vendors.base import SECRET_WORDS, chunks
from forwarders.vendors.mixpanel import insert_id
from forwarders.vendors.posthog import event_uuid
from schemas.catalogue import KINDS
from schemas.errors import ConfigurationError

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
NOW = 1_795_730_000.0  # 2026-11-26T21:53:20Z: the fixtures' clock
# the golden requests' connections: each stand-in's settings with its credential, at the vendor's own URL
# (or the one given here)
ENDPOINTS: dict[str, dict[str, Any]] = {
    "braze": {"endpoint": "https://rest.fra-01.braze.eu/users/track"},
    "posthog": {"endpoint": "https://eu.i.posthog.com/batch/"},
    "webhook": {"url": "https://hooks.example.com/in", "batch": True},
}
CONNECTIONS: dict[str, dict[str, Any]] = {
    kind: {**STAND_INS[kind].settings(STAND_INS[kind].credential), **ENDPOINTS.get(kind, {})} for kind in KINDS}


def referenced(kind: str) -> dict[str, Any]:
    """CONNECTIONS[kind] as a config gives it: its secrets as ${ENV} references, no endpoint of its own."""
    return {name: "${TEST_SECRET}" if any(word in name for word in SECRET_WORDS) else value
            for name, value in CONNECTIONS[kind].items() if name != "endpoint"}

def golden_items(kind: str) -> list[Item]:
    cases = json.loads((GOLDEN / f"{kind}.json").read_text())
    return [Item(message_id=f"m-{name}", payload=case["payload"], event_name=case.get("eventName"))
            for name, case in sorted(cases.items()) if "payload" in case]


def _shown(request: Request) -> dict[str, Any]:
    return {"url": request.url, "headers": dict(request.headers), "items": list(request.items),
            "body": orjson.loads(request.body)}


@pytest.mark.parametrize("kind", sorted(VENDORS))
def test_requests_match_the_golden_fixtures(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    monkeypatch.setattr("forwarders.ssrf.resolve", lambda host, port: ["93.184.215.14"])  # no DNS in tests
    vendor = vendor_for(kind, CONNECTIONS[kind])
    built = vendor.build(golden_items(kind))
    shown = {"requests": [_shown(r) for r in built.requests], "refused": built.refused}
    path = GOLDEN / "requests" / f"{kind}.json"
    if os.environ.get("EVENTROUTER_REGENERATE"):
        path.write_text(json.dumps(shown, indent=2, sort_keys=True) + "\n")
    assert shown == json.loads(path.read_text())
    assert not built.refused


def test_webhook_guards_its_destination_at_load() -> None:
    with pytest.raises(ConfigurationError, match="https only"):
        vendor_for("webhook", {"url": "http://hooks.example.com/in"})
    with pytest.raises(ConfigurationError, match="loopback"):
        vendor_for("webhook", {"url": "https://127.0.0.1/in"})
    vendor_for("webhook", {"url": "http://127.0.0.1:9/in", "allow_http": True, "allow_private": True})


def test_unknown_connection_keys_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"connection\.api_kee"):
        vendor_for("amplitude", {"api_kee": "x"})


def test_ga4_refuses_before_sending_what_ga4_would_silently_drop() -> None:
    vendor = vendor_for("ga4", CONNECTIONS["ga4"])
    items = [Item("a", {"client_id": "c1", "name": "purchase", "params": {"value": 1}}),
             Item("b", {"client_id": "c1", "name": "bad name!"}),
             Item("c", {"name": "no_client"}),
             Item("d", {"client_id": "c1", "name": "long", "params": {"x": "y" * 101}}),
             Item("e", {"client_id": "c2", "name": "page_view"})]
    built = vendor.build(items)
    assert sorted(built.refused) == [1, 2, 3]
    assert [r.items for r in built.requests] == [(0,), (4,)]  # one request per client


def test_ga4_puts_at_most_25_events_in_a_request() -> None:
    vendor = vendor_for("ga4", CONNECTIONS["ga4"])
    built = vendor.build([Item(str(i), {"client_id": "c1", "name": "e"}) for i in range(60)])
    assert [len(r.items) for r in built.requests] == [25, 25, 10]


def test_meta_refuses_unhashed_pii_and_stale_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: NOW)
    vendor = vendor_for("meta_capi", CONNECTIONS["meta_capi"])
    good = {"event_name": "Purchase", "event_time": int(NOW) - 10, "action_source": "website",
            "user_data": {"em": ["a" * 64], "client_ip_address": "203.0.113.7"}}
    built = vendor.build([Item("a", good), Item("b", {**good, "user_data": {"em": "ada@example.com"}}),
                          Item("c", {**good, "event_time": int(NOW) - 8 * 86_400})])
    assert built.refused == {1: "vendor.invalid: user_data.em must be SHA-256 hex",
                             2: "vendor.too_old: event_time is over 7 days old"}


def test_amplitude_400_refuses_listed_events_and_resends_the_rest() -> None:
    request = Request("u", b"{}", (0, 1, 2, 3))
    body = orjson.dumps({"code": 400, "events_with_invalid_fields": {"device_id": [1]},
                         "events_with_missing_fields": {"event_type": [3]}})
    amplitude = VENDORS["amplitude"]({"api_key": "k"})
    reply = amplitude.read(request, 400, {}, body)
    assert reply.retry == [0, 2] and reply.resend
    assert reply.rejected == {1: "vendor.invalid: invalid_fields device_id",
                              3: "vendor.invalid: missing_fields event_type"}
    bad_key = amplitude.read(request, 400, {}, b'{"code":400,"error":"Invalid API key: k"}')
    assert set(bad_key.rejected) == {0, 1, 2, 3} and not bad_key.retry


def test_mixpanel_400_is_a_partial_success() -> None:
    request = Request("u", b"[]", (5, 6, 7))
    body = orjson.dumps({"code": 400, "num_records_imported": 2, "failed_records": [
        {"index": 1, "$insert_id": "x", "field": "properties.time", "message": "'properties.time' is invalid"}]})
    reply = VENDORS["mixpanel"]({"project_id": "1", "secret": "s"}).read(request, 400, {}, body)
    assert reply.delivered == [0, 2] and list(reply.rejected) == [1] and not reply.retry


def test_mixpanel_auth_and_insert_ids() -> None:
    vendor = vendor_for("mixpanel", {"project_id": "42", "secret": "project-secret"})
    request = vendor.build([Item("m" * 40, {"event": "e", "properties": {"time": 1, "distinct_id": "u"}})]).requests[0]
    assert base64.b64decode(request.headers["Authorization"][6:]) == b"project-secret:"
    assert len(orjson.loads(request.body)[0]["properties"]["$insert_id"]) == 32
    assert insert_id("m-1") == "m-1" and insert_id("m" * 40) == insert_id("m" * 40)


def test_braze_errors_map_to_their_events_and_an_order_is_one_object_per_product() -> None:
    vendor = vendor_for("braze", CONNECTIONS["braze"])
    items = [Item("a", {"object": "events", "external_id": "u1", "name": "x", "time": "t"}),
             Item("b", {"object": "purchases", "external_id": "u1", "currency": "EUR", "time": "t",
                        "items": [{"product_id": "p1", "price": 1}, {"product_id": "p2", "price": 2}]}),
             Item("c", {"object": "attributes", "external_id": "u2", "plan": "pro"})]
    request = vendor.build(items).requests[0]
    body = orjson.loads(request.body)
    assert len(body["purchases"]) == 2 and request.items == (2, 0, 1, 1)
    reply = vendor.read(request, 201, {}, orjson.dumps({"message": "success", "errors": [
        {"type": "'price' is required", "input_array": "purchases", "index": 1}]}))
    assert reply.rejected == {3: "vendor.invalid: 'price' is required"} and reply.delivered == [0, 1]


def test_posthog_uuid_is_the_message_id_when_a_uuid_else_a_stable_uuid5_of_it() -> None:
    assert event_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    derived = event_uuid("m-1")
    assert uuid.UUID(derived).version == 5 and derived == event_uuid("m-1") != event_uuid("m-2")
    assert event_uuid("0f8fad5bd9cb469fa16570867728950e") != "0f8fad5b-d9cb-469f-a165-70867728950e"  # not the form
    request = vendor_for("posthog", CONNECTIONS["posthog"]).build([Item("m-1", {"event": "e", "distinct_id": "u"}),
                                                                   Item("m-2", {"event": "e", "distinct_id": "u",
                                                                                "uuid": "m-1"})]).requests[0]
    assert [e["uuid"] for e in orjson.loads(request.body)["batch"]] == [derived, derived]  # the kit's uuid wins


def test_posthog_refuses_before_sending_what_would_get_the_whole_batch_a_400() -> None:
    vendor = vendor_for("posthog", {**CONNECTIONS["posthog"], "historical_migration": True})
    items = [Item("a", {"event": "ok", "distinct_id": "u1"}),
             Item("b", {"event": "", "distinct_id": "u1"}),
             Item("c", {"event": "no id", "distinct_id": "  "}),
             Item("d", {"event": "id in properties", "properties": {"distinct_id": 7}}),
             Item("e", {"event": "bad properties", "distinct_id": "u1", "properties": ["x"]}),
             Item("f", {"event": "huge", "distinct_id": "u1", "properties": {"blob": "x" * 1_000_001}})]
    built = vendor.build(items)
    assert built.refused == {1: "vendor.invalid: event is required", 2: "vendor.invalid: distinct_id is required",
                             4: "vendor.invalid: properties must be an object",
                             5: "vendor.too_large: over PostHog's 1 MB per event"}
    (request,) = built.requests
    body = orjson.loads(request.body)
    assert request.items == (0, 3) and request.url == "https://eu.i.posthog.com/batch/"
    assert body["api_key"] == "phc_test_key" and body["historical_migration"] is True
    assert vendor.secrets() == ["phc_test_key"]


def test_posthog_keeps_a_request_under_20_mb() -> None:
    vendor = vendor_for("posthog", CONNECTIONS["posthog"])
    items = [Item(str(i), {"event": "e", "distinct_id": "u", "properties": {"blob": "x" * 900_000}}) for i in range(50)]
    built = vendor.build(items)
    assert not built.refused and len(built.requests) == 3
    assert all(len(r.body) < 20_000_000 for r in built.requests)
    assert [p for r in built.requests for p in r.items] == list(range(50))


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (400, "split"), (401, "vendor.auth"), (413, "split"), (429, "retry"), (503, "retry")])
def test_posthog_answers(status: int, expected: str) -> None:
    """A 400 refuses a batch as a unit (one bad event): it is split until that event is alone, then final."""
    vendor = vendor_for("posthog", CONNECTIONS["posthog"])
    reply = vendor.read(Request("u", b"", (0, 1)), status, {}, b"event submitted without a distinct_id")
    got = "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else \
        reply.rejected[0]
    assert got == expected
    alone = vendor.read(Request("u", b"", (0,)), 400, {}, b"event submitted without a distinct_id")
    assert alone.rejected == {0: "vendor.rejected"}


def test_posthog_stand_in_takes_the_golden_requests_and_refuses_a_bad_batch_whole() -> None:
    stand_in = PostHogStandIn()
    for shown in json.loads((GOLDEN / "requests" / "posthog.json").read_text())["requests"]:
        answer = stand_in.answer(Incoming("POST", "/batch/", {}, {}, orjson.dumps(shown["body"])))
        assert (answer.status, orjson.loads(answer.body)) == (200, {"status": 1})
    assert len(stand_in.accepted) == len(golden_items("posthog")) == len(stand_in.keys)

    def send(body: dict[str, Any], path: str = "/batch/") -> tuple[int, bytes]:
        answer = stand_in.answer(Incoming("POST", path, {}, {}, orjson.dumps(body)))
        return answer.status, answer.body

    good = {"event": "e", "distinct_id": "u", "uuid": event_uuid("m")}
    assert send({"api_key": "phc_test_key", "batch": [good]}, "/capture/")[0] == 404
    assert send({"batch": [good]}) == (401, orjson.dumps({
        "type": "authentication_error", "code": "invalid_api_key",
        "detail": "Project API key invalid. You can find your project API key in PostHog project settings."}))
    assert send({"api_key": "phc_test_key", "batch": []})[0] == 400
    before = len(stand_in.accepted)
    assert send({"api_key": "phc_test_key", "batch": [good, {**good, "distinct_id": ""}]}) == \
        (400, b"event submitted without a distinct_id")
    assert send({"api_key": "phc_test_key", "batch": [good, {**good, "uuid": "m-1"}]})[0] == 400
    assert len(stand_in.accepted) == before  # a refused batch keeps nothing
    assert send({"api_key": "phc_test_key", "batch": [{**good, "properties": {"x": "y" * 20_000_000}}]})[0] == 413


@pytest.mark.parametrize(("status", "expected"), [
    (200, "delivered"), (204, "delivered"), (408, "retry"), (429, "retry"), (500, "retry"), (503, "retry"),
    (400, "rejected"), (401, "rejected"), (404, "rejected"), (302, "rejected"), (413, "split")])
def test_status_classes(status: int, expected: str) -> None:
    reply = read_status(Request("u", b"", (0, 1)), status, {}, b"")
    kind = "split" if reply.split else "delivered" if reply.delivered else "retry" if reply.retry else "rejected"
    assert kind == expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after": "Thu, 26 Nov 2026 21:53:30 GMT"}, now=NOW) == 10.0
    assert retry_after({"Retry-After": "soon"}) is None and retry_after({}) is None


def test_chunks_keep_order_and_both_limits() -> None:
    items = [Item(str(i), {"x": "y" * 90}) for i in range(10)]
    runs = chunks(items, range(10), 4, 300, lambda item: 100)
    assert runs == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_every_integration_of_the_example_config_makes_its_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.config import load_config
    from schemas.secrets import resolve_secrets

    monkeypatch.setattr("forwarders.ssrf.resolve", lambda host, port: ["93.184.215.14"])
    config = load_config(Path(__file__).resolve().parents[3] / "examples" / "eventrouter.yaml")
    env = {"GA4_API_SECRET": "s", "META_ACCESS_TOKEN": "t", "AMPLITUDE_API_KEY": "k", "CRM_HOOK_SECRET": "h"}
    for spec in config.integrations:
        assert vendor_for(spec.kind, resolve_secrets(spec.connection, env)).kind == spec.kind


@pytest.mark.parametrize("user_properties", [True, [1, 2], "traits", 5])
def test_ga4_refuses_user_properties_that_are_not_an_object_instead_of_raising(user_properties: Any) -> None:
    vendor = vendor_for("ga4", CONNECTIONS["ga4"])
    good = {"client_id": "c1", "name": "purchase", "params": {}}
    built = vendor.build([Item(message_id="bad", payload={**good, "user_properties": user_properties}),
                          Item(message_id="ok", payload=good)])
    assert built.refused == {0: "vendor.invalid: user_properties must be an object"}
    assert [r.items for r in built.requests] == [(1,)]


def test_phases_keep_each_users_calls_in_order_across_endpoints() -> None:
    from forwarders.vendors.base import phases
    items = [Item("a", {}, user_id="u1"), Item("b", {}, user_id="u1"), Item("c", {}, user_id="u2"),
             Item("d", {}, user_id="u1"), Item("e", {}, user_id="u2")]
    kinds = {0: "events", 1: "contacts", 2: "events", 3: "events", 4: "events"}
    assert phases(items, kinds) == {0: 0, 1: 1, 2: 0, 3: 2, 4: 0}  # u2's events all in the first requests
