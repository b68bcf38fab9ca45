"""MetaRouter's value transforms, compiled once per mapping (the paths they read and write:
schemas/playbook/paths.py). Pure.

A transform never raises on odd input: what it cannot convert becomes None, and the mapping's
typed default (if any) takes its place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

import regex

from schemas.playbook.budget import MAX_REGEX_S, MAX_TEXT, BudgetError, items_fit, spend, text_fits
from schemas.playbook.model import Mapping_
from schemas.validation import sdk_form_ms

Transform = Callable[[Any], Any]
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")


# -- values ------------------------------------------------------------------------------------------
def to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, dict | list):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)


def to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip().replace(",", "")) if value.strip() else None
        except ValueError:
            return None
        return number if number is not None and math.isfinite(number) else None
    return None


def to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "y", "1", "on"):
            return True
        if text in ("false", "no", "n", "0", "off", ""):
            return False
    return None


def normalise(value: Any, how: str) -> str | None:
    """What vendors hash (Meta CAPI's rules): trimmed and lowercased text; e-mail likewise; phone digits only.
    Text is put in Unicode NFC first, so an address typed as "é" and as "e" + combining accent hashes the same."""
    text = to_text(value)
    if text is None:
        return None
    if how == "none":
        return text
    if how == "phone":
        return re.sub(r"\D", "", text) or None
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.strip().lower() or None


def sha256(value: Any, how: str = "text") -> str | None:
    text = normalise(value, how)
    if text is None:
        return None
    if _HEX64.match(text):  # already hashed upstream: hashing again would make it useless
        return text
    return hashlib.sha256(text.encode()).hexdigest()


HASH_MEMO: Final = 50_000  # hashes of text remembered per mapping: a user's email comes back with each event


def _memo_hash(how: str) -> Transform:
    """`sha256(v, how)`, remembering the hash of each text seen: the same user's email or id is hashed
    again with every event they send, and hashing costs more than a lookup."""
    seen: dict[str, str | None] = {}

    def hashed(value: Any) -> str | None:
        if type(value) is not str:
            return sha256(value, how)
        try:
            return seen[value]
        except KeyError:
            pass
        if len(seen) >= HASH_MEMO:
            seen.clear()
        result = seen[value] = sha256(value, how)
        return result
    return hashed


def parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value  # epoch ms or s
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        return _parse_text_time(value)
    return None


@lru_cache(maxsize=8192)  # an event's timestamp is formatted by several integrations' playbooks
def _parse_text_time(value: str) -> dt.datetime | None:
    """In UTC; None for text that is no time, and for one outside UTC's years 1-9999 (year 1 at +14:00)."""
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None


_EPOCH_FORMATS: Final = frozenset({"unix_ms", "unix_s"})
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND: Final = dt.timedelta(microseconds=1)


def format_time(value: Any, fmt: str) -> Any:
    if type(value) is str and fmt in _EPOCH_FORMATS:  # the router's own `timestamp`: no datetime
        try:
            ms = sdk_form_ms(value)
        except ValueError:
            ms = None
        if ms is not None:
            return ms if fmt == "unix_ms" else ms // 1000
    moment = parse_time(value)
    if moment is None:
        return None
    micros = (moment - _EPOCH) // _MICROSECOND  # exact: timestamp() * 1e6 truncated could be 1 us short
    if fmt == "unix_ms":
        return micros // 1000
    if fmt == "unix_s":
        return micros // 1_000_000
    if fmt == "unix_micros":
        return micros
    if fmt == "date":
        return moment.astimezone(dt.UTC).date().isoformat()
    if fmt == "iso8601":
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.astimezone(dt.UTC).strftime(fmt)


def _pluck(value: Any, keys: list[str] | dict[str, str]) -> list[Any] | None:
    if not isinstance(value, list):
        return None
    renames = keys if isinstance(keys, dict) else {k: k for k in keys}
    spend(len(value) * len(renames))  # items x keys: the work, bounded per evaluation
    return [{new: item[old] for old, new in renames.items() if old in item} for item in value
            if isinstance(item, Mapping)]


def _to_int(value: Any, rounding: str) -> int | None:
    number = to_float(value)
    if number is None:
        return None
    return int(number) if rounding == "truncate" else math.floor(number + 0.5)  # half up, not banker's


def _truncate_float(value: Any, digits: int) -> float | None:
    number = to_float(value)
    if number is None:
        return None
    scale: int = 10**digits
    return math.trunc(number * scale) / scale


def _replace(pattern: str, replacement: str, regex_: bool) -> Transform:
    """Sized before it is built: 10 characters never become a gigabyte (schemas/playbook/budget.py)."""
    if regex_:
        compiled = regex.compile(pattern)
        return lambda v: None if (t := to_text(v)) is None else _regex_sub(compiled, replacement, t)

    def replace(value: Any) -> str | None:
        text = to_text(value)
        if text is None:
            return None
        count = len(text) + 1 if pattern == "" else text.count(pattern)
        text_fits(len(text) + count * (len(replacement) - len(pattern)), "transform replace")
        return text.replace(pattern, replacement)
    return replace


def _regex_sub(compiled: regex.Pattern[str], replacement: str, text: str) -> str:
    """The `regex` engine, for its time limit: `(a|aa)+$` over 40 a's and a `!` backtracks for hours."""
    built = 0

    def one(match: regex.Match[str]) -> str:
        nonlocal built
        piece = match.expand(replacement)
        built += len(piece)
        if built > MAX_TEXT:
            raise BudgetError(f"transform replace would build over {MAX_TEXT} characters")
        return piece
    try:
        result = compiled.sub(one, text, timeout=MAX_REGEX_S)
    except TimeoutError:
        raise BudgetError(f"transform replace: the pattern took over {MAX_REGEX_S} s on a value of "
                          f"{len(text)} characters (catastrophic backtracking)") from None
    text_fits(len(result), "transform replace")
    return result


def _join(sep: str) -> Transform:
    def join(value: Any) -> str | None:
        if value is None:
            return None
        parts = [t for x in (value if isinstance(value, list) else [value]) if (t := to_text(x)) is not None]
        text_fits(sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0), "transform join")
        return sep.join(parts)
    return join


