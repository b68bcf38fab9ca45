"""The generic webhook's receiving end: checks the Idempotency-Key, the HMAC signature and its
timestamp (when given a secret), and Bearer auth (when given a token); refuses (422) a request with an
event marked `"valid": false` (this test receiver's own rule: a webhook's receiver judges its payloads);
records events by key."""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.webhook import signature


class WebhookStandIn(StandIn):
    name = "webhook"
    credential = "hook-secret"
    path = "/hook"
    endpoint_key = "url"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"secret": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"messageId": message_id, "type": "track", "event": "Purchase"}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["messageId"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "valid": False}  # this receiver answers 422

    def __init__(self, secret: str | None = "hook-secret", bearer_token: str | None = None) -> None:
        super().__init__()
        self.secret, self.bearer_token = secret, bearer_token

    def answer(self, incoming: Incoming) -> Answer:
        key = incoming.headers.get("idempotency-key")
        if not key:
            return json_answer(400, {"error": "Idempotency-Key header is required"})
        if self.bearer_token is not None and incoming.headers.get("authorization") != f"Bearer {self.bearer_token}":
            return json_answer(401, {"error": "unauthorized"})
        if self.secret is not None:
            stamp = incoming.headers.get("x-eventrouter-timestamp", "")
            given = incoming.headers.get("x-eventrouter-signature", "")
            if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
                return json_answer(401, {"error": "missing or stale X-Eventrouter-Timestamp"})
            if not hmac.compare_digest(given, signature(self.secret, stamp, incoming.body)):
                return json_answer(401, {"error": "bad signature"})
        body: Any = orjson.loads(incoming.body)
        events = body if isinstance(body, list) else [body]
        if any(isinstance(event, dict) and event.get("valid") is False for event in events):
            return json_answer(422, {"error": "an event is marked invalid"})  # this receiver's own rule
        for index, event in enumerate(events):
            self.accept(event, f"{key}:{index}" if isinstance(body, list) else key)
        return json_answer(200, {"received": len(events)})
