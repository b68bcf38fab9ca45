"""Iterable: custom events in bulk (`POST /api/events/trackBulk`), user profiles in bulk
(`POST /api/users/bulkUpdate`) and purchases (`POST /api/commerce/trackPurchase`, one a request).

The starter kit makes one payload per event, its `object` naming where it goes: `events` (an element of
trackBulk's `events`: eventName, email and/or userId, id, createdAt in unix seconds, dataFields), `users`
(an element of bulkUpdate's `users`: email and/or userId, dataFields) or `purchase` (a trackPurchase body:
id, user, items, total, createdAt, dataFields). `id` is the messageId (a stable UUID5 of it when it has
characters Iterable refuses): an event or purchase sent again under its id updates the one Iterable has.

What Iterable documents, and this module follows:
- https://api.iterable.com/api/docs (its Swagger file, api-docs.json, as published in the Iterable/api-client
  repository): auth is the `Api-Key` header (a server-side key); trackBulk takes `{events: [TrackRequest]}`
  (eventName required; "provide an email or a userId"; `id`: "If an event exists with that id, the event
  will be updated", at most 512 bytes; `createdAt` "expects a unix timestamp"); rate limits 10 requests/s
  per project for trackBulk, 5/s for bulkUpdate, none stated for trackPurchase (track: 2,000/s); bulkUpdate's
  body is at most 4 MB. A 200 answer says per event what failed: `successCount`, `failCount`,
  `failedUpdates` ({invalid,notFound,forgotten}{Emails,UserIds}, and for users conflict* and invalidData*),
  `disallowedEventNames` (names the project does not track), `filteredOutFields` (fields dropped, the event
  kept); the top-level `invalidEmails` and `invalidUserIds` are deprecated. 400 "Invalid parameters",
  401 "Invalid API key", 409 for trackPurchase's email/userId conflict.
- https://support.iterable.com/hc/en-us/articles/206430615-Custom-Event-Properties: an event `id` holds
  only letters, digits and hyphens, at most 512 bytes, unique across the project's custom events.
- https://support.iterable.com/hc/en-us/articles/41044692130196-Getting-Started-with-Iterable-s-API:
  the `Api-Key` (or `Api_Key`) header; US base `https://api.iterable.com`, EU `https://api.eu.iterable.com`
  (set `endpoint: https://api.eu.iterable.com`; a key works only in its own data center).
- https://support.iterable.com/hc/en-us/articles/29156459027348-Creating-and-Identifying-Users-with-Iterable-APIs:
  with both email and userId, email identifies the user in email-based projects.
Iterable states no events-per-request limit for trackBulk nor a size for it: 1,000 events and 4 MB (the
bulkUpdate limit) are ours. No maximum event age is documented, nor a Retry-After on its 429 (the runner
backs off). It wants the email in clear (it mails it) and matches no click ids. A 4xx refusing a whole
bulk request (one field of the wrong type does) is split until the event it refuses is alone; failures
counted in `failCount` that the lists do not name are split the same way (a resend updates, by id).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson

from forwarders.vendors.base import (
    MILLISECONDS,
    Built,
    Item,
    Reply,
    Request,
    Settings,
    Vendor,
    chunks,
    dumps,
    payload_size,
    phases,
    read_status,
)

EVENTS: Final = "/api/events/trackBulk"
USERS: Final = "/api/users/bulkUpdate"
PURCHASE: Final = "/api/commerce/trackPurchase"
OBJECTS: Final = {"events": EVENTS, "users": USERS, "purchase": PURCHASE}
MAX_BODY: Final = 4_000_000
_ENVELOPE: Final = 1_000
_ID_TEXT: Final = 64  # what an `"id": "<uuid>",` the module adds may weigh
_ID: Final = re.compile(r"^[A-Za-z0-9-]{1,512}$")
# Fixed for good: derived ids must stay the same across releases, or a resend after an upgrade would make a
# second event instead of updating the first.
NAMESPACE: Final = uuid.UUID("0d268ea8-f490-48ac-90b4-560dba7fa9c7")
_CATEGORIES: Final = {"invalid": "invalid", "invalidData": "invalid", "notFound": "not_found", "forgotten": "forgotten",
                      "conflict": "conflict"}
_LISTS: Final = {f"{prefix}{ids}": category for prefix, category in _CATEGORIES.items()
                  for ids in ("Emails", "UserIds")}  # failedUpdates' lists -> the reason's category


class IterableSettings(Settings):
    api_key: str
    """A server-side API key of the Iterable project, sent as the `Api-Key` header (a `${ENV_VAR}` reference)."""


class Iterable(Vendor):
    kind = "iterable"
    settings_type: ClassVar[type[Settings]] = IterableSettings
    max_events = 1000  # ours: Iterable states no count for trackBulk or bulkUpdate
    max_bytes = MAX_BODY
    default_endpoint = "https://api.iterable.com"
    dedup_key = "id of events and purchases (one sent again updates the one Iterable has; a user update sets " \
                "the same fields again)"
    rate_limit = "trackBulk 10 requests/s, bulkUpdate 5/s per project; 429 past it"
    split_on_reject = True  # a 400 for one event (a field of the wrong type) refuses the whole bulk request

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, IterableSettings)
        headers = {"Content-Type": "application/json", "Api-Key": settings.api_key}
        base = self.endpoint.rstrip("/")
        refused: dict[int, str] = {}
        shaped: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in OBJECTS}
        for position, item in enumerate(items):
            payload = dict(item.payload)
            name = payload.pop("object", None)
            if name not in OBJECTS:
                refused[position] = "vendor.invalid: object must be events, users or purchase"
                continue
            if name != "users":
                payload["id"] = event_id(str(payload.get("id") or item.message_id))
            problem = check(name, payload)
            if problem:
                refused[position] = problem
            else:
                shaped[name][position] = payload
        requests: list[tuple[int, Request]] = []
        phase = phases(items, {p: name for name, objects in shaped.items() for p in objects})
        for name in ("events", "users"):  # the bulk endpoints: `{events: [...]}`, `{users: [...]}`
            objects = shaped[name]
            for step in sorted({phase[p] for p in objects}):
                now = [p for p in objects if phase[p] == step]
                for run in chunks(items, now, self.max_events, self.max_bytes - _ENVELOPE, _size):
                    body = {name: [objects[p] for p in run]}
                    requests.append((step, Request(base + OBJECTS[name], dumps(body), tuple(run), headers)))
        for position, purchase in shaped["purchase"].items():
            requests.append((phase[position], Request(base + PURCHASE, dumps(purchase), (position,), headers)))
        # each user's calls in the batch's order (a user update before the events after it): by phase
        return Built([r for _, r in sorted(requests, key=lambda r: (r[0], r[1].items[0]))], refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return read_status(request, status, headers, body, split_on_reject=True)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            return read_status(request, status, headers, body)
        if request.url.endswith(PURCHASE):
            code = answer.get("code")
            if code not in (None, "Success"):
                return Reply(rejected={0: f"vendor.rejected: {str(code)[:100]}"})
            return Reply(delivered=[0])
        return _read_bulk(request, answer)


def event_id(message_id: str) -> str:
    """Iterable's `id` for an event or purchase: the messageId when Iterable takes it as it is (letters, digits
    and hyphens, at most 512), else a stable UUID5 of it (the same messageId always gives the same id)."""
    if _ID.match(message_id):
        return message_id
    return str(uuid.uuid5(NAMESPACE, message_id))


def check(name: str, payload: dict[str, Any]) -> str | None:
    """Why Iterable would refuse this object, or None."""
    user = payload.get("user") if name == "purchase" else payload
    if not isinstance(user, dict):
        return "vendor.invalid: user is required"
    if not any(isinstance(user.get(k), str) and user[k].strip() for k in ("email", "userId")):
        return "vendor.invalid: email or userId is required"
    if payload.get("dataFields") is not None and not isinstance(payload["dataFields"], dict):
        return "vendor.invalid: dataFields must be an object"
    created = payload.get("createdAt")
    if created is not None and (not isinstance(created, int) or isinstance(created, bool) or created >= MILLISECONDS):
        return "vendor.invalid: createdAt must be unix seconds"
    if name == "events":
        event_name = payload.get("eventName")
        if not isinstance(event_name, str) or not event_name.strip():
            return "vendor.invalid: eventName is required"
    if name == "purchase":
        total = payload.get("total")
        if not isinstance(total, int | float) or isinstance(total, bool):
            return "vendor.invalid: total is required"
        products = payload.get("items")
        if not isinstance(products, list):
            return "vendor.invalid: items is required"
        for index, product in enumerate(products):
            missing = next((k for k in ("id", "name", "price", "quantity")
                            if not isinstance(product, dict) or product.get(k) in (None, "")), None)
            if missing:
                return f"vendor.invalid: items[{index}].{missing} is required"
    return None


def _read_bulk(request: Request, answer: dict[str, Any]) -> Reply:
    """trackBulk's and bulkUpdate's 200: the events (users) whose email or userId a failure list names, or
    whose event name the project disallows, are refused; the others delivered."""
    sent = orjson.loads(request.body)
    objects = sent.get("events") or sent.get("users") or []
    emails, user_ids = _named(answer)
    disallowed = {str(n) for n in answer.get("disallowedEventNames") or [] if n is not None}
    refused: dict[int, str] = {}
    for index, item in enumerate(objects[:len(request.items)]):
        email, user_id = str(item.get("email") or "").lower(), str(item.get("userId") or "")
        reason = (emails.get(email) if email else None) or (user_ids.get(user_id) if user_id else None)
        if reason is None and item.get("eventName") in disallowed:
            reason = f"vendor.disallowed: {str(item['eventName'])[:100]} is disallowed from tracking"
        if reason:
            refused[index] = reason
    rest = [p for p in range(len(request.items)) if p not in refused]
    fail_count = answer.get("failCount")
    unnamed = fail_count - len(refused) if isinstance(fail_count, int) else 0
    if unnamed > 0 and rest:
        if len(rest) <= unnamed:
            refused.update(dict.fromkeys(rest, "vendor.rejected: counted in failCount"))
            return Reply(rejected=refused)
        return Reply(retry=rest, rejected=refused, split=True, resend=True)  # find them; a resend updates by id
    return Reply(delivered=rest, rejected=refused)


def _named(answer: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The emails (lower case) and userIds the answer's failure lists name -> why."""
    emails: dict[str, str] = {}
    user_ids: dict[str, str] = {}
    failed = answer.get("failedUpdates")
    failed = failed if isinstance(failed, dict) else {}
    sources = [(f"failedUpdates.{name}", failed.get(name)) for name in _LISTS]
    sources += [(name, answer.get(name)) for name in ("invalidEmails", "invalidUserIds")]  # deprecated copies
    for where, values in sources:
        if not isinstance(values, list):
            continue
        name = where.rsplit(".", 1)[-1]
        by_email = name.endswith("Emails")
        for value in values:
            target, key = (emails, str(value).lower()) if by_email else (user_ids, str(value))
            target.setdefault(key, f"vendor.{_LISTS[name]}: {where}")
    return emails, user_ids


def _size(item: Item) -> int:
    return payload_size(item) + _ID_TEXT
