"""Reddit Conversions API v3 stand-in: `POST /api/v3/pixels/{pixel_id}/conversion_events` with a Bearer
conversion token (401 "No bearer token provided" without one, "UNAUTHORIZED" for another; 403 for a pixel
the token may not post to), `{data: {events: [...]}}` of 1 to 1,000 events (else 400 "Bad Request").

Each event is validated as Reddit's v3 reference and migration guide describe it (ads-api.reddit.com/docs/v3,
as captured in https://github.com/segmentio/action-destinations, destinations/reddit-conversions-api/
V3-API-REFERENCE.md): event_at required, an integer of unix milliseconds, sent within 7 days of it;
action_source required, WEBSITE, APP, PHYSICAL_STORE or OTHER; `type` an object with a tracking_type of
PAGE_VISIT, VIEW_CONTENT, SEARCH, ADD_TO_CART, ADD_TO_WISHLIST, PURCHASE, LEAD, SIGN_UP or CUSTOM, a CUSTOM
one with a custom_event_name of 1 to 64 characters; `metadata` an object: conversion_id a string, currency an
ISO 4217 code, value a number (a double, in the currency's base unit), item_count an integer, products
objects with an id; `user` an object whose match keys (email, phone_number, external_id, uuid, ip_address,
user_agent, idfa, aaid) are strings, raw or SHA-256 hex as Reddit takes both; and a match key: click_id or
one of the user's. One invalid event gets the request a 400 "There were N invalid conversion events. None
were processed." and nothing is kept. Otherwise 200 `{"data": {"message": "Successfully processed N
conversion events."}}`, each event kept under its type and metadata.conversion_id (what Reddit deduplicates
on); with a `test_id` nothing is kept. The messages are Reddit's; the `{"error": {"code", "message"}}`
envelope around them is ours."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

_PATH: Final = re.compile(r"^/api/v3/pixels/(?P<pixel>[^/]+)/conversion_events$")
MAX_EVENTS: Final = 1000  # "1,000 events/request" (Reddit's v3 limits, V3-API-REFERENCE.md above)
MAX_AGE_MS: Final = 7 * 86_400_000  # "Events must be sent within 7 days after they occur" (same page)
MS_FROM: Final = 10**12  # ours: below this (September 2001 in milliseconds) event_at reads as seconds
TRACKING_TYPES: Final = frozenset({"PAGE_VISIT", "VIEW_CONTENT", "SEARCH", "ADD_TO_CART", "ADD_TO_WISHLIST",
                                   "PURCHASE", "LEAD", "SIGN_UP", "CUSTOM"})
ACTION_SOURCES: Final = frozenset({"WEBSITE", "APP", "PHYSICAL_STORE", "OTHER"})
USER_STRINGS: Final = ("email", "phone_number", "external_id", "uuid", "ip_address", "user_agent", "idfa", "aaid")
MATCH_KEYS: Final = ("email", "phone_number", "external_id", "uuid", "ip_address", "idfa", "aaid")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")


def error(status: int, message: str) -> Answer:
    return json_answer(status, {"error": {"code": status, "message": message}})


class RedditStandIn(StandIn):
    name = "reddit"
    credential = "reddit-conversion-token"
    path = "/api/v3"

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"pixel_id": "a2_standin01", "conversion_token": secret}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        return {"event_at": now_s * 1000, "action_source": "WEBSITE", "type": {"tracking_type": "PURCHASE"},
                "user": {"external_id": hashlib.sha256(f"u{index % 7}".encode()).hexdigest()},
                "metadata": {"conversion_id": message_id, "currency": "USD", "value": 10.0, "item_count": 1}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["metadata"]["conversion_id"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        # its event_at 8 days back (the record itself is fresh): Reddit refuses the whole request (400), which
        # is split until this event is alone
        return {**payload, "event_at": payload["event_at"] - 8 * 86_400_000}

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "event_at": now_s * 1000}

    def __init__(self, pixel_id: str | None = None, conversion_token: str | None = None) -> None:
        super().__init__()
        self.pixel_id = pixel_id or "a2_standin01"
        self.conversion_token = conversion_token or self.credential
        self.tested: list[dict[str, Any]] = []  # events sent with a test_id (Event Testing)

    def answer(self, incoming: Incoming) -> Answer:
        match = _PATH.match(incoming.path)
        if match is None:
            return error(404, "Not Found")
        auth = incoming.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return error(401, "No bearer token provided")
        if auth != f"Bearer {self.conversion_token}":
            return error(401, "UNAUTHORIZED")
        if match["pixel"] != self.pixel_id:
            return error(403, f"You're not authorized to post conversions to Pixel ID {match['pixel']}.")
        try:
            body = orjson.loads(incoming.body)
        except orjson.JSONDecodeError:
            return error(400, "Bad Request")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return error(400, "Bad Request")
        events = data.get("events")
        if not isinstance(events, list) or not 0 < len(events) <= MAX_EVENTS:
            return error(400, "Bad Request")
        now_ms = time.time() * 1000
        invalid = sum(1 for event in events if _problem(event, now_ms))
        if invalid:
            return error(400, f"There were {invalid} invalid conversion events. None were processed.")
        if data.get("test_id"):
            self.tested.extend(events)
        else:
            for event in events:
                self.accept(event, _key(event))
        return json_answer(200, {"data": {"message": f"Successfully processed {len(events)} conversion events."}})


def _key(event: dict[str, Any]) -> str | None:
    """What Reddit deduplicates an event on: its conversion_id within its type (and custom name); None without."""
    conversion_id = (event.get("metadata") or {}).get("conversion_id")
    if not conversion_id:
        return None
    kind = event["type"]
    return f"{kind['tracking_type']}/{kind.get('custom_event_name', '')}/{conversion_id}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problem(event: Any, now_ms: float) -> str | None:
    """Why Reddit counts this event invalid (and processes none of its request), or None."""
    if not isinstance(event, dict):
        return "an event must be an object"
    event_at = event.get("event_at")
    if event_at is None:
        return "event_at is required"
    if not isinstance(event_at, int) or isinstance(event_at, bool) or event_at < MS_FROM:
        return "event_at must be unix milliseconds"
    if now_ms - event_at > MAX_AGE_MS:
        return "event_at is more than 7 days old"
    if event.get("action_source") not in ACTION_SOURCES:
        return "action_source must be WEBSITE, APP, PHYSICAL_STORE or OTHER"
    kind = event.get("type")
    if not isinstance(kind, dict) or kind.get("tracking_type") not in TRACKING_TYPES:
        return "type.tracking_type is not a Reddit tracking type"
    name = kind.get("custom_event_name")
    if kind["tracking_type"] == "CUSTOM" and not (isinstance(name, str) and 0 < len(name) <= 64):
        return "type.custom_event_name is required (at most 64 characters)"
    for key in ("click_id", "event_source_url"):
        if event.get(key) is not None and not isinstance(event[key], str):
            return f"{key} must be a string"
    problem = _metadata_problem(event.get("metadata"))
    if problem:
        return problem
    user = {} if event.get("user") is None else event["user"]
    if not isinstance(user, dict):
        return "user must be an object"
    for key in USER_STRINGS:
        if user.get(key) is not None and not isinstance(user[key], str):
            return f"user.{key} must be a string"
    if not (event.get("click_id") or any(user.get(k) for k in MATCH_KEYS)):
        return "a match key is required (click_id, or the user's email, external_id, uuid, ...)"
    return None


def _metadata_problem(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        return "metadata must be an object"
    if metadata.get("conversion_id") is not None and not isinstance(metadata["conversion_id"], str):
        return "metadata.conversion_id must be a string"
    currency = metadata.get("currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.match(currency)):
        return "metadata.currency must be an ISO 4217 code"
    if metadata.get("value") is not None and not _number(metadata["value"]):
        return "metadata.value must be a number"
    count = metadata.get("item_count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
        return "metadata.item_count must be an integer"
    products = metadata.get("products")
    if products is not None and not isinstance(products, list):
        return "metadata.products must be a list"
    for product in products or []:
        if not isinstance(product, dict) or product.get("id") in (None, ""):
            return "metadata.products[].id is required"
    return None
