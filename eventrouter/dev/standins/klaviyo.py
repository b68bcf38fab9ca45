"""Klaviyo API stand-in: `POST /api/events` and `POST /api/profile-import`, the private key as
`Authorization: Klaviyo-API-Key <key>` (401 `not_authenticated`), a `revision` header, a JSON body (415),
at most 5 MB an event and 100 KB a profile (413). An event needs a metric name under 128 characters, a
profile with an identifier, properties (at most 400) and a time after 1990 and at most a year ahead;
errors are JSON:API `errors[]` with a `source.pointer`. A good event gets 202 and is kept under its
unique_id, metric and profile (what Klaviyo deduplicates on); a profile import 201 when new, 200 after."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.klaviyo import EVENTS_PATH, MAX_EVENT, MAX_PROFILE, PROFILE_IDS, PROFILES_PATH, check

_JSON_API: Final = {"Content-Type": "application/vnd.api+json"}
_FLOOR: Final = dt.datetime(1990, 1, 1, tzinfo=dt.UTC)


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
        problem = check(body) or (None if profile else _time_problem(data["attributes"].get("time")))
        if problem:
            return api_error(400, "invalid", "Invalid input.", problem.split(": ", 1)[-1], "/data/attributes")
        if profile:
            return self._profile(body)
        attributes = data["attributes"]
        who = attributes["profile"]["data"]
        person = who.get("id") or next(f"{k}={who['attributes'][k]}" for k in PROFILE_IDS if who["attributes"].get(k))
        metric = attributes["metric"]["data"]["attributes"]["name"]
        key = f"{attributes['unique_id']}|{metric}|{person}" if attributes.get("unique_id") else None
        self.accept(body, key)
        return Answer(202)

    def _profile(self, body: dict[str, Any]) -> Answer:
        data = body["data"]
        attributes = data["attributes"]
        person = next(f"{k}={attributes[k]}" for k in PROFILE_IDS if attributes.get(k)) if not data.get("id") \
            else str(data["id"])
        created = person not in self.profiles
        self.profiles.add(person)
        self.accept(body, None)  # an upsert: importing it again changes nothing
        profile_id = uuid.uuid5(uuid.NAMESPACE_URL, person).hex[:26].upper()
        return json_answer(201 if created else 200, {"data": {"type": "profile", "id": profile_id,
                                                              "attributes": attributes}}, _JSON_API)


def _time_problem(value: Any) -> str | None:
    """Klaviyo: "The time must be after the year 1990 and can only be up to 1 year in the future"."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return "invalid: time must be an ISO 8601 date-time"
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    if not _FLOOR < when <= dt.datetime.now(dt.UTC) + dt.timedelta(days=365):
        return "invalid: time must be after 1990 and at most a year ahead"
    return None
