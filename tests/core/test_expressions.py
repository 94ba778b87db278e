"""The safe expression language, per-(unit, step) randomness and expression-step programs."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import octopipe
from octopipe.core.expressions import (
    SAFE_BUILTIN_NAMES,
    ExpressionProgram,
    ProgramResult,
    UnitRandom,
    compile_expression,
    make_namespace,
    unit_random,
)
from octopipe.errors import ExpressionError, UnsafeExpressionError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def evaluate(source: str, **namespace: Any) -> Any:
    return compile_expression(source).evaluate(namespace)


def walk_program(max_iterations: int = 1000) -> ExpressionProgram:
    return ExpressionProgram.compile(
        init={"position": "5"},
        expressions={"step": "random.choice([-1, 1])", "position": "position + step"},
        loop_until="position <= 0 or position >= 10",
        max_iterations=max_iterations,
    )


# --- the language ---------------------------------------------------------------------------

LANGUAGE_CASES: list[tuple[str, dict[str, Any], Any]] = [
    # arithmetic and bitwise
    ("position + step", {"position": 4, "step": -1}, 3),
    ("7 // 2 * 2 + 7 % 2 - -1", {}, 8),
    ("2 ** 10 + 3 ** -1 * 3", {}, 1025.0),
    ("(a & 6) | (a ^ 1) << 2 >> 1", {"a": 5}, 12),
    ("~a", {"a": 5}, -6),
    ("pow(3, 4) + pow(2, 10**100, 7)", {}, 81 + pow(2, 10**100, 7)),
    ("divmod(17, 5)", {}, (3, 2)),
    ("round(3.14159, 2)", {}, 3.14),
    # comparisons, boolean logic, ternary, membership, identity
    ("1 < x <= 3 < 4", {"x": 3}, True),
    ("1 < x <= 3", {"x": 4}, False),
    ("x is None or x is not None and x != 2", {"x": None}, True),
    ("a or b", {"a": "", "b": "fallback"}, "fallback"),
    ("a and b", {"a": [], "b": 1}, []),
    ("not a", {"a": 0}, True),
    ("'big' if total > 19 else 'small'", {"total": 20}, "big"),
    ("'big' if total > 19 else 'small'", {"total": 3}, "small"),
    ("card in hand and 'Q' not in hand", {"card": "K", "hand": ["K", "A"]}, True),
    ("isinstance(x, (int, float)) and not isinstance(x, bool)", {"x": 2.5}, True),
    # subscripts and slices
    ("xs[1:3]", {"xs": [0, 1, 2, 3]}, [1, 2]),
    ("xs[::-1]", {"xs": [0, 1, 2]}, [2, 1, 0]),
    ("xs[::2] + xs[-1:]", {"xs": [0, 1, 2, 3]}, [0, 2, 3]),
    ("d['k'][0]", {"d": {"k": "abc"}}, "a"),
    ("word[-2:]", {"word": "octopipe"}, "pe"),
    # displays and starred
    ("[*a, *b]", {"a": [1], "b": (2, 3)}, [1, 2, 3]),
    ("{**d, 'c': 3}", {"d": {"a": 1}}, {"a": 1, "c": 3}),
    ("{1, 2, 2}", {}, {1, 2}),
    ("(1,) + (2,)", {}, (1, 2)),
    ("max(*xs)", {"xs": [3, 9, 2]}, 9),
    # comprehensions and generator expressions
    ("[x * x for x in xs if x % 2]", {"xs": [1, 2, 3]}, [1, 9]),
    ("{x % 3 for x in range(10)}", {}, {0, 1, 2}),
    ("{k: v * 2 for k, v in d.items()}", {"d": {"a": 1, "b": 2}}, {"a": 2, "b": 4}),
    ("[y for x in rows for y in x if y > limit]", {"rows": [[1, 5], [7]], "limit": 2}, [5, 7]),
    ("sum(x * x for x in xs)", {"xs": [1, 2, 3]}, 14),
    ("any(c.isdigit() for c in s)", {"s": "ab3"}, True),
    ("all(v > 0 for v in d.values())", {"d": {"a": 1, "b": 0}}, False),
    ("next((i for i in range(10) if i * i > n), -1)", {"n": 20}, 5),
    ("next((i for i in range(3) if i > n), -1)", {"n": 20}, -1),
    # f-strings
    ("f'{x:.2f}'", {"x": 3.14159}, "3.14"),
    (
        "f'{name!r:>8}|{n:05d}|{v:,}'",
        {"name": "ab", "n": 42, "v": 1234567},
        "    'ab'|00042|1,234,567",
    ),
    ("f'{x:{width}.{precision}f}'", {"x": 2.5, "width": 7, "precision": 3}, "  2.500"),
    ("f'{total} points' if total else 'none'", {"total": 3}, "3 points"),
    # string, list, dict and set methods
    ("s.strip().lower().replace(' ', '_')", {"s": "  Hello World "}, "hello_world"),
    ("'-'.join(s.split(','))", {"s": "a,b,c"}, "a-b-c"),
    ("s.startswith('oc') and s.endswith('pe') and s.count('p') == 2", {"s": "octopipe"}, True),
    ("s.title().zfill(8)", {"s": "abc"}, "00000Abc"),
    ("xs.index(3) + xs.count(1)", {"xs": [1, 3, 1]}, 3),
    ("d.get('missing', 0) + len(list(d.keys()))", {"d": {"a": 1}}, 1),
    ("sorted(a.union(b) - a.intersection(b))", {"a": {1, 2}, "b": {2, 3}}, [1, 3]),
    ("(7).bit_length() + (2.5).real + (1.0).is_integer()", {}, 6.5),
    # builtins, sorted with a key, lambdas
    (
        "sorted(people, key=lambda p: p['age'])[0]['name']",
        {"people": [{"name": "a", "age": 9}, {"name": "b", "age": 2}]},
        "b",
    ),
    (
        "sorted(words, key=lambda w: (len(w), w), reverse=True)",
        {"words": ["bb", "a", "cc"]},
        ["cc", "bb", "a"],
    ),
    ("max(words, key=len)", {"words": ["a", "ccc", "bb"]}, "ccc"),
    ("list(map(lambda x, y: x + y, a, b))", {"a": [1, 2], "b": [10, 20]}, [11, 22]),
    ("list(filter(lambda x: x > 1, xs))", {"xs": [0, 1, 2, 3]}, [2, 3]),
    ("list(enumerate(zip('ab', reversed(range(2)))))", {}, [(0, ("a", 1)), (1, ("b", 0))]),
    ("chr(ord('a') + 1) + hex(255) + bin(2)", {}, "b0xff0b10"),
    ("int('42') + float('0.5') + len(str(10)) + bool(0)", {}, 44.5),
    ("sorted(frozenset(tuple(set(list(dict(a=1, b=2))))))", {}, ["a", "b"]),
    ("abs(-3) + min(4, 2) + sum([1, 2], 10)", {}, 18),
    # unit temporaries with one leading underscore are ordinary names
    ("_shoe[0]", {"_shoe": ["A", "K"]}, "A"),
]


@pytest.mark.parametrize(("source", "namespace", "expected"), LANGUAGE_CASES)
def test_expression_evaluates_like_python(
    source: str, namespace: dict[str, Any], expected: Any
) -> None:
    assert compile_expression(source).evaluate(namespace) == expected


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("position + step", {"position", "step"}),
        ("len(xs) + random.randint(1, 6)", {"xs", "random"}),
        ("[x * k for x in xs if x > t]", {"k", "xs", "t"}),
        ("{k: v for k, v in d.items()}", {"d"}),
        ("[y for x in rows for y in x]", {"rows"}),
        ("[x for x in x]", {"x"}),  # the first iterable is read in the enclosing scope
        ("sum(i for i in range(n)) + i", {"n", "i"}),
        ("sorted(ws, key=lambda w: len(w) + bonus)", {"ws", "bonus"}),
        ("f'{name:>{width}}'", {"name", "width"}),
        ("_shoe[0] if True else None", {"_shoe"}),
        ("max(1, 2)", set()),
    ],
)
def test_names_are_the_free_names_read(source: str, names: set[str]) -> None:
    assert compile_expression(source).names == frozenset(names)


def test_expression_keeps_its_source_and_variable() -> None:
    expression = compile_expression("a + 1", variable="total")
    assert (expression.source, expression.variable) == ("a + 1", "total")


def test_surrounding_whitespace_is_ignored() -> None:
    assert evaluate("\n  a + 1  \n", a=1) == 2


def test_evaluate_does_not_modify_the_namespace() -> None:
    namespace = {"xs": [3, 1, 2]}
    assert evaluate("sorted(xs)", **namespace) == [1, 2, 3]
    assert namespace == {"xs": [3, 1, 2]}


def test_prepared_namespace_gives_the_same_result() -> None:
    namespace = make_namespace({"a": 2, "b": 3})
    assert compile_expression("a ** b + len([a, b])").evaluate(namespace) == 10
    assert compile_expression("a * b").evaluate(namespace) == 6


def test_safe_builtins_are_the_documented_set() -> None:
    assert {"len", "sorted", "isinstance", "str", "int", "pow", "next"} <= SAFE_BUILTIN_NAMES
    assert not SAFE_BUILTIN_NAMES & {"eval", "exec", "open", "getattr", "type", "__import__"}


def test_a_field_named_like_a_forbidden_builtin_can_be_read() -> None:
    assert evaluate("type == 'monster' and input", type="monster", input="hi") == "hi"


# --- errors ---------------------------------------------------------------------------------


def test_syntax_error_is_an_expression_error_naming_the_variable() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression("position +", variable="position")
    assert not isinstance(caught.value, UnsafeExpressionError)
    assert caught.value.variable == "position"
    assert caught.value.expression == "position +"
    assert "invalid syntax" in caught.value.detail


@pytest.mark.parametrize(
    ("source", "namespace", "kind"),
    [
        ("1 / x", {"x": 0}, "ZeroDivisionError"),
        ("missing + 1", {}, "NameError"),
        ("xs[5]", {"xs": []}, "IndexError"),
        ("d['k']", {"d": {}}, "KeyError"),
        ("int('x')", {}, "ValueError"),
        ("'a' + 1", {}, "TypeError"),
        ("(lambda f: f(f))(lambda f: f(f))", {}, "RecursionError"),
    ],
)
def test_runtime_failures_are_wrapped(source: str, namespace: dict[str, Any], kind: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source, variable="v").evaluate(namespace)
    assert type(caught.value) is ExpressionError
    assert caught.value.detail.startswith(f"{kind}:")
    assert caught.value.variable == "v"
    assert str(caught.value).startswith(f"v = {source!r}: {kind}")


def test_non_string_source_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        compile_expression(5)  # type: ignore[arg-type]


# --- escape attempts ------------------------------------------------------------------------

ESCAPES = [
    "__import__('os')",
    "__import__",
    "__builtins__",
    "().__class__.__bases__[0].__subclasses__()",
    "[c for c in ().__class__.__mro__]",
    "'{0.__class__}'.format(1)",
    "str.format('{0.__class__}', 1)",
    "'{x}'.format_map({'x': 1})",
    "getattr(x, 'real')",
    "setattr(x, 'a', 1)",
    "eval('1')",
    "exec('1')",
    "compile('1', '', 'eval')",
    "open('/etc/passwd').read()",
    "type(x)",
    "type(x).__subclasses__()",
    "object()",
    "memoryview(b'x')",
    "globals()",
    "locals()",
    "vars()",
    "input()",
    "help()",
    "breakpoint()",
    "(lambda x=().__class__: x)()",
    "(lambda x=1: x)()",
    "(lambda *a: a)()",
    "(lambda **k: k)()",
    "(lambda: 1).__globals__",
    "(lambda: 1).__code__",
    "(lambda getattr: getattr(x, 'real'))(1)",
    "(i for i in []).gi_frame",
    "(i for i in []).gi_code",
    "random._rng",
    "random._UnitRandom__rng",
    "random.choice.__self__",
    "random.seed(1)",
    "random.getstate()",
    "x.__dict__",
    "x._private",
    "x.mro()",
    "f'{x.__class__}'",
    "f'{x:{x.__class__}}'",
    "dict(__class__=1)",
    "[1 for x.real in [1]]",
    "[1 for x[0] in [[1]]]",
    "[__x for __x in [1]]",
    "[x async for x in y]",
    "(y := 1)",
    "[y := 1 for z in [1]]",
    "await x",
    "(yield)",
    "(yield from x)",
    "a @ b",
    "xs.append(1)",
    "d.update({})",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_escape_attempt_is_refused_at_compile_time(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(UnsafeExpressionError) as caught:
        compile_expression(source, variable="v")
    assert time.perf_counter() - started < 1.0
    assert caught.value.variable == "v"
    assert caught.value.detail  # a reason the author can act on


@pytest.mark.parametrize(
    "source",
    ["10**10**10", "1 << 10**9", "2 ** 1_000_000", "pow(10, 10**10)", "10 ** 100_000 * 2"],
)
def test_huge_integer_results_are_refused_fast(source: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression(source).evaluate({})
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("source", "namespace"),
    [
        ("base ** exponent", {"base": 10, "exponent": 10**10}),
        ("(-base) ** exponent", {"base": 7, "exponent": 10**8}),
        ("one << shift", {"one": 1, "shift": 10**9}),
        ("[n ** n for n in [base]]", {"base": 10**6}),
        ("(lambda b: b ** b)(base)", {"base": 10**6}),
    ],
)
def test_huge_integer_results_are_refused_at_run_time(
    source: str, namespace: dict[str, Any]
) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression(source).evaluate(namespace)
    assert time.perf_counter() - started < 1.0


def test_integer_limits_leave_ordinary_arithmetic_alone() -> None:
    assert evaluate("2 ** 1000 == 1 << 1000") is True
    assert evaluate("b ** e", b=2.0, e=0.5) == 2.0**0.5
    assert evaluate("b ** e", b=2, e=-2) == 0.25
    assert evaluate("1 ** e + 0 ** e", e=10**30) == 1


@pytest.mark.parametrize(
    "source",
    ["[getattr][0](x, 'real')", "list(map(eval, ['1']))", "min([open, len], key=str)"],
)
def test_forbidden_builtins_do_not_exist_even_as_values(source: str) -> None:
    with pytest.raises(ExpressionError, match="NameError"):
        compile_expression(source).evaluate({"x": 1})


def test_a_field_cannot_replace_the_arithmetic_guard() -> None:
    namespace = {"__octopipe_pow__": lambda a, b: 0, "__builtins__": __builtins__, "b": 2}
    assert compile_expression("b ** 3").evaluate(namespace) == 8
    with pytest.raises(ExpressionError, match="ResourceLimitExceeded"):
        compile_expression("b ** 10**9").evaluate(namespace)


# --- seeded randomness ----------------------------------------------------------------------


DRAWS = """
def draws(rng):
    deck = list(range(10))
    rng.shuffle(deck)
    return [
        rng.random(),
        rng.randint(1, 100),
        rng.choice("abcdefgh"),
        rng.uniform(-1.0, 1.0),
        rng.sample(range(50), 3),
        rng.gauss(10.0, 2.0),
        deck,
    ]
