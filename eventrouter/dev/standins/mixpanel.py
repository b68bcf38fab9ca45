"""Mixpanel /import stand-in (strict mode): Basic auth with a service account or the project secret,
project_id, 2,000 events and 10 MB (413), gzip bodies; each event needs `event`, `properties.time`,
`distinct_id` and `$insert_id`. A 400 is a partial success: `failed_records` lists the refused
events, the others are imported."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer


class MixpanelStandIn(StandIn):
    name = "mixpanel"
    credential = "mp-secret"
    path = "/import"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"project_id": "42", "username": "sa.user", "secret": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event": "Purchase", "properties": {"time": now_s * 1000, "distinct_id": f"u{index % 7}",
                                                "$insert_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["properties"]["$insert_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "properties": {k: v for k, v in payload["properties"].items() if k != "distinct_id"}}

    def __init__(self, project_id: str = "42", secret: str = "mp-secret", username: str | None = "sa.user") -> None:
        super().__init__()
        self.project_id, self.secret, self.username = project_id, secret, username

    def _authorised(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return (user == self.username and password == self.secret) or (user == self.secret and not password)

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != "/import":
            return json_answer(404, {"code": 404, "error": "not found", "status": "error"})
        if not self._authorised(incoming.headers.get("authorization", "")):
            return json_answer(401, {"code": 401, "error": "Invalid credentials", "status": "error"})
        if incoming.query.get("project_id") != self.project_id:
            return json_answer(400, {"code": 400, "error": "project_id does not match", "status": "error"})
        raw = gzip.decompress(incoming.body) if incoming.headers.get("content-encoding") == "gzip" else incoming.body
        if len(raw) > 10_000_000:
            return json_answer(413, {"code": 413, "error": "request too large", "status": "error"})
        text = raw.strip()
        lines = [orjson.loads(x) for x in text.split(b"\n") if x] if not text.startswith(b"[") else []
        events: list[Any] = orjson.loads(text) if text.startswith(b"[") else lines
        if len(events) > 2000:
            return json_answer(413, {"code": 413, "error": "too many records", "status": "error"})
        failed = []
        for index, event in enumerate(events):
            properties = event.get("properties") if isinstance(event, dict) else None
            problem = None
            if not isinstance(event, dict) or not event.get("event"):
                problem = ("event", "'event' must be a non-empty string")
            elif not isinstance(properties, dict):
                problem = ("properties", "'properties' must be an object")
            elif not isinstance(properties.get("time"), int):
                problem = ("properties.time", "'properties.time' must be an integer")
            elif "distinct_id" not in properties:
                problem = ("properties.distinct_id", "'properties.distinct_id' is required")
            elif not properties.get("$insert_id") or len(str(properties["$insert_id"])) > 36:
                problem = ("properties.$insert_id", "'properties.$insert_id' is required (at most 36 bytes)")
            if problem:
                failed.append({"index": index, "$insert_id": (properties or {}).get("$insert_id"),
                               "field": problem[0], "message": problem[1]})
            else:
                self.accept(event, str(properties["$insert_id"]))  # type: ignore[index]
        imported = len(events) - len(failed)
        if failed:
            return json_answer(400, {"code": 400, "num_records_imported": imported, "status": "Bad Request",
                                     "failed_records": failed})
        return json_answer(200, {"code": 200, "num_records_imported": imported, "status": "OK"})
