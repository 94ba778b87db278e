"""What one unit's expressions, rules and prompt may spend: work, CPU time and size of values.

Pipelines are written by other people, and a loop inside a C builtin (``sum(range(10**12))``,
``'x' * 10**10``) can be neither interrupted nor timed from Python. So the bounds are of two
kinds, both checked *before* the work is done:

- **Size.** No value built by a size-multiplying operation (``*`` on sequences, ``range``,
  ``join``, ``replace``, padding methods, format widths, ``random.sample``) may exceed
  `MAX_LENGTH` characters or elements; integers stay under ``MAX_INT_BITS`` bits
  (`core/safe_ast.py`). Converting a value to text is refused past `MAX_LENGTH` characters,
  however the value shares its parts.
- **Work and time.** A `Budget` counts the steps one evaluation takes: every element a C
  builtin is about to process is charged up front (`Budget.charge`), and every Python-level
  step (a comprehension element, a lambda call, a pass of a ``loop_until`` loop, a template
  loop iteration) calls `Budget.tick`. Past `MAX_WORK` steps, or `MAX_SECONDS` of the thread's
  CPU time, the evaluation raises `ResourceLimitExceeded`; the caller fails that unit alone.
  A budget may also be cancelled (the run is pausing): it then raises `EvaluationCancelled`,
  which is not the unit's fault and is never recorded as a failure.

One budget covers one unit at one step (its expressions and rules, or its prompt). Budgets are
per thread: `activate` makes one current for the bounded builtins, which find it through
`current`. The clock is read only to stop an evaluation, never to compute a value, and only
every `CHECK_EVERY` steps: `tick` is a C-level iterator step between checks.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from octopipe.errors import EvaluationCancelled

MAX_LENGTH = 10_000_000
"""Largest string (characters) or sequence (elements) an expression or template may build."""
MAX_WORK = 20_000_000
"""Steps of work one budget allows (elements processed by builtins plus Python-level steps)."""
MAX_SECONDS = 2.0
"""CPU seconds one budget allows."""
CHECK_EVERY = 32
"""Python-level steps taken at C speed between two accountings of the budget."""
CLOCK_EVERY = 256
"""Steps between two readings of the clock and of cancellation (a unit that takes fewer steps
never reads the clock: reading the thread's CPU time is a system call)."""


class ResourceLimitExceeded(ArithmeticError):
    """An evaluation would build too large a value, or ran out of work or time."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds a `Budget` enforces; `DEFAULT_LIMITS` unless a caller (tests) says otherwise."""

    max_work: int = MAX_WORK
    max_seconds: float = MAX_SECONDS
    clock: Callable[[], float] = time.thread_time
    """CPU time of the evaluating thread: a busy machine does not fail a unit."""


DEFAULT_LIMITS = Limits()


class Budget:
    """The work and CPU time one evaluation (one unit at one step) may still spend.

    ``tick()`` accounts for one Python-level step and returns True (so it can sit in a
    comprehension's ``if``); ``charge(n)`` accounts for ``n`` elements a builtin is about to
    process. Both raise `ResourceLimitExceeded` once the budget is spent, and
    `EvaluationCancelled` once ``cancelled()`` turns true.
    """

    __slots__ = ("_cancelled", "_deadline", "_left", "_next_check", "_tick", "limits", "spent_on")

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, *, cancelled: Callable[[], bool] | None = None
    ) -> None:
        self.limits = limits
        self._cancelled = cancelled
        self._left = limits.max_work
        self._next_check = self._left - CLOCK_EVERY
        self._deadline: float | None = None  # set at the first check: no clock read per unit
        self.spent_on: str | None = None
        """Why the budget ran out (None while it has not)."""
        self._tick: Callable[[], bool] | None = None

    @property
    def tick(self) -> Callable[[], bool]:
        """The step counter: a C-level iterator step; every `CHECK_EVERY` calls it accounts
        for them (made on first use, and anew after the budget ran out)."""
        tick = self._tick
        if tick is None:
            tick = self._tick = itertools.chain.from_iterable(self._refills()).__next__
        return tick

    def _refills(self) -> Iterator[Iterator[bool]]:
        while True:
            self.charge(CHECK_EVERY)
            yield itertools.repeat(True, CHECK_EVERY)

    def charge(self, steps: int) -> None:
        """Account for ``steps`` steps of work about to be done; raise if they do not fit."""
        self._left -= steps
        if self._left <= self._next_check:
            self._check(steps)

    def _check(self, steps: int) -> None:
        if self.spent_on is not None:
            self._fail(self.spent_on)
        if self._cancelled is not None and self._cancelled():
            self._tick = None
            raise EvaluationCancelled("the evaluation was stopped: the run is pausing")
        if self._left < 0:
            if steps > self.limits.max_work // 10:
                self._fail(f"an operation over {steps:,} elements does not fit in the budget left")
            self._fail(
                f"the expressions of this unit took more than {self.limits.max_work:,} steps"
            )
        now = self.limits.clock()
        if self._deadline is None:
            self._deadline = now + self.limits.max_seconds
        elif now > self._deadline:
            self._fail(
                f"the expressions of this unit used more than {self.limits.max_seconds:g} s "
                "of CPU time"
            )
        self._next_check = self._left - CLOCK_EVERY

    def _fail(self, reason: str) -> None:
        self.spent_on = reason
        self._tick = None  # the old ticker died with the exception; later calls fail too
        raise ResourceLimitExceeded(reason)


# --- the current budget of this thread -----------------------------------------------------------


class _Current(threading.local):
    budget: Budget | None = None


_CURRENT = _Current()


