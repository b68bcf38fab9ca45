"""HubSpot stand-in: custom event occurrences (`/events/{version}/send/batch`) and contact upserts
(`/crm/objects/{version}/contacts/batch/upsert`, or the legacy v3 paths), Bearer token (401
INVALID_AUTHENTICATION without it). An occurrence batch is validated as a unit: an eventName not
`pe<portal>_<name>`, no email, objectId or utk, properties that are not a flat object of at most 50
lowercase internal names, or an unreadable occurredAt get the whole request a 400 VALIDATION_ERROR and
nothing is kept; else 204, each occurrence kept under eventName + uuid (HubSpot keeps the first of a
uuid within an event type). A contact batch of at most 100 inputs with no id twice is upserted: an input
whose email id is not an email is named in the `errors` of a 207 (by its objectWriteTraceId), the others
in `results`; contact upserts are idempotent (no dedup key)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

PORTAL: Final = "1234567"
_EVENTS: Final = re.compile(r"^/events/(\d{4}-\d{2}|v3)/send/batch$")
_CONTACTS: Final = re.compile(r"^/crm/(objects/\d{4}-\d{2}|v3/objects)/contacts/batch/upsert$")
_QUALIFIED: Final = re.compile(r"^pe\d+_[a-z0-9_]+$")
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hubspot_error(status: int, category: str, message: str, **extra: Any) -> Answer:
    return json_answer(status, {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                                "category": category, **extra})


class HubSpotStandIn(StandIn):
    name = "hubspot"
    credential = "pat-na1-stand-in-token"
    path = ""

    def __init__(self, access_token: str | None = None) -> None:
        super().__init__()
        self.access_token = access_token or self.credential
        self.contacts: dict[str, dict[str, Any]] = {}

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"access_token": secret, "portal_id": PORTAL}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"object": "events", "eventName": "purchase", "email": f"u{index % 7}@example.com",
                "occurredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s)), "uuid": message_id,
                "properties": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["properties"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "email": None}  # no record to find: HubSpot refuses the batch, the module refuses it

    def answer(self, incoming: Incoming) -> Answer:
        events, contacts = _EVENTS.match(incoming.path), _CONTACTS.match(incoming.path)
        if events is None and contacts is None:
            return hubspot_error(404, "OBJECT_NOT_FOUND", f"Unable to route POST {incoming.path}")
        if incoming.headers.get("authorization") != f"Bearer {self.access_token}":
            return hubspot_error(401, "INVALID_AUTHENTICATION",
                                 "Authentication credentials not found or not valid for this request.")
        body = orjson.loads(incoming.body)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, dict) for i in inputs):
            return hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON: inputs must be a list of objects")
        return self._occurrences(inputs) if events is not None else self._upsert(inputs)

    def _occurrences(self, inputs: list[dict[str, Any]]) -> Answer:
        if len(inputs) > 500:
            return hubspot_error(400, "VALIDATION_ERROR", "Batch size exceeded: at most 500 inputs")
        for index, occurrence in enumerate(inputs):
            problem = _occurrence_problem(occurrence)
            if problem:
                return hubspot_error(400, "VALIDATION_ERROR", f"inputs[{index}]: {problem}")
        for occurrence in inputs:
            key = f"{occurrence['eventName']}:{occurrence['uuid']}" if occurrence.get("uuid") else None
            self.accept(occurrence, key)
        return Answer(204)

    def _upsert(self, inputs: list[dict[str, Any]]) -> Answer:
        if len(inputs) > 100:
            return hubspot_error(400, "VALIDATION_ERROR", "Batch size exceeded: at most 100 inputs")
        ids = [str(i.get("id") or "").lower() for i in inputs]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            return hubspot_error(400, "VALIDATION_ERROR", f"Duplicate IDs found in batch input: {twice}")
        for index, contact in enumerate(inputs):
            properties = contact.get("properties", {})
            if not contact.get("id") or not isinstance(properties, dict) or \
                    any(isinstance(v, dict | list) for v in properties.values()):
                return hubspot_error(400, "VALIDATION_ERROR", f"inputs[{index}]: Property values were not valid")
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        results, errors = [], []
        for contact in inputs:
            trace = contact.get("objectWriteTraceId")
            if contact.get("idProperty", "email") == "email" and not _EMAIL.match(str(contact["id"])):
                errors.append({"status": "error", "category": "VALIDATION_ERROR",
                               "message": f"Property values were not valid: INVALID_EMAIL {contact['id']}",
                               "context": {"objectWriteTraceId": [trace]} if trace else {"ids": [contact["id"]]}})
                continue
            with self._lock:
                record = self.contacts.setdefault(str(contact["id"]).lower(), {"id": str(len(self.contacts) + 1)})
                new = len(record) == 1
                record.update(contact.get("properties") or {})
            results.append({"id": record["id"], "new": new, "properties": dict(record), "createdAt": now,
                            "updatedAt": now, "archived": False, **({"objectWriteTraceId": trace} if trace else {})})
            self.accept(contact, None)
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
        if errors:
            answer.update(errors=errors, numErrors=len(errors))
        return json_answer(207 if errors else 200, answer)


def _occurrence_problem(occurrence: dict[str, Any]) -> str | None:
    """Why HubSpot refuses the batch this occurrence is in, or None."""
    name = occurrence.get("eventName")
    if not isinstance(name, str) or not _QUALIFIED.match(name):
        return f"Event {name!r} not found: eventName must be the fully qualified name pe<HubID>_<name>"
    if not any(occurrence.get(k) for k in ("email", "objectId", "utk")):
        return "One of email, objectId or utk is required to associate the event with a record"
    properties = occurrence.get("properties")
    if not isinstance(properties, dict):
        return "properties is required"
    if len(properties) > 50:
        return "An event occurrence can have at most 50 properties"
    for key, value in properties.items():
        if not _NAME.match(key) or isinstance(value, dict | list):
            return f"Property {key!r} is not a valid event property"
    when = occurrence.get("occurredAt")
    if when is not None and not isinstance(when, int):
        try:
            datetime.fromisoformat(str(when).replace("Z", "+00:00"))
        except ValueError:
            return f"occurredAt {when!r} is not an ISO 8601 timestamp or unix milliseconds"
    return None
