"""The static half of the safe expression evaluator: an AST allow-list and the bounding rewrite.

`analyse(tree, builtin_names)` walks a parsed ``eval``-mode tree and either refuses it
(raising `Refused` with a user-facing reason) or returns the free names it reads and a
rewritten tree in which size-multiplying operations call guarded helpers and every
Python-level repetition takes a step of the unit's budget (see `_GuardArithmetic`).

What the check guarantees, given a namespace holding only plain data, the safe builtins and a
`UnitRandom`:

- only the node types in `_ALLOWED_NODES` occur (no walrus, ``await``, ``yield``, ``@``);
- no name, parameter, keyword or comprehension target starts with ``__``; names with a single
  leading underscore are allowed because pipelines keep temporaries such as ``_shoe``;
- attributes are read only (never stored), never start with ``_`` and are in
  `ALLOWED_ATTRIBUTES`; that list leaves out ``format``/``format_map`` (their field syntax
  reaches attributes) and every introspection attribute (``gi_frame``, ``mro``, ...);
- names such as ``eval`` or ``getattr`` are refused wherever they are called. They are not in
  the builtins either; as bare values they are allowed because pipelines have fields called
  ``type`` or ``input``, and such a name can only ever resolve to a unit field;
- comprehension targets are plain names (``for x.a in ...`` would assign an attribute);
- lambdas take only plain positional parameters (no defaults, ``*args`` or ``**kwargs``).

Bounds (``core/budget.py``, ``core/bounded.py``): a value too large to build (``"x" * 10**9``,
``range(10**12)``, ``10**10**10``, ``f"{x:>1000000000}"``) raises `ResourceLimitExceeded` before
it is built, at compile time when the operands are literals; a unit that takes too many steps
or too much CPU time raises it at its next step. What is not bounded: one operation over
values already within the limits (``x in big_list`` with ``big_list`` of 10,000,000 elements)
runs to its end, and comparing two values that share their parts (``a == b`` where each is
built by repeated ``[x, x]``) takes time exponential in their nesting.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Set
from typing import Any

from octopipe.core.bounded import (
    GUARDED_METHODS,
    MAX_INT_BITS,
    guarded_add,
    guarded_attribute,
    guarded_lshift,
    guarded_mod,
    guarded_mul,
    guarded_pow,
    guarded_spec,
    guarded_text,
)
from octopipe.core.budget import ResourceLimitExceeded, charge_current, check_format_spec

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "HELPERS",
    "MAX_INT_BITS",
    "TICK",
    "Refused",
    "ResourceLimitExceeded",
    "analyse",
    "check_identifier",
]

POW_HELPER = "__octopipe_pow__"
LSHIFT_HELPER = "__octopipe_lshift__"
MUL_HELPER = "__octopipe_mul__"
ADD_HELPER = "__octopipe_add__"
MOD_HELPER = "__octopipe_mod__"
TEXT_HELPER = "__octopipe_text__"
SPEC_HELPER = "__octopipe_spec__"
ATTRIBUTE_HELPER = "__octopipe_attr__"
CHARGE_HELPER = "__octopipe_charge__"
TICK = "__octopipe_tick__"
"""Name of the current budget's ``tick`` in an evaluation's globals (see `core/budget.py`)."""

HELPERS: dict[str, Callable[..., Any]] = {
    POW_HELPER: guarded_pow,
    LSHIFT_HELPER: guarded_lshift,
    MUL_HELPER: guarded_mul,
    ADD_HELPER: guarded_add,
    MOD_HELPER: guarded_mod,
    TEXT_HELPER: guarded_text,
    SPEC_HELPER: guarded_spec,
    ATTRIBUTE_HELPER: guarded_attribute,
    CHARGE_HELPER: charge_current,
}
"""The helpers the rewritten tree calls, by the name it calls them."""


class Refused(Exception):
    """The expression uses a construct the evaluator does not allow."""


_ATTRIBUTE_GROUPS = {
    "str": "lower upper strip lstrip rstrip split rsplit splitlines join replace startswith"
    " endswith count find rfind index rindex title capitalize casefold swapcase center ljust"
    " rjust zfill partition rpartition removeprefix removesuffix isalpha isdigit isalnum"
    " isspace islower isupper istitle isnumeric isdecimal",
    # Read-only methods; copy returns a new container. No append/update/pop, so the only
    # in-place change an expression can make is random.shuffle (see ExpressionProgram).
    "list, dict, set": "index count copy get keys values items union intersection difference"
    " symmetric_difference issubset issuperset isdisjoint",
    "numbers": "real imag conjugate is_integer bit_length numerator denominator as_integer_ratio",
    "UnitRandom": "choice randint random uniform sample shuffle gauss",
}
ALLOWED_ATTRIBUTES = frozenset(" ".join(_ATTRIBUTE_GROUPS.values()).split())

_FORBIDDEN = (
    "eval exec open compile globals locals vars getattr setattr delattr __import__ input"
    " breakpoint help type object memoryview"
)
FORBIDDEN_CALLS = frozenset(_FORBIDDEN.split())

_OPERATORS: tuple[type[ast.AST], ...] = (
    *(ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow),
    *(ast.LShift, ast.RShift, ast.BitOr, ast.BitXor, ast.BitAnd),
    *(ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.And, ast.Or),
    *(ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE),
    *(ast.Is, ast.IsNot, ast.In, ast.NotIn),
)
_ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        *(ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Attribute, ast.Subscript),
        *(ast.Slice, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp),
        *(ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Starred, ast.Call, ast.keyword),
        *(ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension),
        *(ast.JoinedStr, ast.FormattedValue, ast.Lambda, ast.arguments, ast.arg),
        *_OPERATORS,
    }
)
_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.NamedExpr: "the assignment expression (:=)",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield from'",
    ast.MatMult: "the '@' operator",
    ast.Store: "assignment",
    ast.Del: "deletion",
}
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def analyse(tree: ast.Expression, builtin_names: Set[str]) -> tuple[frozenset[str], ast.Expression]:
    """Check `tree`; return (free names other than builtins, tree with guarded ``**``/``<<``).

    Raises `Refused` for a disallowed construct and `ResourceLimitExceeded` for a literal
    ``**``/``<<`` whose result would be too large.
    """
    free: set[str] = set()
    _Checker(builtin_names, free).visit(tree, frozenset())
    guarded = _GuardArithmetic().visit(tree)
    return frozenset(free), ast.fix_missing_locations(guarded)


def check_identifier(name: str, what: str) -> None:
    """Refuse names starting with ``__`` (dunders and their look-alikes)."""
    if name.startswith("__"):
        raise Refused(f"{what} {name!r} is not allowed: names starting with '__' are refused")


class _Checker:
    """Recursive allow-list walk that also collects free names with comprehension scoping."""

    def __init__(self, builtin_names: Set[str], free: set[str]) -> None:
        self._builtins = builtin_names
        self._free = free

    def visit(self, node: ast.AST, bound: frozenset[str]) -> None:
        kind = type(node)
        if kind not in _ALLOWED_NODES:
            what = _NODE_NAMES.get(kind, f"'{kind.__name__}'")
            raise Refused(f"{what} is not allowed in expressions")
        if isinstance(node, ast.Name):
            self._name(node, bound)
        elif isinstance(node, ast.Attribute):
            self._attribute(node, bound)
        elif isinstance(node, ast.Lambda):
            self._lambda(node, bound)
        elif isinstance(node, _COMPREHENSIONS):
            self._comprehension(node, bound)
        else:
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Subscript | ast.Starred | ast.List | ast.Tuple):
                self._require_load(node)
            for child in ast.iter_child_nodes(node):
                self.visit(child, bound)

    def _name(self, node: ast.Name, bound: frozenset[str]) -> None:
        check_identifier(node.id, "name")
        self._require_load(node)
        if node.id not in bound and node.id not in self._builtins:
            self._free.add(node.id)

    def _attribute(self, node: ast.Attribute, bound: frozenset[str]) -> None:
        self._require_load(node)
        if node.attr.startswith("_"):
            raise Refused(f"attribute {node.attr!r} is not allowed: private attribute")
        if node.attr not in ALLOWED_ATTRIBUTES:
            raise Refused(f"attribute {node.attr!r} is not allowed")
        self.visit(node.value, bound)

    def _call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            raise Refused(f"calling {node.func.id!r} is not allowed")
        for keyword in node.keywords:
            if keyword.arg is not None:
                check_identifier(keyword.arg, "keyword argument")

    def _lambda(self, node: ast.Lambda, bound: frozenset[str]) -> None:
        args = node.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.kw_defaults:
            raise Refused("lambda may only take plain positional parameters")
        params = [a.arg for a in (*args.posonlyargs, *args.args)]
        for param in params:
            check_identifier(param, "lambda parameter")
        self.visit(node.body, bound | frozenset(params))

    def _comprehension(
        self,
        node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp,
        bound: frozenset[str],
    ) -> None:
        inner = bound
        for index, generator in enumerate(node.generators):
            if generator.is_async:
                raise Refused("'async for' is not allowed in expressions")
            # The first iterable is evaluated in the enclosing scope, the rest inside.
            self.visit(generator.iter, bound if index == 0 else inner)
            inner = inner | _target_names(generator.target)
            for condition in generator.ifs:
                self.visit(condition, inner)
        results = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for result in results:
            self.visit(result, inner)

    @staticmethod
    def _require_load(node: ast.AST) -> None:
        ctx = getattr(node, "ctx", None)
        if ctx is not None and not isinstance(ctx, ast.Load):
            raise Refused(_NODE_NAMES.get(type(ctx), "assignment") + " is not allowed")


def _target_names(target: ast.AST) -> frozenset[str]:
    """Names bound by a comprehension target; anything but (nested) names is refused."""
    if isinstance(target, ast.Name):
        check_identifier(target.id, "name")
        return frozenset([target.id])
    if isinstance(target, ast.Tuple | ast.List):
        return frozenset().union(*(_target_names(e) for e in target.elts))
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    raise Refused("a comprehension may only assign plain names")


_GUARDS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Pow: (POW_HELPER, guarded_pow),
    ast.LShift: (LSHIFT_HELPER, guarded_lshift),
    ast.Mult: (MUL_HELPER, guarded_mul),
    ast.Add: (ADD_HELPER, guarded_add),
    ast.Mod: (MOD_HELPER, guarded_mod),
}
_FOLDABLE = (int, float, str, bytes)


def _call(helper: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=ast.Name(helper, ast.Load()), args=list(args), keywords=[])


class _GuardArithmetic(ast.NodeTransformer):
    """Rewrite the checked tree so that nothing it runs is unbounded (see `core/bounded.py`):

    - ``**``, ``<<``, ``*``, ``+`` and ``%`` call guarded helpers, except where an operand
      is a number literal that makes the operation plainly arithmetic (``n + 1``); with two
      literal operands the result is computed now, so a literal too large fails to compile;
    - f-string fields check the size of their text; literal format specs are checked now,
      computed ones when they are built;
    - reading ``.join``/``.replace``/``.center``/... yields a size-checked method;
    - every comprehension element and every lambda call takes one step of the budget.
    """

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        guard = _GUARDS.get(type(node.op))
        if guard is None:
            return node
        helper, function = guard
        left, right = node.left, node.right
        if _is_literal(left) and _is_literal(right):
            assert isinstance(left, ast.Constant) and isinstance(right, ast.Constant)
            try:
                value = function(left.value, right.value)
            except ResourceLimitExceeded:
                raise
            except Exception:  # e.g. 0 ** -1: left for evaluation to report, as Python does
                pass
            else:
                return ast.copy_location(ast.Constant(value), node)
        if _plainly_arithmetic(node.op, left, right):
            return node
        return ast.copy_location(_call(helper, left, right), node)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.AST:
        self.generic_visit(node)
        if not _is_number(node.value):
            node.value = _call(TEXT_HELPER, node.value)
        spec = node.format_spec
        if isinstance(spec, ast.JoinedStr):
            if all(isinstance(v, ast.Constant) for v in spec.values):
                check_format_spec("".join(str(v.value) for v in spec.values))  # type: ignore[attr-defined]
            else:
                computed = ast.FormattedValue(_call(SPEC_HELPER, spec), -1, None)
                node.format_spec = ast.JoinedStr([computed])
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        if node.attr in GUARDED_METHODS:
            call = _call(ATTRIBUTE_HELPER, node.value, ast.Constant(node.attr))
            return ast.copy_location(call, node)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        node.ifs.insert(0, _call(TICK))
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self.generic_visit(node)
        node.body = ast.BoolOp(ast.And(), [_call(TICK), node.body])
        return node


def _is_number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


_RANDOM_NUMBERS = frozenset({"randint", "random", "uniform", "gauss"})


def _is_random_number(node: ast.AST) -> bool:
    """``random.randint(...)`` and the like (numbers), or ``random.choice`` of a display of
    literals (one of them). ``.choice`` succeeds only on a `UnitRandom`, whatever ``random`` is
    bound to, so the result is one of the literals."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "random"
    ):
        return False
    if node.func.attr in _RANDOM_NUMBERS:
        return True
    return (
        node.func.attr == "choice"
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.List | ast.Tuple)
        and all(_is_literal(e) or _is_signed_number(e) for e in node.args[0].elts)
    )


