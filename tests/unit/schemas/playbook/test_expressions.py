"""The playbook expression language: useful, and unable to run code."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.playbook.expressions import ExpressionError, compile_expression, inline_source

EVENT = {"type": "track", "event": "Order Completed", "userId": "u-1",
         "properties": {"revenue": 42.5, "quantity": 2, "price": 10, "tags": ["a", "b"],
                        "products": [{"id": "p1"}, {"id": "p2"}]},
         "context": {"locale": "de-DE", "traits": {"email": " Ada@Example.COM "}}}


@pytest.mark.parametrize(("source", "value"), [
    ("properties.revenue > 40 and context.locale in ['de-DE', 'fr-FR']", True),
    ("properties.price * properties.quantity", 20),
    ("properties.products[1].id", "p2"),
    ("properties.products[9].id", None),
    ("properties.missing.deeper", None),
    ("lower(trim(context.traits.email))", "ada@example.com"),
    ("coalesce(anonymousId, userId)", "u-1"),
    ("concat('Viewed ', event, ' Page')", "Viewed Order Completed Page"),
    ("'a' in properties.tags and 'z' not in properties.tags", True),
    ("properties.revenue if properties.revenue > 100 else 0", 0),
    ("not exists(anonymousId)", True),
    ("matches(event, 'Order *')", True),
    ("len(properties.products)", 2),
    ("round(properties.revenue / 4, 1)", 10.6),
    ("null == properties.nothing", True),
    ("properties.nothing < 3", False),  # no order with null: the condition does not hold
    ("-properties.price + 1", -9),
    ("sha256('x')", "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),
    ("payload.x", None),
])
def test_expressions_evaluate(source: str, value: object) -> None:
    assert compile_expression(source)(EVENT, {}) == value


INLINE = ["coalesce(anonymousId, userId)", "coalesce(context.page.url, properties.url)", "userId",
          'event if type == "track" else "PageView"', "lower(trim(context.traits.email))", "len(properties.products)",
          "exists(anonymousId) or not exists(userId)", "properties.nothing.deeper", "context.traits != null",
          'replace(replace(lower(trim(event)), " ", "_"), "-", "_")', "true and 0", "properties.tags",
          'coalesce(properties.nothing, "", false, 1)', 'coalesce(trim("  "), properties.nothing, "a")',
          "coalesce(context.traits.email, properties.price, event)", "coalesce(coalesce(null), 0)"]


@pytest.mark.parametrize("source", INLINE)
@pytest.mark.parametrize("event", [EVENT, {}, {"context": ["a list"], "properties": "text", "event": 7}])
def test_inline_source_equals_the_closures(source: str, event: dict[str, Any]) -> None:
    """The generated-code form of an expression (the router's sections) gives what the closures give."""
    consts: dict[str, Any] = {"_dict": dict}

    def const(value: Any) -> str:
        consts[f"c{len(consts)}"] = value
        return f"c{len(consts) - 1}"
    text = inline_source(source, const)
    assert text is not None
    try:
        expected: Any = compile_expression(source)(event, {"x": 1})
    except ExpressionError:
        expected = ExpressionError
    try:
        got: Any = eval(text, consts, {"event": event, "payload": {"x": 1}})
    except (TypeError, ValueError, AttributeError):
        got = ExpressionError
    assert got == expected


def test_inline_source_leaves_the_rest_to_the_closures() -> None:
    assert inline_source("properties.price * 2", str) is None
    assert inline_source("properties.products[0].id", str) is None
    assert inline_source("payload.x", str) is None
    with pytest.raises(ExpressionError):
        inline_source("__import__('os')", str)


@pytest.mark.parametrize(("source", "words"), [
    ("__import__('os').system('true')", "unknown function"),
    ("(lambda: 1)()", "unknown function"),
    ("[x for x in properties.tags]", "ListComp"),
    ("properties.revenue ** 99999", "BinOp"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("lower(x=1)", "positional arguments only"),
    ("properties.x is None", "only == != < <= > >= in and not in"),
    ("b'bytes'", "bytes literal"),
    ("x" * 1001, "over the limit"),
    ("", "non-empty"),
    ("1 +", "syntax error"),
])
def test_what_is_not_allowed_is_refused_at_compile_time(source: str, words: str) -> None:
    with pytest.raises(ExpressionError, match=words):
        compile_expression(source)


def test_dunder_attributes_read_nothing() -> None:
    assert compile_expression("properties.__class__")(EVENT, {}) is None
    assert compile_expression("event.__len__")(EVENT, {}) is None


def test_evaluation_errors_are_expression_errors() -> None:
    assert compile_expression("properties.missing + 1")(EVENT, {}) is None  # null propagates
    with pytest.raises(ExpressionError, match="needs a number"):
        compile_expression("event + 1")(EVENT, {})
    with pytest.raises(ExpressionError, match="division by zero"):
        compile_expression("properties.price / 0")(EVENT, {})
