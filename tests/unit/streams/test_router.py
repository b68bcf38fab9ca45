"""The router's decisions without Kafka: admission reasons, routing shape and keys, isolation of failures."""

from __future__ import annotations

import os
from typing import Any

import pytest

from schemas import EventCodec, Topics, deadletter_codec, outbound_codec
from schemas.config import parse_config
from streams.router import Admitted, Rejected, Router, Source

CONFIG = """
settings: {max_future_s: 3600}
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, hook, broken]}
  - {name: paused, write_keys: [wk_off], integrations: [hook], enabled: false}
integrations:
  - {name: amp, kind: amplitude, playbook: "starter:amplitude", consent: analytics}
  - {name: hook, kind: webhook, connection: {url: "https://x.example/h"}, playbook: "starter:webhook"}
  - name: broken
    kind: webhook
    connection: {url: "https://x.example/h"}
    playbook: {global: {mappings: [{expr: "properties.revenue * 'x'", to: v}]}}
"""
CODEC = EventCodec()
ROUTER = Router(parse_config(CONFIG), 7, Topics("t"))


def _event(**extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "writeKey": "wk1", "messageId": "m1",
            "originalTimestamp": "2026-11-26T10:00:00.000Z", "sentAt": "2026-11-26T10:00:05.000Z",
            "receivedAt": "2026-11-26T10:00:06.000Z", "properties": {"revenue": 5}, **extra}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _source(value: bytes | None, offset: int = 3) -> Source:
    return Source(value, "t.raw", 1, offset, 1_795_000_000_000, [("h", b"v")])


def _admit(**extra: Any) -> Admitted | Rejected:
    return ROUTER.admit(_source(CODEC.encode(_event(**extra))))


@pytest.mark.parametrize(("value", "reason"), [
    (None, "decode.empty"), (b"", "decode.empty"), (b"\x07garbage", "decode.bad_magic"),
    (b"\xc3\x01\x00", "decode.truncated"), (b"\xc3\x01" + b"\x01" * 8 + b"x", "decode.unknown_schema"),
])
def test_bytes_that_are_not_an_event_are_rejected_with_a_decode_reason(value: bytes | None, reason: str) -> None:
    rejected = ROUTER.admit(_source(value))
    assert isinstance(rejected, Rejected) and rejected.reason == reason
    letter = deadletter_codec().decode(rejected.dead_letter.value)
    assert letter["reason"] == reason and letter["stage"] == "decode" and letter["sourceOffset"] == 3
    assert letter["originalBytes"] == (value or b"") and letter["originalHeaders"] == [{"key": "h", "value": b"v"}]
    assert rejected.dead_letter.topic == "t.invalid"


def test_random_bytes_never_raise() -> None:
    for _ in range(500):
        result = ROUTER.admit(_source(os.urandom(os.urandom(1)[0])))
        assert isinstance(result, Rejected) and result.reason.startswith("decode.")


@pytest.mark.parametrize(("extra", "reason"), [
    ({"writeKey": "nope"}, "auth.unknown_write_key"), ({"writeKey": None}, "auth.unknown_write_key"),
    ({"writeKey": "wk_off"}, "auth.pipeline_disabled"), ({"userId": None}, "invalid.identity"),
    ({"event": None}, "invalid.missing_field"), ({"sentAt": "soon"}, "invalid.timestamp"),
    ({"properties": {"s": "x" * 40_000}}, "limit.event_size"),
    ({"properties": {"deep": _nested(40)}}, "limit.depth"),
    ({"properties": {str(i): i for i in range(1001)}}, "limit.keys"),
])
def test_invalid_events_are_rejected_naming_the_reason(extra: dict[str, Any], reason: str) -> None:
    result = _admit(**extra)
    assert isinstance(result, Rejected) and result.reason == reason, result
    assert "nope" not in result.message  # an unknown writeKey is never echoed


def test_admission_corrects_skew_and_keeps_no_write_key() -> None:
    admitted = _admit()
    assert isinstance(admitted, Admitted)
    assert admitted.event["timestamp"] == "2026-11-26T10:00:01.000Z"  # receivedAt - (sentAt - originalTimestamp)
    assert "writeKey" not in admitted.event and admitted.key == b"u1" and admitted.dedup_key == "web\x1fm1"


def test_an_absurd_future_time_becomes_the_received_time() -> None:
    admitted = _admit(timestamp="2030-01-01T00:00:00Z")
    assert isinstance(admitted, Admitted) and admitted.event["timestamp"] == "2026-11-26T10:00:06.000Z"


def test_without_received_at_the_record_time_is_used() -> None:
    event = _event()
    del event["receivedAt"]
    admitted = ROUTER.admit(_source(CODEC.encode(event)))
    assert isinstance(admitted, Admitted) and admitted.received_ms == 1_795_000_000_000


def test_routing_writes_each_receiving_integration_keyed_by_user_with_the_revision() -> None:
    admitted = _admit()
    assert isinstance(admitted, Admitted)
    routed = ROUTER.route(admitted)
    assert [o.topic for o in routed.outputs] == ["t.out.amp", "t.out.hook"]
    record = outbound_codec().decode(routed.outputs[0].value)
    assert record["configRevision"] == 7 and record["kind"] == "amplitude" and record["pipeline"] == "web"
    assert record["sourceTopic"] == "t.raw" and record["sourcePartition"] == 1 and record["sourceOffset"] == 3
    assert all(o.key == b"u1" for o in routed.outputs)
    # the failing playbook dead-letters for its own integration only
    assert [(name, reason) for name, reason, _ in routed.failed] == [("broken", "playbook.expression")]
    letter = deadletter_codec().decode(routed.failed[0][2].value)
    assert letter["integration"] == "broken" and letter["stage"] == "playbook" and letter["messageId"] == "m1"


def test_consent_filters_by_its_rule() -> None:
    admitted = _admit(context={"consent": {"categoryPreferences": {"analytics": False}}})
    assert isinstance(admitted, Admitted)
    routed = ROUTER.route(admitted)
    assert ("amp", "consent.analytics") in routed.filtered
    assert [o.integration for o in routed.outputs] == ["hook"]


@pytest.mark.parametrize("extra", [{"userId": "u\x00"}, {"messageId": "m\r\n"}, {"event": "Order\x7fCompleted"}])
def test_a_record_with_a_control_character_in_an_id_is_dead_lettered(extra: dict[str, Any]) -> None:
    rejected = _admit(**extra)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "invalid.control_character"
