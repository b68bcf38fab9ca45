"""Segment HTTP Tracking API stand-in (`/v1/batch`): JSON only (400 otherwise), a batch body of at most
500 KB and events of at most 32 KB (400 for the whole request otherwise), a write key in the body
(`writeKey`) or as HTTP Basic user name (400 when there is none). Like Segment's edge it answers 200
`{"success": true}` to everything else, and drops without a word what Segment drops: every event under a
write key it does not know, a batch of over 2,500 events, an event of another type, without userId and
anonymousId, a track without `event`, a group without `groupId`, an alias without `previousId`, a messageId
of 100 characters or more; each such event's reason is listed in `dropped` (tests assert it stays empty).
What it keeps it keeps under its messageId (Segment's dedup key). The 400 bodies are ours: Segment
documents the status, not the body."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

MAX_BODY: Final = 500_000
MAX_EVENT: Final = 32 * 1024
MAX_EVENTS: Final = 2500
TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_REQUIRED: Final = {"track": "event", "group": "groupId", "alias": "previousId"}


def _bad_request(message: str) -> Answer:
    return json_answer(400, {"success": False, "message": message})


class SegmentStandIn(StandIn):
    name = "segment"
    credential = "segment-write-key"
    path = "/v1/batch"

    def __init__(self, write_key: str | None = None) -> None:
        super().__init__()
        self.write_key = write_key or self.credential
        self.dropped: list[str] = []

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"write_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"type": "track", "event": "Order Completed", "userId": f"u{index % 7}", "messageId": message_id,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)),
                "properties": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["messageId"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "userId": None}  # Segment would drop it behind a 200: the module refuses it

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != self.path:
            return Answer(404, b"404 page not found", {"Content-Type": "text/plain"})
        if len(incoming.body) > MAX_BODY:
            return _bad_request("batch over 500KB")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return _bad_request("invalid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
            return _bad_request("invalid JSON: batch must be an array")
        key = body.get("writeKey") or _basic_user(incoming.headers.get("authorization", ""))
        if not key:
            return _bad_request("no write key")
        events: list[Any] = body["batch"]
        if any(len(orjson.dumps(event)) > MAX_EVENT for event in events):
            return _bad_request("event over 32KB")
        for event in events:
            problem = "unknown write key" if key != self.write_key else \
                "over 2,500 events in a batch" if len(events) > MAX_EVENTS else _problem(event)
            if problem:
                self.dropped.append(problem)
            else:
                self.accept(event, event.get("messageId"))
        return json_answer(200, {"success": True})


def _basic_user(header: str) -> str | None:
    """The user name of an HTTP Basic Authorization header (the write key), or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode().split(":", 1)[0] or None
    except (binascii.Error, UnicodeDecodeError):
        return None


def _problem(event: Any) -> str | None:
    """Why Segment drops this event (after answering 200), or None."""
    if not isinstance(event, dict):
        return "not an object"
    kind = event.get("type")
    if kind not in TYPES:
        return f"invalid type {kind!r}"
    if not any(str(event.get(k) or "").strip() for k in ("userId", "anonymousId")):
        return "no_user_anon_id"
    required = _REQUIRED.get(str(kind))
    if required and not str(event.get(required) or "").strip():
        return f"{kind} without {required}"
    message_id = event.get("messageId")  # Segment adds one where there is none
    if message_id is not None and len(str(message_id)) >= 100:
        return "messageId of 100 characters or more"
    return None
