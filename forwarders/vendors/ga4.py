"""Google Analytics 4 Measurement Protocol: `POST /mp/collect?measurement_id=..&api_secret=..`.

The starter kit makes one payload per event: `{client_id, user_id, timestamp_micros, name, params,
user_properties}`. A request carries one client's events (`client_id` and `user_id` are per
request), at most 25, each with its own `timestamp_micros`. GA4's production endpoint answers 2xx
even to hits it drops, so what GA4 would drop is refused here, before sending, with a reason:
no client_id, a bad event name, over 25 params, a param value over 100 characters."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar, Final
from urllib.parse import urlencode

from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps

_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_RESERVED_PREFIXES: Final = ("_", "firebase_", "ga_", "google_", "gtag.")
MAX_PARAMS: Final = 25
MAX_VALUE: Final = 100
MAX_USER_PROPERTIES: Final = 25


class GA4Settings(Settings):
    measurement_id: str
    """The GA4 data stream's measurement ID (`G-...`)."""
    api_secret: str
    """The Measurement Protocol API secret (a `${ENV_VAR}` reference)."""


class GA4(Vendor):
    kind = "ga4"
    settings_type: ClassVar[type[Settings]] = GA4Settings
    max_events = 25
    max_age_s = 72 * 3600.0  # GA4 takes events backdated by up to 72 hours
    max_bytes = 130_000
    default_endpoint = "https://www.google-analytics.com/mp/collect"

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, GA4Settings)
        query = {"measurement_id": settings.measurement_id, "api_secret": settings.api_secret}
        url = f"{self.endpoint}?{urlencode(query)}"
        refused: dict[int, str] = {}
        clients: dict[tuple[str, str | None], list[int]] = {}
        for position, item in enumerate(items):
            problem = check(item.payload)
            if problem:
                refused[position] = problem
                continue
            user = item.payload.get("user_id")
            clients.setdefault((str(item.payload["client_id"]), str(user) if user else None), []).append(position)
        requests = []
        for (client, user), positions in clients.items():
            for run in chunks(items, positions, self.max_events, self.max_bytes - 500, _event_size):
                body: dict[str, Any] = {"client_id": client}
                if user:
                    body["user_id"] = user
                properties: dict[str, Any] = {}
                for position in run:
                    properties.update(items[position].payload.get("user_properties") or {})
                if properties:
                    kept = list(properties.items())[:MAX_USER_PROPERTIES]
                    body["user_properties"] = {k: {"value": v} for k, v in kept}
                body["events"] = [_event(items[p].payload) for p in run]
                requests.append(Request(url, dumps(body), tuple(run), {"Content-Type": "application/json"}))
        return Built(requests, refused)


def _event(payload: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {"name": payload["name"], "params": payload.get("params") or {}}
    if payload.get("timestamp_micros") is not None:
        event["timestamp_micros"] = payload["timestamp_micros"]
    return event


def _event_size(item: Item) -> int:
    return len(dumps(_event(item.payload))) + 1


def check(payload: dict[str, Any]) -> str | None:
    """Why GA4 would drop this hit, or None."""
    if not payload.get("client_id"):
        return "vendor.invalid: client_id is required"
    name = payload.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith(_RESERVED_PREFIXES):
        return "vendor.invalid: event name must be a letter then letters, digits or _ (40 at most)"
    params = payload.get("params") or {}
    if not isinstance(params, dict) or len(params) > MAX_PARAMS:
        return f"vendor.invalid: at most {MAX_PARAMS} params"
    for key, value in params.items():
        if isinstance(value, str) and len(value) > MAX_VALUE:
            return f"vendor.invalid: param {key} is over {MAX_VALUE} characters"
    user_properties = payload.get("user_properties")
    if user_properties and not isinstance(user_properties, dict):  # traits sent as a list or a string
        return "vendor.invalid: user_properties must be an object"
    return None
