"""Google Ads API stand-in, on one server: the OAuth2 token URL (`/token`: the refresh-token grant, tokens that
expire, `expire_tokens()` to end them early) and `POST /v{N}/customers/{id}:uploadClickConversions`. It
answers as Google does: 401 UNAUTHENTICATED for a missing, unknown or expired token, 403 PERMISSION_DENIED
for another account, 400 for a request that is not partial-failure or holds over 2,000 conversions, and a
200 with `partialFailureError` naming each refused conversion by index (a missing or malformed field, a
conversion action it does not have, EXPIRED_EVENT over 90 days, unhashed or unsupported user identifiers,
gbraid with wbraid, DUPLICATE_ORDER_ID, ORDER_ID_ALREADY_IN_USE). Each conversion is kept under its orderId
(what Google deduplicates on), a copy again too (counted as a duplicate). Scripted faults are the API's: the
token URL answers `token_status` when set."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import threading
import time
from collections import Counter
from typing import Any, ClassVar, Final
from urllib.parse import parse_qs

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.google_ads import CLICK_IDS, HASHED, MAX_AGE_S, MAX_CONVERSIONS, MAX_IDENTIFIERS

TOKEN_PATH: Final = "/token"
CLIENT_ID: Final = "1234-standin.apps.googleusercontent.com"
CUSTOMER_ID: Final = "1234567890"
ACTIONS: Final = {"purchase": "111111111", "begin_checkout": "222222222", "add_to_cart": "333333333",
                  "signup": "444444444", "page_view": "555555555"}
_UPLOAD: Final = re.compile(r"^/v\d+/customers/(?P<customer>\d+):uploadClickConversions$")
_ACTION: Final = re.compile(r"^customers/\d+/conversionActions/(?P<id>\d+)$")
_DATE_TIME: Final = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d$")
_GCLID: Final = re.compile(r"^[A-Za-z0-9_-]{10,}$")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")  # ISO 4217
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_SIGN_IN: Final = "Expected OAuth 2 access token, login cookie or other valid authentication credential. See " \
                  "https://developers.google.com/identity/sign-in/web/devconsole-project."


def google_error(status: int, code: str, message: str, ads_error: dict[str, str] | None = None) -> Answer:
    """Google's error body (`{"error": {code, message, status, details}}`), with a GoogleAdsFailure."""
    details = [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": ads_error, "message": message}], "requestId": "standin"}] if ads_error else []
    return json_answer(status, {"error": {"code": status, "message": message, "status": code, "details": details}})


def date_time(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")


class GoogleAdsStandIn(StandIn):
    name = "google_ads"
    credential = "google-ads-secret"  # the client secret and the refresh token it accepts
    path = ""  # the connection's endpoint is the server: the module adds /v26/customers/...
    token_lifetime_s: ClassVar[float] = 3599.0

    def __init__(self, client_secret: str | None = None, refresh_token: str | None = None,
                 customer_id: str = CUSTOMER_ID) -> None:
        super().__init__()
        self.client_secret = client_secret or self.credential
        self.refresh_token = refresh_token or self.credential
        self.customer_id = customer_id
        self.token_status: int | None = None  # the token URL answers this instead, when set
        self.token_requests = 0
        self._tokens: dict[str, float] = {}  # access token -> when it expires (time.monotonic)
        self._orders: Counter[str] = Counter()
        self._serial = itertools.count(1)
        self._guard = threading.Lock()

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"customer_id": CUSTOMER_ID, "conversion_actions": dict(ACTIONS), "client_id": CLIENT_ID,
                "client_secret": secret, "refresh_token": secret}

    def connection(self, secret: str | None = None) -> dict[str, Any]:
        return {**super().connection(secret), "oauth_endpoint": self.url + TOKEN_PATH}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"conversion": "purchase", "gclid": f"Cj0KCQiA-standin-user-{index % 7}",
                "conversionDateTime": date_time(now_s), "conversionValue": 10.0 + index, "currencyCode": "USD",
                "orderId": message_id}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["orderId"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # a conversion 100 days old: its click is past the longest click-through window (EXPIRED_EVENT)
        return {**payload, "conversionDateTime": date_time(time.time() - 100 * 86_400)}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "conversionDateTime": date_time(now_s)}

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now."""
        with self._guard:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def handle(self, incoming: Incoming) -> Answer:
        # the token URL is another service: the API's scripted faults and counters are not its
        return self._token(incoming) if incoming.path == TOKEN_PATH else super().handle(incoming)

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path == TOKEN_PATH:
            return self._token(incoming)
        match = _UPLOAD.match(incoming.path)
        if match is None:
            return google_error(404, "NOT_FOUND", "Method not found.")
        token = incoming.headers.get("authorization", "")
        if not token.startswith("Bearer "):
            return google_error(401, "UNAUTHENTICATED", f"Request is missing required authentication credential. "
                                f"{_SIGN_IN}")
        with self._guard:
            expires = self._tokens.get(token.removeprefix("Bearer "))
        if expires is None or expires <= time.monotonic():
            reason = "OAUTH_TOKEN_INVALID" if expires is None else "OAUTH_TOKEN_EXPIRED"
            return google_error(401, "UNAUTHENTICATED", f"Request had invalid authentication credentials. {_SIGN_IN}",
                                {"authenticationError": reason})
        login = incoming.headers.get("login-customer-id")
        if login is not None and not login.isdigit():
            return google_error(400, "INVALID_ARGUMENT", "Invalid login-customer-id header.",
                                {"headerError": "INVALID_LOGIN_CUSTOMER_ID"})
        if match["customer"] != self.customer_id:
            return google_error(403, "PERMISSION_DENIED", "The caller does not have permission",
                                {"authorizationError": "USER_PERMISSION_DENIED"})
        body = orjson.loads(incoming.body)
        if body.get("partialFailure") is not True:
            return google_error(400, "INVALID_ARGUMENT", "The partial failure field was false in the request.",
                                {"partialFailureError": "PARTIAL_FAILURE_MODE_REQUIRED"})
        conversions = body.get("conversions")
        if not isinstance(conversions, list) or not conversions:
            return google_error(400, "INVALID_ARGUMENT", "The required field was not present.",
                                {"fieldError": "REQUIRED"})
        if len(conversions) > MAX_CONVERSIONS:
            return google_error(400, "INVALID_ARGUMENT", "Upload fewer than 2001 events in a single request.",
                                {"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"})
        return self._upload(conversions, bool(body.get("validateOnly")))

    def _upload(self, conversions: list[Any], validate_only: bool) -> Answer:
        repeated = Counter(c.get("orderId") for c in conversions if isinstance(c, dict) and c.get("orderId"))
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for index, conversion in enumerate(conversions):
            problem = _problem(conversion, time.time()) if isinstance(conversion, dict) else \
                ({"requestError": "BAD_RESOURCE"}, "The conversion is not an object.")
            order = conversion.get("orderId") if isinstance(conversion, dict) else None
            if problem is None and order and repeated[order] > 1:
                problem = ({"conversionUploadError": "DUPLICATE_ORDER_ID"}, "Imported events include multiple "
                           "conversions with the same order ID and were not processed.")
            if problem is None and not validate_only:
                problem = self._record(conversion)
            if problem is None:
                results.append({k: conversion[k] for k in ("gclid", "gbraid", "wbraid", "conversionAction",
                                                           "conversionDateTime", "userIdentifiers") if k in conversion})
            else:
                results.append({})
                errors.append({"errorCode": problem[0], "message": problem[1], "location": {
                    "fieldPathElements": [{"fieldName": "conversions", "index": index}]}})
        answer: dict[str, Any] = {"jobId": str(next(self._serial))}
        if not validate_only:
            answer["results"] = results
        if errors:
            answer["partialFailureError"] = {
                "code": 3, "message": "; ".join(f"{e['message']}, at conversions[{i}]" for i, e in enumerate(errors)),
                "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                             "errors": errors, "requestId": "standin"}]}
        return json_answer(200, answer)

    def _record(self, conversion: dict[str, Any]) -> tuple[dict[str, str], str] | None:
        """Keeps the conversion; a copy of one Google has (the same orderId, else the same click and time) is
        kept as a duplicate, and answered as Google answers it."""
        order = conversion.get("orderId")
        click = next((conversion[k] for k in CLICK_IDS if conversion.get(k)), None)
        key = f"order:{order}" if order else f"click:{click}:{conversion['conversionDateTime']}" if click else None
        with self._guard:
            known = key is not None and self._orders[key] > 0
            if key is not None:
                self._orders[key] += 1
        self.accept(conversion, key)
        if not known:
            return None
        if order:
            return {"conversionUploadError": "ORDER_ID_ALREADY_IN_USE"}, "The imported event includes an order ID " \
                "that was previously recorded, so the event was not processed."
        return {"conversionUploadError": "CLICK_CONVERSION_ALREADY_EXISTS"}, "The imported event has the same " \
            "click and conversion_date_time as an existing conversion."

    def _token(self, incoming: Incoming) -> Answer:
        """The refresh-token grant, as oauth2.googleapis.com/token answers it."""
        with self._guard:
            self.token_requests += 1
        if self.token_status is not None:
            return json_answer(self.token_status, {"error": "internal_failure"})
        form = {k: v[-1] for k, v in parse_qs(incoming.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return json_answer(400, {"error": "unsupported_grant_type",
                                     "error_description": f"Invalid grant_type: {form.get('grant_type', '')}"})
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != self.client_secret:
            return json_answer(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if form.get("refresh_token") != self.refresh_token:
            return json_answer(400, {"error": "invalid_grant", "error_description": "Bad Request"})
        token = f"ya29.standin-{next(self._serial)}-{time.monotonic_ns() % 10**9}"
        with self._guard:
            self._tokens[token] = time.monotonic() + self.token_lifetime_s
        return json_answer(200, {"access_token": token, "expires_in": int(self.token_lifetime_s),
                                 "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"})


def _problem(conversion: dict[str, Any], now: float) -> tuple[dict[str, str], str] | None:
    """The error Google gives this conversion (its errorCode and message), or None."""
    action = _ACTION.match(str(conversion.get("conversionAction", "")))
    if "conversionAction" not in conversion or "conversionDateTime" not in conversion:
        return {"fieldError": "REQUIRED"}, "The required field was not present."
    if action is None:
        return {"requestError": "RESOURCE_NAME_MALFORMED"}, "The resource name is malformed."
    if action["id"] not in ACTIONS.values():
        return {"conversionUploadError": "NO_CONVERSION_ACTION_FOUND"}, "The conversion action specified in the " \
            "upload request cannot be found. Make sure it's available in this account."
    when = str(conversion["conversionDateTime"])
    if not _DATE_TIME.match(when):
        return {"dateError": "INVALID_STRING_DATE_TIME_SECONDS_WITH_OFFSET"}, \
            "The string date time's format should be yyyy-mm-dd hh:mm:ss+|-hh:mm."
    if dt.datetime.strptime(when[:19] + when[-6:], "%Y-%m-%d %H:%M:%S%z").timestamp() < now - MAX_AGE_S:
        return {"conversionUploadError": "EXPIRED_EVENT"}, "The imported event can't be recorded because its " \
            "click occurred before this conversion's click-through window."
    value = conversion.get("conversionValue")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return {"fieldError": "INVALID_VALUE"}, "The field's value is invalid."
    currency = conversion.get("currencyCode")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.match(currency)):
        return {"conversionUploadError": "INVALID_CURRENCY_CODE"}, "The currency code is invalid or unsupported."
    identifiers = conversion.get("userIdentifiers") or []
    if not any(conversion.get(k) for k in CLICK_IDS) and not identifiers:
        return {"fieldError": "REQUIRED"}, "The required field was not present."
    if conversion.get("gbraid") and conversion.get("wbraid"):
        return {"conversionUploadError": "GBRAID_WBRAID_BOTH_SET"}, "Can't use both gbraid and wbraid parameters."
    if conversion.get("gclid") and not _GCLID.match(str(conversion["gclid"])):
        return {"conversionUploadError": "UNPARSEABLE_GCLID"}, "The imported gclid could not be decoded."
    if not isinstance(identifiers, list) or len(identifiers) > MAX_IDENTIFIERS:
        return {"collectionSizeError": "TOO_MANY"}, "Too many elements."
    for identifier in identifiers:
        kinds = [k for k in identifier if k != "userIdentifierSource"] if isinstance(identifier, dict) else []
        if len(kinds) != 1 or kinds[0] not in HASHED:
            return {"conversionUploadError": "UNSUPPORTED_USER_IDENTIFIER"}, "The provided user identifiers are " \
                "not supported. Use only hashed email or phone number and try again."
        if not _HEX64.match(str(identifier[kinds[0]])):
            return {"conversionUploadError": "INVALID_USER_IDENTIFIER"}, "Make sure you hash user provided data " \
                "using SHA-256 and ensure you are normalizing according to the guidelines."
    return None
