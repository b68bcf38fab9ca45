"""Reddit Conversions API v3: `POST /api/v3/pixels/{pixel_id}/conversion_events`, `{data: {events: [...]}}`,
Bearer conversion access token. Up to 1,000 events a request; one invalid event refuses the request.

The starter kit makes one payload per event (an element of `data.events`): event_at (unix ms),
action_source, type {tracking_type, custom_event_name}, click_id, event_source_url, user (match keys,
personal ones as SHA-256 hex), metadata {conversion_id (= messageId), currency, value, item_count, products}.

Why v3: Reddit's v3 reference (https://ads-api.reddit.com/docs/v3/operations/Post%20Conversion%20Events) and
its migration guide (https://ads-api.reddit.com/docs/v3/capi-migration) make v3 the current API; v2.0
(`/api/v2.0/conversions/events/{account_id}`, `event_type`, `event_metadata`, `test_mode`) still takes
events but is deprecated. The ads-api.reddit.com pages were not in the store: the facts below are from
Reddit's own text as captured in its Segment destination
(https://github.com/segmentio/action-destinations, destinations/reddit-conversions-api/V3-API-REFERENCE.md),
from Reddit's help pages (https://business.reddithelp.com/s/article/Conversions-API, .../event-deduplication,
.../manual-advanced-matching, read through a copy of them) and RudderStack's v3 transformer.
- v3 changed: `event_type` -> `type` with UPPER_SNAKE_CASE tracking types (PAGE_VISIT, VIEW_CONTENT, SEARCH,
  ADD_TO_CART, ADD_TO_WISHLIST, PURCHASE, LEAD, SIGN_UP, CUSTOM with custom_event_name, at most 64
  characters); event_at in unix milliseconds; action_source required (WEBSITE, APP, PHYSICAL_STORE, OTHER);
  `event_metadata` -> `metadata`, `value` a double in the currency's base unit; `test_mode` -> `test_id`
  (from Event Testing, one event a request there); `user.opt_out` -> `user.data_processing_options`.
- Limits: 1,000 events a request (else 400 "Bad Request"), 1,000 requests and 10,000 events a second;
  events must be sent within 7 days of happening. No byte limit is documented: 2 MB a request is ours.
- Answers: 200 `{"data": {"message": "Successfully processed N conversion events."}}`; 400 "There were N
  invalid conversion events. None were processed." (the whole request: split until the event is alone);
  401 "No bearer token provided" / "UNAUTHORIZED"; 403 for a pixel the token may not post to; 429 for a
  spent quota, or for a generic User-Agent (the transport sends its own); 500 "The service is currently
  unavailable". No Retry-After is documented.
- Deduplication on metadata.conversion_id, within the same event type (and custom name) and channel, for
  events sent within 2 days (without one, events of a user up to 5 minutes apart). Match keys: click_id (rdt_cid),
  user.uuid (the _rdt_uuid cookie), email, phone_number, external_id, ip_address with user_agent, idfa,
  aaid; they may be sent raw or as SHA-256 hex. Email is lowercased, its `+` alias and the dots of its
  local part removed before hashing; a phone number is `+` and its digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size

TRACKING_TYPES: Final = frozenset({"PAGE_VISIT", "VIEW_CONTENT", "SEARCH", "ADD_TO_CART", "ADD_TO_WISHLIST",
                                   "PURCHASE", "LEAD", "SIGN_UP", "CUSTOM"})
ACTION_SOURCES: Final = frozenset({"WEBSITE", "APP", "PHYSICAL_STORE", "OTHER"})
MATCH_KEYS: Final = ("email", "phone_number", "external_id", "uuid", "ip_address", "idfa", "aaid")
HASHED: Final = ("email", "phone_number", "external_id", "ip_address", "idfa", "aaid")
MAX_AGE_S: Final = 7 * 86_400
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
_ENVELOPE: Final = 200  # `{"data": {"events": [...], "test_id": ...}}` around the events


class RedditSettings(Settings):
    pixel_id: str
    """The Reddit Pixel the conversions are posted to (`a2_...`, in Events Manager)."""
    conversion_token: str
    """A conversion access token from Events Manager, sent as Bearer (a `${ENV_VAR}` reference)."""
    test_id: str | None = None
    """Sent as `test_id`: the events show in Events Manager's Event Testing instead of counting (remove it
    for real traffic)."""


class Reddit(Vendor):
    kind = "reddit"
    settings_type: ClassVar[type[Settings]] = RedditSettings
    max_events = 1000
    max_bytes = 2_000_000  # ours: Reddit documents no byte limit
    default_endpoint = "https://ads-api.reddit.com/api/v3"
    dedup_key = "metadata.conversion_id with the event type (events sent within 2 days)"
    max_age_s = float(MAX_AGE_S)
    rate_limit = "1,000 requests and 10,000 events a second"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"rdt_cid": "context.rdt_cid", "rdt_uuid": "context.rdt_uuid"}
    split_on_reject = True  # one invalid event gets the whole request a 400

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, RedditSettings)
        url = f"{self.endpoint.rstrip('/')}/pixels/{settings.pixel_id}/conversion_events"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.conversion_token}"}
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            event = _with_conversion_id(item)
            problem = check(event)
            if problem:
                refused[position] = problem
            else:
                events[position] = event
        requests = []
        for run in chunks(items, list(events), self.max_events, self.max_bytes - _ENVELOPE, _size):
            data: dict[str, Any] = {"events": [events[p] for p in run]}
            if settings.test_id:
                data["test_id"] = settings.test_id
            requests.append(Request(url, dumps({"data": data}), tuple(run), headers))
        return Built(requests, refused)


def check(event: dict[str, Any]) -> str | None:
    """Why Reddit would count this event invalid (and process none of its request), or None."""
    event_at = event.get("event_at")
    if event_at is None:
        return "vendor.invalid: event_at is required"
    if not isinstance(event_at, int) or isinstance(event_at, bool) or event_at < 10**12:
        return "vendor.invalid: event_at must be unix milliseconds"
    if event.get("action_source") not in ACTION_SOURCES:
        return "vendor.invalid: action_source must be WEBSITE, APP, PHYSICAL_STORE or OTHER"
    kind = event.get("type")
    if not isinstance(kind, dict) or kind.get("tracking_type") not in TRACKING_TYPES:
        return "vendor.invalid: type.tracking_type is not a Reddit tracking type"
    if kind["tracking_type"] == "CUSTOM":
        name = kind.get("custom_event_name")
        if not isinstance(name, str) or not 0 < len(name) <= 64:
            return "vendor.invalid: type.custom_event_name is required (at most 64 characters)"
    metadata = event.get("metadata") or {}
    if not isinstance(metadata, dict):
        return "vendor.invalid: metadata must be an object"
    currency = metadata.get("currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.match(currency)):
        return "vendor.invalid: metadata.currency must be an ISO 4217 code"
    value = metadata.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "vendor.invalid: metadata.value must be a number"
    for product in metadata.get("products") or []:
        if not isinstance(product, dict) or product.get("id") in (None, ""):
            return "vendor.invalid: metadata.products[].id is required"
    user = event.get("user") or {}
    if not isinstance(user, dict):
        return "vendor.invalid: user must be an object"
    if not (event.get("click_id") or any(user.get(k) for k in MATCH_KEYS)):
        return "vendor.invalid: a match key is required (click_id, or user email, external_id, uuid, ...)"
    return None


def _with_conversion_id(item: Item) -> dict[str, Any]:
    """The payload with metadata.conversion_id, the messageId unless the kit set one (Reddit deduplicates on it)."""
    payload = item.payload
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and metadata.get("conversion_id"):
        return payload
    if metadata is not None and not isinstance(metadata, dict):
        return payload  # check() refuses it
    return {**payload, "metadata": {**(metadata or {}), "conversion_id": item.message_id}}


def _size(item: Item) -> int:
    return payload_size(item) + 120  # a conversion_id the module adds
