"""Pinterest Conversions API stand-in: `POST /v5/ad_accounts/{ad_account_id}/events` with a Bearer conversion
token (401 code 2 "Authentication failed." without it, 403 code 29 for another ad account), `data` of 1 to
1,000 events. The request is checked against the schema as a whole, as Pinterest's v5 OpenAPI description
gives it (https://developers.pinterest.com/docs/api/v5/events-create/; https://github.com/pinterest/
api-description, v5/openapi.yaml, `ConversionEvents`); one event it refuses gets the request a 400 "Invalid
request: ..." and nothing is kept:
- event_name, action_source, event_time, event_id and user_data are required; no keys beyond the schema's
  (in the event, in custom_data and in its contents, each `additionalProperties: false`);
- event_name one of Pinterest's, action_source app_android, app_ios, web or offline, event_time an integer
  (unix seconds), event_id and event_source_url strings, opt_out and wifi booleans;
- custom_data's value, currency, order_id... strings ("accepted as a string"), num_items an integer,
  content_ids a list of strings, contents a list of objects (quantity an integer, item_price a string);
- user_data with em, hashed_maids, or client_ip_address with client_user_agent; em, ph, fn, ln, ge, db, ct,
  st, zp, country, external_id and hashed_maids lists of strings ("Sha256 hashes"); the IP address, user
  agent, click_id and partner_id strings.
Then each event on its own: an event_time over 7 days old or in the future, or a hash that is not SHA-256
hex (64 lowercase hex digits), fails that event alone (422 "Not all events were successfully processed", the
per-event `events[]` under `details`; the others are kept); otherwise 200 `{num_events_received,
num_events_processed, events}`. `?test=true` answers the same and keeps nothing. Events are kept under their
event_id (what Pinterest deduplicates on). The 7 days are not in Pinterest's reference but in
https://docs.amperity.com/operator/events_pinterest.html (of this endpoint). The error codes of the 404 and
422 bodies, the 400's message, and the layout of the 422's `details`, are ours: Pinterest documents none."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

_PATH: Final = re.compile(r"^/v5/ad_accounts/(?P<account>[^/]+)/events$")
MAX_EVENTS: Final = 1000  # `data`: minItems 1, maxItems 1000 (v5/openapi.yaml, ConversionEvents)
MAX_AGE_S: Final = 7 * 86_400  # https://docs.amperity.com/operator/events_pinterest.html
FUTURE_S: Final = 3_600  # ours: a clock a little ahead is tolerated
REQUIRED: Final = ("event_name", "action_source", "event_time", "event_id", "user_data")
EVENT_NAMES: Final = frozenset({
    "add_payment_info", "add_to_cart", "add_to_wishlist", "app_install", "checkout", "custom", "initiate_checkout",
    "lead", "page_visit", "search", "signup", "subscribe", "view_category", "view_content", "watch_video"})
ACTION_SOURCES: Final = frozenset({"app_android", "app_ios", "web", "offline"})
# each event key and the JSON types it takes (None: null allowed)
EVENT_TYPES: Final[dict[str, tuple[type | None, ...]]] = {
    "event_name": (str,), "action_source": (str,), "event_time": (int,), "event_id": (str,), "user_data": (dict,),
    "custom_data": (dict, None), "event_source_url": (str, None), "opt_out": (bool,), "partner_name": (str, None),
    "app_id": (str, None), "app_name": (str, None), "app_version": (str, None), "app_info": (dict,),
    "device_brand": (str, None), "device_carrier": (str, None), "device_model": (str, None),
    "device_type": (str, None), "device_info": (dict,), "os_version": (str, None), "language": (str, None),
    "wifi": (bool,)}
CUSTOM_TYPES: Final[dict[str, tuple[type | None, ...]]] = {
    "currency": (str, None), "value": (str, None), "content_ids": (list,), "content_name": (str, None),
    "content_category": (str, None), "content_brand": (str, None), "contents": (list,), "num_items": (int,),
    "order_id": (str, None), "search_string": (str, None), "opt_out_type": (str, None),
    "predicted_ltv": (str, None), "np": (str, None), "external_measurement_id": (str, None),
    "external_measurement_vendor_id": (int, None)}
CONTENT_TYPES: Final[dict[str, tuple[type | None, ...]]] = {
    "id": (str,), "item_brand": (str,), "item_category": (str,), "item_name": (str,), "item_price": (str,),
    "quantity": (int,)}
HASHED: Final = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id", "hashed_maids")
USER_STRINGS: Final[dict[str, tuple[type | None, ...]]] = {
    "client_ip_address": (str,), "client_user_agent": (str,), "click_id": (str, None), "partner_id": (str, None)}
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")


def error(status: int, code: int, message: str) -> Answer:
    return json_answer(status, {"code": code, "message": message})


class PinterestStandIn(StandIn):
    name = "pinterest"
    credential = "pina-conversion-token"
    path = "/v5"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"ad_account_id": "549755885175", "conversion_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        email = hashlib.sha256(f"u{index % 7}@example.com".encode()).hexdigest()
        return {"event_name": "checkout", "action_source": "web", "event_time": now_s, "event_id": message_id,
                "user_data": {"em": [email], "client_ip_address": "203.0.113.7", "client_user_agent": "Mozilla/5.0"},
                "custom_data": {"currency": "USD", "value": "10.00"}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # its event_time 8 days back (the record itself is fresh): failed alone in the 422's events[]
        return {**payload, "event_time": payload["event_time"] - 8 * 86_400}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_time": now_s}

    def __init__(self, ad_account_id: str | None = None, conversion_token: str | None = None) -> None:
        super().__init__()
        self.ad_account_id = ad_account_id or "549755885175"
        self.conversion_token = conversion_token or self.credential

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None:
            return error(404, 404, "Not found.")
        if incoming.headers.get("authorization") != f"Bearer {self.conversion_token}":
            return error(401, 2, "Authentication failed.")
        if match["account"] != self.ad_account_id:
            return error(403, 29, "You are not permitted to access that resource.")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return error(400, 1, "Invalid request: the body is not JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not 0 < len(data) <= MAX_EVENTS:
            return error(400, 1, f"Invalid request: data must hold 1 to {MAX_EVENTS} events")
        if set(body) - {"data"}:
            return error(400, 1, f"Invalid request: {sorted(set(body) - {'data'})[0]} is not a request field")
        for index, event in enumerate(data):
            problem = _schema_problem(event)
            if problem:
                return error(400, 1, f"Invalid request: data[{index}]: {problem}")
        now = time.time()
        results = [_event_problem(event, now) for event in data]
        if incoming.query.get("test") != "true":
            for event, problem in zip(data, results, strict=True):
                if problem is None:
                    self.accept(event, str(event["event_id"]))
        answer = {"num_events_received": len(data), "num_events_processed": results.count(None),
                  "events": [{"status": "processed" if p is None else "failed", "error_message": p,
                              "warning_message": None} for p in results]}
        if any(results):
            return json_answer(422, {"code": 4, "message": "Not all events were successfully processed",
                                     "details": answer})
        return json_answer(200, answer)


def _typed(value: Any, types: tuple[type | None, ...]) -> bool:
    """Whether a JSON value is of one of `types` (None: null); a bool is no int."""
    if value is None:
        return None in types
    if isinstance(value, bool):
        return bool in types
    return any(t is not None and t is not bool and isinstance(value, t) for t in types)


def _fields_problem(given: dict[str, Any], types: dict[str, tuple[type | None, ...]], where: str) -> str | None:
    """A key the schema does not have, or a value of another type, in `given` (at `where`), or None."""
    for key in sorted(given):
        if key not in types:
            return f"{where}{key} is not a Pinterest field"
        if not _typed(given[key], types[key]):
            return f"{where}{key} has the wrong type"
    return None


def _schema_problem(event: Any) -> str | None:
    """What the request schema refuses in this event (Pinterest then refuses the whole request), or None."""
    if not isinstance(event, dict):
        return "an event must be an object"
    for key in REQUIRED:
        if event.get(key) in (None, "", {}):
            return f"{key} is required"
    problem = _fields_problem(event, EVENT_TYPES, "")
    if problem:
        return problem
    if event["event_name"] not in EVENT_NAMES:
        return "event_name is not a Pinterest event name"
    if event["action_source"] not in ACTION_SOURCES:
        return "action_source must be app_android, app_ios, web or offline"
    custom = event.get("custom_data") or {}
    problem = _fields_problem(custom, CUSTOM_TYPES, "custom_data.")
    if problem:
        return problem
    if not all(isinstance(i, str) for i in custom.get("content_ids") or []):
        return "custom_data.content_ids must be a list of strings"
    for n, content in enumerate(custom.get("contents") or []):
        if not isinstance(content, dict):
            return f"custom_data.contents[{n}] must be an object"
        problem = _fields_problem(content, CONTENT_TYPES, f"custom_data.contents[{n}].")
        if problem:
            return problem
    return _user_problem(event["user_data"])


def _user_problem(user: dict[str, Any]) -> str | None:
    for key in HASHED:
        values = user.get(key)
        if values is not None and not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            return f"user_data.{key} must be a list of strings"
    for key, types in USER_STRINGS.items():
        if key in user and not _typed(user[key], types):
            return f"user_data.{key} must be a string"
    if not (user.get("em") or user.get("hashed_maids")
            or (user.get("client_ip_address") and user.get("client_user_agent"))):
        return "user_data needs em, hashed_maids, or client_ip_address with client_user_agent"
    return None


def _event_problem(event: dict[str, Any], now: float) -> str | None:
    """Why Pinterest fails this event alone (the others of the request are processed), or None."""
    age = now - event["event_time"]
    if age > MAX_AGE_S:
        return "event_time is more than 7 days in the past"
    if age < -FUTURE_S:
        return "event_time is in the future"
    user = event["user_data"]
    for key in HASHED:
        if any(not _HEX64.match(v) for v in user.get(key) or []):
            return f"user_data.{key} must be SHA-256 hex"
    return None
