"""Braze `POST /users/track` (Bearer REST key): `{attributes: [...], events: [...], purchases: [...]}`.

The starter kit makes one payload per event, its `object` naming the array it joins (an order's
`items` become one purchase object each, as Braze counts purchases per product). At most 75
objects per request, all arrays together. Braze has no idempotency key: a 201 whose `errors` list
some objects is a partial success (those are dead-lettered, never resent); a 400 refuses the whole
request and is split to find the object it refuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

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
    read_status,
)

ARRAYS: Final = ("attributes", "events", "purchases")


class BrazeSettings(Settings):
    api_key: str
    """A REST API key with `users.track` permission, sent as Bearer (a `${ENV_VAR}` reference)."""


class Braze(Vendor):
    kind = "braze"
    settings_type: ClassVar[type[Settings]] = BrazeSettings
    rate_limit = "3,000 requests every 3 seconds per workspace for /users/track, answered 429"
    max_events = 75
    max_bytes = 4_000_000
    default_endpoint = "https://rest.iad-01.braze.com/users/track"
    split_on_reject = True

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, BrazeSettings)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.api_key}"}
        refused = {p: "vendor.invalid: object must be attributes, events or purchases"
                   for p, item in enumerate(items) if item.payload.get("object") not in ARRAYS}
        positions = [p for p in range(len(items)) if p not in refused]
        requests = []
        # the limit counts objects, and an order may be several: `size` is an event's object count
        for run in chunks(items, positions, self.max_events, self.max_events, _object_count):
            body: dict[str, list[Any]] = {}
            order = []
            for position in run:
                payload = dict(items[position].payload)
                array = payload.pop("object")
                for part in _objects(array, payload):
                    body.setdefault(array, []).append(part)
                    order.append((array, position))
            # positions in the order the arrays are written, so an error's (array, index) finds its event
            ordered = tuple(p for name in ARRAYS for a, p in order if a == name)
            requests.append(Request(self.endpoint, dumps(body), ordered, headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        if not 200 <= status < 300:
            return read_status(request, status, headers, body, split_on_reject=True)
        try:
            errors = orjson.loads(body).get("errors") or []
        except (orjson.JSONDecodeError, AttributeError):
            errors = []
        counts = _counts(request)
        refused: dict[int, str] = {}
        for error in errors:
            if not isinstance(error, dict) or error.get("input_array") not in counts:
                continue
            array, index = error["input_array"], error.get("index")
            if isinstance(index, int) and 0 <= index < counts[array][1]:
                refused[counts[array][0] + index] = f"vendor.invalid: {str(error.get('type', ''))[:150]}"
        # an order's purchases are several objects of one event: one refused refuses the event
        failed = {request.items[i] for i in refused}
        delivered = [p for p in range(len(request.items)) if p not in refused and request.items[p] not in failed]
        return Reply(delivered=delivered, rejected=refused)


def _object_count(item: Item) -> int:
    payload = item.payload
    return len(_objects(str(payload.get("object")), payload))


def _objects(array: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Braze takes one purchase object per product: an order's `items` become one each, sharing the
    order's identifier, currency, time and properties (an item's own fields win)."""
    items = payload.get("items")
    if array != "purchases" or not isinstance(items, list) or not items:
        return [payload]
    shared = {k: v for k, v in payload.items() if k != "items"}
    return [{**shared, **item} if isinstance(item, dict) else shared for item in items]


def _counts(request: Request) -> dict[str, tuple[int, int]]:
    """Each array's first position in the request and its length."""
    body = orjson.loads(request.body)
    out, start = {}, 0
    for name in ARRAYS:
        n = len(body.get(name) or [])
        out[name] = (start, n)
        start += n
    return out
