"""The LinkedIn Conversions API module (forwarders/vendors/linkedin.py), its starter kit and its stand-in:
a rule per event from the connection, elements LinkedIn would refuse refused before sending, and a batch
LinkedIn refuses whole for the elements it names (422 `Index: i`, 400 `indices [...]`)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, Incoming
from eventrouter.dev.standins.linkedin import PATH, LinkedInStandIn
from forwarders.vendors import Item, Reply, Request, vendor_for
from forwarders.vendors.linkedin import LinkedIn
from schemas.config import parse_config
from schemas.errors import ConfigurationError
from streams.preview import preview

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
HASH = hashlib.sha256(b"ada@example.com").hexdigest()
AT = 1_795_687_196_000
GOOD: dict[str, Any] = {"conversionHappenedAt": AT, "user": {"userIds": [{"idType": "SHA256_EMAIL", "idValue": HASH}]}}
CONNECTION = {"access_token": "li-access-token", "conversion_rule": "104012"}


def vendor(**extra: Any) -> LinkedIn:
    made = vendor_for("linkedin", {**CONNECTION, **extra})
    assert isinstance(made, LinkedIn)
    return made


def elements(request: Request) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = orjson.loads(request.body)["elements"]
    return elements


def read(status: int, body: Any, positions: int = 4, headers: dict[str, str] | None = None) -> Reply:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return vendor().read(Request("u", b"", tuple(range(positions))), status, headers or {}, raw)


def test_the_stand_in_is_the_catalogues() -> None:
    assert STAND_INS["linkedin"] is LinkedInStandIn


def test_a_batch_create_carries_the_token_the_version_headers_and_at_most_5000_elements() -> None:
    built = vendor().build([Item(f"m{i}", GOOD) for i in range(12_000)])
    assert [len(r.items) for r in built.requests] == [5000, 5000, 2000] and not built.refused
    request = built.requests[0]
    assert request.url == "https://api.linkedin.com/rest/conversionEvents"
    assert request.headers == {"Content-Type": "application/json", "Authorization": "Bearer li-access-token",
                               "LinkedIn-Version": "202610", "X-Restli-Protocol-Version": "2.0.0",
                               "X-RestLi-Method": "BATCH_CREATE"}
    assert [e["eventId"] for e in elements(request)[:2]] == ["m0", "m1"]  # the messageId
    assert vendor().secrets() == ["li-access-token"]


def test_a_request_stays_under_2_mb() -> None:
    big = {**GOOD, "user": {**GOOD["user"], "userInfo": {"firstName": "A" * 300_000, "lastName": "L"}}}
    built = vendor().build([Item(str(i), big) for i in range(20)])
    assert len(built.requests) > 1 and all(len(r.body) < 2_000_000 for r in built.requests)
    assert [p for r in built.requests for p in r.items] == list(range(20))


def test_the_rule_comes_from_the_playbook_else_the_event_name_else_the_default() -> None:
    connection = {"conversion_rules": {"PURCHASE": "7", "LEAD": "urn:lla:llaPartnerConversion:8"}}
    items = [Item("a", {**GOOD, "conversion": "9"}, event_name="PURCHASE"), Item("b", GOOD, event_name="PURCHASE"),
             Item("c", GOOD, event_name="LEAD"), Item("d", GOOD, event_name="SIGN_UP"),
             Item("e", {**GOOD, "eventId": "order-7"})]
    (request,) = vendor(**connection).build(items).requests
    assert [e["conversion"].rsplit(":", 1)[1] for e in elements(request)] == ["9", "7", "8", "104012", "104012"]
    assert elements(request)[4]["eventId"] == "order-7"  # the kit's eventId wins over the messageId
    built = vendor_for("linkedin", {"access_token": "t", **connection}).build([Item("x", GOOD, event_name="SEARCH")])
    assert built.refused == {0: "vendor.invalid: conversion is required (no rule for 'SEARCH')"}


@pytest.mark.parametrize("connection", [{"conversion_rule": "abc"}, {"conversion_rules": {"PURCHASE": "urn:x:1"}},
                                        {"api_version": "2026-10"}, {"api_version": "202613"}])
def test_bad_rules_and_versions_are_configuration_errors(connection: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="linkedin: connection"):
        vendor(**connection)


@pytest.mark.parametrize(("change", "reason"), [
    ({"conversionHappenedAt": None}, "conversionHappenedAt is required"),
    ({"conversionHappenedAt": AT // 1000}, "conversionHappenedAt must be epoch milliseconds"),
    ({"conversionValue": {"amount": "25"}}, "conversionValue.currencyCode is required"),
    ({"conversionValue": {"currencyCode": "EUR", "amount": 25}}, "conversionValue.amount must be a decimal string"),
    ({"user": {}}, "user.userIds or user.userInfo is required"),
    ({"user": {"userIds": [{"idType": "SHA256_EMAIL", "idValue": "ada@example.com"}]}}, "SHA256_EMAIL must be SHA"),
    ({"user": {"userIds": [{"idType": "ACXIOM_ID"}]}}, "user.userIds[0].idValue is required"),
    ({"user": {"userInfo": {"firstName": "Ada"}}}, "user.userInfo.lastName is required"),
    ({"conversion": "not-a-rule"}, "conversion must be urn:lla:llaPartnerConversion:<id>"),
])
def test_elements_linkedin_would_refuse_the_batch_for_are_refused_before_sending(change: dict[str, Any],
                                                                                 reason: str) -> None:
    built = vendor().build([Item("bad", {**GOOD, **change}), Item("ok", GOOD)])
    assert list(built.refused) == [0] and reason in built.refused[0]
    assert built.refused[0].startswith("vendor.invalid: ") and [r.items for r in built.requests] == [(1,)]


def test_the_holes_the_kit_leaves_in_user_ids_are_dropped() -> None:
    fat = {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": "f7d6b4c8"}
    named = {"firstName": "Ada", "lastName": "Lovelace"}
    items = [Item("a", {**GOOD, "user": {"userIds": [None, fat]}}),
             Item("b", {**GOOD, "user": {"userIds": [None], "userInfo": named}})]
    (request,) = vendor().build(items).requests
    assert [e["user"] for e in elements(request)] == [{"userIds": [fat]}, {"userInfo": named}]


def test_a_2xx_reads_each_elements_status() -> None:
    assert read(200, {"elements": [{"status": 201}] * 4}).delivered == [0, 1, 2, 3]
    assert read(201, b"").delivered == [0, 1, 2, 3]
    mixed = read(200, {"elements": [{"status": 201}, {"status": 400}, {"status": 201}, {"status": 503}]})
    assert (mixed.delivered, mixed.rejected, mixed.retry) == ([0, 2], {1: "vendor.invalid: element status 400"}, [3])


def test_a_422_refuses_the_elements_it_names_and_the_others_are_sent_again_at_once() -> None:
    message = ("Index: 1, ERROR :: /conversionValue/amount :: field is required but not found and has no default "
               "value\nERROR :: /user/userInfo/firstName :: field is required but not found and has no default "
               "value\nIndex: 3, ERROR :: /user/userInfo/lastName :: field is required but not found\n")
    reply = read(422, {"message": message, "status": 422})
    assert reply.rejected == {
        1: "vendor.invalid: /conversionValue/amount :: field is required but not found and has no default value",
        3: "vendor.invalid: /user/userInfo/lastName :: field is required but not found"}
    assert reply.retry == [0, 2] and reply.resend and not reply.delivered


def test_a_400_naming_indices_refuses_those_and_resends_the_rest() -> None:
    message = "Incorrect conversions information provided. Conversion's method should be CONVERSIONS_API, " \
              "indices [0, 2] (0-indexed)"
    reply = read(400, {"message": message, "status": 400})
    assert set(reply.rejected) == {0, 2} and reply.retry == [1, 3] and reply.resend
    assert reply.rejected[0].startswith("vendor.invalid: Incorrect conversions information provided.")


def test_a_4xx_naming_no_element_is_split_until_the_bad_one_is_alone() -> None:
    reply = read(400, {"message": "Request body is malformed", "status": 400})
    assert reply.split and reply.resend and reply.retry == [0, 1, 2, 3]
    assert read(400, b"<html>", positions=1).rejected == {0: "vendor.rejected"}


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_final(status: int) -> None:
    body = {"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "Invalid access token"}
    assert read(status, body).rejected == dict.fromkeys(range(4), "vendor.auth")


def test_429_is_retried_after_retry_after_when_given() -> None:
    assert read(429, {"status": 429}, headers={"Retry-After": "30"}).retry_after == 30.0
    plain = read(429, {"status": 429, "message": "Resource level throttle limit for calls to this resource is reached"})
    assert plain.retry == [0, 1, 2, 3] and plain.retry_after is None
    assert read(503, b"").retry == [0, 1, 2, 3]


def test_a_sunset_version_is_final_for_every_event() -> None:
    body = {"status": 426, "code": "NONEXISTENT_VERSION", "message": "Requested version 202410 is not active"}
    assert read(426, body, positions=2).rejected == dict.fromkeys(range(2), "vendor.rejected: LinkedIn-Version is "
                                                                            "not active")


def kit(event: dict[str, Any]) -> dict[str, Any]:
    config = parse_config("integrations: [{name: li, kind: linkedin, playbook: 'starter:linkedin'}]")
    base = {"type": "track", "messageId": "m-1", "timestamp": "2026-11-26T10:00:00.000Z"}
    return preview(config, "li", {**base, **event})


def test_the_kit_sends_a_click_id_alone_and_user_info_only_with_both_names() -> None:
    clicked = kit({"event": "Product Added", "anonymousId": "a", "context": {"li_fat_id": "f7d6", "traits": {
        "firstName": "Ada", "title": "CTO"}}, "properties": {"price": "12.5", "quantity": 3, "currency": "eur"}})
    assert clicked["eventName"] == "ADD_TO_CART"
    payload = clicked["payload"]
    assert payload["conversionValue"] == {"amount": "37.5", "currencyCode": "EUR"}
    assert payload["user"] == {"userIds": [None, {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID",
                                                  "idValue": "f7d6"}]}
    (request,) = vendor().build([Item("m-1", payload, event_name="ADD_TO_CART")]).requests
    assert elements(request)[0]["user"]["userIds"] == payload["user"]["userIds"][1:]
    named = kit({"event": "Signed Up", "userId": "u", "context": {"traits": {
        "firstName": " Ada ", "lastName": "Lovelace", "title": "CTO", "company": {"name": "Analytical"},
        "address": {"country": "gb"}}}})
    assert (named["eventName"], named["payload"]["user"]) == ("SIGN_UP", {"userInfo": {
        "firstName": "Ada", "lastName": "Lovelace", "title": "CTO", "companyName": "Analytical", "countryCode": "GB"}})
    assert "conversionValue" not in named["payload"]
    assert kit({"event": "Video Played", "context": {"li_fat_id": "f"}}) == {"integration": "li",
                                                                            "filtered": "default.drop"}
    assert kit({"event": "Order Completed", "userId": "u"})["filtered"] == "filter.allow"  # nothing to match on


def test_the_stand_in_takes_the_golden_requests() -> None:
    stand_in = LinkedInStandIn()
    now_s = int(time.time())
    for shown in json.loads((GOLDEN / "requests" / "linkedin.json").read_text())["requests"]:
        body = {"elements": [LinkedInStandIn.freshen(e, now_s) for e in shown["body"]["elements"]]}
        headers = {k.lower(): v for k, v in shown["headers"].items()}
        answer = stand_in.answer(Incoming("POST", PATH, {}, headers, orjson.dumps(body)))
        assert (answer.status, orjson.loads(answer.body)) == (200, {"elements": [{"status": 201}]})
    assert len(stand_in.accepted) == 1 and not stand_in.keys  # LinkedIn has no key of its own for a resend


def send(stand_in: LinkedInStandIn, elements: Any, *, path: str = PATH, **headers: str) -> tuple[int, Any]:
    given = {"authorization": "Bearer li-access-token", "linkedin-version": time.strftime("%Y%m", time.gmtime()),
             "x-restli-protocol-version": "2.0.0", "x-restli-method": "BATCH_CREATE", **headers}
    given = {k: v for k, v in given.items() if v}
    answer = stand_in.answer(Incoming("POST", path, {}, given, orjson.dumps({"elements": elements})))
    return answer.status, orjson.loads(answer.body) if answer.body else None


def test_the_stand_in_refuses_as_linkedin_does_and_keeps_nothing_of_a_refused_batch() -> None:
    stand_in = LinkedInStandIn()
    good = {**LinkedInStandIn.sample(0, "m-0", int(time.time())), "conversion": "urn:lla:llaPartnerConversion:104012"}
    assert send(stand_in, [good], path="/rest/conversions")[0] == 404
    assert send(stand_in, [good], authorization="") == (401, {"status": 401, "serviceErrorCode": 401,
                                                              "message": "Empty oauth2_access_token"})
    assert send(stand_in, [good], authorization="Bearer other")[1]["code"] == "INVALID_ACCESS_TOKEN"
    assert send(stand_in, [good], **{"linkedin-version": ""})[1]["code"] == "VERSION_MISSING"
    assert send(stand_in, [good], **{"linkedin-version": "202310"})[0] == 426
    assert send(stand_in, [good], **{"x-restli-protocol-version": ""})[0] == 400
    assert send(stand_in, [good] * 5001)[0] == 400
    assert send(stand_in, [good, {**good, "user": {"userInfo": {"firstName": "x" * 2_100_000}}}])[0] == 413
    status, body = send(stand_in, [good, {**good, "conversion": "urn:lla:llaPartnerConversion:1"}])
    assert status == 400 and body["message"].endswith("indices [1] (0-indexed)")
    spoiled = LinkedInStandIn.spoil(good)
    status, body = send(stand_in, [good, spoiled, {**good, "user": {"userInfo": {"firstName": "Ada"}}}])
    assert status == 422 and body["message"] == (
        "Index: 1, ERROR :: /user/userIds/0/idType :: 'PHONE_NUMBER' is not an enum symbol\n"
        "Index: 2, ERROR :: /user/userInfo/lastName :: field is required but not found and has no default value\n")
    stale = LinkedInStandIn.freshen(good, int(time.time()) - 91 * 86_400)
    assert send(stand_in, [stale])[0] == 422
    assert stand_in.accepted == []
    assert send(stand_in, [good, good]) == (200, {"elements": [{"status": 201}, {"status": 201}]})
    assert len(stand_in.accepted) == 2


def test_the_stand_in_serves_a_forwarders_request_over_http() -> None:
    stand_in = LinkedInStandIn().start()
    try:
        made = vendor_for("linkedin", stand_in.connection())
        now_s = int(time.time())
        items = [Item(f"m{i}", LinkedInStandIn.sample(i, f"m{i}", now_s)) for i in range(3)]
        (request,) = made.build(items).requests
        sent = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
        with urllib.request.urlopen(sent, timeout=5) as response:
            status, body = response.status, response.read()
        assert made.read(request, status, {}, body).delivered == [0, 1, 2]
        assert sorted(LinkedInStandIn.carried(e) for e in stand_in.accepted) == ["m0", "m1", "m2"]
        wrong = vendor_for("linkedin", stand_in.connection("not-the-token"))
        (request,) = wrong.build(items).requests
        sent = urllib.request.Request(request.url, data=request.body, headers=dict(request.headers), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sent, timeout=5)
        assert wrong.read(request, refused.value.code, {}, refused.value.read()).rejected == \
            dict.fromkeys(range(3), "vendor.auth")
    finally:
        stand_in.stop()
