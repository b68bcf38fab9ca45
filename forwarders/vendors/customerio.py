"""Customer.io Track API v2 `POST /api/v2/batch` (Basic site_id:api_key): `{batch: [person operations]}`.

The starter kit makes one person operation per event: identify, event, page or screen, keyed by one
identifier (the userId, else the email). The forwarder sets each event's `id` to a ULID made from the
messageId, which Customer.io deduplicates on; a 207 lists the operations it refused by `batch_index`.

What Customer.io documents, and this module follows (its OpenAPI, https://docs.customer.io/files/journeys-track.json,
rendered at https://docs.customer.io/api/track/ and https://docs.customer.io/integrations/api/track/):
- Servers `https://track.customer.io` (US) and `https://track-eu.customer.io` (EU: set `endpoint:
  https://track-eu.customer.io/api/v2/batch`); HTTP Basic auth, the Site ID as user and the Track API key as
  password. The v2 API is not the one Customer.io's own libraries use (they use v1) but it alone batches.
- `/batch`: "Your batch request must be smaller than 500kb. Each of the requests within the batch must also
  be 32kb or smaller." No count is documented: 1,000 operations a request is ours. An operation over 32 KB
  is refused here, before sending.
- A person operation needs `type: person`, `identifiers` holding exactly one of `id`, `email`, `phone` or
  `cio_id` ("You cannot pass multiple identifiers") and an `action`; `event`, `page` and `screen` need a
  `name`; `timestamp` is an integer of Unix seconds. A person's id is at most 150 bytes.
- Events, pages and screens take `id`: "A valid ULID used to deduplicate events" ("If an event repeats a
  value we've already received, we ignore the duplicate"). A messageId that is not a ULID becomes a stable
  one: the event's timestamp (ms) and 80 bits of SHA-256 of the messageId, so a resend carries the same id.
- Answers: 200 (all accepted); 207 "At least one object in the batch was invalid; all other requests are
  accepted", with `errors: [{batch_index, reason, field, message}]` (those are dead-lettered, the rest
  delivered); 400 "The entire request was malformed or invalid" (split until the operation it refuses is
  alone); 401 bad credentials.
- Rate limit: "1000 requests per second for both active data integrations and historical backfill", v1 and
  v2, "not strictly enforced" (summaries of older pages say 100 per second). No 429 body or Retry-After
  is documented; 429 and 5xx are retried, after Retry-After when sent.
- No maximum age: old timestamps are accepted (events older than 72 hours do not trigger campaigns). No
  hashing: Customer.io wants the email as it is. No click or browser ids.
"""

from __future__ import annotations

import base64
import hashlib
import re
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
    read_status,
)

MAX_BODY: Final = 500_000  # "smaller than 500kb"
MAX_ITEM: Final = 32_000  # "32kb or smaller", each operation
MAX_ID: Final = 150  # bytes of a person's id
IDENTIFIERS: Final = ("id", "email", "phone", "cio_id")
ACTIONS: Final = frozenset({"identify", "delete", "event", "screen", "page", "add_relationships",
                            "delete_relationships", "add_device", "delete_device", "suppress", "unsuppress"})
NAMED: Final = frozenset({"event", "screen", "page"})  # the actions that need a `name` and take a dedup `id`
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID: Final = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_ENVELOPE: Final = 16  # `{"batch":[]}` and a comma an operation
_ULID_TEXT: Final = 40  # what a `"id":"<26>",` the module adds may weigh


class CustomerIOSettings(Settings):
    site_id: str
    """The workspace's Site ID (the Basic auth user name)."""
    api_key: str
    """The workspace's Track API key (the Basic auth password; a `${ENV_VAR}` reference)."""


