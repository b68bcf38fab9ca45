"""Pinterest Conversions API (v5): `POST /v5/ad_accounts/{ad_account_id}/events`, `{data: [...]}`, Bearer
conversion token. Up to 1,000 events a request; each answered in `events[]` (processed or failed).

The starter kit makes one payload per event (an element of `data`): event_name, action_source, event_time
(unix seconds), event_id (= messageId), user_data (PII as lists of SHA-256 hex), custom_data.

What Pinterest documents, and this module follows:
- https://developers.pinterest.com/docs/api/v5/events-create/ (the v5 OpenAPI description,
  https://github.com/pinterest/api-description, v5/openapi.yaml, 5.23.0): `data` holds 1 to 1,000 events;
  event_name, action_source (app_android, app_ios, web, offline), event_time, event_id and user_data are
  required; user_data needs em, hashed_maids, or client_ip_address with client_user_agent; em, ph, fn, ln,
  ge, db, ct, st, zp, country, external_id and hashed_maids are lists of SHA-256 hashes (email lowercased;
  phone digits only with the country code; names, city, state, country lowercased); click_id is the
  `_epik` cookie or `epik` URL parameter; the event and custom_data take no other keys; `?test=true`
  validates without recording. The token is a conversion access token from Ads Manager, sent as
  `Authorization: Bearer`. The endpoint allows 5,000 calls a minute per ad account
  (https://developers.pinterest.com/docs/reference/rate-limits/: the ads_conversions limits bind OAuth
  tokens; the conversion token sends "unlimited conversion-tracking events"); no Retry-After is documented.
- Answers: 200 `{num_events_received, num_events_processed, events: [{status: processed|failed,
  error_message, warning_message}]}` in the order sent; 422 "Not all events were successfully processed"
  (its `details` are not described: read here like a 200's body, at the top or under `details`); 400 "The
  request was invalid" for the whole request (one event with a key the schema refuses is enough, so a 400
  is split until that event is alone); 401, 403; 429; 503 when the endpoint is ramped down.
- Deduplication on event_id against the Pinterest tag's copy ("events that took place offline cannot be
  deduplicated"). Events older than 7 days are not accepted: Pinterest's reference does not state it;
  https://docs.amperity.com/operator/events_pinterest.html does, of this endpoint. No byte limit is
  documented: 2 MB a request is ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson

from forwarders.vendors.base import (
    MILLISECONDS,
    Built,
    Item,
    Reply,
    Request,
    Settings,
    Vendor,
    chunks,
    dumps,
    payload_size,
    read_status,
    sha256_hex,
)

HASHED: Final = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id", "hashed_maids")
EVENT_NAMES: Final = frozenset({
    "add_payment_info", "add_to_cart", "add_to_wishlist", "app_install", "checkout", "custom", "initiate_checkout",
    "lead", "page_visit", "search", "signup", "subscribe", "view_category", "view_content", "watch_video"})
ACTION_SOURCES: Final = frozenset({"app_android", "app_ios", "web", "offline"})
EVENT_KEYS: Final = frozenset({
    "event_name", "action_source", "event_time", "event_id", "user_data", "custom_data", "event_source_url",
    "opt_out", "partner_name", "app_id", "app_name", "app_version", "app_info", "device_brand", "device_carrier",
    "device_model", "device_type", "device_info", "os_version", "language", "wifi"})
CUSTOM_KEYS: Final = frozenset({
    "currency", "value", "content_ids", "content_name", "content_category", "content_brand", "contents",
    "num_items", "order_id", "search_string", "opt_out_type", "predicted_ltv", "np", "external_measurement_id",
    "external_measurement_vendor_id"})
REQUIRED: Final = ("event_name", "action_source", "event_time", "event_id", "user_data")
MAX_AGE_S: Final = 7 * 86_400
_ENVELOPE: Final = 16  # `{"data":[...]}` around the events


class PinterestSettings(Settings):
    ad_account_id: str
    """The ad account the conversions belong to (its numeric id)."""
    conversion_token: str
    """The conversion access token from Ads Manager, sent as Bearer (a `${ENV_VAR}` reference)."""
    test: bool = False
    """Send `?test=true`: Pinterest validates the events and answers as usual, but records none."""


class Pinterest(Vendor):
    kind = "pinterest"
    settings_type: ClassVar[type[Settings]] = PinterestSettings
    max_events = 1000
    max_bytes = 2_000_000  # ours: Pinterest documents no byte limit
    default_endpoint = "https://api.pinterest.com/v5"
    dedup_key = "event_id (against the Pinterest tag's copy; not for offline events)"
    max_age_s = float(MAX_AGE_S)
    rate_limit = "5,000 requests a minute per ad account"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"epik": "context.epik"}
    split_on_reject = True  # a 400 refuses the whole request for one event the schema refuses

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, PinterestSettings)
        url = f"{self.endpoint.rstrip('/')}/ad_accounts/{settings.ad_account_id}/events"
        if settings.test:
            url += "?test=true"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.conversion_token}"}
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            event = item.payload if item.payload.get("event_id") else {**item.payload, "event_id": item.message_id}
            problem = check(event)
            if problem:
                refused[position] = problem
            else:
                events[position] = event
        requests = []
        for run in chunks(items, list(events), self.max_events, self.max_bytes - _ENVELOPE, _size):
            body = dumps({"data": [events[p] for p in run]})
            requests.append(Request(url, body, tuple(run), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status not in (200, 422):
            return read_status(request, status, headers, body, split_on_reject=True)
        results = _results(body)
        if results is None or len(results) != len(request.items):
            if status == 200:  # no per-event list to read: the status says all were taken
                return Reply(delivered=list(range(len(request.items))))
            return read_status(request, 400, headers, body, split_on_reject=True)  # split like a 400
        delivered: list[int] = []
        rejected: dict[int, str] = {}
        for position, result in enumerate(results):
            if isinstance(result, dict) and result.get("status") == "failed":
                message = str(result.get("error_message") or "failed")[:200]
                rejected[position] = f"vendor.invalid: {message}"
            else:
                delivered.append(position)
        return Reply(delivered=delivered, rejected=rejected)


def check(event: dict[str, Any]) -> str | None:
    """Why Pinterest would refuse this event (a 400 for the whole request, or a failed status), or None."""
    return schema_problem(event) or hash_problem(event["user_data"])


def schema_problem(event: dict[str, Any]) -> str | None:
    """What the request schema refuses in this event: Pinterest then answers 400 for the whole request."""
    for key in REQUIRED:
        if event.get(key) in (None, "", {}):
            return f"vendor.invalid: {key} is required"
    stray = sorted(set(event) - EVENT_KEYS)
    if stray:
        return f"vendor.invalid: {stray[0]} is not a Pinterest event field"
    if event["event_name"] not in EVENT_NAMES:
        return "vendor.invalid: event_name is not a Pinterest event name"
    if event["action_source"] not in ACTION_SOURCES:
        return "vendor.invalid: action_source must be app_android, app_ios, web or offline"
    event_time = event["event_time"]
    if not isinstance(event_time, int) or isinstance(event_time, bool) or event_time >= MILLISECONDS:
        return "vendor.invalid: event_time must be unix seconds"
    custom = event.get("custom_data")
    if custom is not None:
        if not isinstance(custom, dict):
            return "vendor.invalid: custom_data must be an object"
        stray = sorted(set(custom) - CUSTOM_KEYS)
        if stray:
            return f"vendor.invalid: custom_data.{stray[0]} is not a Pinterest field"
    user = event["user_data"]
    if not isinstance(user, dict):
        return "vendor.invalid: user_data must be an object"
    if not (user.get("em") or user.get("hashed_maids") or (user.get("client_ip_address") and
                                                            user.get("client_user_agent"))):
        return "vendor.invalid: user_data needs em, hashed_maids, or client_ip_address with client_user_agent"
    return None


def hash_problem(user: dict[str, Any]) -> str | None:
    """A personal field of user_data that is not a list of SHA-256 hex, or None."""
    for key in HASHED:
        values = user.get(key)
        if values is not None and not (isinstance(values, list) and
                                       all(sha256_hex(v) for v in values)):
            return f"vendor.invalid: user_data.{key} must be a list of SHA-256 hex"
    return None


def _results(body: bytes) -> list[Any] | None:
    """The per-event results of an answer: `events`, at the top or under `details`."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    for holder in (answer, answer.get("details") if isinstance(answer, dict) else None):
        if isinstance(holder, dict) and isinstance(holder.get("events"), list):
            return list(holder["events"])
    return None


def _size(item: Item) -> int:
    return payload_size(item) + 80  # an event_id the module adds
