"""The playbook expression language: useful, and unable to run code."""

from __future__ import annotations

import pytest

from schemas.expressions import ExpressionError, compile_expression

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
