"""Every bound on what a config can make the stream worker do, in one place, and the per-evaluation meter.

A config is untrusted input (anyone who can write the config topic writes one), and so is an event.
Three layers keep a playbook's work bounded whatever either says:

- static, at `config validate` and at load: the YAML document's size and nesting, no YAML aliases, an
  expression's length, syntax nodes and nesting, its literal numbers and `round` precisions;
- per value, at run time: no text an expression or transform builds is longer than MAX_TEXT, no list
  has more than MAX_ITEMS items, no integer more than MAX_INT_BITS bits, no float infinite; sizes
  are worked out before anything is built (`replace("", ...)` is refused, not tried);
- per evaluation: one playbook applied to one event calls at most STEPS functions and operators and
  builds at most CHARS characters (list items count 8 each), all expressions together.

Past any bound the event is dead-lettered for that integration with reason `playbook.budget`
(BudgetError): its own reason, never a crash, a hang, or the catch-all `playbook.error`.
"""

from __future__ import annotations

import math
import threading
from typing import Final

from schemas.errors import FinalError

# -- static: documents and expressions ------------------------------------------------------------------
DOCUMENT_CHARS: Final = 2_000_000   # one YAML text: a config file, a playbook file, a starter kit
DOCUMENT_DEPTH: Final = 64          # nesting of mappings and lists in one YAML document
MAX_SOURCE: Final = 1_000           # characters of one expression
MAX_NODES: Final = 200              # syntax nodes of one expression
MAX_DEPTH: Final = 32               # nesting of one expression (calls in calls, operands of operands)
MAX_LITERAL_DIGITS: Final = 30      # digits of a number written in an expression

# -- per value -----------------------------------------------------------------------------------------
MAX_TEXT: Final = 100_000           # characters of any text built
MAX_ITEMS: Final = 10_000           # items of any list built (split)
MAX_INT_BITS: Final = 1_024         # an integer result's magnitude: a float's range
ROUND_DIGITS: Final = 15            # round(x, d) takes -15 <= d <= 15 (a float has 15-17 digits)
MAX_PATTERN: Final = 1_000          # characters of a matches() pattern
MAX_REGEX_S: Final = 0.1            # seconds one regular expression may run over one value

# -- per evaluation (one playbook, one event) ---------------------------------------------------------------
STEPS: Final = 10_000               # function calls and operators
CHARS: Final = 4_000_000            # characters built (list items count ITEM_CHARS each)
ITEM_CHARS: Final = 8

_UNMETERED: Final = 1 << 62         # outside a playbook evaluation (tests, tools): per-value bounds only


class BudgetError(FinalError):
    """A bound was reached: dead-letter the event for this integration with reason `playbook.budget`."""

    def __init__(self, message: str) -> None:
        super().__init__("playbook.budget", message)


class _Meter(threading.local):
    steps: int = _UNMETERED
    chars: int = _UNMETERED


_METER: Final = _Meter()


def start_evaluation() -> None:
    """A playbook starts on an event: the full budget (callers end it with `end_evaluation`)."""
    meter = _METER
    meter.steps = STEPS
    meter.chars = CHARS


def end_evaluation() -> None:
    meter = _METER
    meter.steps = meter.chars = _UNMETERED


def step() -> None:
    """One function call or operator."""
    meter = _METER
    meter.steps -= 1
    if meter.steps < 0:
        raise BudgetError(f"over {STEPS} function calls and operators in one playbook evaluation")


def spend(chars: int) -> None:
    """`chars` characters built (text, or list items at ITEM_CHARS each)."""
    meter = _METER
    meter.chars -= chars
    if meter.chars < 0:
        raise BudgetError(f"over {CHARS} characters built in one playbook evaluation")


def text_fits(length: int, what: str) -> None:
    """Refuse, before building it, a text longer than MAX_TEXT; count it against the evaluation."""
    if length > MAX_TEXT:
        raise BudgetError(f"{what} would build {length} characters, over the limit of {MAX_TEXT}")
    spend(length)


def items_fit(count: int, what: str) -> None:
    if count > MAX_ITEMS:
        raise BudgetError(f"{what} would build {count} items, over the limit of {MAX_ITEMS}")
    spend(count * ITEM_CHARS)


def number_fits(value: int | float, what: str) -> int | float:
    """`value` if within the bounds: an int of at most MAX_INT_BITS bits, a finite float."""
    if type(value) is int:
        if value.bit_length() > MAX_INT_BITS:
            raise BudgetError(f"{what} gives an integer over {MAX_INT_BITS} bits")
    elif isinstance(value, float) and not math.isfinite(value):
        raise BudgetError(f"{what} gives a number out of range")
    return value
