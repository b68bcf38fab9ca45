"""Intercom stand-in: `POST /events` and `POST /contacts`, Bearer token (401 `unauthorized` "Access Token
Invalid"), errors as Intercom's `error.list`. A data event needs event_name, an integer created_at and one
of user_id, email or id, and flat metadata (a rich link `{url, value}` or a monetary amount `{amount,
currency}` excepted), else 400 `parameter_invalid`; Intercom keeps its first 10 metadata keys; 202 with an
empty body, each event kept under user + event_name + created_at (what Intercom deduplicates on). Made with
`users`, it knows only those users and the contacts created here: an event for anyone else is a 404
`not_found` "User Not Found". A contact needs an external_id or email; one that exists is a 409 `conflict`."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

MAX_METADATA: Final = 10
_SHAPES: Final = (frozenset({"url", "value"}), frozenset({"amount", "currency"}))


def intercom_error(status: int, code: str, message: str) -> Answer:
    return json_answer(status, {"type": "error.list", "request_id": str(uuid.uuid4()),
                                "errors": [{"code": code, "message": message}]})


class IntercomStandIn(StandIn):
    name = "intercom"
    credential = "dG9rOnN0YW5kLWluLXRva2Vu"

    def __init__(self, access_token: str | None = None, users: Collection[str] | None = None) -> None:
        """`users`: the user ids and emails Intercom knows (None: anyone)."""
        super().__init__()
        self.access_token = access_token or self.credential
        self.users = None if users is None else set(users)
        self.contacts: dict[str, str] = {}  # external_id or email -> Intercom id

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"access_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        # one second apart: Intercom takes two events of one user and name in one second as one
        return {"object": "events", "event_name": "placed-order", "created_at": now_s - index,
                "user_id": f"u{index % 7}", "metadata": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["metadata"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "user_id": ""}  # no user: Intercom refuses it with a 400, the module before sending

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path not in ("/events", "/contacts"):
            return intercom_error(404, "not_found", "Resource Not Found")
        if incoming.headers.get("authorization") != f"Bearer {self.access_token}":
            return intercom_error(401, "unauthorized", "Access Token Invalid")
        body = orjson.loads(incoming.body)
        if not isinstance(body, dict):
            return intercom_error(400, "parameter_invalid", "Request body must be a JSON object")
        return self._event(body) if incoming.path == "/events" else self._contact(body)

    def _event(self, event: dict[str, Any]) -> Answer:
        problem = _event_problem(event)
        if problem:
            return intercom_error(400, "parameter_invalid", problem)
        who = next(str(event[k]) for k in ("user_id", "email", "id") if event.get(k))
        if self.users is not None and who not in self.users and who not in self.contacts:
            return intercom_error(404, "not_found", "User Not Found")
        if isinstance(event.get("metadata"), dict):
            event = {**event, "metadata": dict(list(event["metadata"].items())[:MAX_METADATA])}
        self.accept(event, f"{who}:{event['event_name']}:{event['created_at']}")
        return Answer(202)

    def _contact(self, contact: dict[str, Any]) -> Answer:
        keys = [str(contact[k]) for k in ("external_id", "email") if isinstance(contact.get(k), str) and contact[k]]
        if not keys:
            return intercom_error(400, "parameter_not_found", "external_id or email is required")
        with self._lock:
            known = next((self.contacts[k] for k in keys if k in self.contacts), None)
            if known is None:
                made = uuid.uuid4().hex[:24]
                self.contacts.update(dict.fromkeys(keys, made))
        if known is not None:
            return intercom_error(409, "conflict", f"A contact matching those details already exists with id={known}")
        self.accept(contact, None)
        return json_answer(200, {"type": "contact", "id": made, "role": contact.get("role", "user"),
                                 "external_id": contact.get("external_id"), "email": contact.get("email"),
                                 "name": contact.get("name"),
                                 "custom_attributes": contact.get("custom_attributes") or {}})


def _event_problem(event: dict[str, Any]) -> str | None:
    if not isinstance(event.get("event_name"), str) or not event["event_name"].strip():
        return "event_name is required"
    if not isinstance(event.get("created_at"), int) or isinstance(event["created_at"], bool):
        return "created_at must be a Unix timestamp"
    if not any(isinstance(event.get(k), str) and event[k] for k in ("user_id", "email", "id")):
        return "user_id, email or id is required"
    metadata = event.get("metadata", {})
    if not isinstance(metadata, dict):
        return "metadata must be an object"
    for key, value in metadata.items():
        if isinstance(value, list) or (isinstance(value, dict) and frozenset(value) not in _SHAPES):
            return f"metadata {key!r}: nested JSON structure is not supported"
    return None
