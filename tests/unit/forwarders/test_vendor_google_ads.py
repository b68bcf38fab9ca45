"""The Google Ads module (forwarders/vendors/google_ads.py) builds uploadClickConversions requests, refuses
before sending what Google would refuse, reads partial failures by index, and gets its access tokens by the
refresh-token grant; its stand-in answers as Google does. Pure: the end-to-end cases call the stand-in in
process, through the delivery policy, without a network."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, Incoming
from eventrouter.dev.standins.google_ads import ACTIONS, CLIENT_ID, TOKEN_PATH, GoogleAdsStandIn, date_time
from forwarders.delivery import Answer, BatchDelivery
from forwarders.ratelimit import TokenBucket
from forwarders.vendors import Item, Request, vendor_for
from forwarders.vendors.google_ads import GoogleAds
from schemas.delivery import Delivery
from schemas.errors import ConfigurationError, FinalError, RetryableError
from tests.unit.forwarders.test_delivery import Clock

SECRET = GoogleAdsStandIn.credential
API = "https://googleads.example.com"
TOKEN_URL = "https://oauth.example.com/token"
HEX = "ab" * 32


def vendor(**settings: Any) -> GoogleAds:
    made = vendor_for("google_ads", {**STAND_INS["google_ads"].settings(SECRET), "endpoint": API,
                                     "oauth_endpoint": TOKEN_URL, **settings})
    assert isinstance(made, GoogleAds)
    return made


def conversion(**fields: Any) -> dict[str, Any]:
    return {"conversion": "purchase", "gclid": "Cj0KCQiA-test", "conversionDateTime": date_time(time.time()),
            **fields}


def body(request: Request) -> Any:
    return orjson.loads(request.body)


def failure(*errors: tuple[int, dict[str, str]]) -> bytes:
    """A 200 whose partialFailureError names these (index, errorCode) errors."""
    return orjson.dumps({"results": [], "partialFailureError": {"code": 3, "message": "failed", "details": [{
        "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": [{"errorCode": code, "message": "m", "location": {"fieldPathElements": [
            {"fieldName": "conversions", "index": index}]}} for index, code in errors]}]}})


# -- build --------------------------------------------------------------------------------------------
def test_the_conversion_name_picks_the_action_and_the_message_id_is_the_order_id() -> None:
    request = vendor().build([Item("m-1", conversion()), Item("m-2", conversion(orderId="o-2")),
                              Item("m-3", conversion(conversionAction="customers/9/conversionActions/7"))]).requests[0]
    sent = body(request)
    assert request.url == f"{API}/v26/customers/1234567890:uploadClickConversions"
    assert sent["partialFailure"] is True and "validateOnly" not in sent
    assert [c["conversionAction"] for c in sent["conversions"]] == [
        f"customers/1234567890/conversionActions/{ACTIONS['purchase']}"] * 2 + ["customers/9/conversionActions/7"]
    assert [c["orderId"] for c in sent["conversions"]] == ["m-1", "o-2", "m-3"]
    assert all("conversion" not in c for c in sent["conversions"])
    assert "Authorization" not in request.headers and "developer-token" not in request.headers


@pytest.mark.parametrize(("fields", "reason"), [
    ({"conversion": None}, "conversion is required"),
    ({"conversion": "lead"}, "no conversion action for 'lead'"),
    ({"conversionDateTime": None}, "conversionDateTime is required"),
    ({"conversionDateTime": "2026-11-26T10:00:00Z"}, "conversionDateTime is required"),
    ({"gclid": None}, "gclid, gbraid, wbraid or userIdentifiers is required"),
    ({"gbraid": "g", "wbraid": "w"}, "gbraid and wbraid are both set"),
    ({"userIdentifiers": [{"hashedEmail": "ada@example.com"}]}, "hashedEmail must be SHA-256 hex"),
    ({"userIdentifiers": [{"hashedEmail": HEX}] * 6}, "at most 5"),
    ({"userIdentifiers": [{"addressInfo": {"city": "x"}}]}, "one hashedEmail or hashedPhoneNumber"),
    ({"conversionValue": "25"}, "conversionValue must be a number"),
    ({"currencyCode": "eur"}, "currencyCode must be an ISO 4217 code"),
])
def test_what_google_would_refuse_is_refused_before_sending(fields: dict[str, Any], reason: str) -> None:
    built = vendor().build([Item("bad", conversion(**fields)), Item("good", conversion())])
    assert list(built.refused) == [0] and reason in built.refused[0]
    assert [r.items for r in built.requests] == [(1,)]


def test_leads_without_a_click_id_go_with_hashed_identifiers_and_a_gap_is_closed() -> None:
    payload = conversion(gclid=None, userIdentifiers=[None, {"hashedPhoneNumber": HEX}])
    built = vendor().build([Item("m", payload), Item("n", conversion(userIdentifiers=[None, None]))])
    assert not built.refused
    sent = body(built.requests[0])["conversions"]
    assert sent[0]["userIdentifiers"] == [{"hashedPhoneNumber": HEX}] and "gclid" not in sent[0]
    assert "userIdentifiers" not in sent[1]


def test_at_most_2000_conversions_a_request_and_an_order_id_once_per_request() -> None:
    built = vendor().build([Item(f"m{i}", conversion()) for i in range(4500)])
    assert [len(r.items) for r in built.requests] == [2000, 2000, 500]
    twice = vendor().build([Item("a", conversion()), Item("a", conversion()), Item("b", conversion()),
                            Item("a", conversion())])
    assert [r.items for r in twice.requests] == [(0, 2), (1,), (3,)]  # Google refuses every copy in one request


def test_manager_account_validate_only_and_a_developer_token_when_set() -> None:
    request = vendor(login_customer_id="111-222-3333", developer_token="dev-token-1",
                     validate_only=True).build([Item("m", conversion())]).requests[0]
    assert request.headers["login-customer-id"] == "1112223333" and request.headers["developer-token"] == "dev-token-1"
    assert body(request)["validateOnly"] is True


def test_the_connection_is_checked_at_load() -> None:
    assert vendor(customer_id="123-456-7890").endpoint == API
    with pytest.raises(ConfigurationError, match="customer_id"):
        vendor(customer_id="acme")
    with pytest.raises(ConfigurationError, match="conversion_actions"):
        vendor(conversion_actions={"purchase": "AW-123/abc"})
    with pytest.raises(ConfigurationError, match="oauth_endpoint"):
        vendor(oauth_endpoint="http://oauth.example.com/token")
    assert sorted(vendor().secrets()) == [SECRET, SECRET]  # client_secret and refresh_token, not the ids


# -- read ---------------------------------------------------------------------------------------------
def test_a_partial_failure_names_each_refused_conversion_by_index() -> None:
    module = vendor()
    request = module.build([Item(f"m{i}", conversion()) for i in range(6)]).requests[0]
    reply = module.read(request, 200, {}, failure(
        (1, {"conversionUploadError": "CLICK_NOT_FOUND"}), (2, {"conversionUploadError": "EXPIRED_EVENT"}),
        (3, {"conversionUploadError": "ORDER_ID_ALREADY_IN_USE"}), (4, {"conversionUploadError": "TOO_RECENT_EVENT"})))
    assert reply.delivered == [0, 3, 5]  # 3: Google has it already (a resend)
    assert reply.rejected == {1: "vendor.invalid: CLICK_NOT_FOUND", 2: "vendor.too_old: EXPIRED_EVENT"}
    assert reply.retry == [4] and reply.retry_after == 6 * 3600
    assert module.read(request, 200, {}, b'{"results": [{}], "jobId": "7"}').delivered == list(range(6))
    # an error that names no conversion of the request: the others cannot be told delivered; sent again
    unplaced = module.read(request, 200, {}, failure((1, {"conversionUploadError": "CLICK_NOT_FOUND"}),
                                                     (9, {"conversionUploadError": "UNPARSEABLE_GCLID"})))
    assert unplaced.retry == [0, 2, 3, 4, 5] and not unplaced.delivered and list(unplaced.rejected) == [1]


def test_a_400_for_some_conversions_refuses_them_and_sends_the_others_again() -> None:
    module = vendor()
    request = module.build([Item(f"m{i}", conversion()) for i in range(3)]).requests[0]
    indexed = orjson.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": orjson.loads(
        failure((1, {"requestError": "RESOURCE_NAME_MALFORMED"})))["partialFailureError"]["details"]}})
    reply = module.read(request, 400, {}, indexed)
    assert reply.rejected == {1: "vendor.invalid: RESOURCE_NAME_MALFORMED"} and reply.retry == [0, 2] and reply.resend
    whole = module.read(request, 400, {}, b'{"error": {"code": 400, "status": "INVALID_ARGUMENT"}}')
    # about the request, not a conversion (those come as partial failures): final, never bisected
    assert not whole.split and whole.rejected == dict.fromkeys(range(3), "vendor.rejected")


def test_401_is_final_429_waits_for_retry_after_or_the_retry_delay_and_5xx_retries() -> None:
    module = vendor()
    request = module.build([Item("m", conversion())]).requests[0]
    assert module.read(request, 401, {}, b'{"error": {"status": "UNAUTHENTICATED"}}').rejected == {0: "vendor.auth"}
    assert module.read(request, 403, {}, b"{}").rejected == {0: "vendor.auth"}
    assert module.read(request, 429, {"Retry-After": "12"}, b"").retry_after == 12.0
    quota = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [{"errors": [{
        "errorCode": {"quotaError": "RESOURCE_EXHAUSTED"}, "details": {"quotaErrorDetails": {"retryDelay": "30s"}}}]}]}}
    reply = module.read(request, 429, {}, orjson.dumps(quota))
    assert reply.retry == [0] and reply.retry_after == 30.0
    assert module.read(request, 503, {}, b"unavailable").retry == [0]


# -- the access token ---------------------------------------------------------------------------------
def test_the_refresh_token_grant_and_its_answers() -> None:
    module = vendor()
    ask = module.token_request()
    assert ask is not None and ask.url == TOKEN_URL
    assert parse_qs(ask.body.decode()) == {"client_id": [CLIENT_ID], "client_secret": [SECRET],
                                           "refresh_token": [SECRET], "grant_type": ["refresh_token"]}
    token = module.read_token(200, {}, b'{"access_token": "ya29.a", "expires_in": 3599, "token_type": "Bearer"}')
    assert (token.value, token.expires_in_s) == ("ya29.a", 3599.0)
    with pytest.raises(FinalError) as refused:
        module.read_token(400, {}, b'{"error": "invalid_grant", "error_description": "Bad Request"}')
    assert refused.value.reason == "vendor.auth" and "invalid_grant" in refused.value.message
    with pytest.raises(FinalError):
        module.read_token(401, {}, b'{"error": "invalid_client"}')
    for status, answer in ((503, b""), (429, b""), (200, b"{}")):
        with pytest.raises(RetryableError):
            module.read_token(status, {}, answer)
    request = module.build([Item("m", conversion())]).requests[0]
    signed = module.signed(request, "ya29.a")
    assert signed.headers["Authorization"] == "Bearer ya29.a" and signed.body == request.body
    assert "Authorization" not in request.headers


def in_process(stand_in: GoogleAdsStandIn) -> Any:
    def transport(request: Request) -> Answer:
        incoming = Incoming("POST", urlsplit(request.url).path, {}, {k.lower(): v for k, v in request.headers.items()},
                            request.body)
        answer = stand_in.handle(incoming)
        return Answer(answer.status, dict(answer.headers), answer.body)
    return transport


def delivery(stand_in: GoogleAdsStandIn, **policy: Any) -> BatchDelivery:
    clock = Clock()
    return BatchDelivery(vendor(), Delivery.model_validate({"min_backoff_s": 1, **policy}), in_process(stand_in),
                         TokenBucket(None, clock=clock.time, sleep=clock.sleep), clock=clock.time, sleep=clock.sleep)


def test_an_expired_token_gets_a_new_one_and_the_conversions_arrive_once() -> None:
    stand_in = GoogleAdsStandIn()
    sending = delivery(stand_in)
    report = sending.deliver([Item(f"m{i}", conversion()) for i in range(5)])
    assert {f.state for f in report.fates.values()} == {"delivered"} and stand_in.token_requests == 1
    stand_in.expire_tokens()
    report = sending.deliver([Item(f"n{i}", conversion()) for i in range(5)])
    assert {f.state for f in report.fates.values()} == {"delivered"} and stand_in.token_requests == 2
    assert sorted(GoogleAdsStandIn.carried(e) for e in stand_in.accepted) == sorted(
        [f"m{i}" for i in range(5)] + [f"n{i}" for i in range(5)]) and stand_in.duplicates == 0
    assert stand_in.statuses[401] == 1


def test_a_resend_is_delivered_and_a_refused_grant_dead_letters() -> None:
    stand_in = GoogleAdsStandIn()
    items = [Item(f"m{i}", conversion()) for i in range(3)]
    delivery(stand_in).deliver(items)
    again = delivery(stand_in).deliver(items)  # as after a crash before the commit: Google has them
    assert {f.state for f in again.fates.values()} == {"delivered"} and stand_in.duplicates == 3
    refused = delivery(GoogleAdsStandIn(refresh_token="another-refresh-token")).deliver(items[:1])
    assert {(f.state, f.reason) for f in refused.fates.values()} == {("dead", "vendor.auth")}


# -- the stand-in -------------------------------------------------------------------------------------
def post(stand_in: GoogleAdsStandIn, path: str, payload: Any, token: str | None = None, form: bool = False,
         **headers: str) -> tuple[int, Any]:
    sent = {**headers, **({"authorization": f"Bearer {token}"} if token else {})}
    raw = payload.encode() if form else orjson.dumps(payload)
    answer = stand_in.answer(Incoming("POST", path, {}, sent, raw))
    return answer.status, orjson.loads(answer.body)


def grant(stand_in: GoogleAdsStandIn, secret: str = SECRET, refresh: str = SECRET) -> tuple[int, Any]:
    form = f"client_id={CLIENT_ID}&client_secret={secret}&refresh_token={refresh}&grant_type=refresh_token"
    return post(stand_in, TOKEN_PATH, form, form=True)


UPLOAD = "/v26/customers/1234567890:uploadClickConversions"
ACTION = f"customers/1234567890/conversionActions/{ACTIONS['purchase']}"


def upload(stand_in: GoogleAdsStandIn, *conversions: dict[str, Any], token: str, **fields: Any) -> tuple[int, Any]:
    return post(stand_in, UPLOAD, {"conversions": list(conversions), "partialFailure": True, **fields}, token)


def ready(**fields: Any) -> dict[str, Any]:
    return {"conversionAction": ACTION, "gclid": "Cj0KCQiA-test", "conversionDateTime": date_time(time.time()),
            "orderId": "o-1", **fields}


def test_the_stand_in_grants_tokens_only_for_its_client_and_refresh_token() -> None:
    stand_in = GoogleAdsStandIn()
    status, answer = grant(stand_in)
    assert status == 200 and answer["access_token"].startswith("ya29.") and answer["expires_in"] == 3599
    assert grant(stand_in, secret="wrong-secret") == (401, {"error": "invalid_client", "error_description":
                                                            "Unauthorized"})
    assert grant(stand_in, refresh="wrong-refresh")[1]["error"] == "invalid_grant"
    assert post(stand_in, TOKEN_PATH, "grant_type=password", form=True)[1]["error"] == "unsupported_grant_type"


def test_the_stand_in_answers_401_for_a_missing_unknown_or_expired_token() -> None:
    stand_in = GoogleAdsStandIn()
    token = grant(stand_in)[1]["access_token"]
    assert upload(stand_in, ready(), token=token)[0] == 200
    status, answer = post(stand_in, UPLOAD, {"conversions": [ready()], "partialFailure": True})
    assert status == 401 and answer["error"]["status"] == "UNAUTHENTICATED"
    assert upload(stand_in, ready(), token="ya29.unknown")[0] == 401
    stand_in.expire_tokens()
    status, answer = upload(stand_in, ready(), token=token)
    assert status == 401 and answer["error"]["details"][0]["errors"][0]["errorCode"] == {
        "authenticationError": "OAUTH_TOKEN_EXPIRED"}


def test_the_stand_in_refuses_other_accounts_whole_requests_and_each_bad_conversion_by_index() -> None:
    stand_in = GoogleAdsStandIn()
    token = grant(stand_in)[1]["access_token"]
    assert post(stand_in, "/v26/customers/999:uploadClickConversions", {}, token)[0] == 403
    assert post(stand_in, UPLOAD, {"conversions": [ready()], "partialFailure": False}, token)[0] == 400
    status, answer = upload(stand_in, *[ready(orderId=f"o{i}") for i in range(2001)], token=token)
    assert status == 400 and "TOO_MANY_CONVERSIONS_IN_REQUEST" in orjson.dumps(answer).decode()
    old = date_time(time.time() - 91 * 86_400)
    status, answer = upload(stand_in, ready(orderId="a"), ready(orderId="b", conversionDateTime=old),
                            ready(orderId="c", gbraid="g", wbraid="w"),
                            ready(orderId="d", conversionAction="customers/1/conversionActions/42"),
                            ready(orderId="e", userIdentifiers=[{"hashedEmail": "ada@example.com"}]),
                            ready(orderId="f", gclid=None), token=token)
    assert status == 200 and answer["results"][0]["gclid"] == "Cj0KCQiA-test"
    errors = answer["partialFailureError"]["details"][0]["errors"]
    codes = {e["location"]["fieldPathElements"][0]["index"]: next(iter(e["errorCode"].values())) for e in errors}
    assert codes == {1: "EXPIRED_EVENT", 2: "GBRAID_WBRAID_BOTH_SET", 3: "NO_CONVERSION_ACTION_FOUND",
                     4: "INVALID_USER_IDENTIFIER", 5: "REQUIRED"}
    assert [GoogleAdsStandIn.carried(e) for e in stand_in.accepted] == ["a"]


def test_the_stand_in_refuses_an_order_id_it_has_and_one_twice_in_a_request_and_validate_only_keeps_none() -> None:
    stand_in = GoogleAdsStandIn()
    token = grant(stand_in)[1]["access_token"]
    assert "partialFailureError" not in upload(stand_in, ready(), token=token)[1]
    again = upload(stand_in, ready(), token=token)[1]
    assert "ORDER_ID_ALREADY_IN_USE" in orjson.dumps(again).decode() and stand_in.duplicates == 1
    twice = upload(stand_in, ready(orderId="x"), ready(orderId="x"), token=token)[1]
    assert orjson.dumps(twice).decode().count("DUPLICATE_ORDER_ID") == 2
    status, checked = upload(stand_in, ready(orderId="dry"), token=token, validateOnly=True)
    assert status == 200 and "results" not in checked and len(stand_in.accepted) == 2


def test_the_apis_scripted_faults_leave_the_token_url_alone() -> None:
    stand_in = GoogleAdsStandIn()
    stand_in.fail(1, 503)
    report = delivery(stand_in).deliver([Item("m", conversion())])
    assert {f.state for f in report.fates.values()} == {"delivered"}
    assert stand_in.token_requests == 1 and stand_in.requests == 2 and stand_in.statuses[503] == 1


def test_the_stand_in_over_http_serves_the_token_url_and_the_api_on_one_port() -> None:
    stand_in = GoogleAdsStandIn().start()
    try:
        connection = stand_in.connection()
        form = f"client_id={CLIENT_ID}&client_secret={SECRET}&refresh_token={SECRET}&grant_type=refresh_token"
        with urllib.request.urlopen(urllib.request.Request(connection["oauth_endpoint"], form.encode()), timeout=5) \
                as answer:
            token = json.loads(answer.read())["access_token"]
        upload_url = connection["endpoint"] + UPLOAD
        sent = urllib.request.Request(upload_url, orjson.dumps({"conversions": [ready()], "partialFailure": True}),
                                      {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(sent, timeout=5) as answer:
            assert answer.status == 200 and "partialFailureError" not in json.loads(answer.read())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(upload_url, b"{}"), timeout=5)
        assert refused.value.code == 401
    finally:
        stand_in.stop()
    assert [GoogleAdsStandIn.carried(e) for e in stand_in.accepted] == ["o-1"]


def test_the_stand_in_takes_its_sample_and_a_freshened_golden_order_and_refuses_a_spoiled_one() -> None:
    stand_in = GoogleAdsStandIn()
    token = grant(stand_in)[1]["access_token"]
    module = vendor()
    golden = json.loads((Path(__file__).resolve().parents[2] / "golden" / "google_ads.json").read_text())
    order = GoogleAdsStandIn.freshen(golden["order_completed"]["payload"], int(time.time()))
    payloads = [GoogleAdsStandIn.sample(1, "m-1", int(time.time())), order,
                GoogleAdsStandIn.spoil(GoogleAdsStandIn.sample(2, "m-2", int(time.time())))]
    built = module.build([Item(f"m-{i}", p) for i, p in enumerate(payloads)])
    assert not built.refused  # the age is the stand-in's to refuse: the runner judges the record's time
    status, answer = upload(stand_in, *body(built.requests[0])["conversions"], token=token)
    reply = module.read(built.requests[0], status, {}, orjson.dumps(answer))
    assert reply.delivered == [0, 1] and reply.rejected == {2: "vendor.too_old: EXPIRED_EVENT"}
    assert [GoogleAdsStandIn.carried(e) for e in stand_in.accepted] == ["m-1", "m-order"]
