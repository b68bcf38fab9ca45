"""The playbook expression language: what mappings cannot say, without running code from config.

Expressions use Python's syntax for a small, safe subset, parsed once (`ast.parse`) and compiled into
closures; nothing is ever `eval`'d. Allowed: literals (text, numbers, true/false/null), names of event
fields (`userId`, `properties`, `context`...) and `payload` (the output so far), attribute and index
access (`properties.products[0].price`), arithmetic on numbers (+ - * / // %), text concatenation with
+, comparisons (== != < <= > >= in, not in), and/or/not, `a if cond else b`, list literals, and the
functions in FUNCTIONS (schemas/playbook/functions.py). A missing field reads as null, and arithmetic on null
gives null. An evaluation error (say, text * 2) raises ExpressionError, which the router dead-letters
as `playbook.expression`. Every size is bounded (schemas/playbook/budget.py: source, nesting, text, lists,
numbers, steps and characters per playbook evaluation); past a bound, BudgetError: `playbook.budget`.

    properties.revenue > 100 and context.locale in ["de-DE", "fr-FR"]
    lower(trim(traits.email))
    properties.price * properties.quantity if properties.quantity else 0
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from schemas.errors import FinalError
from schemas.playbook.budget import (
    MAX_DEPTH,
    MAX_LITERAL_DIGITS,
    MAX_NODES,
    MAX_SOURCE,
    MAX_TEXT,
    ROUND_DIGITS,
    BudgetError,
    number_fits,
    step,
    text_fits,
)
from schemas.playbook.functions import FUNCTIONS

__all__ = ["FUNCTIONS", "MAX_NODES", "MAX_SOURCE", "MAX_TEXT", "BudgetError", "ExpressionError", "compile_expression",
           "inline_source"]

Evaluator = Callable[[Mapping[str, Any], Mapping[str, Any]], Any]  # (event, payload) -> value


class ExpressionError(FinalError, ValueError):
    """An expression that does not compile (config) or fails on an event (playbook error)."""

    def __init__(self, message: str) -> None:
        super().__init__("playbook.expression", message)


_BINARY: Final = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
                  ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_COMPARE: Final = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
                   ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: b is not None and a in b,
                   ast.NotIn: lambda a, b: b is None or a not in b}
_NAMES: Final = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def compile_expression(source: str) -> Evaluator:
    """Compile `source` once; raises ExpressionError saying what is not allowed and where."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be non-empty text")
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression is {len(source)} characters, over the limit of {MAX_SOURCE}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error at column {exc.offset}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # a NUL character; nesting the parser refuses
        raise ExpressionError(f"not an expression: {type(exc).__name__}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ExpressionError(f"expression has over {MAX_NODES} parts")
    _check_statically(tree.body)
    return _compile(tree.body)


def _check_statically(node: ast.expr, depth: int = 1) -> None:
    """What the bounds of schemas/playbook/budget.py refuse on the face of the expression: nesting, literal
    numbers too long to be meant, a literal `round` precision out of range."""
    if depth > MAX_DEPTH:
        raise ExpressionError(f"expression is nested over {MAX_DEPTH} levels deep")
    if (places := _literal_number(node)) is not None and isinstance(node, ast.Constant) \
            and (not math.isfinite(places) or len(f"{places:.0f}".lstrip("-")) > MAX_LITERAL_DIGITS):
        raise ExpressionError(f"the number {ast.unparse(node)[:40]} is over {MAX_LITERAL_DIGITS} digits")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "round" \
            and len(node.args) == 2 and (places := _literal_number(node.args[1])) is not None \
            and not (float(places).is_integer() and -ROUND_DIGITS <= places <= ROUND_DIGITS):
        raise ExpressionError(f"round(): precision {ast.unparse(node.args[1])[:40]} is not a whole number "
                              f"between -{ROUND_DIGITS} and {ROUND_DIGITS}")
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            _check_statically(child, depth + 1)


def _literal_number(node: ast.expr) -> int | float | None:
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return sign * node.value
    return None


Field = Callable[[tuple[str, ...]], str]
_TEMPS: Final = itertools.count()  # names of generated code's temporaries, unique in every function


def inline_source(source: str, const: Callable[[Any], str], field: Field | None = None) -> str | None:
    """`source` as one Python expression over `event` and `payload` for generated code (the router's
    playbook sections), or None where only the closures of `compile_expression` can say it. Covers
    what starter kits write: fields, literals, function calls, `a if cond else b`, == and !=, and, or,
    not. Names and values are constants (`const` binds them), never text of the config. `field`, when
    given, names the expression that reads an event field (a local the caller has read it into). The
    caller turns TypeError, ValueError and AttributeError raised by a function into ExpressionError."""
    compile_expression(source)  # the same checks and errors
    return _inline(ast.parse(source.strip(), mode="eval").body, const, field or _field_text(const))


def _field_text(const: Callable[[Any], str]) -> Field:
    def text_of(chain: tuple[str, ...]) -> str:
        text = f"event.get({const(chain[0])})"
        for key in chain[1:]:  # the walrus name is reused: each level is read before the next assigns it
            k = const(key)
            text = f"(_t.get({k}) if type(_t := {text}) is _dict else {const(_get)}(_t, {k}))"
        return text
    return text_of


def _inline(node: ast.AST, const: Callable[[Any], str], field: Field) -> str | None:
    parts: list[str | None]
    if isinstance(node, ast.Constant):
        return const(node.value)
    if isinstance(node, ast.Name):
        if node.id in _NAMES:
            return const(_NAMES[node.id])
        return "payload" if node.id == "payload" else field((node.id,))
    if isinstance(node, ast.Attribute) and (chain := _field_chain(node)) is not None:
        return field(chain)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "coalesce" \
            and not node.keywords and node.args and not any(isinstance(a, ast.Starred) for a in node.args):
        parts = [_inline(a, const, field) for a in node.args]
        if None in parts:
            return None
        # _coalesce inline: each argument read once, in order, until one is neither null nor ""
        text = "None"
        for part in reversed(parts):
            temp = f"_k{next(_TEMPS)}"
            text = f"({temp} if ({temp} := {part}) is not None and {temp} != '' else {text})"
        return text
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS \
            and not node.keywords:
        parts = [_inline(a, const, field) for a in node.args]
        return None if None in parts else f"{const(FUNCTIONS[node.func.id])}({', '.join(map(str, parts))})"
    if isinstance(node, ast.IfExp):
        parts = [_inline(n, const, field) for n in (node.body, node.test, node.orelse)]
        return None if None in parts else f"({parts[0]} if {parts[1]} else {parts[2]})"
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq | ast.NotEq):
        parts = [_inline(node.left, const, field), _inline(node.comparators[0], const, field)]
        op = "==" if isinstance(node.ops[0], ast.Eq) else "!="
        return None if None in parts else f"({parts[0]} {op} {parts[1]})"
    if isinstance(node, ast.BoolOp):
        parts = [_inline(v, const, field) for v in node.values]
        joiner = " and " if isinstance(node.op, ast.And) else " or "
        return None if None in parts else "(" + joiner.join(f"bool({p})" for p in parts) + ")"
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = _inline(node.operand, const, field)
        return None if operand is None else f"(not {operand})"
    return None


