"""HubSpot: custom event occurrences to `POST /events/{version}/send/batch`, contacts to
`POST /crm/objects/{version}/contacts/batch/upsert` (Bearer private-app token); the payload's `object` routes it.

The starter kit makes one payload per event: `{object: events, eventName, email | utk | objectId, occurredAt,
uuid, properties}` from track and page calls, `{object: contacts, idProperty: email, id, properties}` from
identify. `uuid` is the messageId (a stable UUID5 of it when it is not a UUID): HubSpot keeps the first
occurrence of a uuid within an event type for a year and refuses the others.

What HubSpot documents, and this module follows:
- https://developers.hubspot.com/docs/api-reference/latest/overview and
  https://developers.hubspot.com/docs/api-reference/legacy/migration-guide: since March 2026 the REST APIs
  are date-versioned (`/events/2026-03/...`, `/crm/objects/2026-03/...`); the v1-v3 paths go unsupported in
  September 2027. `api_version: v3` sends to the legacy paths (`/events/v3/send/batch`,
  `/crm/v3/objects/contacts/batch/upsert`).
- https://developers.hubspot.com/docs/api-reference/2026-03/events/send-event-data/send-event-occurrence and
  .../batch-send-occurrences: `{inputs: [...]}`, each `eventName` (the fully qualified `pe{HubID}_{name}`;
  a name without the prefix gets `pe{portal_id}_` here), `properties` (required), `email`, `objectId` or
  `utk` (the hubspotutk cookie) to find the record, `occurredAt` (ISO 8601 or unix ms; absent: now), `uuid`
  ("when multiple events have the same ID within a year, the first will be accepted and all others will
  be rejected"); the answer has no body (204). The page states no count or byte limit: 500 occurrences a
  request is what integrations use (RudderStack's HubSpot destination), 1 MB a request is ours. No maximum
  age is documented.
- https://developers.hubspot.com/changelog/new-property-limits-for-the-custom-behavioural-events-api: at
  most 50 properties an occurrence, internal names of lowercase letters, digits and underscores starting
  with a letter; over a limit "the request will fail": such events are refused here, before sending.
- https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/contacts/batch/upsert-contacts and
  https://developers.hubspot.com/docs/api-reference/error-handling: `{inputs: [{id, idProperty, properties,
  objectWriteTraceId}]}`; with an objectWriteTraceId on each input a partial failure is a 207 whose
  `errors` name the inputs (`context.objectWriteTraceId`): those are dead-lettered, the others delivered.
  CRM batch endpoints take 100 inputs; one id twice refuses the batch, so it goes in another request.
- A 400 on either endpoint refuses the whole request (one bad occurrence or contact): it is split until
  the one HubSpot refuses is alone. 401/403 are final (`vendor.auth`).
- https://developers.hubspot.com/changelog/increasing-our-api-limits: private apps get 100 requests per
  10 seconds (Free, Starter), 190 (Professional, Enterprise), 250 with the API limit increase, and 250,000
  to 1,000,000 a day; a 429 past them. HubSpot documents X-HubSpot-RateLimit-* headers, not Retry-After.
HubSpot matches contacts by email in the clear: nothing is hashed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final

import orjson
from pydantic import StringConstraints

from forwarders.vendors.base import (
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

MAX_EVENTS: Final = 500  # occurrences a request (not on HubSpot's page; what integrations send)
MAX_CONTACTS: Final = 100  # inputs a CRM batch request
MAX_PROPERTIES: Final = 50
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_QUALIFIED: Final = re.compile(r"^pe\d+_")
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_IDS: Final = ("email", "objectId", "utk")
_ENVELOPE: Final = 100  # `{"inputs": []}` and what the module adds to an input
# Fixed for good: a derived uuid must stay the same across releases, or a resend after an upgrade would
# no longer be refused as the copy HubSpot already has.
NAMESPACE: Final = uuid.UUID("0b1e8a4e-5f0c-4a43-9d0e-2f7c3b6a9d15")


class HubSpotSettings(Settings):
    access_token: str
    """A private app or service key access token with the `analytics.behavioral_events.send` and
    `crm.objects.contacts.write` scopes, sent as Bearer (a `${ENV_VAR}` reference)."""
    portal_id: Annotated[str, StringConstraints(pattern=r"^\d+$")] | None = None
    """The HubSpot account ID (Hub ID): an event name without the `pe<portal_id>_` prefix gets it."""
    api_version: Annotated[str, StringConstraints(pattern=r"^(\d{4}-\d{2}|v3)$")] = "2026-03"
    """The date-based API version in the paths (`2026-03`), or `v3` for the legacy paths."""


class HubSpot(Vendor):
    kind = "hubspot"
    settings_type: ClassVar[type[Settings]] = HubSpotSettings
    max_events = MAX_EVENTS
    max_bytes = 1_000_000  # ours: HubSpot states no byte limit for these endpoints
    default_endpoint = "https://api.hubapi.com"
    split_on_reject = True  # one bad occurrence or contact gets the whole request a 400
    dedup_key = "uuid (per event type, for a year; contact upserts are idempotent)"
    rate_limit = "100-250 requests per 10 s and 250,000-1,000,000 a day per account, by plan (429)"
    match_ids: ClassVar[Mapping[str, str]] = {"utk": "context.hubspotutk"}

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, HubSpotSettings)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.access_token}"}
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        contacts: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            kind = item.payload.get("object")
            if kind == "events":
                made, problem = _occurrence(item, settings.portal_id)
                target = events
            elif kind == "contacts":
                made, problem = _contact(item.payload)
                target = contacts
            else:
                made, problem = {}, "vendor.invalid: object must be events or contacts"
                target = {}
            if problem:
                refused[position] = problem
            else:
                target[position] = made
        base, version = self.endpoint.rstrip("/"), settings.api_version
        legacy = version == "v3"
        events_url = f"{base}/events/v3/send/batch" if legacy else f"{base}/events/{version}/send/batch"
        contacts_url = f"{base}/crm/v3/objects/contacts/batch/upsert" if legacy else \
            f"{base}/crm/objects/{version}/contacts/batch/upsert"
        requests: list[tuple[int, Request]] = []
        limit = self.max_bytes - _ENVELOPE
        phase = phases(items, {**dict.fromkeys(events, "events"), **dict.fromkeys(contacts, "contacts")})
        for step in sorted(set(phase.values())):
            for run in chunks(items, [p for p in events if phase[p] == step], self.max_events, limit, _size):
                body = {"inputs": [events[p] for p in run]}
                requests.append((step, Request(events_url, dumps(body), tuple(run), headers)))
            now = {p: c for p, c in contacts.items() if phase[p] == step}
            for run in _contact_runs(items, now, min(self.max_events, MAX_CONTACTS), limit):
                inputs = [{**contacts[p], "objectWriteTraceId": str(i)} for i, p in enumerate(run)]
                requests.append((step, Request(contacts_url, dumps({"inputs": inputs}), tuple(run), headers)))
        # each user's calls in the batch's order (an identify before the events after it): by phase
        requests.sort(key=lambda r: (r[0], r[1].items[0]))
        return Built([r for _, r in requests], refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status == 207 and "/contacts/batch/" in request.url:
            return _multi_status(request, body)
        return read_status(request, status, headers, body, split_on_reject=True)


def event_uuid(message_id: str) -> str:
    """An occurrence's `uuid`: its messageId when that is a UUID (lower case), else a stable UUID5 of it."""
    if _UUID.match(message_id):
        return message_id.lower()
    return str(uuid.uuid5(NAMESPACE, message_id))


