"""MetaRouter's value transforms and paths, one behaviour each."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.playbook.model import Mapping_
from schemas.playbook.paths import get_path, set_path
from schemas.playbook.transforms import compile_transform, format_time


def _t(transform: str, value: Any, **options: Any) -> Any:
    mapping = Mapping_.model_validate({"from": "x", "to": "y", "transform": transform, **options})
    return compile_transform(mapping)(value)


@pytest.mark.parametrize(("transform", "value", "options", "expected"), [
    ("direct", {"a": 1}, {}, {"a": 1}),
    ("lowercase", "MiXeD", {}, "mixed"),
    ("uppercase", "eur", {}, "EUR"),
    ("trim", "  x  ", {}, "x"),
    ("to_string", 12.0, {}, "12"),
    ("to_string", True, {}, "true"),
    ("to_float", "1,234.50", {}, 1234.5),
    ("to_float", "abc", {}, None),
    ("to_bool", "yes", {}, True),
    ("to_bool", 0, {}, False),
    ("to_bool", "maybe", {}, None),
    ("to_int", 2.5, {}, 3),
    ("to_int", "2.7", {"rounding": "truncate"}, 2),
    ("to_int", -2.5, {}, -2),
    ("truncate_float", 3.14159, {"digits": 2}, 3.14),
    ("hash", "  Ada@Example.COM ", {"normalize": "email"},
     "6ea4b9c4ddd3c8c1e4a3d6d5b06bd2c0c1d0c4d9c94e0a4e7ae7c3e9c2a6ff77"),
    ("hash", "+1 (555) 010-9999", {"normalize": "phone"}, None),
    ("join", ["a", 1, None, "b"], {"separator": "|"}, "a|1|b"),
    ("split", "a, b,c", {}, ["a", "b", "c"]),
    ("pluck", [{"id": 1, "x": 2}, {"id": 3}, "junk"], {"pluck": ["id"]}, [{"id": 1}, {"id": 3}]),
    ("pluck", [{"product_id": "p", "price": 2}], {"pluck": {"product_id": "item_id"}}, [{"item_id": "p"}]),
    ("replace", "a-b-c", {"pattern": "-", "replacement": "_"}, "a_b_c"),
    ("replace", "a1b22", {"pattern": r"\d+", "replacement": "#", "regex": True}, "a#b#"),
    ("substring", "abcdef", {"start": 1, "end": 3}, "bc"),
    ("timestamp", "2026-11-26T10:00:00.5Z", {"format": "unix_ms"}, 1795687200500),
    ("timestamp", "2026-11-26T10:00:00Z", {"format": "unix_s"}, 1795687200),
    ("timestamp", 1795687200500, {"format": "iso8601"}, "2026-11-26T10:00:00.500Z"),
    ("timestamp", "2026-11-26T23:30:00-02:00", {"format": "date"}, "2026-11-27"),
    ("timestamp", "2026-11-26T10:00:00Z", {"format": "%Y/%m/%d %H"}, "2026/11/26 10"),
    ("timestamp", "not a time", {}, None),
])
def test_transform(transform: str, value: Any, options: dict[str, Any], expected: Any) -> None:
    if transform == "hash" and expected is not None:
        import hashlib
        expected = hashlib.sha256(b"ada@example.com").hexdigest()
    if transform == "hash" and options.get("normalize") == "phone":
        import hashlib
        expected = hashlib.sha256(b"15550109999").hexdigest()
    assert _t(transform, value, **options) == expected


def test_hash_does_not_hash_a_hash_again() -> None:
    digest = "a" * 64
    assert _t("hash", digest) == digest


def test_paths_read_and_write() -> None:
    event = {"properties": {"products": [{"price": 5}]}}
    assert get_path(event, "properties.products[0].price") == 5
    assert get_path(event, "properties.products[-1].price") == 5
    assert get_path(event, "properties.products[3].price") is None
    assert get_path(event, "properties.products.price") is None
    payload: dict[str, Any] = {}
    owned = {id(payload)}
    set_path(payload, "params.items[1].id", "x", owned)
    assert payload == {"params": {"items": [None, {"id": "x"}]}}


def test_writing_below_a_copied_object_never_changes_the_event() -> None:
    properties = {"a": 1}
    payload: dict[str, Any] = {}
    owned = {id(payload)}
    set_path(payload, "props", properties, owned)
    set_path(payload, "props.b", 2, owned)
    set_path(payload, "props", {"a": 9, "c": 3}, owned)  # an object onto an object merges; keys already set stay
    assert payload == {"props": {"a": 1, "b": 2, "c": 3}}
    assert properties == {"a": 1}


def test_every_transform_maps_a_missing_value_to_none() -> None:
    """The generated playbook code skips a transform on a missing value; this keeps that exact."""
    from schemas.playbook.model import TRANSFORMS, Mapping_
    from schemas.playbook.transforms import compile_transform

    options = {"pluck": {"pluck": ["a"]}, "replace": {"pattern": "x", "replacement": "y"}}
    for name in TRANSFORMS:
        mapping = Mapping_.model_validate({"from": "a", "to": "b", "transform": name, **options.get(name, {})})
        assert compile_transform(mapping)(None) is None, name


def test_nfc_and_nfd_forms_of_an_email_hash_the_same() -> None:
    import unicodedata

    from schemas.playbook.transforms import sha256

    email = "José@Example.com "
    assert sha256(unicodedata.normalize("NFD", email), "email") == sha256(unicodedata.normalize("NFC", email), "email")
    assert sha256("ada@example.com", "email") == sha256(" ADA@example.com", "email")


def test_epoch_formats_of_the_routers_timestamps_match_the_datetime_path() -> None:
    """`unix_ms`/`unix_s` of `2026-11-26T10:00:00.123Z` (what the router writes) skip the datetime: same result,
    exact (the datetime path truncated timestamp() * 1e6, 1 ms short for 2004-08-14T14:18:47.297Z)."""
    import datetime as dt
    import random

    rng = random.Random(5)
    for _ in range(3000):
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=rng.randrange(-10**12, 10**13))
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        ms = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
        assert format_time(text, "unix_ms") == ms == format_time(text.replace("Z", "+00:00"), "unix_ms"), text
        assert format_time(text, "unix_s") == ms // 1000 == format_time(text.replace("Z", "+00:00"), "unix_s"), text
    assert format_time("2026-13-26T10:00:00.123Z", "unix_ms") is None  # no such month: no time, as before
