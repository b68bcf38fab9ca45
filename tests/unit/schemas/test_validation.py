"""Every bad input gets a ValidationError that names the field and, for limits, the limit."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import pytest

from schemas.validation import REASONS, Limits, ValidationError, check_message, clean


def _nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def track(**overrides: Any) -> dict[str, Any]:
    message = {"type": "track", "messageId": "m-1", "userId": "u-1", "event": "Order Completed",
               "properties": {"revenue": 1.5}}
    message.update(overrides)
    return {k: v for k, v in message.items() if v is not None}


@pytest.mark.parametrize(("message", "reason", "field"), [
    (track(type="purchase"), "invalid.type", "type"),
    (track(type=None), "invalid.type", "type"),
    (track(userId=None), "invalid.identity", "userId"),
    (track(userId=""), "invalid.identity", "userId"),
    (track(event=None), "invalid.missing_field", "event"),
    (track(event=5), "invalid.field_type", "event"),
    (track(userId=["u"]), "invalid.field_type", "userId"),
    (track(properties=[1, 2]), "invalid.field_type", "properties"),
    (track(timestamp="yesterday"), "invalid.timestamp", "timestamp"),
    (track(sentAt=1700000000), "invalid.timestamp", "sentAt"),
    ({"type": "group", "messageId": "m", "userId": "u"}, "invalid.missing_field", "groupId"),
    ({"type": "alias", "messageId": "m", "userId": "u"}, "invalid.missing_field", "previousId"),
    ({"type": "alias", "messageId": "m", "anonymousId": "a", "previousId": "p"}, "invalid.missing_field", "userId"),
])
def test_bad_messages_name_the_field(message: dict[str, Any], reason: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_message(message)
    assert (caught.value.reason, caught.value.field) == (reason, field)
    assert reason in REASONS


def test_every_call_type_with_its_fields_is_accepted() -> None:
    base = {"messageId": "m", "userId": "u", "originalTimestamp": "2026-11-26T10:00:00.000Z"}
    for message in ({"type": "track", "event": "E"}, {"type": "identify", "traits": {"email": "a@b.c"}},
                    {"type": "page", "name": "Home"}, {"type": "screen", "name": "Main"},
                    {"type": "group", "groupId": "g"}, {"type": "alias", "previousId": "p"}):
        assert check_message({**base, **message}) > 0


@pytest.mark.parametrize(("value", "reason", "field", "limit"), [
    ("x" * 20_000, "limit.string", "properties.s", 16 * 1024),
    (_nested(200), "limit.depth", "properties.s" + ".a" * 31, 32),
    ({f"k{i}": i for i in range(10_000)}, "limit.keys", "properties.s", 1000),
    (float("nan"), "invalid.unencodable", "properties.s", None),
    (float("inf"), "invalid.unencodable", "properties.s", None),
    ("bad \ud800 text", "invalid.unencodable", "properties.s", None),
    (2**70, "invalid.unencodable", "properties.s", None),
    (object(), "invalid.unencodable", "properties.s", None),
    (b"\xff\xfe", "invalid.unencodable", "properties.s", None),
    ([1, [2, {"deep": float("nan")}]], "invalid.unencodable", "properties.s[1][1].deep", None),
])
def test_structure_limits_and_unencodable_values_are_named(value: Any, reason: str, field: str,
                                                           limit: int | None) -> None:
    with pytest.raises(ValidationError) as caught:
        clean({"s": value}, "properties")
    assert (caught.value.reason, caught.value.field, caught.value.limit) == (reason, field, limit)


def test_a_1mb_string_is_refused_at_once_with_the_limit_named() -> None:
    with pytest.raises(ValidationError, match="over the limit of 16384"):
        clean({"blob": "x" * 1_000_000}, "properties")


def test_event_over_32kb_is_refused_with_its_size() -> None:
    message = track(properties={f"k{i}": "v" * 100 for i in range(400)})
    with pytest.raises(ValidationError) as caught:
        check_message(message)
    assert caught.value.reason == "limit.event_size"
    assert caught.value.limit == 32 * 1024


def test_python_values_are_converted_like_analytics_python() -> None:
    class Plan(enum.Enum):
        PRO = "pro"

    cleaned = clean({"when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "day": dt.date(2026, 1, 2),
                     "price": decimal.Decimal("9.99"), "id": uuid.UUID(int=7), "plan": Plan.PRO,
                     "tags": ("a", "b"), 1: "int key", "ok": [True, None, 1, 2.5]}, "properties")
    assert cleaned == {"when": "2026-01-02T03:04:05+00:00", "day": "2026-01-02", "price": 9.99,
                       "id": "00000000-0000-0000-0000-000000000007", "plan": "pro", "tags": ["a", "b"],
                       "1": "int key", "ok": [True, None, 1, 2.5]}


def test_valid_unicode_passes_unchanged() -> None:
    text = "emoji \U0001F600 zwj \U0001F468\u200d\U0001F469 combining e\u0301 rtl \u202e nul \x00"
    assert clean({"t": text}, "properties") == {"t": text}


def test_limits_are_configurable() -> None:
    with pytest.raises(ValidationError, match="limit of 3"):
        clean({"a": {"b": {"c": {}}}}, "properties", Limits(depth=3))
    with pytest.raises(ValueError, match="positive"):
        Limits(keys=0)
