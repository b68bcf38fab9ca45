"""TikTok Events API 2.0 stand-in (`/open_api/v1.3/event/track/`): it answers HTTP 200 and says in `code`,
as TikTok does. The `Access-Token` header (40105 without it or with another), the pixel code in
`event_source_id` (40001: no permission for another), `event_source` "web", 1 to 1,000 events in `data`
(40002 over that). Each event, as TikTok's /event/track/ reference describes it (quoted field by field in
https://github.com/bububa/tiktok-business/blob/HEAD/model/event/track.go): an `event` name; an `event_time`
that is an integer of unix seconds (UTC); an `event_id` that is a string when given; `user` an object whose
`email`, `phone` and `external_id` are SHA-256 hex (64 lowercase hex digits), each one string or a list of
them ("one or more"), and whose ttclid, ttp, ip, user_agent and locale are strings; `properties` and `page`
objects. One bad event refuses the whole request (40002, nothing kept). Otherwise code 0, each event kept
under event_id + event (what TikTok deduplicates on).

Ours, where TikTok's words are not known: the messages, and reading an event_time of 10^11 or more (the year
5138 in seconds) as milliseconds, which TikTok's "unix seconds" rules out."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

PATH: Final = "/open_api/v1.3/event/track/"
MAX_EVENTS: Final = 1000  # `data` "holds at most 1,000 events" (TikTok's /event/track/ reference, above)
HASHED: Final = ("email", "phone", "external_id")  # "SHA-256 hashed" values, one or more each
PLAIN: Final = ("ttclid", "ttp", "ip", "user_agent", "locale")  # sent as they are
SECONDS_BELOW: Final = 10**11  # ours: from here on an event_time reads as milliseconds
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")


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
            problem = _problem(event)
            if problem:
                return tiktok_answer(40002, f"data[{index}]: {problem}")
        for event in data:
            key = f"{event['event_id']}:{event['event']}" if event.get("event_id") else None
            self.accept(event, key)
        return tiktok_answer(0, "OK")


def _problem(event: Any) -> str | None:
    """Why TikTok refuses the request this event is in, or None."""
    if not isinstance(event, dict):
        return "an event must be an object"
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        return "event is required"
    event_time = event.get("event_time")
    if event_time is None:
        return "event_time is required"
    if not isinstance(event_time, int) or isinstance(event_time, bool) or not 0 < event_time < SECONDS_BELOW:
        return "event_time must be a unix timestamp in seconds"
    if event.get("event_id") is not None and not isinstance(event["event_id"], str):
        return "event_id must be a string"
    for key in ("properties", "page"):
        if event.get(key) is not None and not isinstance(event[key], dict):
            return f"{key} must be an object"
    user = event.get("user")
    if user is None:
        return None
    if not isinstance(user, dict):
        return "user must be an object"
    for key in HASHED:
        given = user.get(key)
        if given is None:
            continue
        values = given if isinstance(given, list) else [given]
        if any(not isinstance(v, str) or not _HEX64.match(v) for v in values):
            return f"user.{key} must be SHA-256 hex"
    for key in PLAIN:
        if user.get(key) is not None and not isinstance(user[key], str):
            return f"user.{key} must be a string"
    return None
