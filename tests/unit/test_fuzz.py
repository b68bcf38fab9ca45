"""Property-based fuzzing (hypothesis): generated hostile events at the SDK, the gateway's request
parsing and the worker's decoder and admission. Nothing crashes; every refusal carries a reason."""

from __future__ import annotations

import gzip
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producers import Analytics
from producers.tracking_api import RequestError, parse_request, read_body
from schemas import DECODE_REASONS, EventCodec, Topics
from schemas.config import parse_config
from schemas.validation import DEFAULT_LIMITS, ValidationError
from streams.router import Admitted, Rejected, Router, Source

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# every code point, surrogates and NUL included; RTL overrides, ZWJ and combining marks come with them
TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None), max_size=40)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                     st.dictionaries(TEXT, inner, max_size=5)), max_leaves=30)
REASON_FAMILIES = ("decode.", "auth.", "invalid.", "limit.")


@FUZZ
@given(call=st.fixed_dictionaries({"user": JSON, "event": JSON, "properties": JSON, "context": JSON,
                                   "timestamp": JSON, "message_id": JSON}))
def test_the_sdk_accepts_or_refuses_with_a_reason_and_never_crashes(call: dict[str, Any]) -> None:
    analytics = Analytics("wk", "127.0.0.1:9", send=False)
    try:
        ok, message = analytics.track(call["user"], call["event"], call["properties"], context=call["context"],
                                      timestamp=call["timestamp"], message_id=call["message_id"])
    except ValidationError as exc:
        assert exc.reason.startswith(REASON_FAMILIES) and str(exc)
    except TypeError as exc:  # what analytics-python raises for a wrong argument type; says which
        assert str(exc)
    else:
        assert ok and message["type"] == "track" and message["messageId"]


@FUZZ
@given(body=JSON, auth=st.one_of(st.none(), TEXT))
def test_the_gateway_parses_any_json_into_accepted_events_or_reasoned_refusals(body: Any, auth: Any) -> None:
    try:
        parsed = parse_request("batch", body, auth, is_known=lambda key: key == "wk",
                               received_at="2026-11-26T00:00:00Z", new_id=lambda: "generated", limits=DEFAULT_LIMITS)
    except RequestError as exc:
        assert exc.status in (400, 401) and exc.code and exc.message
        return
    for rejection in parsed.rejected:
        assert rejection.reason and rejection.message
    for event in parsed.accepted:
        assert event["messageId"] and event["type"]


@FUZZ
@given(batch=st.lists(st.dictionaries(st.sampled_from(["type", "event", "userId", "anonymousId", "properties",
                                                        "traits", "timestamp", "context", "messageId", "groupId"]),
                                      JSON, max_size=8), max_size=6))
def test_a_batch_of_hostile_events_is_split_into_accepted_and_rejected_each_with_its_reason(
        batch: list[dict[str, Any]]) -> None:
    parsed = parse_request("batch", {"batch": batch}, "wk", is_known=lambda key: key == "wk",
                           received_at="2026-11-26T00:00:00Z", new_id=lambda: "generated", limits=DEFAULT_LIMITS)
    assert len(parsed.accepted) + len(parsed.rejected) == len(batch)
    assert all(r.reason.startswith(REASON_FAMILIES) and r.message for r in parsed.rejected)


@FUZZ
@given(raw=st.binary(max_size=300), encoding=st.sampled_from([None, "gzip", "identity", "br", "GZIP "]))
def test_any_request_body_bytes_are_parsed_or_refused_with_a_code(raw: bytes, encoding: str | None) -> None:
    for data in (raw, gzip.compress(raw)):
        try:
            read_body(data, encoding, 500_000)
        except RequestError as exc:
            assert exc.status == 400 and exc.code


ROUTER = Router(parse_config("""
pipelines: [{name: web, write_keys: [wk], integrations: [amp, meta, ga4]}]
integrations:
  - {name: amp, kind: amplitude, playbook: "starter:amplitude"}
  - {name: meta, kind: meta_capi, playbook: "starter:meta_capi"}
  - {name: ga4, kind: ga4, playbook: "starter:ga4"}
"""), 1, Topics("fuzz"))
CODEC = EventCodec()
VALID = CODEC.encode({"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m", "writeKey": "wk",
                      "properties": {"revenue": 1.5}, "context": {"traits": {"email": "a@example.com"}}})


def _admit_and_route(value: bytes | None) -> None:
    outcome = ROUTER.admit(Source(value, "fuzz.raw", 0, 0, 1_795_000_000_000))
    if isinstance(outcome, Rejected):
        assert outcome.reason.startswith(REASON_FAMILIES) and outcome.message
        assert outcome.dead_letter.value  # dead-lettered with the original bytes
        return
    assert isinstance(outcome, Admitted)
    routed = ROUTER.route(outcome)
    for _name, reason, _dead in routed.failed:
        assert reason.startswith("playbook.")


@FUZZ
@given(raw=st.binary(max_size=400))
def test_random_bytes_are_dead_lettered_with_a_decode_reason(raw: bytes) -> None:
    outcome = ROUTER.admit(Source(raw, "fuzz.raw", 0, 0, 1_795_000_000_000))
    assert isinstance(outcome, Rejected) and outcome.reason in DECODE_REASONS, outcome


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(VALID)), flips=st.lists(
    st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255)),
    max_size=4))
def test_truncated_or_corrupted_records_never_crash_the_worker(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID[:cut] if cut < len(VALID) else VALID)
    for position, mask in flips:
        if position < len(data):
            data[position] ^= mask
    _admit_and_route(bytes(data))


@FUZZ
@given(properties=st.dictionaries(TEXT, JSON, max_size=6), traits=st.dictionaries(TEXT, JSON, max_size=4),
       event=TEXT, user=TEXT, timestamp=st.one_of(TEXT, st.just("2026-11-26T10:00:00Z")))
def test_valid_records_with_hostile_values_are_routed_or_dead_lettered(properties: dict[str, Any],
                                                                       traits: dict[str, Any], event: str,
                                                                       user: str, timestamp: str) -> None:
    message = {"type": "track", "event": event, "userId": user, "messageId": "m", "writeKey": "wk",
               "timestamp": timestamp, "properties": properties, "context": {"traits": traits}}
    try:
        value = CODEC.encode(message)
    except (ValidationError, ValueError, TypeError):
        return  # what the codec refuses never reaches Kafka (the SDK and gateway refuse it first)
    _admit_and_route(value)
