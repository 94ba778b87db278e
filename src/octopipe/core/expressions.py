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

Limits that are not guarded (see `core/safe_ast.py`): CPU time and memory. Only integer ``**``,
``pow()`` and ``<<`` are capped; ``"x" * 10**9``, ``list(range(10**9))`` or a loop that squares
a number each iteration can still exhaust memory or run long, so the engine should bound a
worker's time and memory if it runs untrusted pipelines unattended.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import keyword
import math
import random as _random
from collections.abc import Iterator, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, TypeVar

from octopipe.core import safe_ast
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
    "pow": safe_ast.guarded_pow,
    # asteval, which Octobatch used, offers the math module's names as builtins; pipelines
    # written for it may call sqrt() or floor(). factorial/comb are left out: unbounded cost.
    **{name: getattr(math, name) for name in _MATH_NAMES},
}
SAFE_BUILTIN_NAMES: frozenset[str] = frozenset(_SAFE_BUILTINS)
"""Names every expression can read besides its namespace (``True``/``False``/``None`` are
literals)."""

# Added to every evaluation namespace, overriding unit fields of the same name. User code cannot
# name these: the checker refuses names starting with "__".
_RESERVED: dict[str, Any] = {
    "__builtins__": _SAFE_BUILTINS,
    safe_ast.POW_HELPER: safe_ast.guarded_pow,
    safe_ast.LSHIFT_HELPER: safe_ast.guarded_lshift,
}

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

    def evaluate(self, namespace: Mapping[str, Any]) -> Any:
        """Evaluate against `namespace` (never modified); any failure is an `ExpressionError`."""
        scope: dict[str, Any]
        if type(namespace) is dict and namespace.get("__builtins__") is _SAFE_BUILTINS:
            scope = namespace
        else:
            scope = {**namespace, **_RESERVED}
        try:
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
    return Expression(source=source, variable=variable, names=names, code=code)


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


class UnitRandom:
    """The ``random`` object expressions see: one private `random.Random` per (unit, step).

    Only the public methods below are reachable from expressions (the attribute allow-list
    refuses ``_rng``). `shuffle` shuffles in place and returns ``None``, as in Python.
    """

    __slots__ = ("_rng",)

    def __init__(self, seed: int) -> None:
        self._rng = _random.Random(seed)

    def choice(self, seq: Sequence[T]) -> T:
        return self._rng.choice(seq)

    def randint(self, a: int, b: int) -> int:
        return self._rng.randint(a, b)

    def random(self) -> float:
        return self._rng.random()

    def uniform(self, a: float, b: float) -> float:
        return self._rng.uniform(a, b)

    def sample(self, population: Sequence[T], k: int) -> list[T]:
        return self._rng.sample(population, k)

    def shuffle(self, x: MutableSequence[Any]) -> None:
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


_ITERATIONS = "__octopipe_iterations__"  # names user code cannot read or write
_HIT_MAX = "__octopipe_hit_max__"


@dataclass(frozen=True, slots=True)
class ExpressionProgram:
    """An expression step compiled once: ``init``, ordered ``expressions``, ``loop_until``.

    The whole step is compiled into one code object (the assignments, and the loop when there
    is a ``loop_until``) run by a single ``exec`` per unit against one namespace dict: the
    unit's fields (without `HIDDEN_FIELDS`), ``random`` and the safe builtins. ``init`` runs
    once, then the ``expressions`` block; with ``loop_until`` the block repeats until the
    condition, tested after each pass, is true or `max_iterations` passes have run.

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
    _lines: dict[int, tuple[Expression, bool]] = field(init=False, repr=False, compare=False)
    _outputs: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _copies_fields: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {self.max_iterations}")
        code, lines = _build_program(self)
        names = (*self.init, *self.expressions)
        object.__setattr__(self, "_code", code)
        object.__setattr__(self, "_lines", lines)
        object.__setattr__(self, "_outputs", tuple(dict.fromkeys(str(e.variable) for e in names)))
        object.__setattr__(self, "_copies_fields", any("shuffle" in n for n in _code_names(code)))

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

    def run(self, fields: Mapping[str, Any], rng: UnitRandom) -> ProgramResult:
        """Run for one unit; an exception raises `ExpressionError` naming variable and source."""
        ns = {key: value for key, value in fields.items() if key not in HIDDEN_FIELDS}
        if self._copies_fields:
            ns = copy.deepcopy(ns)
        ns["random"] = rng
        ns.update(_RESERVED)
        ns[_ITERATIONS] = 0
        ns[_HIT_MAX] = False
        try:
            exec(self._code, ns)
        except Exception as exc:
            raise self._error(exc, ns[_ITERATIONS]) from exc
        iterations = 1 if self.loop_until is None else ns[_ITERATIONS]
        values = {key: ns[key] for key in self._outputs}
        return ProgramResult(values, iterations, ns[_HIT_MAX])

    def _error(self, exc: Exception, iterations: int) -> ExpressionError:
        line = None
        tb = exc.__traceback__
        while tb is not None:  # the innermost frame of the program code is the failing line
            if tb.tb_frame.f_code is self._code:
                line = tb.tb_lineno
            tb = tb.tb_next
        detail = f"{type(exc).__name__}: {exc}"
        if line not in self._lines:  # not expected: every statement that can raise is mapped
            return ExpressionError("<expression step>", detail)
        failed, in_loop = self._lines[line]
        if in_loop:
            detail += f" (iteration {iterations + 1})"
        return ExpressionError(failed.source, detail, failed.variable)


def _build_program(
    program: ExpressionProgram,
) -> tuple[CodeType, dict[int, tuple[Expression, bool]]]:
    """One ``exec`` code object for the step; each expression sits on its own line number.

    ``lines`` maps a line to its expression and whether it runs inside the loop, so a
    traceback names the failing expression without any per-step bookkeeping at run time.
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
            located(ast.If(until, [ast.Break()], []), program.loop_until),
            ast.If(stop_at, [hit, ast.Break()], []),
        ]
        body.append(ast.While(ast.Constant(True), block, []))
    module = ast.Module(body, type_ignores=[])
    _set_line(module, len(lines) + 1, only_missing=True)  # the loop bookkeeping
    return _compile(module, "<expression step>", None, "<expression step>", "exec"), lines


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
