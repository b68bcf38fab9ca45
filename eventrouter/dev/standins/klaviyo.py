"""Klaviyo API stand-in: `POST /api/events` and `POST /api/profile-import`, the private key as
`Authorization: Klaviyo-API-Key <key>` (401 `not_authenticated`), a `revision` header, a JSON body (415),
at most 5 MB an event and 100 KB a profile (413). The bodies are checked as Klaviyo's OpenAPI specification
gives them (https://github.com/klaviyo/openapi, openapi/stable/apis/create_event.json and
create_or_update_profile.json; https://developers.klaviyo.com/en/reference/create_event,
https://developers.klaviyo.com/en/reference/create_or_update_profile), each refusal a 400 unless said:
- `data.type` the endpoint's ("event" or "profile"; 409 otherwise) and `data.attributes` an object;
- an event: `properties` required, an object of at most 400 properties; `metric.data` of type "metric" with a
  `name` "less than 128 characters"; `profile.data` of type "profile" with at least one identifier (`id`,
  email, phone_number, external_id, anonymous_id or _kx); `time` an ISO 8601 date-time "after the year 1990"
  and "up to 1 year in the future"; `value` a number, `value_currency` and `unique_id` strings, `backfill` a
  boolean; no string over 100 KB;
- a profile import: an `id` or one of email, phone_number, external_id, _kx (its schema has no
  anonymous_id); `properties` and `location` objects;
- in both, the identifiers strings, phone_number in E.164 ("+", then up to 15 digits, the first not 0).
Errors are JSON:API `errors[]` with a `source.pointer`. A good event gets 202 and is kept under its
unique_id, metric and profile (what Klaviyo deduplicates on); a profile import 201 when new, 200 after.
Ours: the wording of the details."""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

EVENTS_PATH: Final = "/api/events"
PROFILES_PATH: Final = "/api/profile-import"
MAX_EVENT: Final = 5_000_000  # "The size of the event payload must not exceed 5 MB" (create_event)
MAX_PROFILE: Final = 100_000  # "The maximum allowed payload size is 100KB" (create_or_update_profile)
MAX_STRING: Final = 100_000  # "each string cannot be larger than 100 KB" (create_event)
MAX_PROPERTIES: Final = 400  # "must not exceed 400 properties" (create_event)
EVENT_PROFILE_IDS: Final = ("email", "phone_number", "external_id", "anonymous_id", "_kx")
IMPORT_PROFILE_IDS: Final = ("email", "phone_number", "external_id", "_kx")
_E164: Final = re.compile(r"^\+[1-9][0-9]{1,14}$")
_JSON_API: Final = {"Content-Type": "application/vnd.api+json"}
_FLOOR: Final = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)
_POINTER: Final = "/data/attributes"


def api_error(status: int, code: str, title: str, detail: str, pointer: str | None = None) -> Answer:
    error: dict[str, Any] = {"id": str(uuid.uuid4()), "status": status, "code": code, "title": title,
                             "detail": detail}
    if pointer is not None:
        error["source"] = {"pointer": pointer}
    return json_answer(status, {"errors": [error]}, _JSON_API)


