"""Braze /users/track stand-in: Bearer key, 75 objects per request (all arrays together), an
identifier on each object, `name` and `time` on events, product_id, currency, price and time on
purchases. Bad objects are listed in `errors` of a 201 (the others are processed). Braze has no
idempotency key, so `duplicates` counts what it would double-count."""

from __future__ import annotations

from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

_IDS = ("external_id", "user_alias", "braze_id", "email", "phone")
_REQUIRED = {"attributes": (), "events": ("name", "time"), "purchases": ("product_id", "currency", "price", "time")}


class BrazeStandIn(StandIn):
    name = "braze"
    credential = "braze-key"
    path = "/users/track"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"object": "events", "external_id": f"u{index % 7}", "name": "Purchase", "time": "2026-11-26T10:00:00Z",
                "properties": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["properties"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k != "external_id"}  # listed in the 201's errors

    def __init__(self, api_key: str = "braze-key") -> None:
        super().__init__()
        self.api_key = api_key

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != "/users/track":
            return json_answer(404, {"message": "not found"})
        if incoming.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_answer(401, {"message": "Invalid API key"})
        body: dict[str, Any] = orjson.loads(incoming.body)
        arrays = {name: body.get(name) or [] for name in _REQUIRED}
        if sum(len(a) for a in arrays.values()) > 75:
            return json_answer(400, {"message": "Received too many objects in request: at most 75"})
        errors = []
        processed = dict.fromkeys(_REQUIRED, 0)
        for name, objects in arrays.items():
            for index, item in enumerate(objects):
                missing = [f for f in _REQUIRED[name] if item.get(f) in (None, "")]
                if not any(item.get(k) for k in _IDS):
                    missing.insert(0, "external_id")
                if missing:
                    errors.append({"type": f"'{missing[0]}' is required", "input_array": name, "index": index})
                    continue
                processed[name] += 1
                what = item.get("name") or item.get("product_id")
                key = f"{name}:{item.get('external_id')}:{what}:{item.get('time')}"
                self.accept({"object": name, **item}, key)
        answer: dict[str, Any] = {"message": "success", **{f"{k}_processed": v for k, v in processed.items() if v}}
        if errors:
            answer["errors"] = errors
        return json_answer(201, answer)
