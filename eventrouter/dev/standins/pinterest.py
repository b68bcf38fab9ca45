"""Pinterest Conversions API stand-in: `POST /v5/ad_accounts/{ad_account_id}/events` with a Bearer conversion
token (401 code 2 "Authentication failed." without it, 403 code 29 for another ad account), `data` of 1 to
1,000 events; the request is checked against the schema as a whole (a missing required field, a key the
schema does not know, a bad event_name or action_source, user_data without em, hashed_maids or an IP address
with a user agent: 400 "Invalid request: ..." and nothing kept). Then each event on its own: an event_time
over 7 days old or in the future, or a hashed field that is not SHA-256 hex, fails that event alone (422
"Not all events were successfully processed", the per-event `events[]` under `details`; the others are kept);
otherwise 200 `{num_events_received, num_events_processed, events}`. `?test=true` answers the same and keeps
nothing. Events are kept under their event_id (what Pinterest deduplicates on). The error codes of the 404
and 422 bodies, and the layout of the 422's `details`, are ours: Pinterest does not document them."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.pinterest import hash_problem, schema_problem

_PATH: Final = re.compile(r"^/v5/ad_accounts/(?P<account>[^/]+)/events$")
MAX_AGE_S: Final = 7 * 86_400
FUTURE_S: Final = 3_600  # ours: a clock a little ahead is tolerated


def error(status: int, code: int, message: str) -> Answer:
    return json_answer(status, {"code": code, "message": message})


class PinterestStandIn(StandIn):
    name = "pinterest"
    credential = "pina-conversion-token"
    path = "/v5"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"ad_account_id": "549755885175", "conversion_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        email = hashlib.sha256(f"u{index % 7}@example.com".encode()).hexdigest()
        return {"event_name": "checkout", "action_source": "web", "event_time": now_s, "event_id": message_id,
                "user_data": {"em": [email], "client_ip_address": "203.0.113.7", "client_user_agent": "Mozilla/5.0"},
                "custom_data": {"currency": "USD", "value": "10.00"}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["event_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # its event_time 8 days back (the record itself is fresh): failed alone in the 422's events[]
        return {**payload, "event_time": payload["event_time"] - 8 * 86_400}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_time": now_s}

    def __init__(self, ad_account_id: str | None = None, conversion_token: str | None = None) -> None:
        super().__init__()
        self.ad_account_id = ad_account_id or "549755885175"
        self.conversion_token = conversion_token or self.credential

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None:
            return error(404, 404, "Not found.")
        if incoming.headers.get("authorization") != f"Bearer {self.conversion_token}":
            return error(401, 2, "Authentication failed.")
        if match["account"] != self.ad_account_id:
            return error(403, 29, "You are not permitted to access that resource.")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return error(400, 1, "Invalid request: the body is not JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not 0 < len(data) <= 1000:
            return error(400, 1, "Invalid request: data must hold 1 to 1000 events")
        for index, event in enumerate(data):
            problem = schema_problem(event) if isinstance(event, dict) else "an event must be an object"
            if problem:
                return error(400, 1, f"Invalid request: data[{index}]: {problem.removeprefix('vendor.invalid: ')}")
        now = time.time()
        results = [_event_problem(event, now) for event in data]
        if incoming.query.get("test") != "true":
            for event, problem in zip(data, results, strict=True):
                if problem is None:
                    self.accept(event, str(event["event_id"]))
        answer = {"num_events_received": len(data), "num_events_processed": results.count(None),
                  "events": [{"status": "processed" if p is None else "failed", "error_message": p,
                              "warning_message": None} for p in results]}
        if any(results):
            return json_answer(422, {"code": 4, "message": "Not all events were successfully processed",
                                     "details": answer})
        return json_answer(200, answer)


def _event_problem(event: dict[str, Any], now: float) -> str | None:
    """Why Pinterest fails this event alone (the others of the request are processed), or None."""
    age = now - event["event_time"]
    if age > MAX_AGE_S:
        return "event_time is more than 7 days in the past"
    if age < -FUTURE_S:
        return "event_time is in the future"
    problem = hash_problem(event["user_data"])
    return problem.removeprefix("vendor.invalid: ") if problem else None
