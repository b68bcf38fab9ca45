"""Iterable stand-in: `/api/events/trackBulk`, `/api/users/bulkUpdate` and `/api/commerce/trackPurchase`
behind the `Api-Key` header (401 `BadApiKey` without it), answering in Iterable's `{msg, code, params}`
shape. A bulk body over 4 MB gets a 413 `BatchTooLarge` (Iterable documents the 4 MB and the code, not
the status); bad JSON a 400 `BadJsonBody`; an event without an eventName, an object without an email or
userId, an `id` Iterable refuses (letters, digits and hyphens, 512 at most) or a purchase without user,
items or total a 400 `BadParams` for the whole request, nothing of it kept. Otherwise a bulk request gets
a 200 counting what failed: a malformed email or userId (a trailing space, over 52 characters) in
`failedUpdates`, an event name the project disallows in `disallowedEventNames`; the rest is kept, events
and purchases under their `id` (one sent again updates the one kept)."""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

EVENTS: Final = "/api/events/trackBulk"
USERS: Final = "/api/users/bulkUpdate"
PURCHASE: Final = "/api/commerce/trackPurchase"
MAX_BODY: Final = 4_000_000
_ID: Final = re.compile(r"^[A-Za-z0-9-]{1,512}$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def iterable_error(status: int, code: str, msg: str, **params: Any) -> Answer:
    return json_answer(status, {"msg": msg, "code": code, "params": params or None})


class IterableStandIn(StandIn):
    name = "iterable"
    credential = "iterable-key"
    path = ""  # the connection's endpoint is the base URL: the module appends each API's path

    def __init__(self, api_key: str | None = None, disallowed: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.api_key = api_key or self.credential
        self.disallowed = set(disallowed)  # event names the project does not track

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"api_key": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"object": "events", "eventName": "Purchase", "userId": f"u{index % 7}", "id": message_id,
                "createdAt": now_s, "dataFields": {"message_id": message_id}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["dataFields"]["message_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        return {**payload, "email": "not an email"}  # named in the 200's failedUpdates.invalidEmails

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path not in (EVENTS, USERS, PURCHASE):
            return iterable_error(404, "NotFound", f"No route for {incoming.path}")
        key = incoming.headers.get("api-key") or incoming.headers.get("api_key")
        if key != self.api_key:
            return iterable_error(401, "BadApiKey", "Invalid API key", endpoint=incoming.path)
        if len(incoming.body) > MAX_BODY:
            return iterable_error(413, "BatchTooLarge", "Request body is over 4MB")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return iterable_error(400, "BadJsonBody", "Could not parse the request body as JSON")
        if not isinstance(body, dict):
            return iterable_error(400, "BadJsonBody", "The request body must be a JSON object")
        if incoming.path == PURCHASE:
            return self._purchase(body)
        array = "events" if incoming.path == EVENTS else "users"
        objects = body.get(array)
        if not isinstance(objects, list) or not objects:
            return iterable_error(400, "BadParams", f"Invalid parameters: {array} is required")
        for index, item in enumerate(objects):
            problem = _problem(item, array)
            if problem:
                return iterable_error(400, "BadParams", f"Invalid parameters: {array}[{index}]: {problem}")
        failed: dict[str, list[str]] = {}
        disallowed: list[str] = []
        for item in objects:
            reason = _malformed(item)
            if reason:
                failed.setdefault(reason[0], []).append(reason[1])
            elif item.get("eventName") in self.disallowed:
                disallowed.append(item["eventName"])
            else:
                self.accept(item, f"event:{item['id']}" if array == "events" and item.get("id") else None)
        count = sum(map(len, failed.values())) + len(disallowed)
        answer: dict[str, Any] = {"successCount": len(objects) - count, "failCount": count,
                                  "invalidEmails": failed.get("invalidEmails", []),
                                  "invalidUserIds": failed.get("invalidUserIds", []),
                                  "filteredOutFields": [], "createdFields": [],
                                  "failedUpdates": {"invalidEmails": failed.get("invalidEmails", []),
                                                    "invalidUserIds": failed.get("invalidUserIds", []),
                                                    "notFoundEmails": [], "notFoundUserIds": [],
                                                    "forgottenEmails": [], "forgottenUserIds": []}}
        if array == "events":
            answer["disallowedEventNames"] = sorted(set(disallowed))
        return json_answer(200, answer)

    def _purchase(self, body: dict[str, Any]) -> Answer:
        user = body.get("user")
        problem = _problem(user, "users") if isinstance(user, dict) else "user is required"
        if problem is None and "id" in body and not (isinstance(body["id"], str) and _ID.match(body["id"])):
            problem = "id must hold letters, digits and hyphens only, 512 at most"
        if problem is None and (not isinstance(body.get("total"), int | float) or isinstance(body["total"], bool)):
            problem = "total is required"
        products = body.get("items")
        if problem is None and not isinstance(products, list):
            problem = "items is required"
        for index, product in enumerate(products if problem is None and isinstance(products, list) else []):
            missing = [k for k in ("id", "name", "price", "quantity") if not isinstance(product, dict) or
                       product.get(k) in (None, "")]
            if missing:
                problem = f"items[{index}].{missing[0]} is required"
                break
        if problem:
            return iterable_error(400, "BadParams", f"Invalid parameters: {problem}")
        assert isinstance(user, dict)
        malformed = _malformed(user)
        if malformed:
            code = "InvalidEmailAddressError" if malformed[0] == "invalidEmails" else "InvalidUserIdError"
            return iterable_error(400, code, f"Invalid {malformed[0][7:-1]}: {malformed[1]}")
        self.accept(body, f"purchase:{body['id']}" if body.get("id") else None)
        return iterable_error(200, "Success", f"Purchase with id: {body.get('id')} tracked.", id=body.get("id"))


def _problem(item: Any, array: str) -> str | None:
    """Why Iterable refuses the whole request this object is in, or None."""
    if not isinstance(item, dict):
        return "not an object"
    if not any(isinstance(item.get(k), str) and item[k] for k in ("email", "userId")):
        return "Either email or userId must be specified"
    if array == "events":
        if not isinstance(item.get("eventName"), str) or not item["eventName"]:
            return "eventName is required"
        if "id" in item and not (isinstance(item["id"], str) and _ID.match(item["id"])):
            return "id must hold letters, digits and hyphens only, 512 at most"
        if "createdAt" in item and (not isinstance(item["createdAt"], int) or isinstance(item["createdAt"], bool)):
            return "createdAt must be a unix timestamp"
    if item.get("dataFields") is not None and not isinstance(item["dataFields"], dict):
        return "dataFields must be an object"
    return None


def _malformed(item: dict[str, Any]) -> tuple[str, str] | None:
    """The failure list naming this object's malformed email or userId, and the value, or None."""
    email, user_id = item.get("email"), item.get("userId")
    if isinstance(email, str) and email and not _EMAIL.match(email):
        return "invalidEmails", email
    if isinstance(user_id, str) and user_id and (len(user_id) > 52 or user_id != user_id.rstrip()
                                                 or not user_id.isascii() or not user_id.isprintable()):
        return "invalidUserIds", user_id
    return None
