"""Expressions are bounded in the size of what they build, in work and in CPU time: the huge
work is refused before it starts (a C builtin cannot be interrupted), and a unit past its budget
fails alone with an `ExpressionError` naming the expression."""

from __future__ import annotations

import time
from typing import Any

import pytest

from octopipe.core.budget import Budget, Limits
from octopipe.core.expressions import ExpressionProgram, compile_expression, unit_random
from octopipe.core.storable import unstorable_fields
from octopipe.errors import EvaluationCancelled, ExpressionError

FAST_S = 1.0  # a refusal happens before the work: well under a second

HUGE = [
    "sum(range(10**12))",
    "len(list(range(10**10)))",
    "sorted(range(10**11))[0]",
    "max(range(10**12))",
    "any(x < 0 for x in range(10**12))",
    "'x' * 10**10",
    "[0] * 10**10",
    "10**10**10",
    "len(str(10**10**10))",
    "(x * 10**6) * 10**6",
    "'-'.join(['x' * 10**6] * 10**4)",
    "('ab' * 10).replace('', 'x' * 10**6)",
    "'x'.ljust(10**10)",
    "'x'.center(10**10)",
    "'7'.zfill(10**10)",
    "str.center('x', 10**10)",
    "f'{1:>1000000000}'",
    "f'{1:.1000000000f}'",
    "f'{x:>{10**9}}'",
    "'%1000000000d' % 1",
    "'%.1000000000f' % 1.0",
    "str([['x' * 10**6] * 10**3] * 10**3)",
    "f'{[y] * 10**6}'",
    "random.sample(range(10**7), 10**7 + 1)",
    "sum([[1] * 10**6] * 10**3, [])",
]


@pytest.mark.parametrize("source", HUGE)
def test_huge_work_is_refused_before_it_starts(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        compiled = compile_expression(source, variable="v")
        compiled.evaluate({"x": "abc", "y": "z" * 100, "random": unit_random("u", "s")})
    assert time.perf_counter() - started < FAST_S * 2
    assert "ResourceLimitExceeded" in caught.value.detail
    assert caught.value.expression == source
    assert caught.value.variable == "v"


@pytest.mark.parametrize(
    "source",
    ["'x' * 10**10", "10**10**10", "f'{1:>1000000000}'", "'%1000000000d' % 1", "'x' * 10 * 10**9"],
)
def test_literal_huge_values_are_refused_at_compile_time(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression(source)
    assert time.perf_counter() - started < FAST_S


def test_a_doubling_loop_is_stopped_at_the_size_limit() -> None:
    program = ExpressionProgram.compile(
        {"s": "'ab'", "n": "0"}, {"s": "s + s", "n": "n + 1"}, "n > 100", 1000
    )
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "walk"))
    assert time.perf_counter() - started < FAST_S
    assert caught.value.variable == "s"
    assert "str + str would have" in caught.value.detail
    assert "(iteration 23)" in caught.value.detail


def test_a_squaring_loop_is_stopped_at_the_integer_limit() -> None:
    program = ExpressionProgram.compile({"x": "3"}, {"x": "x * x"}, "x < 0", 1000)
    with pytest.raises(ExpressionError, match=r"the result of \* would exceed 100,000 bits"):
        program.run({}, unit_random("u", "walk"))


def test_a_long_python_level_loop_runs_out_of_cpu_time() -> None:
    limits = Limits(max_seconds=0.3)
    program = ExpressionProgram.compile(
        {"n": "0"}, {"n": "n + len([1 for i in range(1000)])"}, "n < 0", 10**9
    )
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "walk"), Budget(limits))
    assert time.perf_counter() - started < 3.0
    assert "used more than 0.3 s of CPU time" in caught.value.detail


