"""Build Segment messages from SDK call arguments, as analytics-python does, then validate them.

Pure: no Kafka, no clock of its own (the caller passes `now`). Differences from analytics-python, on
purpose: values that cannot be encoded raise ValidationError naming the field instead of being
dropped with a log line, and limits (size, depth, keys, string length) are checked at the call.

Timestamps: `originalTimestamp` is when the call was made (or the caller's `timestamp`); `sentAt` is
when the SDK handed the event to Kafka; an explicit `timestamp` argument is also sent as `timestamp`,
which the router takes as authoritative (Segment's rule), so historical events keep their time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol

import orjson

from schemas import EventCodec
from schemas.direct import DirectEncoder, optional
from schemas.validation import (
    DEFAULT_LIMITS,
    REQUIRED,
    Limits,
    ValidationError,
    check_call,
    clean,
    parse_timestamp,
    size_of,
)

LIBRARY = {"name": "eventrouter-python", "version": "0.1.0"}


def iso(moment: dt.datetime) -> str:
    """ISO-8601 with milliseconds and an offset; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="milliseconds")


def stringify_id(value: Any, field: str) -> str | None:
    """Ids may be given as numbers or UUIDs (analytics-python sends them as text)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | uuid.UUID) and not isinstance(value, bool):
        return str(value)
    raise ValidationError("invalid.field_type", field, f"must be a string or a number, got {type(value).__name__}")


def message_id() -> str:
    """A random (version 4) UUID as text, from the OS's randomness as uuid4 is, but made 256 at a time
    from one 4 KB read into a pool of this thread's; a forked child starts a pool of its own."""
    pool = _pool.__dict__
    ids: list[str] | None = pool.get("ids")
    if not ids:
        ids = pool["ids"] = _uuid4_batch()
    return ids.pop()


def _uuid4_batch() -> list[str]:
    raw = bytearray(os.urandom(4096))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_RFC_4122)
    h = raw.hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 8192, 32)]


_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))  # high nibble of byte 6: the version
_RFC_4122 = bytes((b & 0x3F) | 0x80 for b in range(256))   # top bits of byte 8: the variant, 10xx
_pool = threading.local()
os.register_at_fork(after_in_child=lambda: _pool.__dict__.clear())  # noqa: PLW0108 - the forking thread's dict


def _object(value: Any, field: str, limits: Limits) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, Mapping):
        raise ValidationError("invalid.field_type", field, f"must be a dict, got {type(value).__name__}")
    cleaned: dict[str, Any] = clean(value, field, limits)
    return cleaned


def _timestamp(value: Any) -> str:
    moment: dt.datetime | None = None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            moment = parse_timestamp(value)
    if moment is None:
        raise ValidationError("invalid.timestamp", "timestamp", "must be a datetime or an ISO-8601 string")
    if moment.tzinfo is not None and moment.utcoffset():
        try:  # year 1 at +14:00 (or 9999 at -14:00) is no time in UTC: the worker could not place it
            moment.astimezone(dt.UTC)
        except OverflowError:
            raise ValidationError("invalid.timestamp", "timestamp", "is out of range: a time in UTC must fall in "
                                  "the years 1 to 9999") from None
    return iso(moment)


class TimeSource(Protocol):
    def now(self) -> str: ...


class Clock:
    """ISO-8601 UTC text of the current millisecond. Formatting a datetime costs ~3 us; at thousands of
    calls per second most calls fall in a millisecond already formatted."""

    def __init__(self) -> None:
        self._cached = (-1, "")  # one attribute, replaced whole: threads never see a torn pair

    def now(self) -> str:
        ms = time.time_ns() // 1_000_000
        cached = self._cached
        if cached[0] != ms:
            cached = (ms, iso(dt.datetime.fromtimestamp(ms / 1000, dt.UTC)))
            self._cached = cached
        return cached[1]


