from __future__ import annotations

import copy
import os
from typing import Any

import pytest

from schemas import (
    AvroCodec,
    DecodeError,
    EventCodec,
    SchemaRegistryClient,
    deadletter_codec,
    load_schema,
    outbound_codec,
    schema_fingerprint,
)
from schemas.envelope import to_record
from tests.unit.schemas.registry_standin import registry_standin

NOW = "2026-11-26T10:00:00.000Z"
CALLS: dict[str, dict[str, Any]] = {
    "track": {"event": "Order Completed", "properties": {"revenue": 9.99, "qty": 2}},
    "identify": {"traits": {"email": "a@example.com", "age": 41}},
    "page": {"name": "Home", "category": "Landing", "properties": {"path": "/"}},
    "screen": {"name": "Cart", "category": "Shop", "properties": {"items": 3}},
    "group": {"groupId": "g-1", "traits": {"name": "ACME"}},
    "alias": {"previousId": "old-id"},
}


def full_message(call_type: str) -> dict[str, Any]:
    """A message of `call_type` carrying every envelope field."""
    return {
        "messageId": f"msg-{call_type}", "type": call_type, "writeKey": "wk_1", "userId": "u-1",
        "anonymousId": "anon-1", "originalTimestamp": NOW, "sentAt": NOW, "receivedAt": NOW, "timestamp": NOW,
        "channel": "server", "version": 2,
        "context": {"ip": "203.0.113.5", "library": {"name": "eventrouter-python", "version": "0.1.0"},
                    "consent": {"categoryPreferences": {"analytics": True}}, "device": {"id": "d"}},
        "integrations": {"All": True, "Mixpanel": False},
        **CALLS[call_type],
    }


@pytest.mark.parametrize("call_type", sorted(CALLS))
def test_every_call_type_round_trips_with_every_field(call_type: str) -> None:
    codec = EventCodec()
    message = full_message(call_type)
    data = codec.encode(message)
    assert data[:2] == b"\xc3\x01" and data[2:10] == codec.avro.fingerprint
    assert codec.decode(data) == message


def test_fingerprint_matches_the_avro_spec_rabin_crc64() -> None:
    schema = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "long"}]}
    # Reference value computed with the CRC-64-AVRO algorithm of the Avro specification.
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in b'{"name":"A","type":"record","fields":[{"name":"x","type":"long"}]}':
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    assert schema_fingerprint(schema) == fp.to_bytes(8, "little")


