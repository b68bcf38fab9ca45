"""GA4 Measurement Protocol stand-in. GA4 answers 2xx even to hits it drops; so does this one, and it
lists what GA4 would have dropped, and why, in `dropped` (tests assert it stays empty)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn
from forwarders.vendors.ga4 import MAX_PARAMS, MAX_USER_PROPERTIES, check

MAX_EVENTS = 25
MAX_BODY = 130_000
MAX_AGE_US = 72 * 3600 * 1_000_000  # GA4 drops events backdated by more than 72 hours


class GA4StandIn(StandIn):
    name = "ga4"
    credential = "ga4-secret"
    path = "/mp/collect"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"measurement_id": "G-TEST", "api_secret": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"client_id": f"c{index % 7}", "name": "purchase", "timestamp_micros": now_s * 10**6,
                "params": {"message_id": message_id, "value": index}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["params"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "name": "bad name!"}  # GA4 drops such an event silently: the module refuses it

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "timestamp_micros": now_s * 1_000_000} if "timestamp_micros" in payload else payload

    def __init__(self, measurement_id: str = "G-TEST", api_secret: str = "ga4-secret") -> None:
        super().__init__()
        self.measurement_id, self.api_secret = measurement_id, api_secret
        self.dropped: list[str] = []

    def answer(self, incoming: Incoming) -> Answer:
        problem = self._problem(incoming)
        if problem:
            self.dropped.append(problem)
        return Answer(204)

    def _problem(self, incoming: Incoming) -> str | None:
        if incoming.path != "/mp/collect":
            return f"unknown path {incoming.path}"
        if incoming.query.get("measurement_id") != self.measurement_id or \
                incoming.query.get("api_secret") != self.api_secret:
            return "wrong measurement_id or api_secret"
        if len(incoming.body) > MAX_BODY:
            return "body over 130 kB"
        body: dict[str, Any] = orjson.loads(incoming.body)
        events = body.get("events")
        if not body.get("client_id") or not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS:
            return "client_id and 1 to 25 events are required"
        if len(body.get("user_properties") or {}) > MAX_USER_PROPERTIES:
            return "over 25 user properties"
        oldest = int(time.time() * 1_000_000) - MAX_AGE_US
        for event in events:
            problem = check({"client_id": body["client_id"], **event})
            if problem or len(event.get("params") or {}) > MAX_PARAMS:
                return problem or "too many params"
            stamp = event.get("timestamp_micros") or body.get("timestamp_micros")
            if isinstance(stamp, int) and stamp < oldest:
                return "timestamp_micros over 72 hours old"
        for event in events:
            self.accept({"client_id": body["client_id"], "user_id": body.get("user_id"), **event}, None)
        return None
