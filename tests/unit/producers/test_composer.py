"""The SDK's direct path gives the same message and the same bytes as the reference path
(build() + EventCodec.encode()), and hands everything unusual to the reference path."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from typing import Any

import pytest

from producers import messages
from producers.messages import Composer, build
from schemas import EventCodec
from schemas.validation import Limits, ValidationError

CODEC = EventCodec()
NOW = "2026-11-26T10:00:00.123+00:00"
ARGS = ("user_id", "anonymous_id", "event", "name", "category", "group_id", "previous_id", "properties", "traits",
        "context", "integrations", "timestamp", "message_id")


class FixedClock:  # not a subclass of messages.Clock: compiled classes take none (eventrouter/dev/native.py)
    def now(self) -> str:
        return NOW


def _reference(composer: Composer, call: str, **kw: Any) -> tuple[dict[str, Any], bytes, str]:
    fields = {name: kw[arg] for arg, name in zip(ARGS, messages._FIELD_NAMES, strict=True) if kw.get(arg) is not None}
    message = build(call, fields, write_key=composer.write_key, now=NOW, limits=composer.limits)
    return message, CODEC.encode(message), message.get("userId") or message["anonymousId"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(["", "plain", "ünïcödé ✓", "emoji 🎉", 'quote " and \\ and \n', "x" * rng.randrange(300)])
    if kind == 1:
        return rng.randrange(-(2**40), 2**40)
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return rng.choice([0, -1, 2**63 - 1, 0.5])
    if kind in (6, 7):
        return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randrange(5))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def _call(rng: random.Random) -> tuple[str, dict[str, Any]]:
    call = rng.choice(["track", "identify", "page", "screen", "group", "alias"])
    kw: dict[str, Any] = {"message_id": f"m-{rng.randrange(10**9)}"}
    if rng.random() < 0.8 or call == "alias":
        kw["user_id"] = rng.choice(["u-1", "ü-ser", "user@example.com"])
    if rng.random() < 0.4 or "user_id" not in kw:
        kw["anonymous_id"] = f"anon-{rng.randrange(1000)}"
    if call == "track":
        kw["event"] = rng.choice(["Order Completed", "Signed Up", "ünïcödé"])
    if call in ("page", "screen"):
        if rng.random() < 0.7:
            kw["name"] = "Home"
        if rng.random() < 0.5:
            kw["category"] = "Docs"
    if call == "group":
        kw["group_id"] = "g-1"
    if call == "alias":
        kw["previous_id"] = "anon-9"
    for field in ("properties", "traits", "integrations"):
        if rng.random() < 0.6:
            kw[field] = {f"p{i}": _value(rng) for i in range(rng.randrange(8))}
    if rng.random() < 0.5:
        kw["context"] = rng.choice([
            {"ip": "203.0.113.9", "userAgent": "curl/8"},
            {"library": {"name": "mine", "version": "1"}, "page": {"path": "/", "extra": 1}},
            {"consent": {"categoryPreferences": {"ads": False}}, "campaign": {"name": "x"}},
            {"locale": 5, "traits": {"a": [1, 2]}},
            {},
        ])
    if rng.random() < 0.2:
        kw["timestamp"] = rng.choice([dt.datetime(2020, 5, 1, 12, tzinfo=dt.UTC), "2021-01-01T00:00:00Z"])
    return call, kw


@pytest.mark.parametrize("write_key", ["wk_live", None])
def test_direct_path_equals_the_reference_on_random_calls(write_key: str | None) -> None:
    composer = Composer(CODEC, write_key, clock=FixedClock())
    rng = random.Random(7)
    for _ in range(2_000):
        call, kw = _call(rng)
        assert composer.compose(call, **kw) == _reference(composer, call, **kw), (call, kw)


def test_the_usual_call_takes_the_direct_path() -> None:
    composer = Composer(CODEC, "wk", clock=FixedClock())
    message, value, key = composer.compose("track", "u-1", event="Order Completed", properties={
        "revenue": 9.5, "coupon": None, "products": [{"id": "p", "price": 1.0}], "name": "ü"})
    assert key == "u-1" and composer.by_reference == 0
    assert CODEC.decode(value) == message
    composer.compose("track", "u-1", event="E", properties={"when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    assert composer.by_reference == 1  # a datetime needs converting: the reference path


@pytest.mark.parametrize(("properties", "words"), [
    ({"a": {"b": [1, math.nan]}}, "properties.a.b[1]: nan is not a JSON number"),
    ({"a": -math.inf}, "properties.a: -inf is not a JSON number"),
    ({"x": "y" * 20_000}, "limit of 16384"),
    ({f"k{i}": 1 for i in range(1_001)}, "over the limit of 1000"),
    ({"bad": "\udcff"}, "properties.bad: text with a lone surrogate"),
    ({"n": 2**64}, "properties.n: integer outside the 64-bit range"),
    ({"o": object()}, "properties.o: a object cannot be sent as JSON"),
])
def test_what_the_direct_path_cannot_take_is_refused_by_the_reference(properties: dict[str, Any],
                                                                       words: str) -> None:
    composer = Composer(CODEC, "wk", clock=FixedClock())
    with pytest.raises(ValidationError, match=re.escape(words)):
        composer.compose("track", "u", event="E", properties=properties)


def test_depth_is_bounded_on_the_direct_path() -> None:
    composer = Composer(CODEC, "wk", limits=Limits(depth=4), clock=FixedClock())
    composer.compose("track", "u", event="E", properties={"a": {"b": {"c": {}}}})
    with pytest.raises(ValidationError, match="nested deeper than the limit of 4"):
        composer.compose("track", "u", event="E", properties={"a": {"b": {"c": {"d": {}}}}})


def test_conversions_match_analytics_python() -> None:
    composer = Composer(CODEC, "wk", clock=FixedClock())
    message, value, _ = composer.compose("track", 42, event="E", properties={
        "when": dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "day": dt.date(2020, 1, 2), "tags": ("a", "b")})
    assert CODEC.decode(value)["properties"] == {"when": "2020-01-02T03:04:05+00:00", "day": "2020-01-02",
                                                 "tags": ["a", "b"]}
    assert message["userId"] == "42"


def test_an_event_near_the_size_limit_is_measured_exactly() -> None:
    composer = Composer(CODEC, "wk", limits=Limits(event_bytes=1_000), clock=FixedClock())
    composer.compose("track", "u", event="E", properties={"x": "y" * 100})
    with pytest.raises(ValidationError, match="over the limit of 1000"):
        composer.compose("track", "u", event="E" * 900)


@pytest.mark.parametrize(("field", "value"), [("user_id", "u\x00"), ("anonymous_id", "a\n"), ("message_id", "m\x1b"),
                                              ("event", "Signed\x00Up"), ("name", "Home\x85")])
def test_control_characters_in_ids_and_names_are_refused_at_the_call(field: str, value: str) -> None:
    composer = Composer(CODEC, "wk", clock=FixedClock())
    kw: dict[str, Any] = {"user_id": "u", "event": "E", field: value}
    with pytest.raises(ValidationError) as caught:
        composer.compose("track" if field != "name" else "page", **kw)
    assert caught.value.reason == "invalid.control_character"
    assert composer.compose("track", "u-\u00e9\u200d", event="Caf\u00e9 \U0001f600")[0]["userId"] == "u-\u00e9\u200d"