def _occurrence(item: Item, portal_id: str | None) -> tuple[dict[str, Any], str | None]:
    """The occurrence HubSpot takes for this payload, or why it would refuse it (and the request with it)."""
    payload = {k: v for k, v in item.payload.items() if k != "object"}
    name = payload.get("eventName")
    if not isinstance(name, str) or not name.strip():
        return {}, "vendor.invalid: eventName is required"
    if not _QUALIFIED.match(name):
        if portal_id is None:
            return {}, "vendor.invalid: eventName must be pe<portal>_<name> (or set connection.portal_id)"
        payload["eventName"] = f"pe{portal_id}_{name}"
    if not any(isinstance(payload.get(k), str | int) and str(payload[k]).strip() for k in _IDS):
        return {}, "vendor.invalid: email, objectId or utk is required"
    problem = _properties(payload.setdefault("properties", {}))
    if problem:
        return {}, problem
    payload["uuid"] = event_uuid(str(payload.get("uuid") or item.message_id))
    return payload, None


def _contact(payload: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    contact = {k: v for k, v in payload.items() if k != "object"}
    contact.setdefault("idProperty", "email")
    if not isinstance(contact.get("id"), str) or not contact["id"].strip():
        return {}, "vendor.invalid: id is required"
    properties = contact.setdefault("properties", {})
    if not isinstance(properties, dict) or any(isinstance(v, dict | list) for v in properties.values()):
        return {}, "vendor.invalid: properties must be an object of text, number or boolean values"
    return contact, None


def _properties(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return "vendor.invalid: properties must be an object"
    if len(properties) > MAX_PROPERTIES:
        return f"vendor.invalid: at most {MAX_PROPERTIES} properties an occurrence"
    for name, value in properties.items():
        if not _NAME.match(name):
            return f"vendor.invalid: property {name[:60]!r} is not a HubSpot internal name"
        if isinstance(value, dict | list):
            return f"vendor.invalid: properties.{name} must be a text, number or boolean"
    return None


def _contact_runs(items: Sequence[Item], contacts: Mapping[int, dict[str, Any]], max_inputs: int,
                  max_bytes: int) -> list[list[int]]:
    """Runs of contacts under both limits, a new one where an id comes again (HubSpot refuses a batch
    naming one id twice)."""
    out: list[list[int]] = []
    for run in chunks(items, list(contacts), max_inputs, max_bytes, _size):
        current: list[int] = []
        seen: set[str] = set()
        for position in run:
            key = f"{contacts[position]['idProperty']}:{str(contacts[position]['id']).strip().lower()}"
            if key in seen:
                out.append(current)
                current, seen = [], set()
            current.append(position)
            seen.add(key)
        out.append(current)
    return out


def _multi_status(request: Request, body: bytes) -> Reply:
    """A 207: the inputs its `errors` name (by objectWriteTraceId, else by id) are refused, the others
    delivered; when an error names no input, only those in `results` count as delivered."""
    inputs = orjson.loads(request.body)["inputs"]  # built here: always an object with inputs
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return Reply(rejected=dict.fromkeys(range(len(request.items)), "vendor.rejected: an unreadable 207"))
    traces = {str(i.get("objectWriteTraceId")): n for n, i in enumerate(inputs)}
    ids = {str(i.get("id")).strip().lower(): n for n, i in enumerate(inputs)}
    refused: dict[int, str] = {}
    unplaced = False
    errors = answer.get("errors")
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            unplaced = True
            continue
        context = error["context"] if isinstance(error.get("context"), dict) else {}
        named = [traces[str(t)] for t in _strings(context.get("objectWriteTraceId")) if str(t) in traces] or \
            [ids[t.strip().lower()] for t in _strings(context.get("ids")) if t.strip().lower() in ids]
        reason = " ".join(str(error.get(k) or "") for k in ("category", "message")).strip()
        reason = f"vendor.invalid: {reason}"
        for n in named:
            refused.setdefault(n, reason[:200])
        unplaced = unplaced or not named
    if unplaced:
        results = answer.get("results")
        done = {traces[str(r.get("objectWriteTraceId"))] for r in (results if isinstance(results, list) else [])
                if isinstance(r, dict) and str(r.get("objectWriteTraceId")) in traces}
        for n in range(len(request.items)):
            if n not in done:
                refused.setdefault(n, "vendor.rejected: a 207 naming no input")
    return Reply(delivered=[n for n in range(len(request.items)) if n not in refused], rejected=refused)


def _size(item: Item) -> int:
    return payload_size(item) + _ENVELOPE


def _strings(value: Any) -> list[str]:
    """A list of strings from an answer (anything else, a string included, names nothing)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
