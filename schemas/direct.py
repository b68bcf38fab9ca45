"""`Event` bytes straight from the parts of a call, for producers that build each event themselves.

The general path (EventCodec.encode) maps a message dict to an Avro record dict (envelope.to_record),
then writes the record: about 10 us per event. A producer that made the event itself already knows
each field's type, so it can skip both dicts: every top-level field of `Event` before `context` is a
nullable string, `context` a nullable record, and the free-form objects JSON text it has already
serialized. The output is byte-identical to EventCodec.encode of the same message
(tests/unit/schemas/test_direct.py checks it on random messages of every call type).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from schemas.compiled import _LENGTHS, _SMALL, _varint, compile_writers
from schemas.envelope import _CONTEXT_SHAPE, _RECORD_NAMES, CALL_TYPES, _split, dumps

_TYPES: Final = {call: _varint(i) for i, call in enumerate(CALL_TYPES)}
_NULL: Final = b"\x00"
_SOME: Final = b"\x02"  # branch 1 of ["null", X]


def optional(text: str | None) -> bytes:
    """A ["null", "string"] value. Raises UnicodeEncodeError on a lone surrogate."""
    if text is None:
        return _NULL
    data = text.encode()
    n = len(data)
    return _SOME + (_LENGTHS[n] if n < _SMALL else _varint(n)) + data


def optional_json(data: bytes | None) -> bytes:
    """A ["null", "string"] value holding JSON text already serialized (UTF-8, as orjson writes it)."""
    if data is None:
        return _NULL
    n = len(data)
    return _SOME + (_LENGTHS[n] if n < _SMALL else _varint(n)) + data


class DirectEncoder:
    """Writes framed `Event` bytes from a call's parts. `prefix` is the codec's framing
    (EventCodec().avro.prefix); `schema` the `Event` schema it frames."""

    def __init__(self, schema: Mapping[str, Any], prefix: bytes) -> None:
        self._prefix = prefix
        self._context = compile_writers(schema)[_RECORD_NAMES["context"]]

    def context(self, context: Mapping[str, Any] | None) -> bytes:
        """The encoded `context` field of a message whose context is `context` (JSON values)."""
        if context is None:
            return _NULL
        typed, rest = _split(context, _CONTEXT_SHAPE)
        if rest:
            typed["extra"] = dumps(rest)
        out = bytearray(_SOME)
        self._context(typed, out)
        return bytes(out)

    def encode(self, call: str, message_id: str, head: bytes, *, user_id: str | None, anonymous_id: str | None,
               original: str, sent_at: str, timestamp: str | None, event: str | None, name: str | None,
               category: str | None, group_id: str | None, previous_id: str | None, context: bytes,
               integrations: bytes | None, properties: bytes | None, traits: bytes | None) -> bytes:
        """`head` is optional(writeKey), fixed per client. Fields the SDK never sets (receivedAt, channel,
        version, extra) are null."""
        o, null = optional, _NULL  # most fields are absent: test before calling
        mid = message_id.encode()
        sent = o(sent_at)
        return b"".join((
            self._prefix, _LENGTHS[len(mid)] if len(mid) < _SMALL else _varint(len(mid)), mid, _TYPES[call], head,
            null if user_id is None else o(user_id), null if anonymous_id is None else o(anonymous_id),
            sent if original is sent_at else o(original), sent, null, null if timestamp is None else o(timestamp),
            null if event is None else o(event), null if name is None else o(name),
            null if category is None else o(category), null if group_id is None else o(group_id),
            null if previous_id is None else o(previous_id), null, null, context,
            null if integrations is None else optional_json(integrations),
            null if properties is None else optional_json(properties),
            null if traits is None else optional_json(traits), null,
        ))
