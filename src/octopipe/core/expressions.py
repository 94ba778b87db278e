"""Safe, compile-once expressions, per-(unit, step) randomness and the expression-step runner.

Pipelines are written by other people, so expressions run in a Python subset that cannot reach
imports, dunders, files or processes (the static checks are in `core/safe_ast.py`). Each source
string is parsed and checked once, compiled to a code object, and evaluated with ``eval``
against a plain dict whose ``__builtins__`` holds only `SAFE_BUILTIN_NAMES`: evaluation costs
about as much as running the same Python directly.

Randomness reaches an expression only through the `UnitRandom` passed in: `unit_random` seeds
it from SHA-256 of the unit id and the step name, so draws are identical across processes and
machines, and two steps of one unit get unrelated streams. The module does no I/O and reads no
clock.

Every evaluation runs under a `Budget` (``core/budget.py``): values too large to build are
refused before they are built, and a unit whose expressions take too many steps or too much CPU
time fails with ``ResourceLimitExceeded`` (an `ExpressionError` naming the expression). One
budget covers one unit at one step: pass it to `ExpressionProgram.run` and
`Expression.evaluate`, or let each call make its own (or use the one made current by
``budget.activate``).
"""

from __future__ import annotations

import ast
import copy
import hashlib
import keyword
import math
import random as _random
import re
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import Any, TypeVar

from octopipe.core import safe_ast
from octopipe.core.bounded import BOUNDED_BUILTINS, bounded_isinstance, copy_type_methods
from octopipe.core.budget import CLOCK_EVERY, Budget, activate, active, check_length, current
from octopipe.errors import ExpressionError, UnsafeExpressionError

__all__ = [
    "SAFE_BUILTIN_NAMES",
    "Expression",
    "ExpressionProgram",
    "ProgramResult",
    "UnitRandom",
    "compile_expression",
    "make_namespace",
    "unit_random",
]

T = TypeVar("T")

_MATH_NAMES = [
    "sqrt",
    "floor",
    "ceil",
    "trunc",
    "fabs",
    "exp",
    "log",
    "log10",
    "log2",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "atan2",
    "hypot",
    "degrees",
    "radians",
    "isnan",
    "isinf",
    "isfinite",
    "pi",
    "e",
    "inf",
]

_SAFE_BUILTINS: dict[str, Any] = {
    **{f.__name__: f for f in (abs, all, any, divmod, enumerate, filter, isinstance, len, map)},
    **{f.__name__: f for f in (max, min, next, range, reversed, round, sorted, sum, zip)},
    **{f.__name__: f for f in (chr, ord, hex, bin)},
    **{t.__name__: t for t in (bool, int, float, str, list, tuple, dict, set, frozenset)},
    # Builtins that could build or walk huge values check sizes and charge the budget first.
    **BOUNDED_BUILTINS,
    "isinstance": bounded_isinstance,
    # asteval, which Octobatch used, offers the math module's names as builtins; pipelines
    # written for it may call sqrt() or floor(). factorial/comb are left out: unbounded cost.
    **{name: getattr(math, name) for name in _MATH_NAMES},
}
copy_type_methods(safe_ast.ALLOWED_ATTRIBUTES)
SAFE_BUILTIN_NAMES: frozenset[str] = frozenset(_SAFE_BUILTINS)
"""Names every expression can read besides its namespace (``True``/``False``/``None`` are
literals)."""

# Added to every evaluation namespace, overriding unit fields of the same name. User code cannot
# name these: the checker refuses names starting with "__".
_RESERVED: dict[str, Any] = {"__builtins__": _SAFE_BUILTINS, **safe_ast.HELPERS}

HIDDEN_FIELDS = frozenset({"_metadata", "_raw_text"})
"""Unit fields an expression step does not see."""


def make_namespace(fields: Mapping[str, Any], *, rng: UnitRandom | None = None) -> dict[str, Any]:
    """A ready evaluation namespace: `Expression.evaluate` uses it as is instead of copying.

    Build one per record when evaluating many expressions (validation rules) against it.
    """
    namespace = dict(fields)
    if rng is not None:
        namespace["random"] = rng
    namespace.update(_RESERVED)
    return namespace


