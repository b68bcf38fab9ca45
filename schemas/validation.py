"""What makes a Segment message acceptable, as pure functions shared by the SDK, the gateway, the importer
and the stream worker: each call type's required fields, an identity, parsable timestamps, and limits on
size and structure. Every rejection is a ValidationError that names the field and, for limits, the limit.

`clean()` also turns the Python values analytics-python accepts (datetime, date, Decimal, UUID, Enum,
tuples, sets) into JSON values, as analytics-python does, and refuses what cannot be encoded (NaN,
lone surrogates, arbitrary objects) instead of dropping it.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson

from schemas.envelope import CALL_TYPES
from schemas.errors import FinalError

REASONS: Final = (
    "invalid.json",            # not a JSON object (file import)
    "invalid.type",            # type missing or not a Segment call type
    "invalid.identity",        # neither userId nor anonymousId
    "invalid.missing_field",   # a field the call type requires (track: event, group: groupId, alias: previousId)
    "invalid.field_type",      # a well-known field holding the wrong JSON type
    "invalid.timestamp",       # a timestamp that is not ISO-8601
    "invalid.unencodable",     # a value JSON cannot carry: NaN, lone surrogate, an object, an int beyond 64 bits
    "invalid.control_character",  # a control character (C0, DEL, C1) in an id or an event's name
    "limit.event_size",        # serialized event over Limits.event_bytes
    "limit.depth",             # nesting deeper than Limits.depth
    "limit.keys",              # an object or array with more than Limits.keys entries
    "limit.string",            # a string longer than Limits.string_chars
    "limit.id",                # messageId, userId, anonymousId, groupId or previousId over Limits.id_chars
)

_ID_FIELDS: Final = ("userId", "anonymousId", "groupId", "previousId")
CAPPED_IDS: Final = ("messageId", *_ID_FIELDS)  # at most Limits.id_chars characters each
_STRING_FIELDS: Final = ("messageId", "event", "name", "category", "writeKey", "channel")
_TEXT_FIELDS: Final = _ID_FIELDS + _STRING_FIELDS
# Ids become Kafka keys, dedup keys, log ids and vendor fields; event names become vendor event names and
# playbook keys: none may hold a control character (NUL, newline, escape, DEL, C1), whatever the source.
NAMED_FIELDS: Final = (*CAPPED_IDS, "event", "name")
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
_LONG_INTEGER: Final = re.compile(rb"\d{19}")  # below it every JSON integer fits in an int64


def loads_exact(raw: bytes) -> Any:
    """JSON text -> Python values, every integer exact: orjson reads one beyond 64 bits as a rounded float,
    so a text with a run of 19+ digits is read again by the standard library (validation then refuses
    the integers out of range, `invalid.unencodable`). Raises ValueError (or RecursionError) when it is
    not JSON, NaN and Infinity included."""
    body = orjson.loads(raw)
    if _LONG_INTEGER.search(raw) is None:
        return body
    return json.loads(raw, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
_OBJECT_FIELDS: Final = ("properties", "traits", "context", "integrations")
TIMESTAMP_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "track": ("event",), "identify": (), "page": (), "screen": (), "group": ("groupId",),
    "alias": ("previousId", "userId"),
}
_INT64 = (-(2**63), 2**64 - 1)  # what orjson writes: int64 and uint64


@dataclass(frozen=True)
class Limits:
    """Segment's published limits (32 KB per event, 500 KB per batch) plus structure limits of our own.

    `id_chars` bounds messageId, userId, anonymousId, groupId and previousId: ids become Kafka keys,
    dedup-log entries and vendor fields, so what we write stays bounded whatever a client sends
    (Segment's own ids are UUIDs of 36 characters)."""

    event_bytes: int = 32 * 1024
    batch_bytes: int = 500 * 1024
    depth: int = 32
    keys: int = 1000
    string_chars: int = 16 * 1024
    id_chars: int = 512
    batch_events: int = 2500  # events per gateway batch; Segment's libraries send at most a few hundred

    def __post_init__(self) -> None:
        for name in ("event_bytes", "batch_bytes", "depth", "keys", "string_chars", "id_chars", "batch_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be positive")


DEFAULT_LIMITS: Final = Limits()


class ValidationError(FinalError, ValueError):
    """A message we refuse. `field` is a path like `properties.items[3].price`; `limit` the bound broken."""

    def __init__(self, reason: str, field: str, message: str, limit: int | None = None) -> None:
        super().__init__(reason, f"{field}: {message}" if field else message)
        self.field = field
        self.limit = limit


def clean(value: Any, path: str, limits: Limits = DEFAULT_LIMITS, depth: int = 1) -> Any:
    """A JSON-ready copy of `value`, converted like analytics-python, or ValidationError naming the path."""
    kind = type(value)
    if kind is str:
        if len(value) > limits.string_chars:
            raise ValidationError("limit.string", path, f"string of {len(value)} characters is over the limit "
                                  f"of {limits.string_chars}", limits.string_chars)
        if not value.isascii():
            _check_text(value, path)
        return value
    if value is None or kind is bool:
        return value
    if kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValidationError("invalid.unencodable", path, "integer outside the 64-bit range")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ValidationError("invalid.unencodable", path, f"{value} is not a JSON number")
        return value
    if kind is dict or kind is list or isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return _container(value, path, limits, depth)
    return clean(_convert(value, path), path, limits, depth)


def _container(value: Any, path: str, limits: Limits, depth: int) -> Any:
    if depth > limits.depth:
        raise ValidationError("limit.depth", path, f"nested deeper than the limit of {limits.depth}", limits.depth)
    if len(value) > limits.keys:
        raise ValidationError("limit.keys", path, f"{len(value)} entries is over the limit of {limits.keys}",
                              limits.keys)
    # Hot path: plain ASCII strings, ints, floats, bools and None are checked inline; anything else
    # (and any value that fails the quick check) goes through clean() with its path, which names it.
    # A plain dict or list that needs no conversion is returned as it is (no copy): callers serialize
    # at once, so sharing it is safe, and copying was a third of the SDK's per-call cost.
    longest, lo, hi = limits.string_chars, _INT64[0], _INT64[1]
    if type(value) is dict:
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return _copy_mapping(value, path, limits, depth)
            kind = type(item)
            if (kind is str and len(item) <= longest and item.isascii()) or item is None or kind is bool \
                    or (kind is int and lo <= item <= hi) or (kind is float and math.isfinite(item)):
                continue
            new = clean(item, f"{path}.{key}" if path else key, limits, depth + 1)
            if new is not item:
                changed = changed if changed is not None else {}
                changed[key] = new
        return value if changed is None else {**value, **changed}
    if isinstance(value, Mapping):
        return _copy_mapping(value, path, limits, depth)
    items = []
    copy = type(value) is not list
    for index, item in enumerate(value):
        kind = type(item)
        if not ((kind is str and len(item) <= longest and item.isascii()) or item is None or kind is bool
                or (kind is int and lo <= item <= hi) or (kind is float and math.isfinite(item))):
            new = clean(item, f"{path}[{index}]", limits, depth + 1)
            copy = copy or new is not item
            item = new  # noqa: PLW2901 - the cleaned item replaces the original
        items.append(item)
    return items if copy else value


def _copy_mapping(value: Mapping[Any, Any], path: str, limits: Limits, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = _key(raw_key, path, limits)
        out[key] = clean(item, f"{path}.{key}" if path else key, limits, depth + 1)
    return out


def _convert(value: Any, path: str) -> Any:
    """analytics-python's conversions: datetimes as ISO-8601, Decimal as float, UUID as text, Enum by value."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | float | str):  # subclasses (IntEnum handled above, numpy-free)
        return (bool if isinstance(value, bool) else int if isinstance(value, int) else
                float if isinstance(value, float) else str)(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("invalid.unencodable", path, "bytes that are not UTF-8 text") from None
    raise ValidationError("invalid.unencodable", path, f"a {type(value).__name__} cannot be sent as JSON")


def _key(key: Any, path: str, limits: Limits) -> str:
    if type(key) is str:
        if not key.isascii():
            _check_text(key, path)
        return key
    if type(key) is int or isinstance(key, (float, bool)) or key is None:
        return str(orjson.dumps(key), "utf-8")  # what json.dumps does with such keys
    raise ValidationError("invalid.unencodable", path, f"an object key of type {type(key).__name__}")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("invalid.unencodable", path, "text with a lone surrogate is not valid Unicode") \
            from None


def parse_timestamp(text: str) -> dt.datetime:
    """ISO-8601 with an offset; a naive time is taken as UTC (what Segment's server does)."""
    parsed = dt.datetime.fromisoformat(text.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def check_message(message: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> int:
    """Raise ValidationError for the first problem; return the message's size as JSON bytes.

    Expects JSON values (as parsed from a request, or after clean()).
    """
    _check_fields(message, limits)
    return size_of(message, limits)


def epoch_ms(text: str) -> int:
    """An ISO-8601 time as milliseconds since the epoch (floored); ValueError when it is not one."""
    ms = sdk_form_ms(text)
    return ms if ms is not None else _epoch_ms(text)


def sdk_form_ms(text: str) -> int | None:
    """`epoch_ms` of the form SDKs send and the router writes (`2026-11-26T10:00:00.123Z`), read from its
    second, parsed once per second seen; None for any other form; ValueError when that second is no time."""
    if (len(text) == 24 and text[19] == "." and text[23] == "Z" and text[10] == "T" and text[4] == text[7] == "-"
            and text[13] == text[16] == ":" and text[20:23].isdigit() and text[20:23].isascii()):
        second = _SECOND_MS.get(text[:19])
        if second is None:
            if len(_SECOND_MS) > 10_000:  # as iso_ms (streams/normalize.py): ~1.5 MB at most
                _SECOND_MS.clear()
            second = _SECOND_MS[text[:19]] = _epoch_ms(text[:19] + "Z")
        return second + int(text[20:23])
    return None


_SECOND_MS: dict[str, int] = {}


def _epoch_ms(text: str) -> int:
    moment = parse_timestamp(text)
    seconds = moment.timestamp()
    if -_FLOAT_EXACT_S < seconds < _FLOAT_EXACT_S:  # 1834-2106: the float is within 0.4 us, so round() is exact
        return round(seconds * 1_000_000) // 1000
    ms = (moment - _EPOCH) // _MS
    if not MIN_MS <= ms <= MAX_MS:  # year 1 at +14:00 is before 0001-01-01 UTC: no datetime can hold it
        raise TimeRangeError(f"outside the years 1-9999 in UTC ({text[:40]!r})")
    return ms


class TimeRangeError(ValueError):
    """An ISO-8601 time that parses but is outside what a UTC datetime holds (0001-01-01 to 9999-12-31)."""


_FLOAT_EXACT_S: Final = 2.0**32
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)
MIN_MS: Final = (dt.datetime(1, 1, 1, tzinfo=dt.UTC) - _EPOCH) // _MS  # the times every part can format
MAX_MS: Final = (dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC) - _EPOCH) // _MS


def in_range(ms: int) -> bool:
    """Whether `ms` (epoch milliseconds) is a time a UTC datetime holds: years 1 to 9999."""
    return MIN_MS <= ms <= MAX_MS


def _check_fields(message: Mapping[str, Any], limits: Limits) -> dict[str, int]:
    """The call, its required fields and identity, object-typed fields, parsable timestamps (returned,
    each present one as epoch milliseconds)."""
    check_call(message, limits)
    for field in _OBJECT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, dict):
            raise ValidationError("invalid.field_type", field, f"must be an object, got {type(value).__name__}")
    stamps: dict[str, int] = {}
    for field in TIMESTAMP_FIELDS:
        value = message.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValidationError("invalid.timestamp", field, "must be an ISO-8601 string")
        try:
            stamps[field] = epoch_ms(value)
        except TimeRangeError:
            raise ValidationError("invalid.timestamp", field, "is out of range: a time in UTC must fall in the "
                                  "years 1 to 9999") from None
        except (ValueError, OverflowError, OSError):
            raise ValidationError("invalid.timestamp", field, "is not an ISO-8601 timestamp") from None
    return stamps


def check_decoded(message: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> dict[str, int]:
    """check_message plus the structure limits (depth, keys, string length), for a message decoded from
    JSON or Avro (so nothing in it needs converting). The walk is skipped when the JSON text is too
    short to hold a long string or a large object and has too few brackets to be deep. Returns the
    timestamps present as epoch milliseconds."""
    stamps = _check_fields(message, limits)
    try:
        text = orjson.dumps(message)
    except (TypeError, orjson.JSONEncodeError):
        text = b""
    if len(text) > limits.event_bytes or not text:
        size_of(message, limits)  # names the problem
    if len(text) >= min(limits.string_chars + 2, 2 * limits.keys + 1) \
            or text.count(b"{") + text.count(b"[") > limits.depth:
        clean(dict(message), "", limits)
    return stamps


def check_call(message: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> None:
    """The call type, its required fields, an identity, string ids of at most `limits.id_chars`, and no
    control character in an id or the event's name."""
    call = message.get("type")
    if call not in CALL_TYPES:
        raise ValidationError("invalid.type", "type", f"must be one of {', '.join(CALL_TYPES)}, got {call!r}"
                              if isinstance(call, str) or call is None else "must be a string")
    for field in _TEXT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, str):
            raise ValidationError("invalid.field_type", field, f"must be a string, got {type(value).__name__}")
    longest = limits.id_chars
    for field in CAPPED_IDS:
        value = message.get(field)
        if value is not None and len(value) > longest:
            raise ValidationError("limit.id", field, f"{len(value)} characters is over the limit of {longest} for "
                                  "an id", longest)
    for field in NAMED_FIELDS:
        value = message.get(field)
        if value and not value.isprintable() and (found := _CONTROL.search(value)) is not None:
            raise ValidationError("invalid.control_character", field, f"control character U+{ord(found[0]):04X} "
                                  f"at position {found.start()}")
    if not message.get("userId") and not message.get("anonymousId"):
        raise ValidationError("invalid.identity", "userId", "userId or anonymousId is required")
    for field in REQUIRED[call]:
        if not message.get(field):
            raise ValidationError("invalid.missing_field", field, f"{call} requires {field}")


def size_of(message: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> int:
    """The message's JSON size, refusing it over the event limit; names the first field at fault otherwise."""
    try:
        size = len(orjson.dumps(message))
    except (TypeError, orjson.JSONEncodeError):
        clean(dict(message), "", limits)  # names the field (depth, keys, text, type)
        raise ValidationError("invalid.unencodable", "", "the message cannot be encoded as JSON") from None
    if size > limits.event_bytes:
        raise ValidationError("limit.event_size", "", f"event is {size} bytes, over the limit of "
                              f"{limits.event_bytes}", limits.event_bytes)
    return size
