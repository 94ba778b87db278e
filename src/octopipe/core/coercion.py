"""Schema-guided coercion of answers, and a fast validity pre-check.

`compile_schema` turns a JSON Schema (Draft 2020-12) into a graph of nodes once per step:

* `CompiledSchema.coerce` walks an answer and the schema together (nested objects and arrays,
  local ``$ref``, ``allOf``, ``anyOf``/``oneOf`` best effort) and fixes what LLMs commonly get
  wrong: numeric strings where numbers are wanted (``"3.0"`` is an integer, ``"3.5"`` is not),
  ``"true"``/``"false"`` (any case, stripped) where booleans are wanted, a lone value (or a
  string holding a JSON array) where an array is wanted, a string holding a JSON object where
  an object is wanted, and enum members written in another case or with stray whitespace. It
  never raises and never alters a value the schema already accepts (except that a whole float
  such as ``3.0`` becomes the int ``3`` where only integers are wanted). Containers are copied
  only when something inside them changes.
* `CompiledSchema.quick_check` answers "certainly valid" for the keywords it implements
  exactly like ``jsonschema`` does, at a fraction of the cost; any other answer means "ask
  ``jsonschema``", which stays the authority and produces the error messages.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import regex
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator

from octopipe.core.answer_parsing import loads_strict
from octopipe.core.patterns import BoundedValidator, PatternTooSlow, bounded_search, compile_pattern
from octopipe.core.schema_refs import NO_REMOTE

__all__ = ["CompiledSchema", "compile_schema"]

_NONE_TYPE = type(None)
_JSON_TYPES: frozenset[type] = frozenset({dict, list, str, int, float, bool, _NONE_TYPE})
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (_NONE_TYPE,),
    "array": (list,),
    "object": (dict,),
}
# Keywords `jsonschema` asserts that the pre-check implements (format is not asserted by
# default). A schema using any other asserting keyword is always checked by `jsonschema`.
_CHECKED = frozenset(
    {
        "$ref", "type", "enum", "const", "properties", "required", "additionalProperties",
        "items", "prefixItems", "minItems", "maxItems", "minProperties", "maxProperties",
        "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "allOf", "anyOf", "oneOf", "not", "format",
    }
)  # fmt: skip
_ASSERTING = frozenset(Draft202012Validator.VALIDATORS)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")
_MISSING = object()


class _Unknown(Exception):
    """The pre-check met a value that is not plain JSON data: let `jsonschema` decide."""


def compile_schema(schema: dict[str, Any] | bool) -> CompiledSchema:
    return CompiledSchema(schema)


class CompiledSchema:
    """A JSON Schema compiled once: coercion, a quick validity check, the full validator."""

    def __init__(self, schema: dict[str, Any] | bool) -> None:
        self.schema = schema
        # No reference is ever fetched: the pipeline's schemas arrive self-contained
        # (core/schema_refs.py); anything else fails as an unresolvable reference.
        self.validator: Validator = BoundedValidator(schema, registry=NO_REMOTE)
        compiler = _Compiler(self, schema)
        self._root = compiler.node(schema)
        self.checkable = all(node.checkable for node in compiler.memo.values())
        """Whether every keyword of the schema is one `quick_check` implements."""

    def coerce(self, value: Any) -> Any:
        """The value with schema-guided coercions applied (the same object if none applied)."""
        try:
            return self._root.coerce(value)
        except Exception:  # deep nesting, odd keys from an expression step: leave as is
            return value

    def quick_check(self, value: Any) -> bool:
        """True when the value is certainly valid; False means "run the full validator"."""
        if not self.checkable:
            return False
        try:
            return self._root.check(value)
        except (_Unknown, RecursionError, PatternTooSlow):
            return False

    def is_valid(self, node: _Node, value: Any) -> bool:
        """Whether the value is valid against one node (a branch of anyOf/oneOf)."""
        if self.checkable:
            try:
                return node.check(value)
            except (_Unknown, RecursionError):
                pass
        if node.validator is None:
            node.validator = self.validator.evolve(schema=node.schema)
        return bool(node.validator.is_valid(value))


class _Node:
    """One subschema, compiled. Nodes form a graph (recursive ``$ref`` makes cycles)."""

    __slots__ = (
        "accepted", "additional", "all_of", "always", "any_of", "checkable", "ctx", "enum",
        "enum_bool", "enum_fixes", "enum_null", "enum_num", "enum_str", "excl_max", "excl_min",
        "items", "max_items", "max_len", "max_props", "maximum", "min_items", "min_len",
        "min_props", "minimum", "not_", "one_of", "passthrough", "pattern", "patterns",
        "plain_valid", "prefix", "props", "ref", "required", "schema", "types", "validator",
        "whole_float_ok",
    )  # fmt: skip

    def __init__(self, ctx: CompiledSchema, schema: Any) -> None:
        self.ctx = ctx
        self.schema = schema
        self.validator: Validator | None = None
        self.checkable = True
        self.always: bool | None = None
        self.ref: _Node | None = None
        self.all_of: tuple[_Node, ...] = ()
        self.any_of: tuple[_Node, ...] = ()
        self.one_of: tuple[_Node, ...] = ()
        self.not_: _Node | None = None
        self.types: frozenset[str] = frozenset()
        self.accepted: frozenset[type] | None = None
        self.whole_float_ok = False
        self.enum: tuple[Any, ...] | None = None
        self.enum_str: frozenset[str] = frozenset()
        self.enum_bool: frozenset[bool] = frozenset()
        self.enum_num: frozenset[int | float] = frozenset()
        self.enum_null = False
        self.enum_fixes: dict[str, Any] = {}
        self.props: dict[str, _Node] | None = None
        self.required: tuple[str, ...] = ()
        self.additional: _Node | None = None
        self.patterns: tuple[tuple[regex.Pattern[str], _Node], ...] = ()
        self.items: _Node | None = None
        self.prefix: tuple[_Node, ...] = ()
        self.min_len: int | None = None
        self.max_len: int | None = None
        self.min_items: int | None = None
        self.max_items: int | None = None
        self.min_props: int | None = None
        self.max_props: int | None = None
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.excl_min: float | None = None
        self.excl_max: float | None = None
        self.pattern: regex.Pattern[str] | None = None
        self.passthrough: frozenset[type] = frozenset()
        """Types for which `coerce` is the identity at this node (a shortcut)."""
        self.plain_valid: frozenset[type] = frozenset()
        """Types for which `check` is True whatever the value (a shortcut)."""

    # --- coercion -------------------------------------------------------------------------

    def coerce(self, value: Any) -> Any:
        kind = type(value)
        if kind in self.passthrough or self.always is not None:
            return value
        if self.ref is not None:
            value = self.ref.coerce(value)
        for node in self.all_of:
            value = node.coerce(value)
        kind = type(value)
        if self.accepted is not None and kind not in self.accepted:
            value = self._coerce_type(value)
            kind = type(value)
        if self.enum_fixes and kind is str and value not in self.enum_str:
            value = self.enum_fixes.get(value.strip().casefold(), value)
            kind = type(value)
        if kind is dict:
            if self.props is not None or self.additional is not None or self.patterns:
                value = self._coerce_object(value)
        elif kind is list and (self.items is not None or self.prefix):
            value = self._coerce_array(value)
        if self.any_of:
            value = self._choose(self.any_of, value)
        if self.one_of:
            value = self._choose(self.one_of, value)
        return value

    def _coerce_type(self, value: Any) -> Any:
        types = self.types
        kind = type(value)
        if kind is str:
            text = value.strip()
            if "integer" in types:
                number = _to_integer(text)
                if number is not None:
                    return number
            if "number" in types:
                decimal = _to_number(text)
                if decimal is not None:
                    return decimal
            if "boolean" in types:
                lowered = text.lower()
                if lowered == "true":
                    return True
                if lowered == "false":
                    return False
            if "array" in types:
                parsed = _json_in(text, "[")
                return parsed if isinstance(parsed, list) else [value]
            if "object" in types:
                parsed = _json_in(text, "{")
                if isinstance(parsed, dict):
                    return parsed
            return value
        if kind is float and "integer" in types and value.is_integer():
            return int(value)
        if "array" in types:
            if kind is tuple:
                return list(value)
            if value is not None:
                return [value]
        return value

    def _coerce_object(self, value: dict[str, Any]) -> dict[str, Any]:
        props = self.props
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            node = None if props is None else props.get(key)
            if self.patterns:
                new = item if node is None else node.coerce(item)
                matched = False
                for compiled, pattern_node in self.patterns:
                    if bounded_search(compiled, key):
                        matched = True
                        new = pattern_node.coerce(new)
                if node is None and not matched and self.additional is not None:
                    new = self.additional.coerce(new)
            else:
                if node is None:
                    node = self.additional
                    if node is None:
                        continue
                if type(item) in node.passthrough:
                    continue
                new = node.coerce(item)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed

    def _coerce_array(self, value: list[Any]) -> list[Any]:
        prefix, rest = self.prefix, self.items
        changed: list[Any] | None = None
        for index, item in enumerate(value):
            node = prefix[index] if index < len(prefix) else rest
            if node is None:
                break
            if type(item) in node.passthrough:
                continue
            new = node.coerce(item)
            if new is not item:
                if changed is None:
                    changed = list(value)
                changed[index] = new
        return value if changed is None else changed

    def _choose(self, branches: tuple[_Node, ...], value: Any) -> Any:
        """anyOf/oneOf: keep a value some branch accepts, else the first branch's coercion
        that the branch then accepts, else the value unchanged."""
        ctx = self.ctx
        if any(ctx.is_valid(branch, value) for branch in branches):
            return value
        for branch in branches:
            new = branch.coerce(value)
            if new is not value and ctx.is_valid(branch, new):
                return new
        return value

    # --- quick check (exact for the keywords in _CHECKED, on plain JSON data) ---------------

    def check(self, value: Any) -> bool:
        if self.always is not None:
            return self.always
        kind = type(value)
        if kind not in _JSON_TYPES:
            raise _Unknown
        if self.ref is not None and not self.ref.check(value):
            return False
        if (
            self.accepted is not None
            and kind not in self.accepted
            and not (kind is float and self.whole_float_ok and value.is_integer())
        ):
            return False
        if self.enum is not None and not self._in_enum(value, kind):
            return False
        if kind is str:
            if not self._check_string(value):
                return False
        elif kind is dict:
            if not self._check_object(value):
                return False
        elif kind is list:
            if not self._check_array(value):
                return False
        elif (kind is int or kind is float) and not self._check_number(value):
            return False
        for node in self.all_of:
            if not node.check(value):
                return False
        if self.any_of and not any(node.check(value) for node in self.any_of):
            return False
        if self.one_of and sum(1 for node in self.one_of if node.check(value)) != 1:
            return False
        return not (self.not_ is not None and self.not_.check(value))

    def _in_enum(self, value: Any, kind: type) -> bool:
        if kind is str:
            return value in self.enum_str
        if kind is bool:
            return value in self.enum_bool
        if kind is int or kind is float:
            return value in self.enum_num
        if value is None:
            return self.enum_null
        return False  # containers never equal the scalar members

    def _check_string(self, value: str) -> bool:
        if self.min_len is not None and len(value) < self.min_len:
            return False
        if self.max_len is not None and len(value) > self.max_len:
            return False
        return self.pattern is None or bounded_search(self.pattern, value)

    def _check_object(self, value: dict[str, Any]) -> bool:
        for key in self.required:
            if key not in value:
                return False
        if self.min_props is not None and len(value) < self.min_props:
            return False
        if self.max_props is not None and len(value) > self.max_props:
            return False
        if self.props is None and self.additional is None:
            return True
        props = self.props or {}
        for key, item in value.items():
            node = props.get(key, self.additional)
            if node is not None and type(item) not in node.plain_valid and not node.check(item):
                return False
        return True

    def _check_array(self, value: list[Any]) -> bool:
        if self.min_items is not None and len(value) < self.min_items:
            return False
        if self.max_items is not None and len(value) > self.max_items:
            return False
        prefix, rest = self.prefix, self.items
        for index, item in enumerate(value):
            node = prefix[index] if index < len(prefix) else rest
            if node is None:
                break
            if type(item) not in node.plain_valid and not node.check(item):
                return False
        return True

    def _check_number(self, value: float) -> bool:
        return not (
            (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
            or (self.excl_min is not None and value <= self.excl_min)
            or (self.excl_max is not None and value >= self.excl_max)
        )


class _Compiler:
    def __init__(self, ctx: CompiledSchema, root: Any) -> None:
        self.ctx = ctx
        self.root = root
        self.memo: dict[int, _Node] = {}

    def node(self, schema: Any) -> _Node:
        found = self.memo.get(id(schema))
        if found is not None:
            return found
        node = _Node(self.ctx, schema)
        self.memo[id(schema)] = node  # before the children: recursive $ref terminates
        if isinstance(schema, bool):
            node.always = schema
        elif isinstance(schema, dict):
            self._fill(node, schema)
        else:
            node.always, node.checkable = True, False
        return node

    def _fill(self, node: _Node, schema: dict[str, Any]) -> None:
        if any(key in _ASSERTING and key not in _CHECKED for key in schema) or (
            "$id" in schema and schema is not self.root
        ):
            node.checkable = False
        if "$ref" in schema:
            target = self._resolve(schema["$ref"])
            if target is _MISSING:
                node.checkable = False
            else:
                node.ref = self.node(target)
        self._fill_type(node, schema.get("type"))
        if "enum" in schema or "const" in schema:
            if "enum" in schema and "const" in schema:
                node.checkable = False
            members = schema["enum"] if "enum" in schema else [schema["const"]]
            self._fill_enum(node, members if isinstance(members, list) else [])
        props = schema.get("properties")
        if isinstance(props, dict):
            node.props = {key: self.node(sub) for key, sub in props.items()}
        node.required = tuple(k for k in schema.get("required", ()) if isinstance(k, str))
        if "additionalProperties" in schema:
            node.additional = self.node(schema["additionalProperties"])
        patterns = schema.get("patternProperties")
        if isinstance(patterns, dict):
            node.patterns = tuple(
                (compiled, self.node(sub))
                for source, sub in patterns.items()
                if (compiled := _regex(source)) is not None
            )
        if "items" in schema:
            node.items = self.node(schema["items"])
        if isinstance(schema.get("prefixItems"), list):
            node.prefix = tuple(self.node(sub) for sub in schema["prefixItems"])
        for key in ("allOf", "anyOf", "oneOf"):
            if isinstance(schema.get(key), list):
                setattr(node, _SLOT[key], tuple(self.node(sub) for sub in schema[key]))
        if "not" in schema:
            node.not_ = self.node(schema["not"])
        for key, slot in _LIMITS.items():
            if key in schema:
                limit = schema[key]
                if isinstance(limit, bool) or not isinstance(limit, int | float):
                    node.checkable = False
                else:
                    setattr(node, slot, limit)
        if "pattern" in schema:
            node.pattern = _regex(schema["pattern"])
            if node.pattern is None:
                node.checkable = False
        node.passthrough = _passthrough(node)
        node.plain_valid = _plain_valid(node)

    def _fill_type(self, node: _Node, types: Any) -> None:
        if types is None:
            return
        names = [types] if isinstance(types, str) else types
        if not isinstance(names, list) or not all(n in _PY_TYPES for n in names):
            node.checkable = False
            return
        node.types = frozenset(names)
        node.accepted = frozenset(py for name in names for py in _PY_TYPES[name])
        node.whole_float_ok = "integer" in node.types

    def _fill_enum(self, node: _Node, members: list[Any]) -> None:
        node.enum = tuple(members)
        scalars = [m for m in members if m is None or isinstance(m, str | int | float)]
        if len(scalars) != len(members):
            node.checkable = False  # containers: jsonschema's deep equality decides
        node.enum_str = frozenset(m for m in scalars if isinstance(m, str))
        node.enum_bool = frozenset(m for m in scalars if isinstance(m, bool))
        node.enum_num = frozenset(
            m for m in scalars if isinstance(m, int | float) and not isinstance(m, bool)
        )
        node.enum_null = any(m is None for m in scalars)
        fixes: dict[str, Any] = {}
        ambiguous: set[str] = set()
        for member in scalars:
            key = member if isinstance(member, str) else json.dumps(member)
            key = key.strip().casefold()
            if key in fixes and not _same(fixes[key], member):
                ambiguous.add(key)
            fixes.setdefault(key, member)
        node.enum_fixes = {k: v for k, v in fixes.items() if k not in ambiguous}

    def _resolve(self, ref: Any) -> Any:
        """The target of a local reference (``#`` or ``#/json/pointer``), else _MISSING."""
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            return _MISSING
        target: Any = self.root
        for part in _pointer_parts(ref[2:]) if ref != "#" else ():
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                return _MISSING
        return target


_SLOT = {"allOf": "all_of", "anyOf": "any_of", "oneOf": "one_of"}
_LIMITS = {
    "minLength": "min_len", "maxLength": "max_len", "minItems": "min_items",
    "maxItems": "max_items", "minProperties": "min_props", "maxProperties": "max_props",
    "minimum": "minimum", "maximum": "maximum", "exclusiveMinimum": "excl_min",
    "exclusiveMaximum": "excl_max",
}  # fmt: skip


def _passthrough(node: _Node) -> frozenset[type]:
    """Types for which coercion at this node (and below) cannot change anything."""
    if node.ref is not None or node.all_of or node.any_of or node.one_of:
        return frozenset()
    kinds = set(_JSON_TYPES if node.accepted is None else node.accepted)
    if node.enum_fixes:
        kinds.discard(str)
    if node.props is not None or node.additional is not None or node.patterns:
        kinds.discard(dict)
    if node.items is not None or node.prefix:
        kinds.discard(list)
    return frozenset(kinds)


def _plain_valid(node: _Node) -> frozenset[type]:
    """Types for which this node's check is True without looking at the value."""
    if (
        node.ref is not None
        or node.all_of
        or node.any_of
        or node.one_of
        or node.not_ is not None
        or node.enum is not None
    ):
        return frozenset()
    kinds = set(_JSON_TYPES if node.accepted is None else node.accepted)
    if node.min_len is not None or node.max_len is not None or node.pattern is not None:
        kinds.discard(str)
    if node.required or node.props is not None or node.additional is not None:
        kinds.discard(dict)
    if node.min_props is not None or node.max_props is not None:
        kinds.discard(dict)
    if node.items is not None or node.prefix or node.min_items is not None:
        kinds.discard(list)
    if node.max_items is not None:
        kinds.discard(list)
    limits = (node.minimum, node.maximum, node.excl_min, node.excl_max)
    if any(limit is not None for limit in limits):
        kinds.difference_update((int, float))
    return frozenset(kinds)


def _pointer_parts(pointer: str) -> Iterator[str]:
    """The reference tokens of a JSON pointer written in a URI fragment."""
    for part in pointer.split("/"):
        if "%" in part:
            with contextlib.suppress(UnicodeDecodeError):
                part = _PERCENT.sub(lambda m: bytes([int(m[1], 16)]), part.encode()).decode()
        yield part.replace("~1", "/").replace("~0", "~")


def _regex(source: Any) -> regex.Pattern[str] | None:
    return compile_pattern(source) if isinstance(source, str) else None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _to_integer(text: str) -> int | None:
    if _INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts
            return None
    if _DECIMAL.fullmatch(text):
        number = float(text)
        if number.is_integer():  # False for inf
            return int(number)
    return None


def _to_number(text: str) -> int | float | None:
    if _INTEGER.fullmatch(text):
        try:
            return int(text)
        except ValueError:
            return None
    if _DECIMAL.fullmatch(text):
        number = float(text)
        if number - number == 0:  # finite
            return number
    return None


def _json_in(text: str, opener: str) -> Any:
    """The JSON value of a string that starts with ``opener``, else None."""
    if not text.startswith(opener):
        return None
    try:
        return loads_strict(text)
    except (ValueError, RecursionError):
        return None
