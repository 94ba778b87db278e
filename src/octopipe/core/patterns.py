"""Regular expressions from a pipeline's schemas, matched with a time bound.

A schema's ``pattern`` and ``patternProperties`` come from the pipeline folder (untrusted, SPEC
§10) and are matched against answers the pipeline's own prompt can steer. A backtracking pattern
such as ``^(a|aa)+$`` takes exponential time on a value like ``"aaaa…!"``: with Python's ``re``
one answer would hang the run. Every schema pattern is therefore matched with the ``regex``
library, which accepts the same syntax as ``re`` and stops a match after
``PATTERN_TIMEOUT_S``; a match that runs out of time counts as *not matching* and says why.

``BoundedValidator`` is JSON Schema Draft 2020-12 with exactly the three keywords that match
patterns (``pattern``, ``patternProperties``, ``additionalProperties`` next to
``patternProperties``) replaced by bounded ones; every other keyword, and every message of a
match that finishes, is jsonschema's own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import regex
from jsonschema import Draft202012Validator, ValidationError, validators

PATTERN_TIMEOUT_S = 0.1
"""Longest a schema pattern may take on one value (the ``regex`` library's check is coarse:
a runaway match stops within a few times this)."""

_SHOWN = 60
_DRAFT_ADDITIONAL = Draft202012Validator.VALIDATORS["additionalProperties"]


class PatternTooSlow(Exception):
    """A pattern did not finish matching a value within ``PATTERN_TIMEOUT_S``."""

    def __init__(self, pattern: str, text: str) -> None:
        shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
        super().__init__(
            f"{shown!r} could not be matched against {pattern!r} within {PATTERN_TIMEOUT_S} s "
            "(the pattern backtracks without bound), so it counts as not matching"
        )


@functools.lru_cache(maxsize=1024)
def compile_pattern(source: str) -> regex.Pattern[str] | None:
    """The compiled pattern, or None when ``source`` is not a valid expression."""
    try:
        return regex.compile(source)
    except (regex.error, ValueError, OverflowError, RecursionError):
        return None


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text``; raises `PatternTooSlow` when the
    match runs out of time and `ValueError` when the pattern does not compile."""
    compiled = compile_pattern(pattern)
    if compiled is None:
        raise ValueError(f"{pattern!r} is not a valid regular expression")
    return bounded_search(compiled, text)


def bounded_search(compiled: regex.Pattern[str], text: str) -> bool:
    try:
        return compiled.search(text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError:
        raise PatternTooSlow(compiled.pattern, text) from None


# --- the three jsonschema keywords that match patterns ---------------------------------------


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = search(pattern, instance)
    except PatternTooSlow as slow:
        yield ValidationError(str(slow))
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            try:
                matched = search(pattern, key)
            except PatternTooSlow as slow:
                yield ValidationError(f"property name {slow}")
                continue
            if matched:
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _matches_any(patterns: Any, key: str) -> bool:
    for pattern in patterns:
        try:
            if search(pattern, key):
                return True
        except PatternTooSlow:  # reported by patternProperties itself
            continue
    return False


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    patterns = schema.get("patternProperties")
    if not patterns:
        yield from _DRAFT_ADDITIONAL(validator, additional, instance, schema)
        return
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    extras = [k for k in instance if k not in properties and not _matches_any(patterns, k)]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        verb = "does" if len(extras) == 1 else "do"
        names = ", ".join(repr(each) for each in sorted(extras))
        regexes = ", ".join(repr(each) for each in sorted(patterns))
        yield ValidationError(f"{names} {verb} not match any of the regexes: {regexes}")


BoundedValidator = validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)
"""Draft 2020-12 with every pattern match bounded in time."""