def current() -> Budget:
    """The budget of the evaluation running in this thread, or a fresh default one when no
    evaluation is running (a template's constants folded at compile time): sizes are still
    checked, but the charge is not kept."""
    budget = _CURRENT.budget
    return Budget() if budget is None else budget


def charge_current(steps: int) -> None:
    """Charge ``steps`` to the current budget (what a ``loop_until`` loop calls every
    ``CLOCK_EVERY`` passes)."""
    current().charge(steps)


def active() -> Budget | None:
    """The budget made current by `activate`, if any."""
    return _CURRENT.budget


class activate:
    """Make ``budget`` the current one for the bounded builtins while the block runs."""

    __slots__ = ("_budget", "_previous")

    def __init__(self, budget: Budget) -> None:
        self._budget = budget
        self._previous: Budget | None = None

    def __enter__(self) -> Budget:
        self._previous = _CURRENT.budget
        _CURRENT.budget = self._budget
        return self._budget

    def __exit__(self, *exc_info: object) -> None:
        _CURRENT.budget = self._previous


# --- size checks shared by expressions and templates --------------------------------------------


def check_length(length: int, what: str) -> None:
    """Refuse building ``what`` with ``length`` characters or elements past `MAX_LENGTH`."""
    if length > MAX_LENGTH:
        raise ResourceLimitExceeded(
            f"{what} would have {length:,} characters or elements (limit {MAX_LENGTH:,})"
        )


_DIGITS = re.compile(r"\d+")


def check_format_spec(spec: str) -> str:
    """A ``format()`` spec whose width and precision stay under `MAX_LENGTH`, returned as is."""
    if len(spec) > 12 or any(c.isdigit() for c in spec):
        for digits in _DIGITS.findall(spec):
            if len(digits) > 8 or int(digits) > MAX_LENGTH:
                raise ResourceLimitExceeded(
                    f"format spec {spec[:40]!r} asks for {digits[:20]} characters "
                    f"(limit {MAX_LENGTH:,})"
                )
    return spec


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.DOTALL)


def check_printf(template: str | bytes, args: Any) -> None:
    """Refuse ``template % args`` when a width or precision is past `MAX_LENGTH` (``*`` widths
    are refused: their size would come from the arguments), or when an argument's text is."""
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    if "%" in text:
        for width, precision, _ in _PRINTF.findall(text):
            for digits in (width, precision):
                if digits == "*":
                    raise ResourceLimitExceeded("'*' widths are not supported in % formatting")
                if digits and (len(digits) > 8 or int(digits) > MAX_LENGTH):
                    raise ResourceLimitExceeded(
                        f"% format asks for {digits[:20]} characters (limit {MAX_LENGTH:,})"
                    )
    check_text_size(args, "the arguments of %")


_SCALARS = (str, int, float, bool, type(None), bytes)
_NUMBER_TEXT = 24  # a float, bool or None as text, at most
_BIG_INT = 10**20


class _TooLarge(Exception):
    pass


def text_size(value: Any, limit: int = MAX_LENGTH) -> int:
    """An estimate of the characters ``str(value)`` or its JSON has, or a number past
    ``limit`` as soon as it is known to be past it.

    Shared parts count every time they appear (``[x] * 1000`` counts ``x`` 1,000 times), so a
    value cannot hide its text size by sharing; each distinct part is measured once, so the
    cost is linear in the distinct parts, not in the text.
    """
    if type(value) is str:
        return len(value)
    try:
        return _size(value, {}, limit)
    except _TooLarge:
        return limit + 1
    except RecursionError:  # nested deeper than Python can print anyway
        return limit + 1


def _flat_size(items: list[Any] | tuple[Any, ...]) -> int | None:
    """The text size of a sequence of only small integers or only strings, at C speed; None
    for anything else."""
    kinds = set(map(type, items))
    if not kinds:
        return 2
    if kinds == {int} and min(items) > -_BIG_INT and max(items) < _BIG_INT:
        return 2 + 22 * len(items)
    if kinds == {str}:
        return 2 + 4 * len(items) + sum(map(len, items))
    return None


def _size(item: Any, memo: dict[int, int], limit: int) -> int:
    kind = type(item)
    if kind is str or kind is bytes:
        return len(item) + 2
    if kind is int:
        return item.bit_length() // 3 + 1
    if kind in _SCALARS:
        return _NUMBER_TEXT
    known = memo.get(id(item))
    if known is not None:
        return known
    if kind is list or kind is tuple:
        flat = _flat_size(item)
        if flat is not None:
            memo[id(item)] = flat
            if flat > limit:
                raise _TooLarge
            return flat
    total = 2
    if kind is dict:
        children: Any = itertools.chain.from_iterable(item.items())
    elif kind in (list, tuple, set, frozenset):
        children = item
    else:
        children = ()
        total += 40  # a range, a function, an object: its repr is short
    for child in children:
        child_kind = type(child)
        if child_kind is str:
            total += len(child) + 4
        elif child_kind is int:
            total += 22 if -_BIG_INT < child < _BIG_INT else child.bit_length() // 3 + 3
        elif child_kind in _SCALARS:
            total += _NUMBER_TEXT
        else:
            total += _size(child, memo, limit) + 2
        if total > limit:
            raise _TooLarge
    memo[id(item)] = total
    return total


def check_text_size(value: Any, what: str) -> None:
    """Refuse turning ``value`` into text when the text would pass `MAX_LENGTH` characters."""
    if type(value) in _SCALARS:
        return
    size = text_size(value)
    if size > MAX_LENGTH:
        raise ResourceLimitExceeded(f"{what} would be more than {MAX_LENGTH:,} characters as text")
    current().charge(size // 8)
