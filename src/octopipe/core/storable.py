"""Which values a unit may carry from step to step: what the ledger stores as JSON unchanged.

A run stores every step's output as strict JSON, and ``try`` must not show a value the run
would reject or change. `storable_problem` is the one rule both use: strings, booleans, null,
finite numbers, integers within 64 bits, lists (tuples become lists) and objects whose keys
are strings (or numbers, booleans, null, which JSON writes as strings); no sets, functions,
ranges or other objects; at most ``MAX_LENGTH`` characters of JSON, shared parts counted every
time they appear.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from octopipe.core.budget import MAX_LENGTH

__all__ = ["MAX_INT", "storable_problem", "unstorable_fields"]

MAX_INT = 2**63 - 1
"""Largest integer magnitude stored (SQLite's JSON reads larger ones as approximate floats)."""
_KEY_TYPES = (str, int, float, bool, type(None))


def storable_problem(value: Any, path: str) -> str | None:
    """Why ``value`` (found at ``path``) cannot be stored as JSON unchanged, or None."""
    try:
        _size(value, {})
    except _Unstorable as exc:
        return path + "".join(reversed(exc.where)) + " " + exc.reason
    except _TooLarge:
        return f"{path} would be more than {MAX_LENGTH:,} characters of JSON"
    except RecursionError:
        return f"{path} is nested too deeply to store"
    return None


def unstorable_fields(values: Mapping[str, Any]) -> list[str]:
    """A problem per field of ``values`` that cannot be stored (empty when all can)."""
    problems = []
    total = 0
    for name, value in values.items():
        kind = type(value)
        if kind is str:
            total += len(value)
            continue
        if kind is bool or value is None or (kind is int and -MAX_INT <= value <= MAX_INT):
            continue
        try:
            total += _size(value, {})
        except Exception:  # _Unstorable, _TooLarge, RecursionError: say which, with the path
            problems.append(storable_problem(value, f"field {name}") or f"field {name} is invalid")
    if not problems and total > MAX_LENGTH:
        problems.append(f"the fields would be more than {MAX_LENGTH:,} characters of JSON")
    return problems


def _json_key(key: Any) -> bool:
    """A key JSON writes as a string (numbers, booleans, null), so reading it back is exact
    enough for Octobatch pipelines that count by number."""
    if isinstance(key, float):
        return math.isfinite(key)
    return isinstance(key, _KEY_TYPES)


class _TooLarge(Exception):
    pass


class _Unstorable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: list[str] = []


def _scalar_problem(value: Any) -> str | None:
    kind = type(value)
    if kind is int:
        if -MAX_INT <= value <= MAX_INT:
            return None
        return f"is an integer of {value.bit_length()} bits (more than 64): use str() to keep it"
    if kind is float:
        return None if math.isfinite(value) else f"is {value!r}, which JSON cannot store"
    hint = ": use sorted(...) or list(...)" if kind in (set, frozenset, range) else ""
    return f"is a {kind.__name__}, which cannot be stored as JSON{hint}"


def _flat_size(items: list[Any] | tuple[Any, ...]) -> int | None:
    """The JSON size of a sequence of only in-range integers or only strings, at C speed;
    None for anything else (walked one element at a time)."""
    kinds = set(map(type, items))
    if not kinds:
        return 2
    if kinds == {int} and min(items) >= -MAX_INT and max(items) <= MAX_INT:
        return 2 + 21 * len(items)
    if kinds == {str}:
        total = 2 + 3 * len(items) + sum(map(len, items))
        if total > MAX_LENGTH:
            raise _TooLarge
        return total
    return None


def _size(value: Any, memo: dict[int, int]) -> int:
    """The JSON size of ``value`` (shared parts counted each time; each measured once), or
    `_Unstorable` for the first part that JSON cannot hold unchanged, or past the limit."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is bool or value is None:
        return 5
    if kind is dict:
        items: Any = value.items()
    elif kind is list or kind is tuple:
        items = enumerate(value)
    else:
        problem = _scalar_problem(value)
        if problem is not None:
            raise _Unstorable(problem)
        return 24
    known = memo.get(id(value))
    if known is not None:
        return known
    if kind is not dict:
        flat = _flat_size(value)
        if flat is not None:
            memo[id(value)] = flat
            return flat
    total = 2
    for key, item in items:
        if kind is dict and type(key) is not str and not _json_key(key):
            raise _Unstorable(
                f"has the key {_short(key)}, which is not a string: JSON keys are strings"
            )
        item_kind = type(item)
        if item_kind is str:
            total += len(item) + 3
        elif item_kind is int and -MAX_INT <= item <= MAX_INT:
            total += 21
        elif item_kind is bool or item is None:
            total += 6
        else:
            try:
                total += _size(item, memo) + 1
            except _Unstorable as exc:
                exc.where.append(f"[{key}]" if kind is not dict else f"[{_short(key)}]")
                raise
        if total > MAX_LENGTH:
            raise _TooLarge
    memo[id(value)] = total
    return total


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"