"""
_draws_namespace: dict[str, Any] = {}
exec(DRAWS, _draws_namespace)
draws = _draws_namespace["draws"]


def test_same_unit_and_step_give_identical_draws() -> None:
    assert draws(unit_random("walk__rep0001", "walk")) == draws(
        unit_random("walk__rep0001", "walk")
    )


def test_different_units_or_steps_give_different_draws() -> None:
    base = draws(unit_random("u1", "walk"))
    assert draws(unit_random("u2", "walk")) != base
    assert draws(unit_random("u1", "report")) != base


def test_unit_and_step_are_separated_in_the_seed() -> None:
    assert unit_random("ab", "c").random() != unit_random("a", "bc").random()


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_draws_are_identical_in_another_process(hash_seed: str) -> None:
    script = (
        "import json\n"
        "from octopipe.core.expressions import unit_random\n"
        f"{DRAWS}\n"
        "print(json.dumps(draws(unit_random('walk__rep0042', 'random_walk'))))\n"
    )
    src = str(Path(octopipe.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    expected = draws(unit_random("walk__rep0042", "random_walk"))
    assert json.loads(completed.stdout) == json.loads(json.dumps(expected))


def test_two_steps_of_the_same_units_are_uncorrelated() -> None:
    ids = [f"unit{i:05d}" for i in range(5000)]
    first_a = [unit_random(unit_id, "a").random() for unit_id in ids]
    first_b = [unit_random(unit_id, "b").random() for unit_id in ids]
    assert abs(statistics.correlation(first_a, first_b)) < 0.05


def test_random_walk_reaches_ten_half_of_the_time() -> None:
    program = walk_program()
    results = [
        program.run({}, unit_random(f"walk__rep{i:04d}", "random_walk")) for i in range(10_000)
    ]
    assert not any(r.hit_max_iterations for r in results)
    assert {r.values["position"] for r in results} == {0, 10}
    reached_ten = sum(r.values["position"] == 10 for r in results) / len(results)
    assert 0.485 <= reached_ten <= 0.515


def test_unit_random_exposes_only_the_documented_methods() -> None:
    public = {name for name in dir(UnitRandom) if not name.startswith("_")}
    assert public == {"choice", "randint", "random", "uniform", "sample", "shuffle", "gauss"}
    assert not hasattr(unit_random("u", "s"), "__dict__")


# --- expression programs --------------------------------------------------------------------


def test_program_without_loop_runs_the_block_once_in_order() -> None:
    program = ExpressionProgram.compile(
        init={},
        expressions={"drawn": "pile[:n]", "total": "sum(drawn)", "bust": "total > 19"},
        loop_until=None,
        max_iterations=1,
    )
    result = program.run({"pile": [10, 9, 5], "n": 2}, unit_random("u", "s"))
    assert result == ProgramResult({"drawn": [10, 9], "total": 19, "bust": False}, 1, False)
    assert list(result.values) == ["drawn", "total", "bust"]


def test_init_runs_once_and_the_block_repeats_until_the_condition() -> None:
    program = ExpressionProgram.compile(
        init={"count": "0", "trail": "[start]", "_seen": "0"},
        expressions={"count": "count + 1", "trail": "trail + [count]", "_seen": "_seen + 1"},
        loop_until="count >= 3",
        max_iterations=10,
    )
    result = program.run({"start": "s"}, unit_random("u", "s"))
    assert result == ProgramResult(
        {"count": 3, "trail": ["s", 1, 2, 3], "_seen": 3}, iterations=3, hit_max_iterations=False
    )


def test_condition_met_on_the_last_allowed_iteration_is_not_a_timeout() -> None:
    program = ExpressionProgram.compile({"i": "0"}, {"i": "i + 1"}, "i >= 5", max_iterations=5)
    assert program.run({}, unit_random("u", "s")) == ProgramResult({"i": 5}, 5, False)


def test_hitting_max_iterations_is_flagged() -> None:
    program = ExpressionProgram.compile({"i": "0"}, {"i": "i + 1"}, "i < 0", max_iterations=7)
    assert program.run({}, unit_random("u", "s")) == ProgramResult({"i": 7}, 7, True)


def test_program_draws_come_from_the_units_stream() -> None:
    program = ExpressionProgram.compile({}, {"r": "random.random()"}, None, 1)
    first = program.run({}, unit_random("u", "s")).values["r"]
    assert first == unit_random("u", "s").random()


def test_program_is_reusable_across_units_without_leaks() -> None:
    program = walk_program()
    again = [program.run({}, unit_random(f"u{i}", "w")).values for i in range(3)]
    assert again == [program.run({}, unit_random(f"u{i}", "w")).values for i in range(3)]


def test_bookkeeping_fields_are_not_visible() -> None:
    fields = {"a": 1, "_metadata": {"step": "x"}, "_raw_text": "{...}", "_temp": 2}
    assert ExpressionProgram.compile({}, {"b": "a + _temp"}, None, 1).run(
        fields, unit_random("u", "s")
    ).values == {"b": 3}
    for hidden in ("_metadata", "_raw_text"):
        program = ExpressionProgram.compile({}, {"b": hidden}, None, 1)
        with pytest.raises(ExpressionError, match="NameError"):
            program.run(fields, unit_random("u", "s"))


def test_input_fields_are_not_modified() -> None:
    shared_deck = list(range(20))
    fields = {"deck": shared_deck}
    program = ExpressionProgram.compile(
        {},
        {"_ignored": "random.shuffle(deck)", "top": "deck[:3]", "extended": "deck + [99]"},
        None,
        1,
    )
    tops = {
        tuple(program.run(fields, unit_random(f"u{i}", "deal")).values["top"]) for i in range(5)
    }
    assert shared_deck == list(range(20))
    assert len(tops) > 1  # each unit shuffled its own copy


def test_error_names_the_variable_the_expression_and_the_iteration() -> None:
    program = ExpressionProgram.compile(
        {"i": "0"}, {"i": "i + 1", "ratio": "10 / (3 - i)"}, "i >= 5", max_iterations=10
    )
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "s"))
    error = caught.value
    assert (error.variable, error.expression) == ("ratio", "10 / (3 - i)")
    assert error.detail == "ZeroDivisionError: division by zero (iteration 3)"


def test_error_in_init_names_the_init_variable() -> None:
    program = ExpressionProgram.compile({"i": "start + 1"}, {"j": "i"}, None, 1)
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "s"))
    assert (caught.value.variable, caught.value.expression) == ("i", "start + 1")
    assert caught.value.detail == "NameError: name 'start' is not defined"


def test_error_inside_a_comprehension_names_its_variable() -> None:
    program = ExpressionProgram.compile(
        {}, {"ok": "1", "bad": "[1 / x for x in xs]", "after": "2"}, None, 1
    )
    with pytest.raises(ExpressionError) as caught:
        program.run({"xs": [1, 0]}, unit_random("u", "s"))
    assert caught.value.variable == "bad"
    assert "ZeroDivisionError" in caught.value.detail


def test_error_in_loop_until_names_the_condition() -> None:
    program = ExpressionProgram.compile({}, {"i": "1"}, "i > limit", max_iterations=3)
    with pytest.raises(ExpressionError) as caught:
        program.run({}, unit_random("u", "s"))
    assert (caught.value.variable, caught.value.expression) == ("loop_until", "i > limit")


def test_a_variable_starts_from_the_unit_field_it_shadows() -> None:
    fields = {"count": 5, "other": 1}
    looping = ExpressionProgram.compile({}, {"count": "count + 1"}, "count >= 8", 10)
    assert looping.run(fields, unit_random("u", "s")) == ProgramResult({"count": 8}, 3, False)
    once = ExpressionProgram.compile({}, {"before": "count", "count": "count + other"}, None, 1)
    assert once.run(fields, unit_random("u", "s")).values == {"before": 5, "count": 6}
    assert fields == {"count": 5, "other": 1}


def test_generators_and_comprehensions_read_the_current_loop_variables() -> None:
    program = ExpressionProgram.compile(
        {"i": "0", "firsts": "[]", "totals": "[]"},
        {
            "i": "i + 1",
            "firsts": "firsts + [next((x for x in xs if x > i), -1)]",
            "totals": "totals + [sum(x * i for x in xs)]",
            "shifted": "[x + i for x in xs if x != i]",
            "lookup": "{x: x > i for x in xs}",
        },
        "i >= 3",
        10,
    )
    result = program.run({"xs": [1, 2, 3]}, unit_random("u", "s"))
    assert result.values == {
        "i": 3,
        "firsts": [2, 3, -1],
        "totals": [6, 12, 18],
        "shifted": [4, 5],
        "lookup": {1: False, 2: False, 3: False},
    }


def test_a_lambda_key_reads_the_current_step_variable() -> None:
    program = ExpressionProgram.compile(
        {"target": "0", "picks": "[]"},
        {
            "target": "target + 2",
            "order": "sorted(xs, key=lambda x: abs(x - target))",
            "picks": "picks + [order[0]]",
        },
        "target >= 4",
        10,
    )
    result = program.run({"xs": [0, 1, 2, 3, 4, 5]}, unit_random("u", "s"))
    assert result.values == {"target": 4, "picks": [2, 4], "order": [4, 3, 5, 2, 1, 0]}


@pytest.mark.parametrize(
    ("expressions", "loop_until", "failing", "name", "where"),
    [
        ({"a": "b + 1", "b": "1"}, None, "a", "b", ""),
        ({"a": "b + 1", "b": "1"}, "a > 5", "a", "b", " (iteration 1)"),
        ({"a": "[b for _ in xs]", "b": "1"}, None, "a", "b", ""),
        ({"a": "sum(b for _ in xs)", "b": "1"}, "True", "a", "b", " (iteration 1)"),
        ({"a": "sorted(xs, key=lambda x: b)", "b": "1"}, None, "a", "b", ""),
        ({"a": "1", "b": "a + undefined"}, None, "b", "undefined", ""),
        ({"a": "[undefined for _ in xs]"}, "True", "a", "undefined", " (iteration 1)"),
    ],
)
def test_reading_a_name_without_a_value_is_a_name_error_naming_it(
    expressions: dict[str, str], loop_until: str | None, failing: str, name: str, where: str
) -> None:
    program = ExpressionProgram.compile({}, expressions, loop_until, 5)
    with pytest.raises(ExpressionError) as caught:
        program.run({"xs": [1, 2]}, unit_random("u", "s"))
    assert (caught.value.variable, caught.value.expression) == (failing, expressions[failing])
    assert caught.value.detail == f"NameError: name {name!r} is not defined{where}"
    assert isinstance(caught.value.__cause__, NameError)


def test_a_variable_named_like_a_builtin_shadows_it_once_assigned() -> None:
    expressions = {"total": "sum(xs)", "sum": "total * 10"}
    once = ExpressionProgram.compile({}, expressions, None, 1)
    assert once.run({"xs": [1, 2]}, unit_random("u", "s")).values == {"total": 3, "sum": 30}
    looping = ExpressionProgram.compile({}, expressions, "False", 2)
    with pytest.raises(ExpressionError) as caught:
        looping.run({"xs": [1, 2]}, unit_random("u", "s"))
    assert caught.value.variable == "total"
    assert caught.value.detail == "TypeError: 'int' object is not callable (iteration 2)"


def test_compile_errors_name_the_variable() -> None:
    with pytest.raises(UnsafeExpressionError) as caught:
        ExpressionProgram.compile({}, {"ok": "1", "leak": "x.__class__"}, None, 1)
    assert caught.value.variable == "leak"
    with pytest.raises(ExpressionError) as caught_syntax:
        ExpressionProgram.compile({}, {"ok": "1"}, "i >", 5)
    assert caught_syntax.value.variable == "loop_until"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("2fast", ExpressionError),
        ("for", ExpressionError),
        ("random", ExpressionError),
        ("__class__", UnsafeExpressionError),
    ],
)
def test_bad_variable_names_are_refused(name: str, error: type[ExpressionError]) -> None:
    with pytest.raises(error) as caught:
        ExpressionProgram.compile({}, {name: "1"}, None, 1)
    assert caught.value.variable == name


def test_non_string_sources_are_literals() -> None:
    program = ExpressionProgram.compile(
        {"n": 5, "path": [], "on": True}, {"m": "n + len(path)"}, None, 1
    )
    assert program.run({}, unit_random("u", "s")).values == {"n": 5, "path": [], "on": True, "m": 5}


def test_max_iterations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_iterations"):
        ExpressionProgram.compile({}, {"i": "1"}, "i > 0", 0)


def test_example_pipeline_expressions_compile() -> None:
    sources: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("init", "expressions") and isinstance(value, dict):
                    sources.extend(v for v in value.values() if isinstance(v, str))
                elif key in ("loop_until", "expr", "when") and isinstance(value, str):
                    sources.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    for config in sorted(EXAMPLES.glob("*/config.yaml")):
        collect(yaml.safe_load(config.read_text()))
    if not sources:
        pytest.skip("no example pipelines")
    for source in sources:
        compile_expression(source)