@dataclass(frozen=True, slots=True)
class Expression:
    """A checked, compiled expression. Build with `compile_expression`."""

    source: str
    variable: str | None
    names: frozenset[str]
    """Free names read, excluding safe builtins and names bound by comprehensions/lambdas."""
    code: CodeType = field(repr=False, compare=False)
    ticks: bool = field(default=True, repr=False, compare=False)
    """Whether the code takes budget steps (has a comprehension or a lambda)."""

    @property
    def lookups(self) -> frozenset[str]:
        """Every name evaluating it may look up in its namespace: its free `names` and the
        safe builtins its code names (a field named like a builtin hides that builtin)."""
        named = {n for names in _code_names(self.code) for n in names}
        return self.names | (SAFE_BUILTIN_NAMES & named)

    def evaluate(self, namespace: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """Evaluate against `namespace` (its fields never modified) within ``budget`` (by
        default the current one, or a fresh one); any failure is an `ExpressionError`."""
        scope: dict[str, Any]
        if type(namespace) is dict and namespace.get("__builtins__") is _SAFE_BUILTINS:
            scope = namespace
        else:
            scope = {**namespace, **_RESERVED}
        current_budget = active()
        try:
            if budget is None and current_budget is not None:
                if self.ticks:
                    scope[safe_ast.TICK] = current_budget.tick
                return eval(self.code, scope)
            budget = budget or Budget()
            if self.ticks:
                scope[safe_ast.TICK] = budget.tick
            with activate(budget):
                return eval(self.code, scope)
        except Exception as exc:
            raise _evaluation_error(self.source, self.variable, exc) from exc


def compile_expression(source: str, *, variable: str | None = None) -> Expression:
    """Parse, check and compile `source` once.

    Raises `UnsafeExpressionError` for a refused construct and `ExpressionError` for a syntax
    error or a literal ``**``/``<<`` whose result would be too large.
    """
    names, tree = _checked_tree(source, variable)
    code = _compile(tree, source, variable, f"<{variable or 'expression'}>", "eval")
    ticks = any(safe_ast.TICK in n for n in _code_names(code))
    return Expression(source=source, variable=variable, names=names, code=code, ticks=ticks)


def _checked_tree(source: str, variable: str | None) -> tuple[frozenset[str], ast.Expression]:
    """(free names, checked tree with guarded arithmetic) of `source`, or an `ExpressionError`."""
    if not isinstance(source, str):
        raise ExpressionError(repr(source), "an expression must be a string", variable)
    try:
        return safe_ast.analyse(ast.parse(source.strip(), mode="eval"), SAFE_BUILTIN_NAMES)
    except SyntaxError as exc:
        where = f" (column {exc.offset})" if exc.offset else ""
        raise ExpressionError(source, f"invalid syntax: {exc.msg}{where}", variable) from None
    except safe_ast.Refused as exc:
        raise UnsafeExpressionError(source, str(exc), variable) from None
    except RecursionError:
        raise ExpressionError(source, "expression is nested too deeply", variable) from None
    except Exception as exc:  # ResourceLimitExceeded, null bytes, MemoryError
        raise _evaluation_error(source, variable, exc) from None


def _compile(
    tree: ast.Module | ast.Expression, source: str, variable: str | None, name: str, mode: str
) -> CodeType:
    try:
        return compile(tree, name, mode)
    except RecursionError:
        raise ExpressionError(source, "expression is nested too deeply", variable) from None
    except Exception as exc:
        raise _evaluation_error(source, variable, exc) from None


def _evaluation_error(source: str, variable: str | None, exc: BaseException) -> ExpressionError:
    return ExpressionError(source, f"{type(exc).__name__}: {exc}", variable)


_FAST_RANGE = 2**40


class UnitRandom:
    """The ``random`` object expressions see: one private `random.Random` per (unit, step).

    Only the public methods below are reachable from expressions (the attribute allow-list
    refuses ``_rng``). `shuffle` shuffles in place and returns ``None``, as in Python.
    """

    __slots__ = ("_random", "_rng")

    def __init__(self, seed: int) -> None:
        self._rng = _random.Random(seed)
        self._random = self._rng.random

    # choice and randint scale one C-level random() draw instead of going through Python's
    # _randbelow: ~10x cheaper, and a random walk calls them once per iteration. The bias of
    # scaling a 53-bit float is below 2**-40 for the sizes allowed here.
    def choice(self, seq: Sequence[T]) -> T:
        size = len(seq)
        if not size:
            raise IndexError("Cannot choose from an empty sequence")
        return seq[int(self._random() * size)]

    def randint(self, a: int, b: int) -> int:
        width = b - a + 1
        if type(a) is not int or type(b) is not int or width <= 0 or width > _FAST_RANGE:
            return self._rng.randint(a, b)
        return a + int(self._random() * width)

    def random(self) -> float:
        return self._rng.random()

    def uniform(self, a: float, b: float) -> float:
        return self._rng.uniform(a, b)

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        if isinstance(k, int) and k > 64:
            check_length(k, f"random.sample(..., {k:,})")
            current().charge(k)
        return self._rng.sample(population, k)

    def shuffle(self, x: MutableSequence[Any]) -> None:
        if len(x) > 64:
            current().charge(len(x))
        self._rng.shuffle(x)

    def gauss(self, mu: float = 0.0, sigma: float = 1.0) -> float:
        return self._rng.gauss(mu, sigma)

    def __repr__(self) -> str:
        return "UnitRandom()"


def unit_random(unit_id: str, step: str) -> UnitRandom:
    """The random stream of one unit in one step.

    Seed: the first 8 bytes (big-endian) of ``sha256(unit_id + "\\x00" + step)``. A hash, not
    ``hash()``, so the stream is the same in every process; the step name is mixed in so two
    steps of one unit draw unrelated numbers.
    """
    digest = hashlib.sha256(f"{unit_id}\x00{step}".encode()).digest()
    return UnitRandom(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True, slots=True)
class ProgramResult:
    """The variables an expression step computed for one unit, in definition order."""

    values: dict[str, Any]
    iterations: int
    hit_max_iterations: bool


# Names of the generated step function's parameter and bookkeeping locals: user code cannot
# name anything starting with "__".
_STEP = "__octopipe_step__"
_NAMESPACE = "__octopipe_ns__"
_ITERATIONS = "__octopipe_iterations__"
_HIT_MAX = "__octopipe_hit_max__"
_QUOTED_NAME = re.compile(r"'(\w+)'")


@dataclass(frozen=True, slots=True)
class ExpressionProgram:
    """An expression step compiled once: ``init``, ordered ``expressions``, ``loop_until``.

    The whole step (the assignments, and the loop when there is a ``loop_until``) is compiled
    into the body of one function. Per unit, `run` builds a namespace dict (the unit's fields
    without `HIDDEN_FIELDS`, ``random``, the safe builtins) and calls that function with the
    dict as its globals. Every name the step assigns or reads, other than a builtin, is a fast
    local of the function (a cell when a lambda or comprehension reads it), loaded from the
    namespace in a prologue when present there: the loop then runs on ``LOAD_FAST``/
    ``STORE_FAST`` instead of dict operations. Reading a name that has no value yet is still
    reported as ``NameError: name 'x' is not defined`` (see `_unbound_name`). ``init`` runs once,
    then the ``expressions`` block; with ``loop_until`` the block repeats until the condition,
    tested after each pass, is true or `max_iterations` passes have run.

    Isolation between units: expressions cannot mutate values (no mutating method is allowed)
    except through ``random.shuffle``; a program that calls it gets a deep copy of the fields,
    so a list shared between units (e.g. by ``repeat``) is never shuffled in place. Returned
    values may share unmodified containers with the input fields.
    """

    init: tuple[Expression, ...]
    expressions: tuple[Expression, ...]
    loop_until: Expression | None
    max_iterations: int
    _code: CodeType = field(init=False, repr=False, compare=False)
    """The step function's code; its globals are the unit's namespace."""
    _lines: dict[int, tuple[Expression, bool]] = field(init=False, repr=False, compare=False)
    _outputs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _copies_fields: bool = field(init=False, repr=False, compare=False)
    _ticks: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        names = (*self.init, *self.expressions)
        outputs = tuple(dict.fromkeys(str(e.variable) for e in names))
        code, lines = _build_program(self, outputs)
        object.__setattr__(self, "_code", code)
        object.__setattr__(self, "_lines", lines)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "_copies_fields", any("shuffle" in n for n in _code_names(code)))
        object.__setattr__(self, "_ticks", any(safe_ast.TICK in n for n in _code_names(code)))

    @property
    def uses_random(self) -> bool:
        """Whether any expression reads ``random`` (if not, no stream needs seeding)."""
        exprs = (*self.init, *self.expressions, *((self.loop_until,) if self.loop_until else ()))
        return any("random" in e.names for e in exprs)

    @classmethod
    def compile(
        cls,
        init: Mapping[str, Any],
        expressions: Mapping[str, Any],
        loop_until: str | None,
        max_iterations: int,
    ) -> ExpressionProgram:
        """Compile every expression; errors name the variable (``loop_until`` for the condition).

        A non-string value (YAML ``position: 5`` or ``path: []``) is taken as a literal.
        """
        return cls(
            init=tuple(_compile_assignment(name, src) for name, src in init.items()),
            expressions=tuple(_compile_assignment(name, src) for name, src in expressions.items()),
            loop_until=None
            if loop_until is None
            else compile_expression(loop_until, variable="loop_until"),
            max_iterations=max_iterations,
        )

    def run(
        self, fields: Mapping[str, Any], rng: UnitRandom, budget: Budget | None = None
    ) -> ProgramResult:
        """Run for one unit within ``budget`` (by default the current one, or a fresh one);
        an exception raises `ExpressionError` naming variable and source."""
        ns = {key: value for key, value in fields.items() if key not in HIDDEN_FIELDS}
        if self._copies_fields:
            ns = copy.deepcopy(ns)
        ns["random"] = rng
        ns.update(_RESERVED)
        current_budget = active()
        budget = budget or current_budget or Budget()
        if self._ticks:
            ns[safe_ast.TICK] = budget.tick
        try:
            if budget is current_budget:
                values, iterations, hit_max = FunctionType(self._code, ns)(ns)
            else:
                with activate(budget):
                    values, iterations, hit_max = FunctionType(self._code, ns)(ns)
        except Exception as exc:
            raise self._error(exc) from exc
        if self.loop_until is None:
            iterations = 1
        return ProgramResult(dict(zip(self._outputs, values, strict=True)), iterations, hit_max)

    def _error(self, exc: Exception) -> ExpressionError:
        line = None
        iterations = 0
        innermost = None
        tb = exc.__traceback__
        while tb is not None:  # the innermost frame of the program code is the failing line
            innermost = tb.tb_frame.f_code
            if innermost is self._code:
                line = tb.tb_lineno
                iterations = tb.tb_frame.f_locals.get(_ITERATIONS, 0)
            tb = tb.tb_next
        detail = f"{type(exc).__name__}: {exc}"
        unbound = self._unbound_name(exc, innermost)
        if unbound is not None:  # worded as when the step ran on a namespace dict
            detail = f"NameError: name {unbound!r} is not defined"
        if line not in self._lines:  # not expected: every statement that can raise is mapped
            return ExpressionError("<expression step>", detail)
        failed, in_loop = self._lines[line]
        if in_loop:
            detail += f" (iteration {iterations + 1})"
        return ExpressionError(failed.source, detail, failed.variable)

    def _unbound_name(self, exc: Exception, innermost: CodeType | None) -> str | None:
        """The step name `exc` reports as read before it had a value, if that is what it is.

        The step function raises ``UnboundLocalError`` for such a read, and a lambda or
        comprehension reading it raises ``NameError: cannot access free variable``.
        """
        if type(exc) is UnboundLocalError and innermost is self._code:
            name = None
        elif type(exc) is NameError and innermost is not self._code:
            name = exc.name
        else:
            return None
        if name is None:
            found = _QUOTED_NAME.search(str(exc))
            name = found.group(1) if found else None
        step_names = (*self._code.co_varnames, *self._code.co_cellvars)
        return name if name in step_names else None


