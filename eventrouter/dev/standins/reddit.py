"""Reddit Conversions API v3 stand-in: `POST /api/v3/pixels/{pixel_id}/conversion_events` with a Bearer
conversion token (401 "No bearer token provided" without one, "UNAUTHORIZED" for another; 403 for a pixel
the token may not post to), `{data: {events: [...]}}` of 1 to 1,000 events (else 400 "Bad Request"). Each
event is validated (event_at in unix ms and at most 7 days old, action_source, type.tracking_type and a
custom event's name, currency, products' ids, a match key); one invalid event gets the request a 400 "There
were N invalid conversion events. None were processed." and nothing is kept. Otherwise 200 `{"data":
{"message": "Successfully processed N conversion events."}}`, each event kept under its type and
metadata.conversion_id (what Reddit deduplicates on); with a `test_id` nothing is kept. The messages are
Reddit's; the `{"error": {"code", "message"}}` envelope around them is ours."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.reddit import MAX_AGE_S, check

_PATH: Final = re.compile(r"^/api/v3/pixels/(?P<pixel>[^/]+)/conversion_events$")


def error(status: int, message: str) -> Answer:
    return json_answer(status, {"error": {"code": status, "message": message}})


class RedditStandIn(StandIn):
    name = "reddit"
    credential = "reddit-conversion-token"
    path = "/api/v3"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"pixel_id": "a2_standin01", "conversion_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event_at": now_s * 1000, "action_source": "WEBSITE", "type": {"tracking_type": "PURCHASE"},
                "user": {"external_id": hashlib.sha256(f"u{index % 7}".encode()).hexdigest()},
                "metadata": {"conversion_id": message_id, "currency": "USD", "value": 10.0, "item_count": 1}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["metadata"]["conversion_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # its event_at 8 days back (the record itself is fresh): Reddit refuses the whole request (400), which
        # is split until this event is alone
        return {**payload, "event_at": payload["event_at"] - 8 * 86_400_000}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_at": now_s * 1000}

    def __init__(self, pixel_id: str | None = None, conversion_token: str | None = None) -> None:
        super().__init__()
        self.pixel_id = pixel_id or "a2_standin01"
        self.conversion_token = conversion_token or self.credential
        self.tested: list[dict[str, Any]] = []  # events sent with a test_id (Event Testing)

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None:
            return error(404, "Not Found")
        auth = incoming.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return error(401, "No bearer token provided")
        if auth != f"Bearer {self.conversion_token}":
            return error(401, "UNAUTHORIZED")
        if match["pixel"] != self.pixel_id:
            return error(403, f"You're not authorized to post conversions to Pixel ID {match['pixel']}.")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return error(400, "Bad Request")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return error(400, "Bad Request")
        events = data.get("events")
        if not isinstance(events, list) or not 0 < len(events) <= 1000:
            return error(400, "Bad Request")
        now_ms = time.time() * 1000
        invalid = sum(1 for event in events if _problem(event, now_ms))
        if invalid:
            return error(400, f"There were {invalid} invalid conversion events. None were processed.")
        if data.get("test_id"):
            self.tested.extend(events)
        else:
            for event in events:
                self.accept(event, _key(event))
        return json_answer(200, {"data": {"message": f"Successfully processed {len(events)} conversion events."}})


def _key(event: dict[str, Any]) -> str | None:
    """What Reddit deduplicates an event on: its conversion_id within its type (and custom name); None without."""
    conversion_id = (event.get("metadata") or {}).get("conversion_id")
    if not conversion_id:
        return None
    kind = event["type"]
    return f"{kind['tracking_type']}/{kind.get('custom_event_name', '')}/{conversion_id}"


def _problem(event: Any, now_ms: float) -> str | None:
    if not isinstance(event, dict):
        return "an event must be an object"
    problem = check(event)
    if problem:
        return problem
    if now_ms - event["event_at"] > MAX_AGE_S * 1000:
        return "event_at is more than 7 days old"
    return None
