"""PostHog capture API, batch endpoint: `POST /batch/`, `{api_key, batch: [...], historical_migration}`.

The starter kit makes one payload per event (an element of `batch`): `{event, distinct_id, timestamp,
uuid, properties}`, with PostHog's own events for the other calls ($identify with `$set`, $pageview,
$screen, $groupidentify, $create_alias). `uuid` is the messageId, as a UUID (a stable UUID5 of it when
it is not one): PostHog deduplicates on it. One request is at most 20 MB; an event with no name or
no distinct_id refuses the whole request, so those are refused here, before sending.

What PostHog documents, and this module follows:
- https://posthog.com/docs/api/capture: `/batch/` takes any number of events, but "the entire request
  body must be less than 20MB"; `api_key` is the project API key (`phc_...`, a public write-only key,
  still kept as a secret here); US Cloud `https://us.i.posthog.com`, EU Cloud `https://eu.i.posthog.com`
  (set `endpoint: https://eu.i.posthog.com/batch/`), or a self-hosted domain; `historical_migration:
  true` for backfills; no rate limit is documented for capture.
- https://posthog.com/docs/api/post-only-endpoints: 200 `{"status": 1}` (the payload was read and the
  key is valid, not that every event will be ingested); 400 `invalid_payload` or `invalid_project`;
  401 `invalid_api_key`. Any other 4xx is final, 429 and 5xx retried (the default reading).
- https://posthog.com/docs/data/ingestion-warnings: requests are validated as a unit, so one event
  without a distinct_id (top level or `properties.distinct_id`; null, empty or blank) or without an
  event name gets the whole batch a 400 (the capture page still says such an event gets a 200 and is
  dropped: either way it is refused here); an event over 1 MB is discarded; an invalid UUID drops its
  event; a distinct_id over 200 characters is cut to 200; deduplication on `uuid` is best effort
  (ClickHouse merges). A 400 for a batch is split until the event it refuses is alone.
No maximum age is documented: old events are sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size

MAX_BODY: Final = 20_000_000  # "less than 20MB" per request
MAX_EVENT: Final = 1_000_000  # "Discarded event exceeding 1MB limit"
_ENVELOPE: Final = 1_000  # `{"api_key": ..., "batch": [], "historical_migration": ...}` around the events
_UUID_TEXT: Final = 48  # what a `"uuid": "<36>",` the module adds may weigh
_UUID: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Fixed for good: derived uuids must stay the same across releases, or a resend after an upgrade
# would no longer be deduplicated against the copy PostHog already has.
NAMESPACE: Final = uuid.UUID("75860e7d-e33e-42c0-b28e-c3d5862d74c7")


class PostHogSettings(Settings):
    api_key: str
    """The project API key (`phc_...`; a `${ENV_VAR}` reference)."""
    historical_migration: bool = False
    """Sent as `historical_migration`: true for a backfill, which PostHog then ingests in order and
    without its spike detection."""


class PostHog(Vendor):
    kind = "posthog"
    dedup_key = "uuid (best effort)"
    settings_type: ClassVar[type[Settings]] = PostHogSettings
    max_events = 1000  # PostHog sets no count; this keeps a request's work bounded
    max_bytes = MAX_BODY
    default_endpoint = "https://us.i.posthog.com/batch/"
    split_on_reject = True  # one bad event gets the whole batch a 400

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, PostHogSettings)
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            event = _event(item)
            problem = check(event, _size(item))
            if problem:
                refused[position] = problem
            else:
                events[position] = event
        requests = []
        for run in chunks(items, list(events), self.max_events, self.max_bytes - _ENVELOPE, _size):
            body = {"api_key": settings.api_key, "batch": [events[p] for p in run],
                    "historical_migration": settings.historical_migration}
            requests.append(Request(self.endpoint, dumps(body), tuple(run), {"Content-Type": "application/json"}))
        return Built(requests, refused)


def event_uuid(message_id: str) -> str:
    """PostHog's `uuid` for an event: its messageId when that is a UUID (lower case), else a stable UUID5
    of it (the same messageId always gives the same uuid, so a resend is deduplicated)."""
    if _UUID.match(message_id):
        return message_id.lower()
    return str(uuid.uuid5(NAMESPACE, message_id))


def check(event: dict[str, Any], size: int) -> str | None:
    """Why PostHog would refuse this event (and with it the whole request), or None. `size`: an upper
    bound of its JSON size (measured exactly only when it may be over the limit)."""
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        return "vendor.invalid: event is required"
    properties = event.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return "vendor.invalid: properties must be an object"
    if not (_usable(event.get("distinct_id")) or (properties and _usable(properties.get("distinct_id")))):
        return "vendor.invalid: distinct_id is required"
    if size > MAX_EVENT and len(dumps(event)) > MAX_EVENT:
        return "vendor.too_large: over PostHog's 1 MB per event"
    return None


def _usable(distinct_id: Any) -> bool:
    """PostHog reads the top-level distinct_id, then `properties.distinct_id`: null, empty or blank is none."""
    return distinct_id is not None and not (isinstance(distinct_id, str) and not distinct_id.strip())


def _event(item: Item) -> dict[str, Any]:
    return {**item.payload, "uuid": event_uuid(str(item.payload.get("uuid") or item.message_id))}


def _size(item: Item) -> int:
    return payload_size(item) + _UUID_TEXT
