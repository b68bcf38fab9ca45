from __future__ import annotations

from typing import Any

import pytest

from schemas import EncodeError, EventCodec, from_record, to_record

FREE_FORM: dict[str, Any] = {
    "int": 1, "float": 1.0, "neg": -3, "big": 2**62, "pi": 3.141592653589793, "true": True, "false": False,
    "none": None, "empty_obj": {}, "empty_list": [],
    "nested": {"a": [1, 2.5, "x", None, {"b": [True, {"c": "deep"}]}]},
    "unicode": "caf\u00e9 \u65e5\u672c \U0001F469\u200d\U0001F4BB e\u0301 \u202eRTL \x00nul",
}


def _message(**extra: Any) -> dict[str, Any]:
    return {"messageId": "m-1", "type": "track", "userId": "u1", "event": "Order Completed", **extra}


@pytest.mark.parametrize("field", ["properties", "traits", "integrations"])
def test_free_form_objects_round_trip_losslessly(field: str) -> None:
    message = _message(**{field: FREE_FORM})
    decoded = EventCodec().decode(EventCodec().encode(message))
    assert decoded == message
    assert type(decoded[field]["int"]) is int and type(decoded[field]["float"]) is float


def test_context_well_known_parts_and_remainder_round_trip() -> None:
    context = {
        "ip": "203.0.113.1", "userAgent": "curl/8", "locale": "de-DE",
        "library": {"name": "x", "version": "1.2"},
        "page": {"url": "https://a.example/p", "title": "T", "custom": [1, 2]},
        "consent": {"categoryPreferences": {"analytics": True, "ads": False}},
        "campaign": {"source": "mail"}, "device": {"id": "d1"}, "traits": FREE_FORM,
        "extra": "a user key that collides with our remainder field name",
    }
    message = _message(context=context)
    assert EventCodec().decode(EventCodec().encode(message)) == message


@pytest.mark.parametrize("context", [
    {"ip": None},                                       # explicit null is kept, not dropped
    {"ip": 12345},                                      # a typed key holding another type
    {"page": "home"},                                   # a typed record key holding a string
    {"consent": {"categoryPreferences": {"ads": "no"}}},  # map of booleans with a non-boolean
    {"library": {}},                                    # empty record stays an empty object
])
def test_context_values_outside_the_typed_shape_survive(context: dict[str, Any]) -> None:
    message = _message(context=context)
    assert EventCodec().decode(EventCodec().encode(message)) == message


def test_unknown_top_level_keys_and_odd_types_are_kept() -> None:
    message = _message(projectId="p", _metadata={"bundled": ["x"]}, userId=42, version=2, anonymousId=None)
    assert EventCodec().decode(EventCodec().encode(message)) == message
    assert from_record(to_record(message)) == message


@pytest.mark.parametrize("version", [1, "1.1", 2**63 + 1])
def test_version_of_any_json_kind_round_trips(version: Any) -> None:
    message = _message(version=version)
    assert EventCodec().decode(EventCodec().encode(message)) == message


@pytest.mark.parametrize(("message", "reason"), [
    ({"type": "track"}, "encode.missing_field"),
    ({"messageId": "", "type": "track"}, "encode.missing_field"),
    ({"messageId": "m", "type": "purchase"}, "encode.bad_type"),
    ({"messageId": "m", "type": "track", "properties": {"x": object()}}, "encode.unencodable"),
])
def test_unencodable_messages_raise_encode_error_with_reason(message: dict[str, Any], reason: str) -> None:
    with pytest.raises(EncodeError) as info:
        EventCodec().encode(message)
    assert info.value.reason == reason


@pytest.mark.parametrize("message", [
    _message(properties=FREE_FORM, traits={"a": 1}, integrations={"All": False}),
    _message(context={"ip": "203.0.113.1", "page": {"url": "u", "custom": [1]}, "library": {},
                      "consent": {"categoryPreferences": {"ads": "no"}}, "traits": FREE_FORM, "extra": "x"},
             projectId="p", _metadata={"bundled": ["x"]}, version=2, anonymousId=None),
    _message(context={"page": "home", "ip": None, "campaign": {"source": "mail"}}),
])
def test_the_lean_decoding_makes_what_from_record_makes_in_the_same_key_order(message: dict[str, Any]) -> None:
    import orjson

    from schemas import load_schema
    from schemas.compiled_reader import compile_reader

    codec = EventCodec()
    data = codec.encode(message)
    record, _ = compile_reader(load_schema("event"))(data, 10)  # nulls kept: the general path
    assert orjson.dumps(codec.decode(data)) == orjson.dumps(from_record(record))
    assert codec.decode(data) == message
