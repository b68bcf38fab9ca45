"""Amplitude HTTP V2: `POST /2/httpapi`, `{api_key, events: [...], options}`.

The starter kit makes one payload per event: event_type, user_id or device_id, time (ms), insert_id
(= messageId: Amplitude deduplicates for 7 days). Up to 2,000 events and 1 MB per request (else 413:
split). A 400 lists the events it refused (`events_with_invalid_fields`, `events_with_missing_fields`,
`silenced_events`) and ingests none: those are dead-lettered and the rest sent again at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

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
    read_status,
)

_LISTS = ("events_with_invalid_fields", "events_with_missing_fields")


class AmplitudeSettings(Settings):
    api_key: str
    """The project's API key (a `${ENV_VAR}` reference)."""
    min_id_length: int | None = None
    """Sent as `options.min_id_length`: accept user and device ids shorter than Amplitude's 5 characters."""


class Amplitude(Vendor):
    kind = "amplitude"
    dedup_key = "insert_id (7 days)"
    rate_limit = "30 events per second per user or device (averaged over 30 s), answered 429"
    settings_type: ClassVar[type[Settings]] = AmplitudeSettings
    max_events = 2000
    max_bytes = 1_000_000
    default_endpoint = "https://api2.amplitude.com/2/httpapi"

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, AmplitudeSettings)
        events = [_event(item) for item in items]
        requests = []
        for run in chunks(items, range(len(items)), self.max_events, self.max_bytes - 200, payload_size):
            body: dict[str, Any] = {"api_key": settings.api_key, "events": [events[p] for p in run]}
            if settings.min_id_length is not None:
                body["options"] = {"min_id_length": settings.min_id_length}
            requests.append(Request(self.endpoint, dumps(body), tuple(run), {"Content-Type": "application/json"}))
        return Built(requests)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status != 400:
            return read_status(request, status, headers, body)
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = {}
        refused: dict[int, str] = {}
        for kind in _LISTS:
            for field, indexes in (answer.get(kind) or {}).items():
                for index in indexes if isinstance(indexes, list) else []:
                    if isinstance(index, int) and 0 <= index < len(request.items):
                        refused.setdefault(index, f"vendor.invalid: {kind.removeprefix('events_with_')} {field}")
        for index in answer.get("silenced_events") or []:
            if isinstance(index, int) and 0 <= index < len(request.items):
                refused.setdefault(index, "vendor.silenced")
        if not refused:  # a 400 about the request itself (a bad key, bad JSON): final for all of it
            return read_status(request, status, headers, body)
        return Reply(retry=[p for p in range(len(request.items)) if p not in refused], rejected=refused,
                     resend=True)


def _event(item: Item) -> dict[str, Any]:
    event = item.payload
    if "insert_id" not in event:
        event = {**event, "insert_id": item.message_id}
    return event