def _valid() -> bytes:
    return EventCodec().encode(full_message("track"))


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "decode.empty"),
    (None, "decode.empty"),
    (b"{\"json\": true}", "decode.bad_magic"),
    (b"\xc3\x02" + b"\x00" * 20, "decode.bad_magic"),
    (b"\xc3\x01\x01\x02", "decode.truncated"),
    (b"\xc3\x01" + b"\xab" * 8 + b"\x02\x00", "decode.unknown_schema"),
    (b"\x00\x00\x00", "decode.truncated"),
    (b"\x00\x00\x00\x00\x07" + b"\x02", "decode.unknown_schema"),
])
def test_malformed_input_raises_decode_error_with_reason(data: bytes | None, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        EventCodec().decode(data)
    assert info.value.reason == reason


def test_truncated_body_is_reported_as_truncated() -> None:
    data = _valid()
    for cut in (11, 20, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError) as info:
            EventCodec().decode(data[:cut])
        assert info.value.reason in ("decode.truncated", "decode.corrupt")


def test_trailing_bytes_are_corrupt() -> None:
    with pytest.raises(DecodeError) as info:
        EventCodec().decode(_valid() + b"\x00")
    assert info.value.reason == "decode.corrupt"


def test_random_bytes_never_raise_another_kind_of_error() -> None:
    codec = EventCodec()
    prefix = b"\xc3\x01" + codec.avro.fingerprint
    for i in range(3000):
        blob = os.urandom(i % 64)
        if i % 2:
            blob = prefix + blob  # right framing, garbage body: exercises the Avro reader
        try:
            codec.decode(blob)
        except DecodeError as exc:
            assert exc.reason.startswith("decode.")


def _v2_schema() -> dict[str, Any]:
    schema = copy.deepcopy(load_schema("event"))
    schema["fields"].append({"name": "sessionId", "type": ["null", "string"], "default": None})
    return schema


def test_v2_writer_with_new_optional_field_is_read_by_v1_reader() -> None:
    v2 = _v2_schema()
    writer = AvroCodec(v2)
    record = to_record(full_message("track")) | {"sessionId": "s-9"}
    data = writer.encode(record)
    v1_reader = AvroCodec(load_schema("event"), writers=[v2])
    decoded = v1_reader.decode(data)
    assert "sessionId" not in decoded
    assert decoded["messageId"] == "msg-track" and decoded["event"] == "Order Completed"


def test_v1_writer_is_read_by_v2_reader_with_the_default() -> None:
    v1 = load_schema("event")
    data = AvroCodec(v1).encode(to_record(full_message("identify")))
    decoded = AvroCodec(_v2_schema(), writers=[v1]).decode(data)
    assert decoded["sessionId"] is None and decoded["traits"] is not None


def test_incompatible_writer_is_a_schema_mismatch_not_a_crash() -> None:
    v3 = copy.deepcopy(load_schema("event"))
    for field in v3["fields"]:
        if field["name"] == "userId":
            field["type"] = "long"
            field.pop("default")
    record = to_record(full_message("track")) | {"userId": 7}
    data = AvroCodec(v3).encode(record)
    with pytest.raises(DecodeError) as info:
        AvroCodec(load_schema("event"), writers=[v3]).decode(data)
    assert info.value.reason == "decode.schema_mismatch"


def test_confluent_wire_format_with_a_registry() -> None:
    with registry_standin() as (url, state):
        codec = EventCodec(registry=SchemaRegistryClient(url))
        data = codec.encode(full_message("page"))
        assert data[0] == 0 and int.from_bytes(data[1:5], "big") == 1
        # A decoder with its own registry client (no cache) fetches the writer schema by id.
        assert EventCodec(registry=SchemaRegistryClient(url)).decode(data) == full_message("page")
        # A registry-free decoder still reads single-object framing, and names what it lacks.
        assert EventCodec(registry=SchemaRegistryClient(url)).decode(EventCodec().encode(full_message("alias")))
        with pytest.raises(DecodeError) as info:
            EventCodec().decode(data)
        assert info.value.reason == "decode.unknown_schema"
        assert len(state.schemas) == 1


def test_outbound_and_dead_letter_records_round_trip() -> None:
    outbound = {
        "messageId": "m", "integration": "amp", "kind": "amplitude", "pipeline": "web", "type": "track",
        "eventName": "Order Completed", "userId": "u", "anonymousId": None, "timestamp": 1_795_000_000_000,
        "receivedAt": 1_795_000_000_100, "payload": '{"event_type":"Order Completed"}', "configRevision": 3,
        "replayed": False, "sourceTopic": "eventrouter.raw", "sourcePartition": 2, "sourceOffset": 99,
    }
    codec = outbound_codec()
    assert codec.decode(codec.encode(outbound)) == outbound
    dead = {
        "reason": "decode.bad_magic", "message": "unknown framing byte 0x7b", "stage": "decode",
        "integration": None, "pipeline": None, "messageId": None, "attempts": 0, "firstAttemptAt": None,
        "lastAttemptAt": None, "vendorStatus": None, "vendorBody": None, "sourceTopic": "eventrouter.raw",
        "sourcePartition": 0, "sourceOffset": 5, "originalHeaders": [{"key": "seq", "value": b"1"}],
        "originalBytes": b"{bad", "deadLetteredAt": 1_795_000_000_000,
    }
    dl = deadletter_codec()
    assert dl.decode(dl.encode(dead)) == dead
