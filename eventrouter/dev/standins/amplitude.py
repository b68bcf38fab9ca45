"""Amplitude HTTP V2 stand-in: api_key, 2,000 events and 1 MB (413), event_type and a user_id or
device_id of at least `min_id_length` characters; a 400 lists the events it refused (by index) and
ingests none. The 400 for a bad key echoes the key, as Amplitude's does (we must scrub it)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer


class AmplitudeStandIn(StandIn):
    name = "amplitude"
    credential = "amp-key"
    path = "/2/httpapi"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event_type": "Purchase", "user_id": f"user-{index % 7:03d}", "insert_id": message_id,
                "time": now_s * 1000}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["insert_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k != "user_id"}  # listed in the 400

    def __init__(self, api_key: str = "amp-key") -> None:
        super().__init__()
        self.api_key = api_key

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != "/2/httpapi":
            return json_answer(404, {"code": 404, "error": "not found"})
        if len(incoming.body) > 1_000_000:
            return json_answer(413, {"code": 413, "error": "Payload too large"})
        body: dict[str, Any] = orjson.loads(incoming.body)
        if body.get("api_key") != self.api_key:
            return json_answer(400, {"code": 400, "error": f"Invalid API key: {body.get('api_key')}"})
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return json_answer(400, {"code": 400, "error": "Request missing required field", "missing_field": "events"})
        if len(events) > 2000:
            return json_answer(413, {"code": 413, "error": "Payload too large"})
        min_length = (body.get("options") or {}).get("min_id_length", 5)
        missing: dict[str, list[int]] = {}
        invalid: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            if not event.get("event_type"):
                missing.setdefault("event_type", []).append(index)
            ids = [(k, event.get(k)) for k in ("user_id", "device_id") if event.get(k) is not None]
            if not ids:
                missing.setdefault("user_id", []).append(index)
            for key, value in ids:
                if not isinstance(value, str) or len(value) < min_length:
                    invalid.setdefault(key, []).append(index)
            if "time" in event and not isinstance(event["time"], int):
                invalid.setdefault("time", []).append(index)
        if missing or invalid:
            return json_answer(400, {"code": 400, "error": "Request contains invalid events",
                                     "events_with_missing_fields": missing, "events_with_invalid_fields": invalid})
        for event in events:
            self.accept(event, event.get("insert_id"))
        return json_answer(200, {"code": 200, "events_ingested": len(events), "payload_size_bytes": len(incoming.body),
                                 "server_upload_time": int(time.time() * 1000)})
