"""Meta Conversions API stand-in: token, batch size, per-event fields, hashed PII, the 7-day window
(one stale event refuses the whole request), Graph API error bodies; dedup key event_id + event_name."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.meta_capi import check

_PATH = re.compile(r"^/v\d+\.\d+/(?P<pixel>[^/]+)/events$")


def graph_error(message: str, code: int, subcode: int | None = None, kind: str = "OAuthException") -> Answer:
    error: dict[str, Any] = {"message": message, "type": kind, "code": code, "fbtrace_id": uuid.uuid4().hex[:11]}
    if subcode is not None:
        error["error_subcode"] = subcode
    return json_answer(400, {"error": error})


class MetaStandIn(StandIn):
    name = "meta_capi"
    credential = "meta-token"
    path = ""

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"pixel_id": "1234567890", "access_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event_name": "Purchase", "event_time": now_s, "event_id": message_id, "action_source": "website",
                "user_data": {"external_id": ["ab" * 32]}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "action_source": ""}  # Meta refuses the whole request: the module refuses it

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_time": now_s}

    def __init__(self, pixel_id: str = "1234567890", access_token: str = "meta-token") -> None:
        super().__init__()
        self.pixel_id, self.access_token = pixel_id, access_token

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None or match["pixel"] != self.pixel_id:
            return graph_error("Unsupported post request.", 100, 33, "GraphMethodException")
        body: dict[str, Any] = orjson.loads(incoming.body)
        if (incoming.query.get("access_token") or body.get("access_token")) != self.access_token:
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        data = body.get("data")
        if not isinstance(data, list) or not 0 < len(data) <= 1000:
            return graph_error("Invalid parameter: data must hold 1 to 1000 events", 100, kind="FacebookApiException")
        now = time.time()
        for index, event in enumerate(data):
            problem = check(event, now) if isinstance(event, dict) else "not an object"
            if problem:
                subcode = 2804003 if "too_old" in problem else 2804019
                return graph_error(f"Invalid parameter: event {index}: {problem}", 100, subcode, "FacebookApiException")
        for event in data:
            key = f"{event['event_id']}:{event['event_name']}" if event.get("event_id") else None
            self.accept(event, key)
        return json_answer(200, {"events_received": len(data), "messages": [], "fbtrace_id": uuid.uuid4().hex[:11]})
