"""Meta Conversions API: `POST /{version}/{pixel_id}/events`, `{data: [...], access_token}`.

The starter kit makes one payload per event (an element of `data`): event_name, event_time (unix
seconds), event_id (= messageId: Meta deduplicates on event_id + event_name for 48 h), user_data
(PII as SHA-256 hex), action_source. Meta refuses a whole request for one bad event (an event_time
older than 7 days, say), so a 400 on a batch is split until the event it refuses is alone and
dead-lettered, while the others are delivered."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size, sha256_hex

HASHED: Final = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id", "ge", "db")
_HASHED_KEYS: Final = frozenset(HASHED)
MAX_AGE_S: Final = 7 * 86_400


class MetaSettings(Settings):
    pixel_id: str
    """The pixel (dataset) the events are sent to."""
    access_token: str
    """The Conversions API access token (a `${ENV_VAR}` reference)."""
    api_version: str = "v21.0"
    """The Graph API version in the URL."""
    test_event_code: str | None = None
    """Sent with each request: the events show in Events Manager's test tab."""


class MetaCAPI(Vendor):
    kind = "meta_capi"
    dedup_key = "event_id with event_name (48 h)"
    rate_limit = "Marketing API business-use-case limits per ad account and pixel"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"fbc": "context.fbc", "fbp": "context.fbp"}
    settings_type: ClassVar[type[Settings]] = MetaSettings
    max_events = 1000
    max_age_s = float(MAX_AGE_S)  # one older event_time refuses the whole request
    max_bytes = 2_000_000
    default_endpoint = "https://graph.facebook.com"
    split_on_reject = True

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, MetaSettings)
        url = f"{self.endpoint.rstrip('/')}/{settings.api_version}/{settings.pixel_id}/events"
        refused: dict[int, str] = {}
        positions = []
        now = time.time()
        for position, item in enumerate(items):
            problem = check(item.payload, now)
            if problem:
                refused[position] = problem
            else:
                positions.append(position)
        requests = []
        for run in chunks(items, positions, self.max_events, self.max_bytes, payload_size):
            body: dict[str, Any] = {"data": [items[p].payload for p in run], "access_token": settings.access_token}
            if settings.test_event_code:
                body["test_event_code"] = settings.test_event_code
            requests.append(Request(url, dumps(body), tuple(run), {"Content-Type": "application/json"}))
        return Built(requests, refused)


def check(payload: dict[str, Any], now: float) -> str | None:
    """Why Meta would refuse this event (and with it the whole request), or None."""
    for key in ("event_name", "event_time", "action_source"):
        if payload.get(key) in (None, ""):
            return f"vendor.invalid: {key} is required"
    event_time = payload["event_time"]
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        return "vendor.invalid: event_time must be unix seconds"
    if event_time < now - MAX_AGE_S:
        return "vendor.too_old: event_time is over 7 days old"
    user = payload.get("user_data")
    if not isinstance(user, dict) or not user:
        return "vendor.invalid: user_data is required"
    for key, values in user.items():
        if key not in _HASHED_KEYS or values is None:
            continue
        for value in values if isinstance(values, list) else (values,):
            if not sha256_hex(value):
                return f"vendor.invalid: user_data.{key} must be SHA-256 hex"
    return None
