"""`Outbound` bytes assembled from parts, for the router, which writes one event to several integrations.

Most of an Outbound record is the same for every integration an event goes to (messageId, pipeline,
type, user ids, times, revision, source position); only the integration, its kind, the event name and
the payload differ. `OutboundParts` encodes the shared parts once per event and the integration's name
and kind once per config, then joins bytes. Byte-identical to AvroCodec.encode of the same record
(tests/unit/schemas/test_direct_outbound.py).
"""

from __future__ import annotations

from typing import Final

from schemas.compiled import _LENGTHS, _SMALL, _varint, long_bytes
from schemas.direct import optional
from schemas.envelope import CALL_TYPES

_TYPES: Final = {call: _varint(i) for i, call in enumerate(CALL_TYPES)}


def string(text: str) -> bytes:
    data = text.encode()
    n = len(data)
    return (_LENGTHS[n] if n < _SMALL else _varint(n)) + data


def _json(data: bytes) -> bytes:
    n = len(data)
    return (_LENGTHS[n] if n < _SMALL else _varint(n)) + data


def integration_part(name: str, kind: str) -> bytes:
    """The integration and kind fields, made once per integration."""
    return string(name) + string(kind)


class OutboundParts:
    """The shared parts of one event's Outbound records; `record()` adds one integration's."""

    __slots__ = ("head", "middle", "tail")

    def __init__(self, framing: bytes, *, message_id: str, pipeline: str, call: str, user_id: str | None,
                 anonymous_id: str | None, timestamp_ms: int, received_ms: int, revision: int, replayed: bool,
                 source_topic: str, source_partition: int, source_offset: int) -> None:
        self.head = framing + string(message_id)
        start = _STARTS.get((pipeline, call))
        if start is None:
            start = _STARTS[(pipeline, call)] = string(pipeline) + _TYPES[call]
        self.middle = (start, optional(user_id) + optional(anonymous_id) + long_bytes(timestamp_ms)
                       + long_bytes(received_ms))
        origin = _ORIGINS.get((revision, replayed, source_topic))
        if origin is None:
            if len(_ORIGINS) > 1024:
                _ORIGINS.clear()
            origin = _ORIGINS[(revision, replayed, source_topic)] = \
                _varint(revision) + (b"\x01" if replayed else b"\x00") + string(source_topic)
        self.tail = origin + _varint(source_partition) + long_bytes(source_offset)

    def record(self, integration: bytes, event_name: str | None, payload_json: bytes) -> bytes:
        """`integration` from integration_part(); `payload_json` the payload's JSON text (UTF-8)."""
        return b"".join((self.head, integration, self.middle[0], optional(event_name), self.middle[1],
                         _json(payload_json), self.tail))


# per (pipeline, call) and per (revision, replayed, source topic): the same few byte strings for every event
_STARTS: dict[tuple[str, str], bytes] = {}
_ORIGINS: dict[tuple[int, bool, str], bytes] = {}
