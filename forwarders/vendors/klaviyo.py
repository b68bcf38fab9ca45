"""Klaviyo API (JSON:API, `revision` header, `Klaviyo-API-Key` private key): one request per event.

The starter kit makes `{metric, profile, properties, time, value, value_currency, unique_id}` of a track or
page, sent as a JSON:API event to `POST /api/events` (`unique_id` = messageId: Klaviyo deduplicates on it
per profile and metric), and `{profile}` of an identify, sent to `POST /api/profile-import` (an upsert).

What Klaviyo documents, and this module follows (OpenAPI https://github.com/klaviyo/openapi, stable
revision 2026-07-15; https://developers.klaviyo.com/en/reference/create_event,
https://developers.klaviyo.com/en/reference/create_or_update_profile,
https://developers.klaviyo.com/en/reference/bulk_create_events,
https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling):
- `https://a.klaviyo.com`, header `Authorization: Klaviyo-API-Key <private key>` and a required `revision:
  YYYY-MM-DD` (2026-07-15 here, the revision whose specification this follows; the newest is 2026-10-15).
- Create Event: 202 when "validated and submitted for processing"; a profile with at least one identifier
  and a metric `name` ("less than 128 characters") are required, `properties` too (at most 400); the
  payload at most 5 MB, a string at most 100 KB; `time` after 1990 and at most a year ahead (the guide's
  ingestion table says 300 properties and times from 2000: the reference is followed here); `unique_id`:
  "If the unique_id is repeated for the same profile and metric, only the first processed event will be
  recorded" (without it, one event per profile a second). Rate limit 350/s burst, 3,500/min steady.
- Create or Update Profile: 201 created, 200 updated; at most 100 KB; 75/s burst, 750/min steady.
- Bulk Create Events (up to 1,000 events and 5 MB, 10/s burst, 150/min steady) is not used: its 202 only
  queues a job whose outcome is not reported, and there "If a unique_id is repeated for the same profile
  and metric, the request will fail and no events will be processed", which a resend after a lost answer
  would risk. One event a request also makes each answer that event's own.
- Rate limits are per account, fixed windows; a 429 comes without the RateLimit-* headers, which "are
  replaced with" a `Retry-After` (seconds), honoured by the runner. Other 4xx: `{errors: [{id, status,
  code, title, detail, source: {pointer}}]}`, final for the event (its detail: the dead letter's reason).
- No maximum age is documented beyond the 1990 floor: old events are sent. No hashing: Klaviyo wants email
  and phone as they are (phone in E.164). `_kx` (Klaviyo's web-tracking exchange id) identifies a profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson

from forwarders.vendors.base import Built, Item, Reply, Request, Settings, Vendor, dumps, read_status

EVENTS_PATH: Final = "/api/events"
PROFILES_PATH: Final = "/api/profile-import"
MAX_EVENT: Final = 5_000_000  # "The size of the event payload must not exceed 5 MB"
MAX_PROFILE: Final = 100_000  # "The maximum allowed payload size is 100KB"
MAX_STRING: Final = 100_000  # "each string cannot be larger than 100 KB"
MAX_PROPERTIES: Final = 400
PROFILE_IDS: Final = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
JSON_API: Final = "application/vnd.api+json"


class KlaviyoSettings(Settings):
    api_key: str
    """A private API key (`pk_...`) with `events:write` and `profiles:write` scopes (a `${ENV_VAR}` reference)."""
    revision: str = "2026-07-15"
    """The API revision sent in the `revision` header."""
    backfill: bool = False
    """Sent as each event's `backfill`: true records events without triggering flows (a historical load)."""