def _split(sep: str) -> Transform:
    def split(value: Any) -> list[str] | None:
        text = to_text(value)
        if text is None:
            return None
        items_fit(text.count(sep) + 1, "transform split")
        return [p.strip() for p in text.split(sep)]
    return split


def _substring(start: int, end: int | None) -> Transform:
    return lambda v: None if (t := to_text(v)) is None else t[start:end]


def _identity(value: Any) -> Any:
    return value


def is_identity(transform: Transform) -> bool:
    return transform is _identity


def compile_transform(mapping: Mapping_) -> Transform:
    """The value function of one mapping (without its default)."""
    kind = mapping.transform
    if kind == "direct":
        return _identity
    if kind == "lowercase":
        return lambda v: None if (t := to_text(v)) is None else t.lower()
    if kind == "uppercase":
        return lambda v: None if (t := to_text(v)) is None else t.upper()
    if kind == "trim":
        return lambda v: None if (t := to_text(v)) is None else t.strip()
    if kind == "to_string":
        return to_text
    if kind == "to_float":
        return to_float
    if kind == "to_bool":
        return to_bool
    if kind == "to_int":
        rounding = mapping.rounding or "round"
        return lambda v: _to_int(v, rounding)
    if kind == "truncate_float":
        digits = 2 if mapping.digits is None else mapping.digits
        return lambda v: _truncate_float(v, digits)
    if kind == "hash":
        return _memo_hash(mapping.normalize or "text")
    if kind == "join":
        sep = "," if mapping.separator is None else mapping.separator
        return _join(sep)
    if kind == "split":
        sep = "," if mapping.separator is None else mapping.separator
        return _split(sep)
    if kind == "pluck":
        keys = mapping.pluck or []
        return lambda v: _pluck(v, keys)
    if kind == "replace":
        return _replace(mapping.pattern or "", mapping.replacement or "", bool(mapping.regex))
    if kind == "substring":
        return _substring(mapping.start or 0, mapping.end)
    if kind == "timestamp":
        fmt = mapping.format or "iso8601"
        return lambda v: format_time(v, fmt)
    raise ValueError(f"unknown transform {kind!r}")  # the config model has refused it already
