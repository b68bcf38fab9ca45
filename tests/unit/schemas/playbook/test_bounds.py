"""Hostile configs and events meet the bounds of schemas/playbook/budget.py: refused at validation where it can be
seen, else dead-lettered as `playbook.budget` in bounded time; never a hang, a crash or gigabytes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from schemas import Topics
from schemas.config import load_config, parse_config
from schemas.errors import ConfigurationError
from schemas.playbook.budget import MAX_TEXT, STEPS, BudgetError
from schemas.playbook.expressions import ExpressionError, compile_expression
from schemas.playbook.route import PlaybookError, Route

EVENT = {"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",
         "properties": {"price": 12345, "precision": -1_000_000_000, "text": "0123456789"}}


def _route(mappings: str, **playbook: str) -> Route:
    extra = "".join(f", {k}: {v}" for k, v in playbook.items())
    config = parse_config(f"integrations: [{{name: x, kind: webhook, playbook: {{global: {{mappings: {mappings}}}"
                          f"{extra}}}}}]")
    return Route(config.integration("x"))


def _budget_reason(route: Route, event: dict[str, Any] = EVENT) -> str:
    started = time.monotonic()
    with pytest.raises(PlaybookError) as caught:
        route.decide(event)
    assert time.monotonic() - started < 5  # generous: the point is seconds, not minutes or a hang
    return caught.value.reason


def test_round_with_a_precision_of_minus_a_billion_from_the_event_is_a_budget_dead_letter() -> None:
    route = _route('[{expr: "round(properties.price, properties.precision)", to: v}]')
    assert _budget_reason(route) == "playbook.budget"


def test_eight_nested_replaces_never_build_a_gigabyte() -> None:
    source = "properties.text"
    for _ in range(8):
        source = f'replace({source}, "", "0123456789")'
    assert _budget_reason(_route(f"[{{expr: '{source}', to: v}}]")) == "playbook.budget"


BIG = {**EVENT, "properties": {"text": "t" * 60_000, "commas": "," * 60_000, "list": ["a"] * 200}}


@pytest.mark.parametrize("source", [
    "concat(properties.text, properties.text)",
    "properties.text + properties.text",
    'join(properties.list, "' + "y" * 600 + '")',
    'split(properties.commas, ",")',
    'replace(properties.text, "", "yy")',
    "int(number('1e300')) * int(number('1e300')) * int(number('1e300')) * int(number('1e300'))",
    "number('1e300') * number('1e300')",
    'matches(properties.text, replace(str(properties.list), "", "' + "*" * 20 + '"))',
])
def test_each_function_and_operator_is_bounded(source: str) -> None:
    compile_expression(source)  # valid on its face: the bound is met at run time
    with pytest.raises(BudgetError):
        compile_expression(source)(BIG, {})


def test_one_playbook_evaluation_has_a_budget_of_steps_whatever_each_expression_costs() -> None:
    expr = " + ".join(["len(event)"] * 20)  # 39 steps, each a small one
    mappings = "[" + ", ".join(f'{{expr: "{expr}", to: "v{i}"}}' for i in range(STEPS // 39 + 2)) + "]"
    assert _budget_reason(_route(mappings)) == "playbook.budget"
    assert _route("[" + ", ".join(f'{{expr: "{expr}", to: "v{i}"}}' for i in range(5)) + "]").decide(EVENT).payload


def test_a_budget_failure_is_its_own_dead_letter_reason_in_the_router() -> None:
    from schemas import EventCodec
    from streams.router import Admitted, Router, Source

    config = parse_config("pipelines: [{name: p, write_keys: [wk], integrations: [x, y]}]\nintegrations:\n"
                          "  - {name: x, kind: webhook, playbook: {global: {mappings: [{expr: "
                          "'round(properties.price, properties.precision)', to: v}]}}}\n"
                          "  - {name: y, kind: webhook, playbook: {global: {mappings: [{from: userId, to: u}]}}}\n")
    router = Router(config, 1, Topics("b"))
    value = EventCodec().encode({**EVENT, "writeKey": "wk", "timestamp": "2026-01-01T00:00:00Z"})
    admitted = router.admit(Source(value, "raw", 0, 1, 1_767_225_600_000))
    assert isinstance(admitted, Admitted)
    routed = router.route(admitted)
    assert [(name, reason) for name, reason, _ in routed.failed] == [("x", "playbook.budget")]
    assert [o.integration for o in routed.outputs] == ["y"]


@pytest.mark.parametrize(("source", "words"), [
    ("round(properties.price, -1000000000)", "round(): precision"),
    ("round(properties.price, 16)", "round(): precision"),
    ("round(properties.price, 0.5)", "round(): precision"),
    ("x + " * 300 + "x", "characters, over the limit"),
    ("lower(" * 40 + "x" + ")" * 40, "nested over"),
    ("1" * 40 + " + x", "digits"),
    ("1e400 * x", "digits"),
    ("x ** 1000000", "not allowed"),
    ("'a\x00b'", "null bytes"),
])
def test_what_can_be_seen_on_the_face_of_an_expression_is_refused_at_validation(source: str, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert words in caught.value.message
    with pytest.raises(ConfigurationError, match=r"integrations\[0\]\.playbook\.global\.mappings\[0\]"):
        _route(f"[{{expr: {source!r}, to: v}}]".replace("\x00", "\\0"))


def test_transforms_are_sized_before_they_build() -> None:
    replacement = "r" * 1_000
    route = _route(f"[{{from: properties.text, to: v, transform: replace, pattern: '', replacement: {replacement}}}]")
    event = {**EVENT, "properties": {"text": "t" * 200}}
    assert _budget_reason(route, event) == "playbook.budget"
    regex = _route(f"[{{from: properties.text, to: v, transform: replace, pattern: '', regex: true, "
                   f"replacement: {replacement}}}]")
    assert _budget_reason(regex, event) == "playbook.budget"
    joined = _route(f"[{{from: properties.list, to: v, transform: join, separator: {replacement}}}]")
    assert _budget_reason(joined, {**EVENT, "properties": {"list": ["a"] * 200}}) == "playbook.budget"
    padded = _route("[{from: userId, to: 'v[999999999]'}]")
    assert _budget_reason(padded) == "playbook.budget"
    assert len(_route("[{from: properties.text, to: v, transform: replace, pattern: '', replacement: ab}]")
               .decide(EVENT).payload["v"]) == 32  # type: ignore[index]
    assert MAX_TEXT >= 32


def test_a_backtracking_pattern_is_stopped_at_its_time_limit() -> None:
    """`(a|aa)+$` over 40 a's and a `!` backtracks for hours; the transform stops it at MAX_REGEX_S."""
    route = _route("[{from: properties.text, to: v, transform: replace, pattern: '(a|aa)+$', regex: true, "
                   "replacement: x}]")
    started = time.monotonic()
    assert _budget_reason(route, {**EVENT, "properties": {"text": "a" * 40 + "!"}}) == "playbook.budget"
    assert time.monotonic() - started < 1.0
    assert route.decide({**EVENT, "properties": {"text": "aaa"}}).payload == {"v": "x"}
    with pytest.raises(ConfigurationError, match=r"mappings\[0\]"):
        _route("[{from: userId, to: v, transform: replace, pattern: '(a', regex: true}]")