def build(call: str, fields: Mapping[str, Any], *, write_key: str | None, now: dt.datetime | str,
          limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """A validated Segment message for one SDK call. `fields` uses Segment's camelCase names; `now` is
    a datetime or ISO-8601 text (Clock.now())."""
    sent_at = now if isinstance(now, str) else iso(now)
    explicit = fields.get("timestamp")
    message: dict[str, Any] = {
        "type": call,
        "messageId": stringify_id(fields.get("messageId"), "messageId") or message_id(),
        "originalTimestamp": sent_at if explicit is None else _timestamp(explicit),
        "sentAt": sent_at,
    }
    if explicit is not None:
        message["timestamp"] = message["originalTimestamp"]
    if write_key:
        message["writeKey"] = write_key
    for field in ("userId", "anonymousId", "groupId", "previousId"):
        value = stringify_id(fields.get(field), field)
        if value is not None:
            message[field] = value
    for field in ("event", "name", "category"):
        text = fields.get(field)
        if text is not None:
            message[field] = clean(text, field, limits)
    for field in ("properties", "traits", "integrations"):
        mapping = _object(fields.get(field), field, limits)
        if mapping is not None:
            message[field] = mapping
    context = _object(fields.get("context"), "context", limits)
    message["context"] = {"library": LIBRARY} if not context else \
        context if "library" in context else {**context, "library": LIBRARY}
    check_call(message, limits)  # the rest (types, timestamps) holds by construction
    size_of(message, limits)
    return message


_FIELD_NAMES: Final = ("userId", "anonymousId", "event", "name", "category", "groupId", "previousId", "properties",
                       "traits", "context", "integrations", "timestamp", "messageId")
# orjson serializes datetimes and dataclasses its own way; analytics-python's conversions (clean()) rule.
_JSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class _Unusual(Exception):
    """The call needs the general path (conversions, long values, or a problem to name)."""


class Composer:
    """Turns an SDK call into (message, framed Avro bytes, partition key), validated.

    The usual call (string ids, JSON-native properties under ~2 KB, no NaN) takes a direct path:
    the objects are serialized once by orjson, the limits are checked by cheap bounds on that text,
    and the Avro bytes are written straight from the parts (schemas/direct.py), ~3x cheaper than
    build() + EventCodec.encode(). Anything else, including every call that will be refused, goes
    through build() and EventCodec.encode(), the reference, which convert values and name the problem.
    Tests check that both paths give the same message and bytes.
    """

    def __init__(self, codec: EventCodec, write_key: str | None, limits: Limits = DEFAULT_LIMITS,
                 clock: TimeSource | None = None) -> None:
        self.codec = codec
        self.limits = limits
        self.clock = clock or Clock()
        self.write_key = write_key
        self.rejected = 0
        self.by_reference = 0  # calls the direct path left to the reference (tests: the usual call never does)
        self._lock = threading.Lock()
        self._direct = DirectEncoder(codec.avro.schema, codec.avro.framing())
        self._head = optional(write_key) if write_key else b"\x00"
        self._default_context = self._direct.context({"library": LIBRARY})
        # Bounds on the JSON text of an object under which no limit but depth can be broken: a string over
        # string_chars, or an object or array of more than `keys` entries, needs at least this many bytes.
        self._plain_below = min(limits.string_chars + 2, 2 * limits.keys + 1)

    def compose(self, call: str, user_id: Any = None, anonymous_id: Any = None, event: Any = None,
                name: Any = None, category: Any = None, group_id: Any = None, previous_id: Any = None,
                properties: Any = None, traits: Any = None, context: Any = None, integrations: Any = None,
                timestamp: Any = None, message_id: Any = None) -> tuple[dict[str, Any], bytes, str]:
        """Raises ValidationError naming the field (and the limit) of a call that cannot be sent."""
        try:  # the direct path; anything it does not take is composed again by the reference path
            longest_id = self.limits.id_chars
            for value in (user_id, anonymous_id, group_id, previous_id, message_id):
                if value is not None and (type(value) is not str or not value or len(value) > longest_id
                                          or not value.isprintable()):  # the reference path names a control char
                    raise _Unusual
            longest = self.limits.string_chars
            for value in (event, name, category):
                if value is not None and (type(value) is not str or len(value) > longest or not value.isprintable()):
                    raise _Unusual
            key = user_id or anonymous_id
            if not key or (call == "track" and not event) or (call == "group" and not group_id) \
                    or (call == "alias" and not (previous_id and user_id)) or call not in REQUIRED:
                raise _Unusual
            now = self.clock.now()
            original = now if timestamp is None else _timestamp(timestamp)
            mid = message_id or _message_id()
            if context:
                if type(context) is not dict:
                    raise _Unusual
                self._json(context)
                if "library" not in context:
                    context = {**context, "library": LIBRARY}
                context_bytes = self._direct.context(context)
            else:
                context, context_bytes = {"library": LIBRARY}, self._default_context
            value = self._direct.encode(
                call, mid, self._head, user_id=user_id, anonymous_id=anonymous_id, original=original, sent_at=now,
                timestamp=None if timestamp is None else original, event=event, name=name, category=category,
                group_id=group_id, previous_id=previous_id, context=context_bytes,
                integrations=self._json(integrations), properties=self._json(properties), traits=self._json(traits))
            message: dict[str, Any] = {"type": call, "messageId": mid, "originalTimestamp": original, "sentAt": now}
            if timestamp is not None:
                message["timestamp"] = original
            if self.write_key:
                message["writeKey"] = self.write_key
            for field, item in (("userId", user_id), ("anonymousId", anonymous_id), ("groupId", group_id),
                                ("previousId", previous_id), ("event", event), ("name", name),
                                ("category", category), ("properties", properties), ("traits", traits),
                                ("integrations", integrations)):
                if item is not None:
                    message[field] = item
            message["context"] = context
            if 6 * len(value) + 512 > self.limits.event_bytes:  # JSON is at most 6x the Avro plus the keys
                size_of(message, self.limits)
            return message, value, key
        except (_Unusual, ValueError, TypeError, UnicodeError):
            pass
        args = (user_id, anonymous_id, event, name, category, group_id, previous_id, properties, traits, context,
                integrations, timestamp, message_id)
        fields = {key: value for key, value in zip(_FIELD_NAMES, args, strict=True) if value is not None}
        with self._lock:
            self.by_reference += 1
        try:
            message = build(call, fields, write_key=self.write_key, now=self.clock.now(), limits=self.limits)
        except ValidationError:
            with self._lock:
                self.rejected += 1
            raise
        return message, self.codec.encode(message), message.get("userId") or message["anonymousId"]

    def _json(self, value: Any) -> bytes | None:
        """The JSON text of a free-form object, when no limit can be broken and nothing needs converting."""
        if value is None:
            return None
        if type(value) is not dict:
            raise _Unusual
        data = orjson.dumps(value, option=_JSON_OPTIONS)  # raises TypeError on what needs converting
        if len(data) >= self._plain_below:
            raise _Unusual
        depth = self.limits.depth
        # orjson writes NaN and infinities as null; nesting can only be deep with as many brackets
        if (b"null" in data or data.count(b"{") + data.count(b"[") > depth) and not _finite(value, 1, depth):
            raise _Unusual
        return data


_message_id = message_id


def _finite(value: Any, depth: int, limit: int) -> bool:
    """No NaN or infinity anywhere in `value`, and no nesting deeper than `limit`."""
    if depth > limit:
        return False
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is float:
            if item - item:  # nan for NaN and the infinities, 0.0 otherwise
                return False
        elif (kind is dict or kind is list or kind is tuple) and not _finite(item, depth + 1, limit):
            return False
    return True