def test_exponential_lambda_recursion_runs_out_of_budget() -> None:
    source = "(lambda f: f(f, 40))(lambda f, n: 1 if n < 1 else f(f, n - 1) + f(f, n - 1))"
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression(source).evaluate({}, Budget(Limits(max_seconds=0.3)))
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize(
    "source",
    [
        "[[i, j] for i in range(10**6) for j in range(10**6)][-1]",
        "len([1 for i in range(10**7) for j in range(3)])",
        "sum(sum(range(10**6)) for i in range(10**6))",
        "len([sorted(xs) for i in range(10**6)])",
    ],
)
def test_nested_work_runs_out_of_budget(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression(source).evaluate(
            {"xs": list(range(1000))}, Budget(Limits(max_work=10**6))
        )
    assert time.perf_counter() - started < 15.0  # about 10**6 small steps: bounded, not hours


def test_the_work_limit_counts_every_step() -> None:
    budget = Budget(Limits(max_work=10_000))
    expression = compile_expression("len([i for i in range(4_000)])")
    assert expression.evaluate({}, budget) == 4_000
    assert expression.evaluate({}, budget) == 4_000
    with pytest.raises(ExpressionError, match="took more than 10,000 steps"):
        expression.evaluate({}, budget)
    with pytest.raises(ExpressionError, match="took more than 10,000 steps"):
        compile_expression("[1 for i in range(40)]").evaluate({}, budget)  # spent stays spent


def test_a_cancelled_budget_stops_the_evaluation_and_is_not_an_expression_error() -> None:
    stop = False

    def cancelled() -> bool:
        return stop

    budget = Budget(cancelled=cancelled)
    program = ExpressionProgram.compile({"n": "0"}, {"n": "n + 1"}, "n < 0", 10**9)
    stop = True
    started = time.perf_counter()
    with pytest.raises(EvaluationCancelled):
        program.run({}, unit_random("u", "walk"), budget)
    assert time.perf_counter() - started < FAST_S


ORDINARY: list[tuple[str, dict[str, Any], Any]] = [
    ("sum(range(1000))", {}, 499500),
    ("'-' * 40", {}, "-" * 40),
    ("[0] * 5 + [1]", {}, [0, 0, 0, 0, 0, 1]),
    ("', '.join(str(c) for c in cards)", {"cards": [1, 2]}, "1, 2"),
    ("'abc'.center(9, '*')", {}, "***abc***"),
    ("'ab'.replace('b', 'xyz')", {}, "axyz"),
    ("'5'.zfill(3)", {}, "005"),
    ("f'{score:>6.2f}|{name!r}'", {"score": 3.14159, "name": "a"}, "  3.14|'a'"),
    ("f'{v:>{w}}'", {"v": 1, "w": 4}, "   1"),
    ("'%05.1f %s' % (2.25, 'x')", {}, "002.2 x"),
    ("n % 7", {"n": 23}, 2),
    ("isinstance(xs, list) and isinstance(n, (int, float))", {"xs": [], "n": 1}, True),
    ("list(map(str.upper, ['a', 'b']))", {}, ["A", "B"]),
    ("sorted({'b': 1, 'a': 2}.items())", {}, [("a", 2), ("b", 1)]),
    ("sum([[1], [2, 3]], [])", {}, [1, 2, 3]),
    ("sum([(1,), (2,)], ())", {}, (1, 2)),
    ("dict(zip('ab', range(2)))", {}, {"a": 0, "b": 1}),
    ("max(len(w) for w in words)", {"words": ["aa", "b"]}, 2),
    ("str([1, 'a'])", {}, "[1, 'a']"),
    ("2 ** 10 * 3", {}, 3072),
    ("x * 2.5", {"x": 2}, 5.0),
    ("(lambda a: a * 2)(21)", {}, 42),
]


@pytest.mark.parametrize(("source", "namespace", "expected"), ORDINARY)
def test_ordinary_expressions_are_unchanged(
    source: str, namespace: dict[str, Any], expected: Any
) -> None:
    assert compile_expression(source).evaluate(namespace) == expected


def test_a_budget_error_names_the_variable_and_the_source_in_a_program() -> None:
    program = ExpressionProgram.compile({}, {"ok": "1", "bad": "sum(range(10**12))"}, None, 1)
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "s"))
    assert caught.value.variable == "bad"
    assert caught.value.message.startswith("bad = 'sum(range(10**12))': ResourceLimitExceeded")


# --- what may be stored -----------------------------------------------------------------------


def test_values_json_cannot_hold_are_named_with_their_path() -> None:
    nested: Any = [1]
    for _ in range(100):
        nested = [nested, nested]
    problems = unstorable_fields(
        {
            "tuple_keys": {(1, 2): 3},
            "nan": [1, {"k": float("nan")}],
            "huge": 10**30,
            "a_set": {1, 2},
            "shared": nested,
            "function": [len],
            "fine": {"a": [1, 2.5, None, True, "x"], 1: "int keys are written as strings"},
        }
    )
    assert problems == [
        "field tuple_keys has the key (1, 2), which is not a string: JSON keys are strings",
        "field nan[1]['k'] is nan, which JSON cannot store",
        "field huge is an integer of 100 bits (more than 64): use str() to keep it",
        "field a_set is a set, which cannot be stored as JSON: use sorted(...) or list(...)",
        "field shared would be more than 10,000,000 characters of JSON",
        "field function[0] is a builtin_function_or_method, which cannot be stored as JSON",
    ]
