"""Snapchat Conversions API v3 stand-in (`/v3/{pixel_id}/events?access_token=...`): the pixel in the path
(404 for another), the token in the query (401 without it or with another), 1 to 2,000 events in `data`.
Each event, as Snap documents it:
- https://developers.snap.com/api/marketing-api/Conversions-API/UsingTheAPI: event_name, action_source,
  event_time, event_source_url and user_data are required, and user_data needs em, ph, madid, or
  client_ip_address with client_user_agent ("insufficient PII" otherwise).
- https://developers.snap.com/api/marketing-api/Conversions-API/Parameters and Snap's own SDK
  (https://github.com/Snapchat/business-sdk-v3-java/blob/HEAD/api/openapi.yaml): event_time an integer of
  unix seconds; em, ph, fn, ln, ct, st, zp, country and ge lists of strings, each "hashing required"
  (SHA-256: 64 lowercase hex digits); client_ip_address, client_user_agent, sc_click_id, sc_cookie1 strings;
  custom_data an object, its value a number.
- https://developers.snap.com/api/marketing-api/Conversions-API/VerifySetUp: a PURCHASE without price and
  currency, a timestamp invalid or out of range, unhashed PII are INVALID, HTTP 400.
- https://developers.snap.com/api/marketing-api/Conversions-API/Introduction: at most 37 days old.
One bad event gets the request a 400 `{status: INVALID, reason, event: <its index>, errors}` (the SDK's
answer) and nothing of it is kept; otherwise 200 `{status: VALID}`, each event kept under its event_id.
Ours: the 2,000 events a request (as Snap's connectors batch them), the hour ahead an event_time may be,
the messages but Snap's "Timestamp invalid or out of range"."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

MAX_EVENTS: Final = 2000  # ours: Snap's pages name no limit; RudderStack's and Tealium's connectors send 2,000
MAX_AGE_S: Final = 37 * 86_400  # "up to 37 days" (Snap's Conversions API Introduction page)
REQUIRED: Final = ("event_name", "action_source", "event_source_url")
HASHED: Final = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "ge")
PLAIN: Final = ("client_ip_address", "client_user_agent", "sc_click_id", "sc_cookie1", "madid")
_PATH: Final = re.compile(r"^/v3/(?P<pixel>[^/]+)/events/?$")
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_FUTURE_S: Final = 3600  # ours: how far ahead an event_time may be
OUT_OF_RANGE: Final = "Timestamp invalid or out of range"


def invalid(status: int, reason: str, event: int | None = None) -> Answer:
    body: dict[str, Any] = {"status": "INVALID", "reason": reason}
    if event is not None:
        body.update(event=event, errors={"codes": ["INVALID_EVENT"], "error_msgs": [reason]})
    return json_answer(status, body)


class SnapchatStandIn(StandIn):
    name = "snapchat"
    credential = "snap-capi-token"
    path = ""  # the connection's endpoint is the server itself: the module adds /v3/{pixel_id}/events
    pixel: Final = "1ec32188-754e-4be2-8e55-c949a984a39f"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"pixel_id": cls.pixel, "access_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        email = hashlib.sha256(f"user{index % 7}@example.com".encode()).hexdigest()
        return {"event_name": "PURCHASE", "event_time": now_s, "event_id": message_id, "action_source": "WEB",
                "event_source_url": "https://shop.example/checkout",
                "user_data": {"em": [email], "client_ip_address": "203.0.113.7", "client_user_agent": "Mozilla/5.0"},
                "custom_data": {"currency": "USD", "value": 10.0}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # a day ahead: out of range, which only Snap sees; its 400 names the event, the others go again
        return {**payload, "event_time": payload["event_time"] + 86_400}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_time": now_s}

    def __init__(self, access_token: str | None = None, pixel_id: str | None = None) -> None:
        super().__init__()
        self.access_token = access_token or self.credential
        self.pixel_id = pixel_id or self.pixel

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None or match["pixel"] != self.pixel_id:
            return Answer(404, b"404 page not found", {"Content-Type": "text/plain"})
        if incoming.query.get("access_token") != self.access_token:
            return invalid(401, "Unauthorized: the access token is missing, invalid or not for this pixel")
        body = orjson.loads(incoming.body)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not 0 < len(data) <= MAX_EVENTS:
            return invalid(400, f"data must hold 1 to {MAX_EVENTS} events")
        now = time.time()
        for index, event in enumerate(data):
            problem = _problem(event, now)
            if problem:
                return invalid(400, problem, index)
        for event in data:
            self.accept(event, str(event["event_id"]) if event.get("event_id") else None)
        return json_answer(200, {"status": "VALID", "reason": "All events are valid"})


def _problem(event: Any, now: float) -> str | None:
    """Why Snap refuses the request this event is in, or None."""
    if not isinstance(event, dict):
        return "an event is not an object"
    for key in REQUIRED:
        if not isinstance(event.get(key), str) or not event[key]:
            return f"{key} is required"
    event_time = event.get("event_time")
    if event_time is None:
        return "event_time is required"
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return "event_time must be unix seconds"
    if not now - MAX_AGE_S <= event_time <= now + _FUTURE_S:
        return OUT_OF_RANGE
    if event.get("event_id") is not None and not isinstance(event["event_id"], str):
        return "event_id must be a string"
    problem = _user_problem(event.get("user_data"))
    if problem:
        return problem
    custom = event.get("custom_data")
    if custom is not None and not isinstance(custom, dict):
        return "custom_data must be an object"
    value = (custom or {}).get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "custom_data.value must be a number"
    if event["event_name"] == "PURCHASE" and (value is None or not (custom or {}).get("currency")):
        return "a PURCHASE needs custom_data.value and custom_data.currency"
    return None


def _user_problem(user: Any) -> str | None:
    if not isinstance(user, dict):
        return "user_data is required"
    for key in HASHED:
        values = user.get(key)
        if values is None:
            continue
        if not isinstance(values, list):
            return f"user_data.{key} must be a list of SHA-256 hex"
        if any(not isinstance(v, str) or not _HEX64.match(v) for v in values):
            return f"user_data.{key} must be SHA-256 hex"
    for key in PLAIN:
        if user.get(key) is not None and not isinstance(user[key], str):
            return f"user_data.{key} must be a string"
    if not (user.get("em") or user.get("ph") or user.get("madid")
            or (user.get("client_ip_address") and user.get("client_user_agent"))):
        return "Insufficient PII: user_data needs em, ph, madid, or client_ip_address with client_user_agent"
    return None
