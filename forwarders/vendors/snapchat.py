"""Snapchat Conversions API v3, web events: `POST /v3/{pixel_id}/events?access_token=...`, `{data: [...]}`.

The starter kit makes one payload per event (an element of `data`): event_name (Snap's standard events),
event_time (unix seconds), event_id (= messageId), action_source WEB, event_source_url, user_data (em,
ph... as SHA-256 hex; sc_click_id, sc_cookie1, IP and user agent as they are), custom_data. Snap refuses
a request with a 400 for one bad event: what it would refuse is refused here before sending, and a 400
that names the event it refuses dead-letters that one and sends the others again at once.

What Snap documents, and this module follows:
- https://developers.snap.com/api/marketing-api/Conversions-API/UsingTheAPI: the web endpoint
  `https://tr.snapchat.com/v3/{PIXEL_ID}/events?access_token={TOKEN}`, a `data` array of events; each
  needs event_name, action_source, event_time, event_source_url and user_data with at least one of em,
  ph, client_ip_address & client_user_agent, madid.
- https://developers.snap.com/api/marketing-api/Conversions-API/Parameters: em "trim ... and convert to
  lowercase before hashing"; ph with its country code, no leading 00 or 0, digits only (no "+"); fn, ln
  lower case; each "Hashing required" (SHA-256 hex).
- https://developers.snap.com/api/marketing-api/Conversions-API/VerifySetUp: INVALID, HTTP 400, for a
  missing required field, a PURCHASE without price and currency, a timestamp invalid or out of range,
  unhashed PII and insufficient PII.
- https://developers.snap.com/api/marketing-api/Conversions-API/Introduction: events may be at most 37
  days old. https://developers.snap.com/api/marketing-api/Conversions-API/Deduplication: the CAPI
  event_id is matched with the Pixel's client_dedup_id, for the same pixel, within a window.
- https://github.com/Snapchat/business-sdk-v3-java/blob/HEAD/api/openapi.yaml (Snap's SDK): the answer
  is `{status: VALID|INVALID, reason, event, errors: {codes, error_msgs}}`, `event` being "the event
  identifier, only present in error responses" (read here as its position in `data`).
Not in Snap's pages we could read: the events per request (2,000, as RudderStack's and Tealium's Snap
connectors batch them:
https://github.com/rudderlabs/rudder-transformer/blob/HEAD/src/v0/destinations/snapchat_conversion/config.ts
https://docs.tealium.com/server-side-connectors/snapchat-conversions-connector/), a byte limit (2 MB is
ours), the deduplication window, rate limits and Retry-After (429 and 5xx are retried, after a
Retry-After when one is sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final
from urllib.parse import quote

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

HASHED: Final = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "ge")
MAX_EVENTS: Final = 2000
MAX_AGE_S: Final = 37 * 86_400
REQUIRED: Final = ("event_name", "event_time", "action_source", "event_source_url")
_EVENT_ID: Final = 80  # what a `"event_id": "<messageId>",` the module adds may weigh


class SnapchatSettings(Settings):
    pixel_id: str
    """The Snap Pixel ID the web events are reported to."""
    access_token: str
    """The Conversions API token generated in Ads Manager for the pixel (a `${ENV_VAR}` reference)."""


class Snapchat(Vendor):
    kind = "snapchat"
    settings_type: ClassVar[type[Settings]] = SnapchatSettings
    dedup_key = "event_id (with the Pixel's client_dedup_id, same pixel)"
    rate_limit = "none documented"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"sc_click_id": "context.ScCid", "sc_cookie1": "context.scid"}
    max_events = MAX_EVENTS
    max_bytes = 2_000_000  # ours: Snap documents no byte limit
    max_age_s = float(MAX_AGE_S)
    default_endpoint = "https://tr.snapchat.com"
    split_on_reject = True  # a 400 that names no event: bisect to find it

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, SnapchatSettings)
        url = (f"{self.endpoint.rstrip('/')}/v3/{quote(settings.pixel_id, safe='')}/events"
               f"?access_token={quote(settings.access_token, safe='')}")
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            event = item.payload if item.payload.get("event_id") else {**item.payload, "event_id": item.message_id}
            problem = check(event)
            if problem:
                refused[position] = problem
            else:
                events[position] = event
        requests = [Request(url, dumps({"data": [events[p] for p in run]}), tuple(run),
                            {"Content-Type": "application/json"})
                    for run in chunks(items, list(events), self.max_events, self.max_bytes - 100, _size)]
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        answer = _answer(body)
        if 200 <= status < 300 and answer.get("status") != "INVALID":
            return Reply(delivered=list(range(len(request.items))))
        index = answer.get("event")
        if status in (200, 400) and isinstance(index, int) and not isinstance(index, bool) \
                and 0 <= index < len(request.items):
            # Snap refused the request for this event and kept none of it: the others go again at once
            reason = f"vendor.invalid: {_reason(answer)}"[:200]
            return Reply(retry=[p for p in range(len(request.items)) if p != index], rejected={index: reason},
                         resend=True)
        return read_status(request, 400 if status < 300 else status, headers, body, split_on_reject=True)


def check(event: dict[str, Any]) -> str | None:
    """Why Snap would refuse this event (and with it the whole request), or None."""
    for key in REQUIRED:
        if event.get(key) in (None, ""):
            return f"vendor.invalid: {key} is required"
    event_time = event["event_time"]
    if not isinstance(event_time, int) or isinstance(event_time, bool) or event_time >= MILLISECONDS:
        return "vendor.invalid: event_time must be unix seconds"
    user = event.get("user_data")
    if not isinstance(user, dict):
        return "vendor.invalid: user_data is required"
    for key in HASHED:
        values = user.get(key)
        for value in values if isinstance(values, list) else () if values is None else (values,):
            if not sha256_hex(value):
                return f"vendor.invalid: user_data.{key} must be SHA-256 hex"
    if not (user.get("em") or user.get("ph") or user.get("madid")
            or (user.get("client_ip_address") and user.get("client_user_agent"))):
        return "vendor.invalid: user_data needs em, ph, madid, or client_ip_address with client_user_agent"
    if event["event_name"] == "PURCHASE":
        custom = event.get("custom_data")
        if not isinstance(custom, dict) or custom.get("value") is None or not custom.get("currency"):
            return "vendor.invalid: a PURCHASE needs custom_data.value and custom_data.currency"
    return None


def _answer(body: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _reason(answer: dict[str, Any]) -> str:
    errors = answer.get("errors")
    messages = errors.get("error_msgs") if isinstance(errors, dict) else None
    if isinstance(messages, list) and messages:
        return "; ".join(map(str, messages))
    return str(answer.get("reason") or "refused")


def _size(item: Item) -> int:
    return payload_size(item) + _EVENT_ID
