"""Intercom REST API: one data event a request to `POST /events`, identify to `POST /contacts` (Bearer access
token, `Intercom-Version` header); the payload's `object` routes it.

The starter kit makes one payload per event: `{object: events, event_name, created_at, user_id | email,
metadata}` from track calls, `{object: contacts, role, external_id, email, name, phone, ...}` from identify.
Intercom takes no batches. It deduplicates on the user, the event name and `created_at` (seconds), not on
an id of ours: a resend of the same event is ignored, two events of one user and name in one second are one.

What Intercom documents, and this module follows (the OpenAPI descriptions behind its reference,
https://github.com/intercom/Intercom-OpenAPI, descriptions/2.16):
- https://developers.intercom.com/docs/references/rest-api/api.intercom.io/data-events/createdataevent:
  `event_name`, `created_at` (a UTC Unix timestamp) and one of `user_id`, `email` or `id` (a lead's
  Intercom id) are required; `metadata` values are flat (strings, numbers, `_date` timestamps, links) except
  a rich link `{url, value}` and a monetary amount `{amount, currency}`: "we do not currently support
  nested JSON structure", so other nested values are refused here, before sending. Intercom keeps the
  first 10 metadata keys and ignores the others. "The API may detect and ignore duplicate events"
  (workspace, contact, event name, created time), answered 202 like any other; 401/403 for a bad token
  (final, `vendor.auth`); 404 for a user it cannot find (final, `vendor.not_found`). No maximum age and no
  byte limit are documented (the 1 MB a request is ours).
- https://developers.intercom.com/docs/references/rest-api/api.intercom.io/contacts/createcontact: creates a
  user or lead (`role`, `external_id`, `email`, `phone`, `name`, `signed_up_at`, `custom_attributes` of
  attributes defined in Intercom); it does not update: a contact that exists is a 409 conflict. Identify
  is there so that a user's data events find their contact (Intercom answers 404 for an unknown user), so
  a 409 is delivered: the contact exists. Its attributes are not updated by it (that needs the contact's
  Intercom id and a second request, `PUT /contacts/{id}`), and a retry after a lost 2xx is not dead-lettered.
- https://developers.intercom.com/docs/references/rest-api/errors/rate-limiting: 10,000 calls a minute per
  app and 25,000 per workspace for private apps, spread over 10-second windows; a 429 `rate_limit_exceeded`
  with X-RateLimit-Limit, -Remaining and -Reset (a Unix time), no Retry-After: the wait is read from
  X-RateLimit-Reset.
- Regions: https://api.intercom.io (US), https://api.eu.intercom.io, https://api.au.intercom.io (`endpoint`).
Intercom matches people by your user id or email, in the clear: nothing is hashed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final

from pydantic import StringConstraints

from forwarders.vendors.base import (
    MILLISECONDS,
    Built,
    Item,
    Reply,
    Request,
    Settings,
    Vendor,
    dumps,
    read_status,
    retry_after,
)

_SHAPES: Final = (frozenset({"url", "value"}), frozenset({"amount", "currency"}))  # the nested values it takes
_IDS: Final = ("user_id", "email", "id")


class IntercomSettings(Settings):
    access_token: str
    """An access token of your Intercom app with permission to write users and events, sent as Bearer (a
    `${ENV_VAR}` reference)."""
    api_version: Annotated[str, StringConstraints(pattern=r"^(\d+\.\d+|Unstable)$")] = "2.14"
    """Sent as the `Intercom-Version` header."""


class Intercom(Vendor):
    kind = "intercom"
    settings_type: ClassVar[type[Settings]] = IntercomSettings
    max_events = 1  # one data event or contact a request
    max_bytes = 1_000_000  # ours: Intercom states no byte limit
    default_endpoint = "https://api.intercom.io"
    dedup_key = "user, event_name and created_at in seconds (best effort, derived from the event)"
    rate_limit = "10,000 requests a minute per app, 25,000 per workspace, in 10 s windows (429)"

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, IntercomSettings)
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Authorization": f"Bearer {settings.access_token}", "Intercom-Version": settings.api_version}
        base = self.endpoint.rstrip("/")
        requests = []
        refused: dict[int, str] = {}
        for position, item in enumerate(items):
            kind = item.payload.get("object")
            body = {k: v for k, v in item.payload.items() if k != "object" and not (k == "metadata" and v is None)}
            problem = _event_problem(body) if kind == "events" else _contact_problem(body) if kind == "contacts" \
                else "vendor.invalid: object must be events or contacts"
            if problem:
                refused[position] = problem
                continue
            requests.append(Request(f"{base}/{kind}", dumps(body), (position,), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status == 429:
            wait = retry_after(headers)
            return Reply(retry=[0], retry_after=_reset(headers) if wait is None else wait)
        if status == 404 and request.url.endswith("/events"):
            return Reply(rejected={0: "vendor.not_found: Intercom has no contact with this user_id, email or id"})
        if status == 409 and request.url.endswith("/contacts"):
            return Reply(delivered=[0])  # the contact exists: what identify is for here (see above)
        return read_status(request, status, headers, body)


def _event_problem(event: dict[str, Any]) -> str | None:
    """Why Intercom would refuse this data event, or None."""
    name = event.get("event_name")
    if not isinstance(name, str) or not name.strip():
        return "vendor.invalid: event_name is required"
    created = event.get("created_at")
    if not isinstance(created, int) or isinstance(created, bool) or created >= MILLISECONDS:
        return "vendor.invalid: created_at (unix seconds) is required"
    if not any(isinstance(event.get(k), str) and event[k].strip() for k in _IDS):
        return "vendor.invalid: user_id, email or id is required"
    metadata = event.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "vendor.invalid: metadata must be an object"
    for key, value in metadata.items():
        if isinstance(value, list) or (isinstance(value, dict) and frozenset(value) not in _SHAPES):
            return f"vendor.invalid: metadata.{str(key)[:60]} is nested (only {{url, value}} or {{amount, currency}})"
    return None


def _contact_problem(contact: dict[str, Any]) -> str | None:
    if not any(isinstance(contact.get(k), str) and contact[k].strip() for k in ("external_id", "email")):
        return "vendor.invalid: external_id or email is required"
    attributes = contact.get("custom_attributes")
    if attributes is not None and (not isinstance(attributes, dict)
                                   or any(isinstance(v, dict | list) for v in attributes.values())):
        return "vendor.invalid: custom_attributes must be an object of flat values"
    return None


def _reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until X-RateLimit-Reset (a Unix time), at most a minute; None without the header."""
    value = next((v for k, v in headers.items() if k.lower() == "x-ratelimit-reset"), None)
    try:
        return min(max(float(value) - time.time(), 0.0), 60.0) if value else None
    except ValueError:
        return None