class KlaviyoStandIn(StandIn):
    name = "klaviyo"
    credential = "pk_test_klaviyo"
    path = ""  # the connection's endpoint is the base URL; the module adds /api/events or /api/profile-import

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key or self.credential
        self.profiles: set[str] = set()

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"metric": "Placed Order", "profile": {"external_id": f"u{index % 7}"},
                "properties": {"message_id": message_id}, "value": 9.99, "value_currency": "EUR",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)), "unique_id": message_id}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["data"]["attributes"]["unique_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "time": "1989-12-31T00:00:00Z"}  # "must be after the year 1990": a 400 for it alone

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path.rstrip("/") not in (EVENTS_PATH, PROFILES_PATH):
            return api_error(404, "not_found", "Not found.", f"Invalid path: {incoming.path}")
        if incoming.headers.get("authorization") != f"Klaviyo-API-Key {self.api_key}":
            return api_error(401, "not_authenticated", "Authentication credentials were not provided.",
                             "Missing or invalid private key.")
        if not incoming.headers.get("revision"):
            return api_error(400, "invalid", "Invalid input.", "The revision header is required.")
        if "json" not in incoming.headers.get("content-type", ""):
            return api_error(415, "unsupported_media_type", "Unsupported media type.",
                             "Use application/vnd.api+json.")
        profile = incoming.path.rstrip("/") == PROFILES_PATH
        if len(incoming.body) > (MAX_PROFILE if profile else MAX_EVENT):
            return api_error(413, "request_too_large", "Request too large.",
                             "The maximum allowed payload size is 100KB." if profile else
                             "The size of the event payload must not exceed 5 MB.")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return api_error(400, "parse_error", "Malformed request.", "JSON parse error.")
        kind = "profile" if profile else "event"
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or data.get("type") != kind:
            return api_error(409, "conflict", "Conflict.", f"The resource type must be {kind}.", "/data/type")
        problem = _import_problem(data) if profile else _event_problem(data)
        if problem:
            return api_error(400, "invalid", "Invalid input.", problem, _POINTER)
        if profile:
            return self._profile(body)
        attributes = data["attributes"]
        who = attributes["profile"]["data"]
        person = who.get("id") or next(f"{k}={who['attributes'][k]}" for k in EVENT_PROFILE_IDS
                                       if who["attributes"].get(k))
        metric = attributes["metric"]["data"]["attributes"]["name"]
        key = f"{attributes['unique_id']}|{metric}|{person}" if attributes.get("unique_id") else None
        self.accept(body, key)
        return Answer(202)

    def _profile(self, body: dict[str, Any]) -> Answer:
        data = body["data"]
        attributes = data["attributes"]
        person = next(f"{k}={attributes[k]}" for k in IMPORT_PROFILE_IDS if attributes.get(k)) \
            if not data.get("id") else str(data["id"])
        created = person not in self.profiles
        self.profiles.add(person)
        self.accept(body, None)  # an upsert: importing it again changes nothing
        profile_id = uuid.uuid5(uuid.NAMESPACE_URL, person).hex[:26].upper()
        return json_answer(201 if created else 200, {"data": {"type": "profile", "id": profile_id,
                                                              "attributes": attributes}}, _JSON_API)


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    """Whether `value` is null or of `kind` (a bool counting as no number)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind)


def _identity_problem(resource: dict[str, Any], ids: tuple[str, ...]) -> str | None:
    """What Klaviyo refuses in a profile's identifiers, or None."""
    attributes = resource.get("attributes")
    if not isinstance(attributes, dict):
        return "profile attributes are required"
    if not _optional(resource.get("id"), str):
        return "profile id must be a string"
    for key in ids:
        if not _optional(attributes.get(key), str):
            return f"{key} must be a string"
    phone = attributes.get("phone_number")
    if phone and not _E164.match(phone):
        return "phone_number must be in E.164 format"
    if not resource.get("id") and not any(attributes.get(k) for k in ids):
        return f"profile needs one of {', '.join(ids)}"
    return None


def _event_problem(data: dict[str, Any]) -> str | None:
    """Why Klaviyo refuses this Create Event body's `data`, or None."""
    attributes = data.get("attributes")
    if not isinstance(attributes, dict):
        return "attributes are required"
    metric = _resource(attributes.get("metric"), "metric").get("attributes")
    name = metric.get("name") if isinstance(metric, dict) else None
    if not isinstance(name, str) or not name.strip():
        return "metric name is required"
    if len(name) >= 128:
        return "metric name must be less than 128 characters"
    who = _resource(attributes.get("profile"), "profile")
    if not who:
        return "profile is required"
    problem = _identity_problem(who, EVENT_PROFILE_IDS)
    if problem:
        return problem
    properties = attributes.get("properties")
    if properties is None:
        return "properties are required"
    if not isinstance(properties, dict):
        return "properties must be an object"
    if len(properties) > MAX_PROPERTIES:
        return "properties must not exceed 400 properties"
    for key, kind in (("value", (int, float)), ("value_currency", str), ("unique_id", str), ("backfill", bool)):
        if not _optional(attributes.get(key), kind):
            return f"{key} has the wrong type"
    problem = _time_problem(attributes.get("time"))
    if problem:
        return problem
    if _longest_string(data) > MAX_STRING:
        return "a string must not be larger than 100 KB"
    return None


def _import_problem(data: dict[str, Any]) -> str | None:
    """Why Klaviyo refuses this Create or Update Profile body's `data`, or None."""
    if not isinstance(data.get("attributes"), dict):
        return "attributes are required"
    problem = _identity_problem(data, IMPORT_PROFILE_IDS)
    if problem:
        return problem
    for key in ("properties", "location"):
        if not _optional(data["attributes"].get(key), dict):
            return f"{key} must be an object"
    return None


def _resource(holder: Any, kind: str) -> dict[str, Any]:
    """The `data` resource of a relationship (`{data: {type: kind, ...}}`), or {} when it is not that."""
    resource = holder.get("data") if isinstance(holder, dict) else None
    return resource if isinstance(resource, dict) and resource.get("type") == kind else {}


def _time_problem(value: Any) -> str | None:
    """Klaviyo: "The time must be after the year 1990 and can only be up to 1 year in the future"."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return "time must be an ISO 8601 date-time"
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if not _FLOOR < when <= dt.datetime.now(dt.UTC) + dt.timedelta(days=365):
        return "time must be after 1990 and at most a year ahead"
    return None


def _longest_string(value: Any) -> int:
    """The size in bytes of the longest string in `value`."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return max((_longest_string(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return max((_longest_string(v) for v in value), default=0)
    return 0
