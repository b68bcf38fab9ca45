"""Segment HTTP Tracking API, `POST /v1/batch` `{batch: [...], writeKey}`: events forwarded into a Segment source,
for teams moving off Segment one destination at a time.

The starter kit passes each Segment event through nearly as it is (messageId, type, event, name, userId,
anonymousId, groupId, previousId, properties, traits, context, integrations, timestamp), leaving out the
router's receivedAt, sentAt and originalTimestamp: Segment would correct `timestamp` again by receivedAt -
(sentAt - timestamp), and an old sentAt would move the event to the time of sending. Without a sentAt the
router's skew-corrected `timestamp` stands, as for any HTTP API call that sets one (and a resend is the same
body). The messageId is kept (Segment deduplicates on it, so a copy also sent by a Segment SDK during a
migration is dropped); one of 100 characters or more is replaced by a stable UUID5 of it.

What Segment documents, and this module follows:
- https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/ (now also at
  https://www.twilio.com/docs/segment/connections/sources/catalog/libraries/server/http-api): `POST
  https://api.segment.io/v1/batch`; the source's write key as `writeKey` in the body, or HTTP Basic with the
  write key as user name and an empty password (both are sent, as Segment's libraries do); `Content-Type:
  application/json`; at most 500 KB a batch request, 32 KB an event, 2,500 events a batch; "Segment returns
  a 200 response for all API requests except errors caused by large payloads and JSON errors (which return
  400 responses)": an event over 32 KB gets the whole request a 400 (split here until it is alone), while
  over 2,500 events, an event without userId and anonymousId, a track without `event` or a messageId of 100
  characters or more get a 200 and are dropped, so those are refused here, before sending; rate limit: "not
  exceed 1,000 requests per second" per workspace, past it 429 with `Retry-After` (seconds) and
  `X-RateLimit-Reset`. A wrong write key also gets a 200 (the edge does not validate keys, as Segment's
  library maintainers say on GitHub): check a new key in the Segment debugger.
- https://segment.com/docs/guides/duplicate-data/: Segment deduplicates on `messageId` over "at least 24
  hours" (99%), across sources and workspaces.
- https://segment.com/docs/guides/regional-segment/: EU workspaces send to `https://events.eu1.segmentapis.com/v1`
  (set `endpoint: https://events.eu1.segmentapis.com/v1/batch`; the Twilio copy of the HTTP API page names
  `eu1.api.segmentapis.com` in one note, the regional guide `events.eu1`).
- https://segment.com/docs/connections/spec/common/#timestamps: timestamp = receivedAt - (sentAt - originalTimestamp);
  an HTTP API call may set `timestamp` itself (it becomes the originalTimestamp).
Historical timestamps are accepted (the destinations decide): no maximum age. Segment matches no click ids and
wants nothing hashed: the context passes through as it is.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size

MAX_BODY: Final = 500_000  # "500KB per batch request"
MAX_EVENT: Final = 32 * 1024  # "32KB per event in the batch" (Segment's libraries count 32 << 10)
MAX_EVENTS: Final = 2500
MAX_MESSAGE_ID: Final = 99  # "messageId values with fewer than 100 characters"
TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
_ENVELOPE: Final = 1_000  # `{"batch": [], "writeKey": ...}` around the events
_ID_TEXT: Final = 64  # what a `"messageId": "<36>",` the module adds may weigh
# Fixed for good: derived messageIds must stay the same across releases, or a resend after an upgrade would
# not be deduplicated against the copy Segment already has.
NAMESPACE: Final = uuid.UUID("5b1f0a3e-7c2d-4e8f-9a61-0d3c2b4e5f70")


class SegmentSettings(Settings):
    write_key: str
    """The write key of the Segment source the events go to (a `${ENV_VAR}` reference)."""


class Segment(Vendor):
    kind = "segment"
    settings_type: ClassVar[type[Settings]] = SegmentSettings
    max_events = MAX_EVENTS
    max_bytes = MAX_BODY
    default_endpoint = "https://api.segment.io/v1/batch"
    dedup_key = "messageId (at least 24 h, 99%)"
    rate_limit = "1,000 requests/s per workspace; 429 with Retry-After past it"
    split_on_reject = True  # one event over 32 KB gets the whole batch a 400

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, SegmentSettings)
        basic = base64.b64encode(f"{settings.write_key}:".encode()).decode()
        headers = {"Content-Type": "application/json", "Authorization": f"Basic {basic}"}
        refused: dict[int, str] = {}
        messages: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            message = {**item.payload, "messageId": message_id(str(item.payload.get("messageId") or item.message_id))}
            problem = check(message, _size(item))
            if problem:
                refused[position] = problem
            else:
                messages[position] = message
        requests = []
        for run in chunks(items, list(messages), self.max_events, self.max_bytes - _ENVELOPE, _size):
            body = {"batch": [messages[p] for p in run], "writeKey": settings.write_key}
            requests.append(Request(self.endpoint, dumps(body), tuple(run), headers))
        return Built(requests, refused)


def message_id(value: str) -> str:
    """The messageId sent: the event's own when under 100 characters, else a stable UUID5 of it."""
    return value if len(value) <= MAX_MESSAGE_ID else str(uuid.uuid5(NAMESPACE, value))


def check(message: dict[str, Any], size: int) -> str | None:
    """Why Segment would drop this event (with a 200) or refuse its whole request (a 400), or None. `size`:
    an upper bound of its JSON size (measured exactly only when it may be over the limit)."""
    kind = message.get("type")
    if kind not in TYPES:
        return "vendor.invalid: type must be identify, track, page, screen, group or alias"
    if not any(isinstance(message.get(k), str | int) and str(message[k]).strip() for k in ("userId", "anonymousId")):
        return "vendor.invalid: userId or anonymousId is required"
    required = {"track": "event", "group": "groupId", "alias": "previousId"}.get(str(kind))
    if required and not str(message.get(required) or "").strip():
        return f"vendor.invalid: {required} is required"
    for key in ("properties", "traits", "context", "integrations"):
        if message.get(key) is not None and not isinstance(message[key], dict):
            return f"vendor.invalid: {key} must be an object"
    if size > MAX_EVENT and len(dumps(message)) > MAX_EVENT:
        return "vendor.too_large: over Segment's 32 KB per event"
    return None


def _size(item: Item) -> int:
    return payload_size(item) + _ID_TEXT