class Klaviyo(Vendor):
    kind = "klaviyo"
    dedup_key = "unique_id with the profile and metric"
    rate_limit = "350/s burst and 3,500/min steady per account (events; profiles 75/s, 750/min), answered 429"
    match_ids: ClassVar[Mapping[str, str]] = {"_kx": "context._kx"}
    settings_type: ClassVar[type[Settings]] = KlaviyoSettings
    max_events = 1  # Create Event takes one event; see the docstring for why not the bulk job
    max_bytes = MAX_EVENT
    default_endpoint = "https://a.klaviyo.com"

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, KlaviyoSettings)
        headers = {"Authorization": f"Klaviyo-API-Key {settings.api_key}", "revision": settings.revision,
                   "Content-Type": JSON_API, "Accept": JSON_API}
        base = self.endpoint.rstrip("/")
        refused: dict[int, str] = {}
        requests = []
        for position, item in enumerate(items):
            body = body_of(item.payload, item.message_id, settings.backfill)
            problem = check(body)
            if problem:
                refused[position] = problem
                continue
            path = EVENTS_PATH if body["data"]["type"] == "event" else PROFILES_PATH
            requests.append(Request(base + path, dumps(body), (position,), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        reply = read_status(request, status, headers, body)
        if reply.rejected and status in (400, 409, 422):  # the event's own fault: say what Klaviyo said
            detail = error_detail(body)
            if detail:
                reply.rejected = dict.fromkeys(reply.rejected, f"vendor.invalid: {detail}"[:200])
        return reply


def check(body: dict[str, Any]) -> str | None:
    """Why Klaviyo would refuse this request body (an event, or a profile to import), or None."""
    data = body.get("data")
    kind = data.get("type") if isinstance(data, dict) else None
    if not isinstance(data, dict) or kind not in ("event", "profile"):
        return "vendor.invalid: data.type must be event or profile"
    if kind == "profile":
        too_large = len(dumps(body)) > MAX_PROFILE
        return _profile_problem(data) or ("vendor.too_large: over Klaviyo's 100 KB per profile" if too_large else None)
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return "vendor.invalid: data.attributes is required"
    name = _get(attributes, "metric", "data", "attributes", "name")
    if not isinstance(name, str) or not name.strip():
        return "vendor.invalid: metric name is required"
    if len(name) >= 128:
        return "vendor.invalid: metric name must be less than 128 characters"
    problem = _profile_problem(_get(attributes, "profile", "data"))
    if problem:
        return problem
    properties = attributes.get("properties")
    if not isinstance(properties, dict):
        return "vendor.invalid: properties must be an object"
    if len(properties) > MAX_PROPERTIES:
        return "vendor.invalid: properties must not exceed 400 properties"
    value = attributes.get("value")
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return "vendor.invalid: value must be a number"
    raw = dumps(body)
    if len(raw) > MAX_EVENT:
        return "vendor.too_large: over Klaviyo's 5 MB per event"
    if len(raw) > MAX_STRING and _longest_string(body) > MAX_STRING:
        return "vendor.too_large: a string over Klaviyo's 100 KB"
    return None


def error_detail(body: bytes) -> str:
    """The first JSON:API error's code and detail ("" when the body holds none)."""
    try:
        errors = orjson.loads(body).get("errors")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    return ": ".join(str(first[k]) for k in ("code", "detail") if first.get(k))


def _profile_problem(profile: Any) -> str | None:
    attributes = profile.get("attributes") if isinstance(profile, dict) else None
    if not isinstance(profile, dict) or profile.get("type") != "profile" or not isinstance(attributes, dict):
        return "vendor.invalid: profile is required"
    if not profile.get("id") and not any(attributes.get(k) not in (None, "") for k in PROFILE_IDS):
        return "vendor.invalid: profile needs one of email, phone_number, external_id, anonymous_id, _kx"
    return None


def _get(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return 0


def body_of(payload: dict[str, Any], message_id: str, backfill: bool = False) -> dict[str, Any]:
    """The JSON:API body for a starter-kit payload: with a `metric`, an event (`unique_id` the messageId
    unless the kit set one, `properties` {} if none); without, the profile for /api/profile-import."""
    profile = payload.get("profile")
    if "metric" not in payload:
        return {"data": {"type": "profile", "attributes": profile}}
    attributes = {k: v for k, v in payload.items() if k not in ("metric", "profile")}
    attributes["properties"] = attributes.get("properties", {})
    attributes["unique_id"] = str(attributes.get("unique_id") or message_id)
    if backfill:
        attributes["backfill"] = True
    attributes["metric"] = {"data": {"type": "metric", "attributes": {"name": payload["metric"]}}}
    attributes["profile"] = {"data": {"type": "profile", "attributes": profile}}
    return {"data": {"type": "event", "attributes": attributes}}
