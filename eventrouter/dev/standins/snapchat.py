"""Snapchat Conversions API v3 stand-in (`/v3/{pixel_id}/events?access_token=...`): the pixel in the path
(404 for another), the token in the query (401 without it or with another), 1 to 2,000 events in `data`;
each needs event_name, event_time (unix seconds, at most 37 days old: "timestamp invalid or out of
range"), action_source, event_source_url, hashed PII and enough of it, and a PURCHASE its value and
currency. One bad event gets the request a 400 `{status: INVALID, reason, event: <its index>, errors}`
and nothing of it is kept; otherwise 200 `{status: VALID}`, each event kept under its event_id."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.snapchat import MAX_AGE_S, MAX_EVENTS, check

_PATH: Final = re.compile(r"^/v3/(?P<pixel>[^/]+)/events/?$")
_FUTURE_S: Final = 3600  # ours: how far ahead an event_time may be


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
            problem = check(event) if isinstance(event, dict) else "vendor.invalid: an event is not an object"
            if problem:
                return invalid(400, problem.removeprefix("vendor.invalid: "), index)
            if not now - MAX_AGE_S <= event["event_time"] <= now + _FUTURE_S:
                return invalid(400, "Timestamp invalid or out of range", index)
        for event in data:
            self.accept(event, str(event["event_id"]) if event.get("event_id") else None)
        return json_answer(200, {"status": "VALID", "reason": "All events are valid"})
