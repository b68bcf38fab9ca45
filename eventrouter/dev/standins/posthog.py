"""PostHog `/batch/` stand-in: the project API key in the body (401 `invalid_api_key` without it), a
body under 20 MB (413), gzip bodies, `batch` a non-empty list (else 400 `invalid_payload`); the batch is
validated as a unit, as PostHog's capture does: one event without a name or a distinct_id (top level or
`properties.distinct_id`), with properties that are not an object, a `uuid` that is not a UUID, or over
1 MB gets the whole request a 400 naming the problem, and nothing of it is kept. Otherwise 200
`{"status": 1}`, each event kept under its `uuid` (what PostHog deduplicates on)."""

from __future__ import annotations

import gzip
import time
import uuid
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

MAX_BODY: Final = 20_000_000
MAX_EVENT: Final = 1_000_000
INVALID_PAYLOAD: Final = {"type": "validation_error", "code": "invalid_payload", "detail": "Malformed request data",
                          "attr": None}
INVALID_API_KEY: Final = {"type": "authentication_error", "code": "invalid_api_key",
                          "detail": "Project API key invalid. You can find your project API key in PostHog project "
                                    "settings."}


class PostHogStandIn(StandIn):
    name = "posthog"
    credential = "phc_test_key"
    path = "/batch/"

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key or self.credential

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event": "Purchase", "distinct_id": f"u{index % 7}", "uuid": message_id,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
                "properties": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["properties"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "distinct_id": ""}  # PostHog refuses the whole batch: the module refuses it

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path not in ("/batch", "/batch/"):
            return Answer(404, b"Not Found", {"Content-Type": "text/plain"})
        if len(incoming.body) > MAX_BODY:
            return Answer(413, b"payload too large", {"Content-Type": "text/plain"})
        gzipped = incoming.headers.get("content-encoding") == "gzip"
        try:
            raw = gzip.decompress(incoming.body) if gzipped else incoming.body
            body = orjson.loads(raw)
        except (OSError, EOFError, orjson.JSONDecodeError):
            return json_answer(400, INVALID_PAYLOAD)
        if len(raw) > MAX_BODY:
            return Answer(413, b"payload too large", {"Content-Type": "text/plain"})
        if not isinstance(body, dict):
            return json_answer(400, INVALID_PAYLOAD)
        if body.get("api_key") != self.api_key:
            return json_answer(401, INVALID_API_KEY)
        events = body.get("batch")
        if not isinstance(events, list) or not events or not isinstance(body.get("historical_migration", False), bool):
            return json_answer(400, INVALID_PAYLOAD)
        for event in events:
            problem = _problem(event)
            if problem:
                return Answer(400, problem.encode(), {"Content-Type": "text/plain"})
        for event in events:
            self.accept(event, event.get("uuid"))
        return json_answer(200, {"status": 1})


def _problem(event: Any) -> str | None:
    """Why PostHog's capture refuses the request this event is in (its own words), or None."""
    if not isinstance(event, dict):
        return "failed to parse request: an event is not an object"
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        return "event submitted with an empty event name"
    properties = event.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return "failed to parse request: properties must be an object"
    ids = [event.get("distinct_id"), (properties or {}).get("distinct_id")]
    if not any(i is not None and not (isinstance(i, str) and not i.strip()) for i in ids):
        return "event submitted without a distinct_id"
    if "uuid" in event:
        try:
            uuid.UUID(str(event["uuid"]))
        except ValueError:
            return "failed to parse request: invalid uuid"
    if len(orjson.dumps(event)) > MAX_EVENT:
        return "maximum event size exceeded"
    return None