def _compile(node: ast.AST) -> Evaluator:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExpressionError(f"a {type(node.value).__name__} literal is not allowed")
        value = node.value
        return lambda _e, _p: value
    if isinstance(node, ast.Name):
        if node.id in _NAMES:
            constant = _NAMES[node.id]
            return lambda _e, _p: constant
        name = node.id
        if name == "payload":
            return lambda _e, p: p
        return lambda e, _p: e.get(name)
    if isinstance(node, ast.Attribute):
        chain = _field_chain(node)
        if chain is not None:
            return _field_path(chain)
        inner, attr = _compile(node.value), node.attr
        return lambda e, p: _get(inner(e, p), attr)
    if isinstance(node, ast.Subscript):
        inner, index = _compile(node.value), _compile(node.slice)
        return lambda e, p: _get(inner(e, p), index(e, p))
    if isinstance(node, ast.List | ast.Tuple):
        items = [_compile(item) for item in node.elts]
        return lambda e, p: [item(e, p) for item in items]
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda e, p: all(_truthy(part(e, p)) for part in parts)
        return lambda e, p: any(_truthy(part(e, p)) for part in parts)
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda e, p: not _truthy(operand(e, p))
        if isinstance(node.op, ast.USub):
            return lambda e, p: None if (v := operand(e, p)) is None else -_numeric(v, "-")
        if isinstance(node.op, ast.UAdd):
            return lambda e, p: None if (v := operand(e, p)) is None else _numeric(v, "+")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right, op = _compile(node.left), _compile(node.right), _BINARY[type(node.op)]
        return lambda e, p: _arithmetic(op, left(e, p), right(e, p))
    if isinstance(node, ast.Compare):
        first = _compile(node.left)
        rest = [(_COMPARE[type(op)], _compile(c)) for op, c in zip(node.ops, node.comparators, strict=True)
                if type(op) in _COMPARE]
        if len(rest) != len(node.ops):
            raise ExpressionError("only == != < <= > >= in and not in compare values")
        return lambda e, p: _compare(first(e, p), rest, e, p)
    if isinstance(node, ast.IfExp):
        test, body, other = _compile(node.test), _compile(node.body), _compile(node.orelse)
        return lambda e, p: body(e, p) if _truthy(test(e, p)) else other(e, p)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"unknown function {name!r}; known: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise ExpressionError(f"{node.func.id}() takes positional arguments only")
        func, args, fname = FUNCTIONS[node.func.id], [_compile(a) for a in node.args], node.func.id
        if len(args) == 1:  # the usual arities without building a list per call (the router's hot path)
            (a0,) = args
            return lambda e, p: _call(fname, func, (a0(e, p),))
        if len(args) == 2:
            a0, a1 = args
            return lambda e, p: _call(fname, func, (a0(e, p), a1(e, p)))
        if len(args) == 3:
            a0, a1, a2 = args
            return lambda e, p: _call(fname, func, (a0(e, p), a1(e, p), a2(e, p)))
        return lambda e, p: _call(fname, func, [a(e, p) for a in args])
    raise ExpressionError(f"{type(node).__name__} ({ast.unparse(node)!r}) is not allowed in an expression")


