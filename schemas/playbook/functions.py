"""The functions playbook expressions may call (schemas/playbook/expressions.py), each bounded.

Each takes what an event or an expression gives it (any JSON value, null included) and either returns
a value or raises TypeError/ValueError (a playbook error) or BudgetError (a bound of schemas/playbook/budget.py
reached). Text and lists are sized before they are built: `replace(x, "", "yy")` nested eight times is
refused at its first step past MAX_TEXT, never built. Each call counts one step of the evaluation's
budget.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from fnmatch import translate
from functools import lru_cache
from typing import Any, Final

from schemas.playbook.budget import MAX_PATTERN, ROUND_DIGITS, BudgetError, items_fit, spend, step, text_fits


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(value: Any) -> float | int | None:
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int | float):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _sha256(value: Any) -> str | None:
    return None if value is None else hashlib.sha256(_text(value).encode()).hexdigest()


def _round(value: Any, digits: Any = 0) -> int | float | None:
    number = _number(value)
    if number is None:
        return None
    places = int(digits)
    if not -ROUND_DIGITS <= places <= ROUND_DIGITS:  # round(5, -10**9) would compute 10**(10**9)
        raise BudgetError(f"round(): precision {places} is outside -{ROUND_DIGITS}..{ROUND_DIGITS}")
    return round(number, places)


def _sized(text: str, what: str) -> str:
    text_fits(len(text), what)
    return text


def _concat(*values: Any) -> str:
    parts = [_text(v) for v in values]
    text_fits(sum(map(len, parts)), "concat()")
    return "".join(parts)


def _split(value: Any, sep: Any = ",") -> list[str] | None:
    if value is None:
        return None
    text = _text(value)
    if not isinstance(sep, str) or not sep:
        raise ValueError("the separator must be non-empty text")
    items_fit(text.count(sep) + 1, "split()")
    spend(len(text))
    return text.split(sep)


def _join(value: Any, sep: Any = ",") -> str | None:
    if value is None:
        return None
    if not isinstance(sep, str):
        raise TypeError("the separator must be text")
    if not isinstance(value, list):
        return _sized(_text(value), "join()")
    parts = [_text(x) for x in value]
    text_fits(sum(map(len, parts)) + len(sep) * max(len(parts) - 1, 0), "join()")
    return sep.join(parts)


def _replace(value: Any, old: Any, new: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    if not isinstance(old, str) or not isinstance(new, str):
        raise TypeError("replace() takes text to find and text to put")
    count = len(text) + 1 if old == "" else text.count(old)
    text_fits(len(text) + count * (len(new) - len(old)), "replace()")  # 10 characters never become 1 GB
    return text.replace(old, new)


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(translate(pattern))


def _matches(value: Any, pattern: Any) -> bool:
    if not isinstance(pattern, str):
        raise TypeError("the pattern must be text")
    if len(pattern) > MAX_PATTERN:
        raise BudgetError(f"matches(): a pattern of {len(pattern)} characters, over the limit of {MAX_PATTERN}")
    return isinstance(value, str) and _glob(pattern).match(value) is not None


def _metered(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` counted as one step of the evaluation's budget; an overflow is a bound reached."""
    def call(*args: Any) -> Any:
        step()
        try:
            return func(*args)
        except OverflowError:
            raise BudgetError(f"{name}(): a number out of range") from None
    call.__name__ = call.__qualname__ = f"expression_{name}"
    return call


# Each builds at most MAX_TEXT characters or MAX_ITEMS items, worked out before building (schemas/playbook/budget.py).
_UNMETERED_FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "lower": lambda v: None if v is None else _sized(_text(v).lower(), "lower()"),
    "upper": lambda v: None if v is None else _sized(_text(v).upper(), "upper()"),
    "trim": lambda v: None if v is None else _sized(_text(v).strip(), "trim()"),
    "len": lambda v: 0 if v is None else len(v) if isinstance(v, str | list | dict) else len(_text(v)),
    "str": lambda v: None if v is None else _sized(_text(v), "str()"),
    "number": _number,
    "int": lambda v: None if (n := _number(v)) is None else int(n),
    "round": _round,
    "abs": lambda v: None if (n := _number(v)) is None else abs(n),
    "min": lambda *v: min((x for x in v if x is not None), default=None),
    "max": lambda *v: max((x for x in v if x is not None), default=None),
    "coalesce": _coalesce,
    "concat": _concat,
    "exists": lambda v: v is not None,
    "starts_with": lambda v, prefix: isinstance(v, str) and v.startswith(prefix),
    "ends_with": lambda v, suffix: isinstance(v, str) and v.endswith(suffix),
    "contains": lambda v, part: v is not None and part in v if isinstance(v, str | list | dict) else False,
    "matches": _matches,
    "sha256": _sha256,
    "split": _split,
    "join": _join,
    "replace": _replace,
}
FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    name: _metered(name, func) for name, func in _UNMETERED_FUNCTIONS.items()}
