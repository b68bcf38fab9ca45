"""TikTok Events API 2.0 stand-in (`/open_api/v1.3/event/track/`): it answers HTTP 200 and says in `code`,
as TikTok does. The `Access-Token` header (40105 without it or with another), the pixel code in
`event_source_id` (40001: no permission for another), `event_source` "web", 1 to 1,000 events in `data`
(40002 over that), each with an event name, unix-second event_time and SHA-256 hex email, phone and
external_id: one bad event refuses the whole request (40002, nothing kept). Otherwise code 0, each event
kept under event_id + event (what TikTok deduplicates on)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.tiktok import MAX_EVENTS, check

PATH: Final = "/open_api/v1.3/event/track/"


def tiktok_answer(code: int, message: str) -> Answer:
    """TikTok's envelope: HTTP 200 whatever happened, the outcome in `code`."""
    return json_answer(200, {"code": code, "message": message, "request_id": uuid.uuid4().hex, "data": {}})


class TikTokStandIn(StandIn):
    name = "tiktok"
    credential = "tiktok-token"
    path = PATH
    pixel: Final = "CTESTPIXEL0000000001"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"pixel_code": cls.pixel, "access_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        user = hashlib.sha256(f"u{index % 7}".encode()).hexdigest()
        return {"event": "CompletePayment", "event_time": now_s, "event_id": message_id,
                "user": {"external_id": user, "ip": "203.0.113.7", "user_agent": "Mozilla/5.0"},
                "properties": {"currency": "USD", "value": 10.0}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "event": ""}  # TikTok refuses the whole request (40002): the module refuses it

    def __init__(self, access_token: str | None = None, pixel_code: str | None = None) -> None:
        super().__init__()
        self.access_token = access_token or self.credential
        self.pixel_code = pixel_code or self.pixel

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path.rstrip("/") != PATH.rstrip("/"):
            return Answer(404, b"404 page not found", {"Content-Type": "text/plain"})
        if incoming.headers.get("access-token") != self.access_token:
            return tiktok_answer(40105, "Access token is incorrect or has been revoked.")
        body = orjson.loads(incoming.body)
        if not isinstance(body, dict):
            return tiktok_answer(40002, "Invalid request body")
        if body.get("event_source") != "web":
            return tiktok_answer(40002, "event_source: must be one of web, app, offline, crm")
        if body.get("event_source_id") != self.pixel_code:
            return tiktok_answer(40001, f"No permission to operate pixel {body.get('event_source_id')}")
        data = body.get("data")
        if not isinstance(data, list) or not 0 < len(data) <= MAX_EVENTS:
            return tiktok_answer(40002, f"data: the number of events must be between 1 and {MAX_EVENTS}")
        for index, event in enumerate(data):
            problem = check(event) if isinstance(event, dict) else "not an object"
            if problem:
                return tiktok_answer(40002, f"data[{index}]: {problem.removeprefix('vendor.invalid: ')}")
        for event in data:
            key = f"{event['event_id']}:{event['event']}" if event.get("event_id") else None
            self.accept(event, key)
        return tiktok_answer(0, "OK")
