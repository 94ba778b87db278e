"""Deterministic values that satisfy a JSON Schema: default emulator answers and trial-run mocks.

``schema_value(schema, seed)`` returns the same value for the same schema and seed, and the
value validates against the schema for the keywords it understands:

- ``type`` (a string or a list; the first non-null entry wins; upper-case Gemini
  ``responseSchema`` names such as ``OBJECT`` are accepted), ``const``, ``enum``;
- objects: ``properties`` (every listed property is produced), ``required`` (even names not
  listed in ``properties``), ``minProperties``, ``additionalProperties`` as a schema;
- arrays: ``items``, ``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``;
- strings: ``minLength``/``maxLength``, ``format`` (date, date-time, time, email, uri, uuid);
- numbers: ``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum`` (draft 4
  booleans and later numbers), ``multipleOf``;
- composition: local ``$ref`` (``#``, ``#/$defs/...``, ``#/definitions/...``; any other
  reference stands for any value and is never fetched), ``allOf`` (merged),
  ``anyOf``/``oneOf`` (the first non-null branch).

Not honoured: ``pattern``, ``not``, ``if``/``then``, ``dependentRequired``, and schemas that
cannot be satisfied at all. Recursion is cut at ``MAX_DEPTH`` by producing only required
properties and minimal arrays.

``like`` (a unit's record, for ``validate``'s trial run) makes a value plausible for that unit:
a top-level property named like a field of the record takes the record's value when that value
is valid for the property (an LLM echoing ``strategy_name``); strings in arrays are drawn from
the record's own lists of strings when such strings are valid items (cards dealt earlier, not
random words). Nothing is inferred from what a name means.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MAX_DEPTH = 8
HARD_DEPTH = 64
"""Past this depth a string is produced whatever the schema (a schema whose required
properties recurse has no finite valid value)."""
# fmt: off
WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "grove", "harbor", "indigo", "juniper",
    "kelp", "lumen", "maple", "nectar", "orbit", "pebble", "quartz", "river", "sierra", "tundra",
)
# fmt: on
_FORMATS = {
    "date": lambda r: f"20{r.randint(10, 29)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "date-time": lambda r: f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T12:00:00Z",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z",
    "email": lambda r: f"{r.choice(WORDS)}{r.randint(1, 99)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(WORDS)}",
    "uuid": lambda r: f"{r.getrandbits(32):08x}-0000-4000-8000-{r.getrandbits(48):012x}",
}


def seed_from_text(text: str) -> int:
    """A stable 64-bit seed from text (``hash()`` is salted per process, this is not)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def schema_value(
    schema: Mapping[str, Any], seed: int | str, *, like: Mapping[str, Any] | None = None
) -> Any:
    """A value valid against ``schema``, determined by ``schema``, ``seed`` and ``like``."""
    rng = random.Random(seed_from_text(seed) if isinstance(seed, str) else seed)
    return _Generator(schema, rng, like).value(schema, 0)


def _string_pool(like: Mapping[str, Any] | None) -> list[str]:
    """Distinct strings held in the record's lists, in order of first appearance."""
    pool: dict[str, None] = {}
    for value in (like or {}).values():
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            pool.update(dict.fromkeys(value))
    return list(pool)


def _fits(value: Any, schema: Any) -> bool:
    """Whether ``value`` is valid against ``schema`` (a bad schema fits nothing)."""
    if not isinstance(schema, Mapping):
        return False
    try:
        return bool(_validator_for(schema).is_valid(value))
    except Exception:  # a schema jsonschema cannot use: do not borrow the value
        return False


def _validator_for(schema: Mapping[str, Any]) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