def _field_chain(node: ast.Attribute) -> tuple[str, ...] | None:
    """`context.traits.email` as ("context", "traits", "email"); None unless it starts at an event field."""
    parts: list[str] = []
    current: ast.AST = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name) or current.id in _NAMES or current.id == "payload":
        return None
    return (current.id, *reversed(parts))


def _field_path(chain: tuple[str, ...]) -> Evaluator:
    """A field path read as plain dict lookups (what the router's events are), _get for anything else."""
    first, rest = chain[0], chain[1:]

    def read(e: Mapping[str, Any], _p: Any) -> Any:
        value = e.get(first)
        for key in rest:
            value = value.get(key) if isinstance(value, dict) else _get(value, key)
        return value
    return read


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, (dict, Mapping)):  # dict first: the abc check is slow
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, list) and isinstance(key, int) and not isinstance(key, bool):
        return container[key] if -len(container) <= key < len(container) else None
    return None


def _truthy(value: Any) -> bool:
    return bool(value)


def _numeric(value: Any, op: str) -> int | float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    raise ExpressionError(f"{op} needs a number, got {type(value).__name__}")


def _arithmetic(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    if left is None or right is None:  # a missing field makes a missing result (then the mapping's default)
        return None
    step()
    if op is operator.add and isinstance(left, str) and isinstance(right, str):
        text_fits(len(left) + len(right), "+")
        return left + right
    a, b = _numeric(left, "arithmetic"), _numeric(right, "arithmetic")
    try:
        return number_fits(op(a, b), "arithmetic")
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except OverflowError:  # an integer too large for a float
        raise BudgetError("arithmetic gives a number out of range") from None


def _compare(first: Any, rest: list[tuple[Callable[[Any, Any], Any], Evaluator]], e: Mapping[str, Any],
             p: Mapping[str, Any]) -> bool:
    left = first
    for op, evaluate in rest:
        right = evaluate(e, p)
        try:
            if not op(left, right):
                return False
        except TypeError:  # null < 3, "a" < 1: no order, so the condition does not hold
            return False
        left = right
    return True


def _call(name: str, func: Callable[..., Any], args: Sequence[Any]) -> Any:
    try:
        return func(*args)
    except ExpressionError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise ExpressionError(f"{name}(): {str(exc)[:200]}") from None
