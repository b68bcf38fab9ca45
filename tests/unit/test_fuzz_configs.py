"""Property-based fuzzing of hostile configs and expressions.

Hostile YAML (aliases, deep nesting, huge scalars, odd tags and keys, the wrong type in every place)
through config load and validation, and hostile expressions (random nesting of every function and
operator, extreme arguments) through compile and evaluation under a playbook's budget. Asserted: each
is refused with ConfigurationError (or ExpressionError at compile), or evaluates in bounded time, or
the event is dead-lettered with a `playbook.*` reason other than the catch-all: never another
exception, a hang or a crash.

Deterministic for CI: derandomized, a bounded number of examples, no example database.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import event as outcome_of
from hypothesis import strategies as st

from schemas.config import parse_config
from schemas.errors import ConfigurationError
from schemas.playbook.expressions import FUNCTIONS, ExpressionError
from schemas.playbook.route import PlaybookError, Route

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SECONDS = 10  # per example, generous for a shared machine: the bounds make it milliseconds

# -- hostile YAML -----------------------------------------------------------------------------------------
SCALARS = st.sampled_from([
    "1", "-1e9", "1e400", ".inf", ".nan", "9" * 5000, "null", "~", "yes", "on", "2024-01-01", "2024-01-01 10:00:00",
    "'x'", '"${SECRET}"', "!!binary aGk=", "!!set {a}", "!!python/object:os.system {}", "!!int x", "&a 1", "*a",
    "'" + "x" * 50_000 + "'", "[]", "{}", "-", "|\n  text", "'\\x00'", '"\\0"', "<<: {a: 1}", "!!str 1", "!!float x",
])
KEYS = st.sampled_from(["integrations", "pipelines", "settings", "playbook", "global", "enrich", "mappings",
                        "connection", "expr", "from", "to", "transform", "name", "kind", "on", "200", "? [a]",
                        "<<", "&k key", "*k", "allow_code", "function", "write_keys", "events", "default"])


def _yaml(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return SCALARS
    inner = _yaml(depth - 1)
    return st.one_of(
        SCALARS,
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
    )


DOCUMENTS = st.one_of(
    _yaml(4),
    st.integers(min_value=1, max_value=5_000).map(lambda n: "a: " + "[" * n + "]" * n),
    st.integers(min_value=1, max_value=9).map(
        lambda n: "\n".join(["x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                            + [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, n + 1)])),
    _yaml(3).map(lambda v: f"integrations: [{{name: x, kind: webhook, playbook: {{global: {{enrich: {{a: {v}}}}}}}}}]"),
    _yaml(3).map(lambda v: f"integrations: [{{name: x, kind: webhook, connection: {v}, playbook: {{}}}}]"),
    _yaml(2).map(lambda v: f"settings: {v}"),
)


@FUZZ
@given(DOCUMENTS)
def test_hostile_yaml_is_refused_or_valid_never_a_crash(text: str) -> None:
    started = time.monotonic()
    try:
        parse_config(text)
        outcome_of("valid")
    except ConfigurationError:
        outcome_of("refused")
    assert time.monotonic() - started < SECONDS


# -- hostile expressions ------------------------------------------------------------------------------------
ATOMS = st.sampled_from([
    "properties.text", "properties.big", "properties.n", "properties.huge", "properties.neg", "properties.list",
    "properties.missing", "payload", "event", "context", "null", "true", "0", "-1", "1e308", "-1000000000",
    "999999999999999999999999999999", "number('1e308')", "''", "'*'", "'" + "x" * 200 + "'", "[1, 'a', null]",
    "-1e9", "15", "16",
])
OPERATORS = st.sampled_from(["+", "-", "*", "/", "//", "%", "==", "<", "in", "and", "or"])


def _expression(depth: int) -> st.SearchStrategy[str]:
    if depth == 0:
        return ATOMS
    inner = _expression(depth - 1)
    return st.one_of(
        ATOMS,
        st.tuples(st.sampled_from(sorted(FUNCTIONS)), st.lists(inner, max_size=3)).map(
            lambda f: f"{f[0]}({', '.join(f[1])})"),
        st.tuples(inner, OPERATORS, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"-{e}"),
    )


EVENT = {"type": "track", "event": "E", "userId": "u", "messageId": "m",
         "properties": {"text": "0123456789", "big": "b" * 60_000, "n": 7, "huge": 2**63 - 1, "neg": -1_000_000_000,
                        "list": ["a", 1, None, {"k": "v"}] * 50}, "context": {"locale": "de"}}


@FUZZ
@given(st.lists(_expression(4), min_size=1, max_size=3))
def test_hostile_expressions_are_refused_evaluated_or_dead_lettered(sources: list[str]) -> None:
    outcome_of(_check(sources))


def _check(sources: list[str]) -> str:
    mappings = ", ".join(f"{{expr: {json.dumps(s)}, to: v{i}}}" for i, s in enumerate(sources))
    text = f"integrations: [{{name: x, kind: webhook, playbook: {{global: {{mappings: [{mappings}]}}}}}}]"
    started = time.monotonic()
    try:
        route = Route(parse_config(text).integration("x"))
    except (ConfigurationError, ExpressionError):
        return "refused"
    outcome: Any = None
    try:
        outcome = route.decide(EVENT)
    except PlaybookError as exc:
        assert exc.reason in ("playbook.expression", "playbook.budget"), exc
        return exc.reason
    finally:
        assert time.monotonic() - started < SECONDS
    assert len(orjson.dumps(outcome.payload, option=orjson.OPT_NON_STR_KEYS)) < 5_000_000
    return "evaluated"


TEXTS = st.sampled_from(['"0123456789"', "properties.text", "properties.big", '"x"', "str(properties.list)",
                         "concat(properties.text, properties.text)", "lower(properties.big)"])


@FUZZ
@given(st.lists(st.one_of(_expression(2), TEXTS), min_size=1, max_size=8).map(
    lambda parts: "replace(" * len(parts) + "properties.text" + "".join(f', "", {p})' for p in parts)))
def test_nested_replaces_with_any_arguments_stay_bounded(source: str) -> None:
    outcome_of(_check([source]))