def _build_program(
    program: ExpressionProgram, outputs: tuple[str, ...]
) -> tuple[CodeType, dict[int, tuple[Expression, bool]]]:
    """The step function's code; each expression sits on its own line number.

    ``lines`` maps a line to its expression and whether it runs inside the loop, so a
    traceback names the failing expression without any per-step bookkeeping at run time.
    The function takes the namespace (also its globals) and returns the `outputs`' values,
    the iteration count and whether `max_iterations` was hit.
    """
    lines: dict[int, tuple[Expression, bool]] = {}
    looping = program.loop_until is not None

    def located(statement: ast.stmt, expr: Expression, in_loop: bool = looping) -> ast.stmt:
        lines[len(lines) + 1] = (expr, in_loop)
        _set_line(statement, len(lines))
        return statement

    def assign(expr: Expression) -> ast.stmt:
        target = ast.Name(str(expr.variable), ast.Store())
        return ast.Assign([target], _checked_tree(expr.source, expr.variable)[1].body)

    body = [located(assign(e), e, False) for e in program.init]
    block = [located(assign(e), e) for e in program.expressions]
    if program.loop_until is None:
        body += block
    else:
        counter = ast.Name(_ITERATIONS, ast.Load())
        until = _checked_tree(program.loop_until.source, "loop_until")[1].body
        stop_at = ast.Compare(counter, [ast.GtE()], [ast.Constant(program.max_iterations)])
        hit = ast.Assign([ast.Name(_HIT_MAX, ast.Store())], ast.Constant(True))
        block += [
            ast.AugAssign(ast.Name(_ITERATIONS, ast.Store()), ast.Add(), ast.Constant(1)),
            located(_charge_every(CLOCK_EVERY), program.loop_until),  # a step per pass
            located(ast.If(until, [ast.Break()], []), program.loop_until),
            ast.If(stop_at, [hit, ast.Break()], []),
        ]
        body.append(ast.While(ast.Constant(True), block, []))
    # Every name the step assigns or reads, builtins aside, becomes a local of the function.
    # Builtins stay globals (a unit field of the same name still shadows them) unless the step
    # assigns them: then they start as the field or, failing that, the builtin.
    expressions = (*program.init, *program.expressions, *_optional(program.loop_until))
    read = (name for e in expressions for name in sorted(e.names))
    prologue = [_assign(_ITERATIONS, ast.Constant(0)), _assign(_HIT_MAX, ast.Constant(False))]
    for name in dict.fromkeys((*outputs, *read)):
        present = ast.Compare(ast.Constant(name), [ast.In()], [_name(_NAMESPACE)])
        builtin = [_assign(name, _item("__builtins__", name))] if name in SAFE_BUILTIN_NAMES else []
        prologue.append(ast.If(present, [_assign(name, _item(_NAMESPACE, name))], builtin))
    values = ast.Tuple([_name(name) for name in outputs], ast.Load())
    returned = ast.Return(ast.Tuple([values, _name(_ITERATIONS), _name(_HIT_MAX)], ast.Load()))
    step = ast.parse(f"def {_STEP}({_NAMESPACE}): pass")
    function = step.body[0]
    assert isinstance(function, ast.FunctionDef)
    _set_line(step, len(lines) + 1)  # the def line, the prologue and the loop bookkeeping
    function.body = [*prologue, *body, returned]
    _set_line(step, len(lines) + 1, only_missing=True)
    module = _compile(step, "<expression step>", None, "<expression step>", "exec")
    return next(c for c in module.co_consts if isinstance(c, CodeType)), lines


