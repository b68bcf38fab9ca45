"""TikTok Events API 2.0, web events: `POST /open_api/v1.3/event/track/` (`Access-Token` header),
`{event_source: "web", event_source_id: <pixel code>, data: [...]}`; TikTok answers HTTP 200 and says in `code`.

The starter kit makes one payload per event (an element of `data`): event, event_time (unix seconds),
event_id (= messageId), user (email, phone and external_id as SHA-256 hex; ttclid, ttp, ip, user_agent),
page, properties. This module adds the event_id where the kit did not, and refuses before sending an
event without a name or a time, or with PII that is not hashed: TikTok refuses the whole request for it.

What TikTok documents, and this module follows (TikTok's own API pages, business-api.tiktok.com/portal/docs
?id=1771100865818625 and the return codes, are not in the store we searched; the facts come from the pages
below, each of which quotes or translates them):
- https://github.com/bububa/tiktok-business/blob/HEAD/model/event/track.go (TikTok's /event/track/
  reference, field by field): `data` holds at most 1,000 events, and "the whole request is refused" over
  that; event_time is unix seconds (UTC); TikTok deduplicates on event_source_id + event_id + event; user
  email "trim, lowercase, then SHA-256", phone "E.164 (+ and country code, no brackets, no leading 0),
  then SHA-256", external_id SHA-256; ttclid and ttp (the `_ttp` cookie) for web events only; ip and
  user_agent sent as they are. No byte limit is documented: 2 MB per request is ours.
- https://ads.tiktok.com/help/article/event-deduplication: an event is deduplicated against the
  same event and event_id arriving within 48 hours of the first (Events API with Events API, and with
  the Pixel).
- https://hightouch.com/docs/destinations/tiktok: up to 1,000 events per call, and "TikTok fails an
  entire batch if it detects an erroneous row": a refused batch is split until the bad event is alone.
- Return codes, from a list of the Business API's codes and RudderStack's TikTok handler:
  https://help.sleekflow.io/en_US/tiktok-business-messaging/troubleshooting-your-tiktok-business-messaging-channels
  https://github.com/rudderlabs/rudder-transformer/blob/HEAD/src/v0/destinations/tiktok_ads/networkHandler.js
  0 OK (and 20001, which RudderStack reads as a success); 40001 no permission (a token without access to
  the pixel) and 40105 "access token is missing or incorrect": final (`vendor.auth`; the other 401xx codes,
  the token's and the app's credentials, are read the same way: ours); 40002 parameter error: the batch
  is refused (split); 40100 rate limit: retried; 40700 and 5xxxx (TikTok's internal errors): retried.
  TikTok documents no request rate for the Events API and no Retry-After (one sent is honoured).
No maximum event age for web events is documented in what we could read: old events are sent.
"""

from __future__ import annotations

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
    retry_after,
    sha256_hex,
)

HASHED: Final = ("email", "phone", "external_id")
MAX_EVENTS: Final = 1000
_ENVELOPE: Final = 300  # `{"event_source": "web", "event_source_id": ..., "test_event_code": ..., "data": []}`
_EVENT_ID: Final = 80  # what a `"event_id": "<messageId>",` the module adds may weigh
OK_CODES: Final = frozenset({0, 20001})
RATE_LIMITED: Final = 40100
AUTH_CODES: Final = frozenset({40001})  # and 40101..40199 (the access token, the app's credentials)
RETRIED_CODES: Final = frozenset({40700})  # and 5xxxx


class TikTokSettings(Settings):
    pixel_code: str
    """The Pixel code the web events are reported to (`event_source_id`)."""
    access_token: str
    """The Events API access token generated for the pixel in Events Manager (a `${ENV_VAR}` reference)."""
    test_event_code: str | None = None
    """Sent with each request: the events show in Events Manager's Test Events tab instead of counting."""


class TikTok(Vendor):
    kind = "tiktok"
    settings_type: ClassVar[type[Settings]] = TikTokSettings
    dedup_key = "event_id with event (48 h)"
    rate_limit = "none documented for the Events API; code 40100 when a limit is hit"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"ttclid": "context.ttclid", "ttp": "context.ttp"}
    max_events = MAX_EVENTS
    max_bytes = 2_000_000  # ours: TikTok documents no byte limit
    default_endpoint = "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    split_on_reject = True  # one bad event refuses the whole batch

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, TikTokSettings)
        headers = {"Content-Type": "application/json", "Access-Token": settings.access_token}
        refused: dict[int, str] = {}
        events: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            event = item.payload if item.payload.get("event_id") else {**item.payload, "event_id": item.message_id}
            problem = check(event)
            if problem:
                refused[position] = problem
            else:
                events[position] = event
        requests = []
        for run in chunks(items, list(events), self.max_events, self.max_bytes - _ENVELOPE, _size):
            body: dict[str, Any] = {"event_source": "web", "event_source_id": settings.pixel_code,
                                    "data": [events[p] for p in run]}
            if settings.test_event_code:
                body["test_event_code"] = settings.test_event_code
            requests.append(Request(self.endpoint, dumps(body), tuple(run), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return read_status(request, status, headers, body, split_on_reject=True)
        code, message = _code(body)
        positions = list(range(len(request.items)))
        if code is None or code in OK_CODES:  # no code to read: the status says delivered
            return Reply(delivered=positions)
        if code == RATE_LIMITED or code in RETRIED_CODES or code >= 50000:
            return Reply(retry=positions, retry_after=retry_after(headers))
        if code in AUTH_CODES or 40100 < code < 40200:
            return Reply(rejected=dict.fromkeys(positions, "vendor.auth"))
        if len(positions) > 1:  # a parameter error refuses the batch as a unit: find the event it refuses
            return Reply(retry=positions, split=True, resend=True)
        return Reply(rejected={0: f"vendor.rejected: {code} {message}"[:200]})


def check(event: dict[str, Any]) -> str | None:
    """Why TikTok would refuse this event (and with it the whole request), or None."""
    name = event.get("event")
    if not isinstance(name, str) or not name.strip():
        return "vendor.invalid: event is required"
    event_time = event.get("event_time")
    if event_time is None:
        return "vendor.invalid: event_time is required"
    if not isinstance(event_time, int) or isinstance(event_time, bool) or event_time >= MILLISECONDS:
        return "vendor.invalid: event_time must be unix seconds"
    user = event.get("user")
    if user is None:
        return None
    if not isinstance(user, dict):
        return "vendor.invalid: user must be an object"
    for key in HASHED:
        values = user.get(key)
        for value in values if isinstance(values, list) else () if values is None else (values,):
            if not sha256_hex(value):
                return f"vendor.invalid: user.{key} must be SHA-256 hex"
    return None


def _code(body: bytes) -> tuple[int | None, str]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, ""
    if not isinstance(answer, dict) or not isinstance(answer.get("code"), int):
        return None, ""
    return int(answer["code"]), str(answer.get("message") or "")


def _size(item: Item) -> int:
    return payload_size(item) + _EVENT_ID
