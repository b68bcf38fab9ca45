"""Mixpanel Import API: `POST /import?strict=1&project_id=...`, a JSON array, service-account Basic
auth (or the project's API secret as the user name).

The starter kit makes one payload per event: `{event, properties: {time, distinct_id, $insert_id}}`;
$insert_id (the messageId, hashed to Mixpanel's 36 characters when longer) deduplicates retries. Up to
2,000 events and 10 MB per request (413: split). In strict mode a 400 is a partial success: the events
in `failed_records` are refused (dead-lettered), every other one was imported."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

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

_INSERT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


class MixpanelSettings(Settings):
    project_id: str
    """The Mixpanel project's id."""
    username: str | None = None
    """A service account's username (its secret in `secret`); unset: `secret` is the project's API secret."""
    secret: str
    """The service account's secret, or the project's API secret (a `${ENV_VAR}` reference)."""


class Mixpanel(Vendor):
    kind = "mixpanel"
    dedup_key = "$insert_id with event, distinct_id and time"
    rate_limit = "2 GB of uncompressed JSON a minute per project, answered 429"
    settings_type: ClassVar[type[Settings]] = MixpanelSettings
    max_events = 2000
    max_bytes = 10_000_000
    default_endpoint = "https://api.mixpanel.com/import"

    def secrets(self) -> list[str]:
        return [*super().secrets(), self._basic()]  # the header as sent: a vendor's answer may echo it

    def _basic(self) -> str:
        settings = self.settings
        assert isinstance(settings, MixpanelSettings)
        credentials = f"{settings.username or settings.secret}:{settings.secret if settings.username else ''}"
        return base64.b64encode(credentials.encode()).decode()

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, MixpanelSettings)
        url = f"{self.endpoint}?{urlencode({'strict': 1, 'project_id': settings.project_id})}"
        headers = {"Content-Type": "application/json", "Authorization": "Basic " + self._basic()}
        events = [_event(item) for item in items]
        requests = [Request(url, dumps([events[p] for p in run]), tuple(run), headers)
                    for run in chunks(items, range(len(items)), self.max_events, self.max_bytes, payload_size)]
        return Built(requests)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if status != 400:
            return read_status(request, status, headers, body)
        try:
            failed = orjson.loads(body).get("failed_records") or []
        except (orjson.JSONDecodeError, AttributeError):
            failed = []
        refused = {r["index"]: f"vendor.invalid: {r.get('field', '')} {r.get('message', '')}".strip()[:200]
                   for r in failed if isinstance(r, dict) and isinstance(r.get("index"), int)
                   and 0 <= r["index"] < len(request.items)}
        if not refused:
            return read_status(request, status, headers, body)
        return Reply(delivered=[p for p in range(len(request.items)) if p not in refused], rejected=refused)


def insert_id(message_id: str) -> str:
    """Mixpanel's $insert_id: the messageId when it fits (36 of [A-Za-z0-9_-]), else a stable hash of it."""
    return message_id if _INSERT_ID.match(message_id) else hashlib.md5(message_id.encode()).hexdigest()


def _event(item: Item) -> dict[str, Any]:
    properties = dict(item.payload.get("properties") or {})
    properties["$insert_id"] = insert_id(str(properties.get("$insert_id") or item.message_id))
    return {**item.payload, "properties": properties}