def _is_signed_number(node: ast.AST) -> bool:
    """``-1`` (a unary minus on a number literal, as Python parses it)."""
    return (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and _is_number(node.operand)
    )


def _is_small_display(node: ast.AST) -> bool:
    if isinstance(node, ast.List | ast.Tuple):
        return len(node.elts) <= 16 and not any(isinstance(e, ast.Starred) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) <= 256


def _is_literal(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in _FOLDABLE


def _plainly_arithmetic(op: ast.operator, left: ast.expr, right: ast.expr) -> bool:
    """Whether an operand means the operation cannot build a large value at once: ``x + 1`` is
    a number or a TypeError; ``x * 1.5`` too; ``7 % x`` cannot format text."""
    if isinstance(op, ast.Add | ast.Mult) and any(_is_signed_number(n) for n in (left, right)):
        return isinstance(op, ast.Add)  # x + -1: a number or a TypeError; x * -2 may repeat
    if isinstance(op, ast.Add):
        # ``trail + [square]``: a display or a literal operand adds only its own few elements
        # each time, so the value grows at most linearly with the steps taken (each charged).
        return any(
            _is_number(n) or _is_small_display(n) or _is_random_number(n) for n in (left, right)
        )
    if isinstance(op, ast.Mult):
        return any(isinstance(n, ast.Constant) and type(n.value) is float for n in (left, right))
    if isinstance(op, ast.Mod):
        return _is_number(left)
    return False
