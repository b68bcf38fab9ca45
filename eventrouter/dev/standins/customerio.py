"""Customer.io Track API v2 `/api/v2/batch` stand-in: Basic auth with the Site ID and Track API key (401
otherwise), a request under 500 KB (413), `batch` a list (400 "malformed or invalid" otherwise), and each
operation judged alone as Customer.io does: a person with exactly one identifier (id, email, phone or
cio_id), a person action, a `name` on events, pages and screens, a ULID `id` if any, an integer
`timestamp`, at most 32 KB (objects need object_type_id and object_id, deliveries an id). Bad operations
are listed in a 207 by `batch_index`, the others kept; 200 `{}` when all are good. Events are kept under
their `id` (what Customer.io deduplicates on); identify and the rest under none."""

from __future__ import annotations

import base64
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer
from forwarders.vendors.customerio import ACTIONS, IDENTIFIERS, MAX_BODY, MAX_ID, MAX_ITEM, NAMED, is_ulid

PATH: Final = "/api/v2/batch"
UNAUTHORIZED: Final = {"meta": {"error": "Unauthorized request"}}


def _error(reason: str, field: str, message: str, index: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"reason": reason, "field": field, "message": message}
    return error if index is None else {"batch_index": index, **error}


class CustomerIOStandIn(StandIn):
    name = "customerio"
    credential = "cio-track-key"
    path = PATH

    def __init__(self, site_id: str = "cio-site", api_key: str | None = None) -> None:
        super().__init__()
        self.site_id, self.api_key = site_id, api_key or self.credential

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"site_id": "cio-site", "api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"type": "person", "identifiers": {"id": f"u{index % 7}"}, "action": "event", "name": "Order Completed",
                "timestamp": now_s, "attributes": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["attributes"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "type": "object"}  # an object without object ids: listed in the 207, the others kept

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != PATH:
            return Answer(404, b"404 page not found", {"Content-Type": "text/plain"})
        expected = base64.b64encode(f"{self.site_id}:{self.api_key}".encode()).decode()
        if incoming.headers.get("authorization") != f"Basic {expected}":
            return json_answer(401, UNAUTHORIZED)
        if len(incoming.body) >= MAX_BODY:
            return json_answer(413, {"errors": [_error("request_too_large", "batch",
                                                       "Your batch request must be smaller than 500kb.")]})
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return json_answer(400, {"errors": [_error("invalid_json", "", "The request body is not valid JSON.")]})
        operations = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(operations, list):
            return json_answer(400, {"errors": [_error("required", "batch", "batch must be an array")]})
        errors = []
        for index, operation in enumerate(operations):
            problem = _problem(operation)
            if problem:
                errors.append(_error(*problem, index=index))
                continue
            named = operation.get("type") == "person" and operation.get("action") in NAMED
            self.accept(operation, operation.get("id") if named else None)
        return json_answer(207, {"errors": errors}) if errors else json_answer(200, {})


def _problem(operation: Any) -> tuple[str, str, str] | None:
    """Why Customer.io refuses this operation, as (reason, field, message), or None."""
    if not isinstance(operation, dict):
        return "invalid", "", "each object in the batch must be an object"
    kind = operation.get("type")
    if kind in ("object", "delivery"):
        return _other_problem(kind, operation)
    if kind != "person":
        return "invalid", "type", "type must be one of person, object, delivery"
    identifiers = operation.get("identifiers")
    if not isinstance(identifiers, dict):
        identifiers = {}
    given = [k for k in IDENTIFIERS if identifiers.get(k) not in (None, "")]
    if len(given) != 1:
        return "invalid", "identifiers", "identifiers must contain exactly one of id, email, phone, cio_id"
    if given == ["id"] and len(str(identifiers["id"]).encode()) > MAX_ID:
        return "invalid", "identifiers.id", "the id is longer than 150 bytes"
    action = operation.get("action")
    if action not in ACTIONS:
        return "invalid", "action", f"unknown action: {action}"
    if action in NAMED:
        if not isinstance(operation.get("name"), str) or not operation["name"].strip():
            return "required", "name", "name is required"
        ulid = operation.get("id")
        if ulid is not None and (not isinstance(ulid, str) or not is_ulid(ulid)):
            return "invalid", "id", "id must be a valid ULID"
    timestamp = operation.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool)):
        return "invalid", "timestamp", "timestamp must be a unix timestamp (integer)"
    if operation.get("attributes") is not None and not isinstance(operation["attributes"], dict):
        return "invalid", "attributes", "attributes must be an object"
    if len(orjson.dumps(operation)) > MAX_ITEM:
        return "too_large", "", "each request within a batch must be 32kb or smaller"
    return None


def _other_problem(kind: str, operation: dict[str, Any]) -> tuple[str, str, str] | None:
    """Objects need `object_type_id` and `object_id`, deliveries an `id`; both an action (only so far)."""
    identifiers = operation.get("identifiers")
    needed = ("object_type_id", "object_id") if kind == "object" else ("id",)
    if not isinstance(identifiers, dict) or any(identifiers.get(k) in (None, "") for k in needed):
        return "required", "identifiers", f"identifiers must contain {' and '.join(needed)}"
    if not isinstance(operation.get("action"), str) or not operation["action"]:
        return "required", "action", "action is required"
    return None