# -- YAML ---------------------------------------------------------------------------------------------------
LAUGHS = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)])


@pytest.mark.parametrize("where", ["global: {enrich", "connection"])
def test_yaml_aliases_are_refused_at_load(where: str) -> None:
    """Billion laughs under `playbook.global.enrich` validated in 0.5 s, then `preview` and `config apply`
    died at 2 GB; under `connection`, `validate` took 45 s and 3 GB."""
    laughs = "{" + LAUGHS.replace("\n", ", ") + "}"
    if where == "connection":
        text = f"integrations: [{{name: x, kind: webhook, connection: {laughs}, playbook: {{}}}}]"
    else:
        text = f"integrations: [{{name: x, kind: webhook, playbook: {{global: {{enrich: {laughs}}}}}}}]"
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"YAML aliases \(\*a0\) are not allowed"):
        parse_config(text)
    assert time.monotonic() - started < 5


def test_every_yaml_the_project_reads_takes_the_same_loader(tmp_path: Path) -> None:
    (tmp_path / "book.yaml").write_text("global: {enrich: {a: &x [1, 2], b: *x}}\n")
    (tmp_path / "c.yaml").write_text("integrations: [{name: x, kind: webhook, playbook: 'file:book.yaml'}]\n")
    with pytest.raises(ConfigurationError, match=r"integrations\[0\]\.playbook: cannot read .*aliases"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "big.yaml").write_text("# " + "x" * 2_100_000 + "\n")
    with pytest.raises(ConfigurationError, match="over the limit of"):
        load_config(tmp_path / "big.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "bin.yaml")


@pytest.mark.parametrize(("text", "words"), [
    ("a: " + "[" * 2_000 + "]" * 2_000, "nested over"),
    ("settings: {dedup_window_s: " + "9" * 5_000 + "}", "not YAML"),
    ("integrations: [{name: x, kind: webhook, playbook: {global: {enrich: {a: {on: 1}}}}}]", "not text"),
    ("integrations: [{name: x, kind: webhook, playbook: {global: {enrich: {a: !!set {b}}}}}]", "set"),
    ("integrations: [{name: x, kind: webhook, playbook: {global: {enrich: {a: !!binary aGk=}}}}]", "bytes"),
    ("a: !!python/object:os.system {}", "not YAML"),
])
def test_hostile_yaml_is_a_configuration_error(text: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(text)
    assert words in str(caught.value)


def test_a_date_in_yaml_stays_the_text_written() -> None:
    config = parse_config("integrations: [{name: x, kind: webhook, playbook: {global: {enrich: {since: 2024-01-02}}}}]")
    assert config.integration("x").playbook.global_.enrich == {"since": "2024-01-02"}