def _charge_every(passes: int) -> ast.stmt:
    """``if not iterations % passes: charge(passes)``, with ``passes`` a power of two: the loop
    pays its steps in lumps instead of a call per pass."""
    masked = ast.BinOp(_name(_ITERATIONS), ast.BitAnd(), ast.Constant(passes - 1))
    due = ast.Compare(masked, [ast.Eq()], [ast.Constant(0)])
    charge = ast.Call(_name(safe_ast.CHARGE_HELPER), [ast.Constant(passes)], [])
    return ast.If(due, [ast.Expr(charge)], [])


def _name(name: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(name, ctx or ast.Load())


def _item(container: str, key: str) -> ast.Subscript:
    return ast.Subscript(_name(container), ast.Constant(key), ast.Load())


def _assign(name: str, value: ast.expr) -> ast.stmt:
    return ast.Assign([_name(name, ast.Store())], value)


def _optional(expression: Expression | None) -> tuple[Expression, ...]:
    return () if expression is None else (expression,)


def _set_line(tree: ast.AST, line: int, only_missing: bool = False) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.expr | ast.stmt):
            if only_missing and getattr(node, "lineno", None) is not None:
                continue
            node.lineno = node.end_lineno = line
            node.col_offset = node.end_col_offset = 0


def _compile_assignment(name: str, source: Any) -> Expression:
    text = source if isinstance(source, str) else repr(source)
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ExpressionError(text, f"{name!r} is not a valid variable name", name)
    if name == "random":
        raise ExpressionError(text, "'random' is reserved for the random number source", name)
    try:
        safe_ast.check_identifier(name, "variable")
    except safe_ast.Refused as exc:
        raise UnsafeExpressionError(text, str(exc), name) from None
    return compile_expression(text, variable=name)


def _code_names(code: CodeType) -> Iterator[tuple[str, ...]]:
    """``co_names`` (globals and attributes used) of `code` and every nested code object."""
    yield code.co_names
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_names(const)