class CustomerIO(Vendor):
    kind = "customerio"
    dedup_key = "id, a ULID made from the messageId (events, pages, screens)"
    rate_limit = "1,000 requests per second per workspace, not strictly enforced"
    settings_type: ClassVar[type[Settings]] = CustomerIOSettings
    max_events = 1000  # Customer.io sets no count; this keeps a request's work bounded
    max_bytes = MAX_BODY
    default_endpoint = "https://track.customer.io/api/v2/batch"
    split_on_reject = True  # a 400 refuses the whole request

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, CustomerIOSettings)
        credentials = base64.b64encode(f"{settings.site_id}:{settings.api_key}".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
        refused: dict[int, str] = {}
        operations: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            operation = _operation(item)
            problem = check(operation, _size(item))
            if problem:
                refused[position] = problem
            else:
                operations[position] = operation
        requests = []
        for run in chunks(items, list(operations), self.max_events, self.max_bytes - _ENVELOPE, _size):
            body = dumps({"batch": [operations[p] for p in run]})
            requests.append(Request(self.endpoint, body, tuple(run), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status != 207:
            return read_status(request, status, headers, body, split_on_reject=True)
        try:
            errors = orjson.loads(body).get("errors")
        except (orjson.JSONDecodeError, AttributeError):
            errors = None
        refused: dict[int, str] = {}
        placed = isinstance(errors, list) and bool(errors)
        for error in errors if isinstance(errors, list) else []:
            index = error.get("batch_index") if isinstance(error, dict) else None
            if not (isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(request.items)):
                placed = False
                continue
            what = ": ".join(str(error.get(k)) for k in ("field", "reason") if error.get(k))
            refused.setdefault(index, f"vendor.invalid: {what or 'refused'}"[:200])
        others = [p for p in range(len(request.items)) if p not in refused]
        if not placed:
            # a 207 says some operation was refused without saying which: the others are sent again (an event
            # is deduplicated on its id, an identify is an upsert) until the attempts are spent
            return Reply(retry=others, rejected=refused)
        return Reply(delivered=others, rejected=refused)


def check(operation: dict[str, Any], size: int) -> str | None:
    """Why Customer.io would refuse this operation, or None. `size`: an upper bound of its JSON size."""
    kind = operation.get("type")
    if kind in ("object", "delivery"):
        return None  # Customer.io judges those (the starter kit makes none)
    if kind != "person":
        return "vendor.invalid: type must be person, object or delivery"
    identifiers = operation.get("identifiers")
    if not isinstance(identifiers, dict):
        return "vendor.invalid: identifiers is required"
    given = [k for k in IDENTIFIERS if identifiers.get(k) not in (None, "")]
    if len(given) != 1:
        return "vendor.invalid: identifiers must hold exactly one of id, email, phone, cio_id"
    if given == ["id"] and len(str(identifiers["id"]).encode()) > MAX_ID:
        return "vendor.invalid: identifiers.id is over 150 bytes"
    action = operation.get("action")
    if action not in ACTIONS:
        return "vendor.invalid: action is required" if action in (None, "") else \
            f"vendor.invalid: action {str(action)[:40]!r} is not a person action"
    if action in NAMED and not (isinstance(operation.get("name"), str) and operation["name"].strip()):
        return "vendor.invalid: name is required"
    timestamp = operation.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, int) or isinstance(timestamp, bool) or
                                  timestamp >= MILLISECONDS):
        return "vendor.invalid: timestamp must be unix seconds"
    attributes = operation.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        return "vendor.invalid: attributes must be an object"
    if size > MAX_ITEM and len(dumps(operation)) > MAX_ITEM:
        return "vendor.too_large: over Customer.io's 32 KB per operation"
    return None


def is_ulid(text: str) -> bool:
    """A ULID: 26 Crockford base32 characters, the first at most 7 (128 bits); any case."""
    return bool(_ULID.match(text.upper()))


def event_ulid(message_id: str, timestamp_s: Any = None) -> str:
    """The `id` Customer.io deduplicates an event on: the messageId when it is a ULID (upper case), else a ULID
    of the event's time and a SHA-256 of the messageId (the same messageId and time always give the same)."""
    if is_ulid(message_id):
        return message_id.upper()
    ms = timestamp_s * 1000 if isinstance(timestamp_s, int) and not isinstance(timestamp_s, bool) else 0
    value = (min(max(ms, 0), (1 << 48) - 1) << 80) | int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:10])
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _operation(item: Item) -> dict[str, Any]:
    payload = item.payload
    if payload.get("action") not in NAMED:
        return payload
    return {**payload, "id": event_ulid(str(payload.get("id") or item.message_id), payload.get("timestamp"))}


def _size(item: Item) -> int:
    return payload_size(item) + _ULID_TEXT
