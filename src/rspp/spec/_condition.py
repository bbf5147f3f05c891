"""Safe condition language for conditional edges (F-018).

Parsed with :func:`ast.parse` in ``eval`` mode and compiled to closures from a strict
whitelist: attribute names (dotted access into nested mappings), literals, tuples/lists
of literals, comparisons (``== != < <= > >= in not in is is not``), ``and``/``or``/
``not`` and unary minus. Nothing is ever passed to ``eval`` or ``exec``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

from rspp.errors import SpecError

Getter = Callable[[Mapping[str, object]], object]

_CMP: dict[type[ast.cmpop], Callable[[Any, Any], object]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: operator.contains(b, a),
    ast.NotIn: lambda a, b: not operator.contains(b, a),
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


class ConditionError(SpecError):
    """An edge condition uses syntax outside the safe expression language."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"invalid condition {expression!r}: {reason}")


class Condition:
    """A compiled edge condition; :meth:`evaluate` never raises for missing attributes."""

    __slots__ = ("_fn", "names", "source")

    def __init__(self, source: str, names: tuple[str, ...], fn: Getter) -> None:
        self.source = source
        self.names = names
        self._fn = fn

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def evaluate(self, attrs: Mapping[str, object]) -> bool:
        """Truth of the condition for an event's attributes (type mismatches are false)."""
        try:
            return bool(self._fn(attrs))
        except TypeError:
            return False


def _lookup(attrs: object, parts: tuple[str, ...]) -> object:
    current = attrs
    for part in parts:
        if isinstance(current, Mapping):
            current = current.get(part)
        else:
            return None
    return current


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source
        self.names: set[str] = set()

    def fail(self, node: ast.AST, what: str) -> ConditionError:
        col = getattr(node, "col_offset", 0) + 1
        return ConditionError(self.source, f"{what} is not allowed (at column {col})")

    def dotted(self, node: ast.expr) -> tuple[str, ...]:
        if isinstance(node, ast.Name):
            return (node.id,)
        if isinstance(node, ast.Attribute):
            return (*self.dotted(node.value), node.attr)
        raise self.fail(node, type(node).__name__)

    def literal(self, node: ast.expr) -> object:
        if isinstance(node, ast.Constant) and isinstance(
            node.value, (str, int, float, bool, type(None))
        ):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.literal(node.operand)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.literal(e) for e in node.elts)
        raise self.fail(node, f"{type(node).__name__} as a literal")

    def build(self, node: ast.expr) -> Getter:
        if isinstance(node, (ast.Name, ast.Attribute)):
            parts = self.dotted(node)
            if any(p.startswith("_") for p in parts):
                raise self.fail(node, "a name starting with '_'")
            self.names.add(".".join(parts))
            return lambda attrs: _lookup(attrs, parts)
        if isinstance(node, (ast.Constant, ast.Tuple, ast.List)) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
        ):
            value = self.literal(node)
            return lambda attrs: value
        if isinstance(node, ast.BoolOp):
            parts_fn = [self.build(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda attrs: all(f(attrs) for f in parts_fn)
            return lambda attrs: any(f(attrs) for f in parts_fn)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = self.build(node.operand)
            return lambda attrs: not inner(attrs)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        raise self.fail(node, type(node).__name__)

    def compare(self, node: ast.Compare) -> Getter:
        operands = [self.build(node.left), *(self.build(c) for c in node.comparators)]
        ops: list[Callable[[object, object], object]] = []
        for op in node.ops:
            fn = _CMP.get(type(op))
            if fn is None:
                raise self.fail(node, type(op).__name__)
            ops.append(fn)

        def run(attrs: Mapping[str, object]) -> object:
            left = operands[0](attrs)
            for fn, right_fn in zip(ops, operands[1:], strict=True):
                right = right_fn(attrs)
                if not fn(left, right):
                    return False
                left = right
            return True

        return run


def compile_condition(source: str) -> Condition:
    """Compile ``source`` or raise :class:`ConditionError` naming the expression."""
    text = source.strip()
    if not text:
        raise ConditionError(source, "the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(source, f"syntax error: {exc.msg}") from None
    compiler = _Compiler(source)
    fn = compiler.build(tree.body)
    return Condition(source=text, names=tuple(sorted(compiler.names)), fn=fn)