class _Generator:
    def __init__(
        self, root: Mapping[str, Any], rng: random.Random, like: Mapping[str, Any] | None = None
    ) -> None:
        self.root = root
        self.rng = rng
        self.like = like or {}
        self.pool = _string_pool(like)

    def value(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > HARD_DEPTH:
            # a boolean schema (anything goes), or required properties that nest without end
            return _string({}, self.rng)
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(list(schema["enum"]))
        branch = _first_branch(schema)
        if branch is not None:
            return self.value(branch, depth)
        kind = _type_of(schema)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind in ("integer", "number"):
            return _number(schema, self.rng, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return _string(schema, self.rng)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow a local ``$ref`` and merge ``allOf`` into one schema."""
        for _ in range(32):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            target = _pointer(self.root, ref)
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        if isinstance(schema.get("allOf"), list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                merged = _merge(merged, self.resolve(part))
            return merged
        return schema

    def resolve_any(self, schema: Any) -> Any:
        return self.resolve(schema) if isinstance(schema, Mapping) else schema

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties: Mapping[str, Any] = schema.get("properties") or {}
        required = [str(name) for name in schema.get("required") or []]
        extra = schema.get("additionalProperties")
        extra_schema = extra if isinstance(extra, Mapping) else {"type": "string"}
        names = list(dict.fromkeys(required + ([] if depth >= MAX_DEPTH else list(properties))))
        result = {}
        for name in names:
            prop = properties.get(name, extra_schema)
            if depth == 0 and name in self.like and _fits(self.like[name], self.resolve_any(prop)):
                result[name] = self.like[name]
            else:
                result[name] = self.value(prop, depth + 1)
        index = 1
        while len(result) < int(schema.get("minProperties", 0)) and extra is not False:
            result.setdefault(f"extra_{index}", self.value(extra_schema, depth + 1))
            index += 1
        return result

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = list(prefix or [])
        item_schema = items if isinstance(items, Mapping) else {}
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        count = low if depth >= MAX_DEPTH else self.rng.randint(low, max(low, min(high, low + 3)))
        if items is False:
            count = min(count, len(prefix))
        count = max(count, min(len(prefix), high))
        if schema.get("uniqueItems"):
            return self.unique_items(prefix, item_schema, count, depth)
        return [
            self.item(self._item_schema(prefix, item_schema, i), depth + 1) for i in range(count)
        ]

    def item(self, schema: Any, depth: int) -> Any:
        """An array element: a string from the record's own lists when one is valid here."""
        resolved = self.resolve_any(schema)
        if self.pool and isinstance(resolved, Mapping) and _type_of(resolved) == "string":
            fitting = [s for s in self.pool[:1000] if _fits(s, resolved)]
            if fitting:
                return self.rng.choice(fitting)
        return self.value(schema, depth)

    def unique_items(
        self, prefix: list[Any], item_schema: Mapping[str, Any], count: int, depth: int
    ) -> list[Any]:
        result: list[Any] = []
        seen: set[str] = set()
        for _ in range(count * 20):
            if len(result) == count:
                break
            candidate = self.item(self._item_schema(prefix, item_schema, len(result)), depth + 1)
            key = repr(candidate)
            if key not in seen:
                seen.add(key)
                result.append(candidate)
        return result

    @staticmethod
    def _item_schema(prefix: list[Any], item_schema: Mapping[str, Any], index: int) -> Any:
        return prefix[index] if index < len(prefix) else item_schema


def _first_branch(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if _type_of(o) != "null"] or options
            rest = {k: v for k, v in schema.items() if k != key}
            return _merge(rest, non_null[0])
    return None


def _type_of(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        names = [str(t).lower() for t in declared]
        declared = next((t for t in names if t != "null"), names[0] if names else None)
    if isinstance(declared, str):
        return declared.lower()
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "multipleOf")):
        return "number"
    return "string"


def _pointer(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    """The target of a local ``#/json/pointer`` reference; ``{}`` (any value) for anything
    else: an anchor, another document, a pointer to nothing. Nothing is ever fetched."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        token = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return {}
    return node if isinstance(node, Mapping) else {}


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        elif key == "required" and isinstance(merged.get(key), list):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        else:
            merged[key] = value
    return merged


def _bounds(schema: Mapping[str, Any]) -> tuple[float, bool, float, bool]:
    """(low, low_exclusive, high, high_exclusive), defaulting to a span of 100."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low_ex = high_ex = False
    if schema.get("exclusiveMinimum") is True:
        low_ex = True
    elif isinstance(schema.get("exclusiveMinimum"), int | float):
        low, low_ex = schema["exclusiveMinimum"], True
    if schema.get("exclusiveMaximum") is True:
        high_ex = True
    elif isinstance(schema.get("exclusiveMaximum"), int | float):
        high, high_ex = schema["exclusiveMaximum"], True
    if low is None:
        low = 0 if high is None or high >= 0 else high - 100
    if high is None:
        high = low + 100
    return float(low), low_ex, float(high), high_ex


def _number(schema: Mapping[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    low, low_ex, high, high_ex = _bounds(schema)
    step = schema.get("multipleOf")
    if integer or step:
        unit = float(step) if step and (not integer or float(step).is_integer()) else 1.0
        first = math.ceil(low / unit) + (1 if low_ex and (low / unit).is_integer() else 0)
        last = max(
            first, math.floor(high / unit) - (1 if high_ex and (high / unit).is_integer() else 0)
        )
        k = rng.randint(first, last)
        if integer or unit.is_integer():
            return int(k * unit) if integer else k * unit
        return _exact_multiple(k, first, last, unit)
    value = round(low + (high - low) * rng.random(), 2)
    if (value <= low and low_ex) or (value >= high and high_ex) or not low <= value <= high:
        value = (low + high) / 2
    return value


def _exact_multiple(k: int, first: int, last: int, unit: float) -> float:
    """A multiple of ``unit`` near ``k * unit`` whose quotient by ``unit`` is exactly integral
    in float arithmetic (validators check ``value / unit`` that way: 0.3 / 0.1 fails)."""
    span = last - first + 1
    for offset in range(min(span, 64)):
        candidate = round((first + (k - first + offset) % span) * unit, 12)
        if (candidate / unit).is_integer():
            return candidate
    return k * unit


def _string(schema: Mapping[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return str(_FORMATS[fmt](rng))
    high_given = schema.get("maxLength")
    low = int(schema.get("minLength", min(1, high_given if high_given is not None else 1)))
    high = int(high_given if high_given is not None else max(low, 24))
    length = rng.randint(low, max(low, min(high, low + 24)))
    text = " ".join(rng.choice(WORDS) for _ in range(length // 4 + 1))
    while len(text) < length:
        text += " " + rng.choice(WORDS)
    return text[:length]
