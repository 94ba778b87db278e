"""Check one answer of one unit: parse → schema (with coercion) → business rules.

`AnswerValidator` is built once per step (schema, coercion plan and rule expressions are all
compiled then) and applied to every answer. The three stages:

1. **parse** — `parse_answer` (see `core/answer_parsing.py`): strict JSON first; fences, prose,
   and ``json_repair`` only when that fails; a double-wrapped ``{"response": "<json>"}`` is
   unwrapped.
2. **schema** — JSON Schema Draft 2020-12. Unless the step is in strict mode, the answer is
   first coerced by the schema (see `core/coercion.py`); **the coerced values are what the
   rules see and what is stored**. Every schema error is reported, sorted by path.
3. **rules** — on the record ``{**input_fields, **coerced_output}``, in Octobatch's order:
   ``required`` (missing or null; if any is missing nothing else is checked), ``types``,
   ``ranges``, ``enums``, then each ``rules`` entry (``when`` / ``expr`` / ``error`` /
   ``level``). Warnings never fail the unit; they are returned in `Outcome.warnings`.
"""

from __future__ import annotations

import ast
import re
import reprlib
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from octopipe.core.answer_parsing import (
    RESPONSE_WRAPPER_KEY,
    AnswerParseError,
    parse_answer,
    parse_text,
    unwrap_response,
)
from octopipe.core.budget import active as active_budget
from octopipe.core.coercion import CompiledSchema
from octopipe.core.config_models import RuleSpec, ValidationSpec
from octopipe.core.deferred import resolved
from octopipe.core.expressions import Expression, compile_expression, make_namespace
from octopipe.errors import ExpressionError

__all__ = ["AnswerParseError", "AnswerValidator", "Outcome", "Violation", "parse_answer"]

Stage = Literal["parse", "schema", "rules"]
Level = Literal["error", "warning"]

_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem with an answer: where it was found and what is wrong."""

    stage: Stage
    rule: str
    """``parse``; ``schema_<keyword>``; ``required``/``types``/``ranges``/``enums``, or the
    name of a ``rules`` entry (its ``expr`` when it has no name)."""
    path: str
    """Dotted path into the answer (``cards[2].value``); the field name for rule checks;
    empty for the whole answer and for ``rules`` entries."""
    message: str
    level: Level = "error"
    raised: str | None = None
    """When a rule's expression raised instead of returning false: the error it raised."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "rule": self.rule,
            "path": self.path,
            "message": self.message,
            "level": self.level,
        }
        if self.raised is not None:
            out["raised"] = self.raised
        return out


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of validating one answer.

    ``output`` is the coerced answer object (None when it did not parse); ``inputs`` the
    unit's input fields, given when the rules ran (None when parsing or the schema failed).
    """

    ok: bool
    output: dict[str, Any] | None
    inputs: Mapping[str, Any] | None
    warnings: tuple[Violation, ...] = ()
    violations: tuple[Violation, ...] = ()
    repaired: bool = False
    """The answer was not plain JSON: it had to be extracted, repaired or unwrapped."""

    @property
    def record(self) -> dict[str, Any] | None:
        """The input fields merged with the output: what the rules saw (None when they did
        not run)."""
        if self.inputs is None or self.output is None:
            return None
        return {**resolved(self.inputs), **self.output}

    @property
    def stage(self) -> Stage | None:
        """Stage of the first error (``parse``, ``schema``, ``rules``), or None when ok."""
        for violation in self.violations:
            if violation.level == "error":
                return violation.stage
        return None


class AnswerValidator:
    """Everything needed to check the answers of one step, compiled once.

    ``schema`` — a JSON Schema (Draft 2020-12) for the answer object, or None.
    ``spec`` — the step's ``validation:`` entry, or None.
    ``coerce`` — False for ``schemas.strict_mode``: the schema sees the answer as parsed.

    Raises `ExpressionError` (or `UnsafeExpressionError`) when a rule's ``expr`` or ``when``
    does not compile, and ``jsonschema.SchemaError`` for an invalid schema.
    """

    def __init__(
        self,
        schema: dict[str, Any] | None,
        spec: ValidationSpec | None,
        *,
        coerce: bool = True,
    ) -> None:
        self._coerce = coerce
        self._schema: CompiledSchema | None = None
        self._schema_required: tuple[str, ...] = ()
        declared: set[str] = set()
        if schema is not None:
            Draft202012Validator.check_schema(schema)
            self._schema = CompiledSchema(schema)
            if isinstance(schema, dict):
                required = schema.get("required", [])
                self._schema_required = tuple(k for k in required if isinstance(k, str))
                declared.update(self._schema_required, schema.get("properties", {}))
        spec = spec or ValidationSpec()
        self._required = tuple(spec.required)
        self._types = tuple((f, t, _TYPE_CHECKS[t]) for f, t in spec.types.items())
        self._ranges = tuple((f, low, high) for f, (low, high) in spec.ranges.items())
        self._enums = tuple(_compile_enum(f, members) for f, members in spec.enums.items())
        self._rules = tuple(_CompiledRule(rule) for rule in spec.rules)
        self._has_rules = bool(
            self._required or self._types or self._ranges or self._enums or self._rules
        )
        declared.update(self._required, spec.types, spec.ranges, spec.enums)
        for rule in self._rules:
            declared.update(rule.expr.names)
        self._reads = frozenset(self._required).union(
            spec.types, spec.ranges, spec.enums, *(rule.reads for rule in self._rules)
        )
        """Every record field the checks after the schema may read: when the answer holds
        them all, they cannot see the unit's input (the answer's fields hide its own)."""
        # {"response": "<json>"} is unwrapped unless the step itself uses a "response" field.
        self._unwrap_single = RESPONSE_WRAPPER_KEY not in declared

    def validate_answer(self, raw_text: str, input_fields: Mapping[str, Any]) -> Outcome:
        """Parse, repair, coerce, schema-check and rule-check an LLM answer."""
        try:
            output, repaired = parse_text(raw_text, unwrap=self._unwrap_single)
        except AnswerParseError as exc:
            violation = Violation("parse", "parse", "", exc.message)
            return Outcome(False, None, None, violations=(violation,))
        if (
            self._schema_required
            and RESPONSE_WRAPPER_KEY in output
            and any(key not in output for key in self._schema_required)
        ):
            inner = unwrap_response(output)
            if inner is not None:
                output, repaired = inner, True
        return self._check(output, input_fields, repaired)

    def validate_record(
        self, output: Mapping[str, Any], input_fields: Mapping[str, Any]
    ) -> Outcome:
        """Schema (when there is one) and rules for an already-built output (expression
        steps): the same as `validate_answer` without parsing."""
        return self._check(output if type(output) is dict else dict(output), input_fields, False)

    # --- stages ---------------------------------------------------------------------------

    def _check(
        self, output: dict[str, Any], input_fields: Mapping[str, Any], repaired: bool
    ) -> Outcome:
        schema = self._schema
        if schema is not None:
            if self._coerce:
                coerced = schema.coerce(output)
                if isinstance(coerced, dict):
                    output = coerced
            if not schema.quick_check(output):
                errors = _schema_violations(schema, output)
                if errors:
                    return Outcome(False, output, None, violations=errors, repaired=repaired)
        if not self._has_rules:
            return Outcome(True, output, input_fields, repaired=repaired)
        # when the answer holds every field the checks read, the input is not read (a
        # `DeferredRecord` stays unread): the answer's fields hide the input's
        inputs_read = not self._reads <= output.keys()
        record = {**resolved(input_fields), **output} if inputs_read else output
        errors, warnings = self._apply_rules(record)
        return Outcome(not errors, output, input_fields, warnings, errors, repaired)

    def _apply_rules(
        self, record: dict[str, Any]
    ) -> tuple[tuple[Violation, ...], tuple[Violation, ...]]:
        errors: list[Violation] = []
        for name in self._required:
            if record.get(name) is None:
                state = "missing" if name not in record else "null"
                errors.append(_rule_error("required", name, f"required field {name!r} is {state}"))
        if errors:
            return tuple(errors), ()
        for name, type_name, check in self._types:
            value = record.get(name)
            if value is not None and not check(value):
                message = f"field {name!r} should be {type_name}, got {_kind(value)}"
                errors.append(_rule_error("types", name, message))
        for name, low, high in self._ranges:
            value = record.get(name)
            if type(value) is not int and type(value) is not float:
                continue
            if (low is not None and not value >= low) or (high is not None and not value <= high):
                bounds = f"[{_bound(low)}, {_bound(high)}]"
                message = f"field {name!r} = {value!r} is outside {bounds}"
                errors.append(_rule_error("ranges", name, message))
        for name, folded, others, members in self._enums:
            value = record.get(name)
            if value is None:
                continue
            if isinstance(value, str):
                allowed = value.casefold() in folded
            else:
                allowed = any(_same(value, member) for member in others)
            if not allowed:
                message = f"field {name!r} = {value!r} is not one of {members!r}"
                errors.append(_rule_error("enums", name, message))
        warnings: list[Violation] = []
        if self._rules:
            namespace = make_namespace(record)
            for rule in self._rules:
                violation = rule.apply(namespace, record)
                if violation is not None:
                    (errors if violation.level == "error" else warnings).append(violation)
                    if violation.raised and _budget_spent():
                        break  # the unit's budget is used up: every later rule would fail too
        return tuple(errors), tuple(warnings)


# --- business rules ---------------------------------------------------------------------------


class _CompiledRule:
    """One ``rules`` entry: ``expr``, optional ``when``, the ``error`` message template."""

    __slots__ = (
        "_computed",
        "_computed_source",
        "expr",
        "level",
        "message",
        "name",
        "reads",
        "when",
    )

    def __init__(self, spec: RuleSpec) -> None:
        self.name = spec.name or spec.expr
        self.level: Level = spec.level
        self.expr = compile_expression(spec.expr)
        self.when = None if spec.when is None else compile_expression(spec.when)
        self.message = _Template(spec.error or f"rule {self.name!r} failed")
        self._computed: Expression | None = None
        if self.message.uses("_computed"):
            source = _left_of_first_comparison(spec.expr)
            if source is not None:
                try:
                    self._computed = compile_expression(source)
                except ExpressionError:
                    self._computed = None
        exprs = (self.expr, self.when, self._computed)
        self.reads = self.message.fields.union(*(e.lookups for e in exprs if e is not None))
        """Every record field applying the rule may read."""

    def apply(self, namespace: dict[str, Any], record: Mapping[str, Any]) -> Violation | None:
        if self.when is not None:
            try:
                condition = self.when.evaluate(namespace)
            except ExpressionError as exc:
                message = f"rule {self.name!r} skipped: its 'when' raised {exc.detail}"
                return Violation("rules", self.name, "", message, "warning")
            if not condition:
                return None
        raised: str | None = None
        try:
            if self.expr.evaluate(namespace):
                return None
        except ExpressionError as exc:
            raised = exc.detail
        message = self.message.render(record, lambda: self._computed_value(namespace))
        detail = f" ({raised})" if raised else ""
        return Violation("rules", self.name, "", message + detail, self.level, raised)

    def _computed_value(self, namespace: dict[str, Any]) -> Any:
        if self._computed is None:
            return _UNRESOLVED
        try:
            return self._computed.evaluate(namespace)
        except ExpressionError:
            return _UNRESOLVED


def _budget_spent() -> bool:
    budget = active_budget()
    return budget is not None and budget.spent_on is not None


def _left_of_first_comparison(source: str) -> str | None:
    """Source of the left operand of the first comparison in an expression, or None."""
    text = source.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return None
    compares = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)]
    if not compares:
        return None
    first = min(compares, key=lambda n: (n.left.end_lineno or 0, n.left.end_col_offset or 0))
    return ast.get_source_segment(text, first.left)


_UNRESOLVED = object()
_FORMATTER = string.Formatter()


class _Template:
    """An ``error`` message with ``{field}`` placeholders, parsed once.

    Only plain names are resolved — ``{x.attr}``, ``{x[0]}`` and unknown names stay in the
    message as written — so a message can never reach attributes of a value. Conversions
    (``!r``) and format specs (``:.2f``) apply; a spec that does not fit the value, or whose
    width or precision passes the message limit, is ignored. Each value is shortened before
    it is formatted and the message is clipped to `_MAX_MESSAGE` characters: a message is
    stored with every failure, so it must stay small whatever the answer holds.
    """

    __slots__ = ("_names", "_parts", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        try:
            self._parts: list[tuple[str, str | None, str | None, str | None]] | None = list(
                _FORMATTER.parse(text)
            )
        except ValueError:  # unbalanced braces: the message is shown as written
            self._parts = None
        self._names = frozenset(p[1] for p in self._parts or () if p[1])

    def uses(self, name: str) -> bool:
        return name in self._names

    @property
    def fields(self) -> frozenset[str]:
        """The record fields `render` reads (plain names; ``_computed`` is not a field)."""
        return frozenset(n for n in self._names if n.isidentifier() and n != "_computed")

    def render(self, values: Mapping[str, Any], computed: Callable[[], Any]) -> str:
        if self._parts is None:
            return self._text
        out: list[str] = []
        for literal, field, spec, conversion in self._parts:
            out.append(literal)
            if field is None:
                continue
            value: Any = _UNRESOLVED
            if field == "_computed":
                value = computed()
            elif field.isidentifier():
                value = values.get(field, _UNRESOLVED)
            spec = spec or ""
            if value is _UNRESOLVED or "{" in spec:
                out.append(_placeholder(field, spec, conversion))
                continue
            value = _short_value(value, conversion)
            if not _spec_fits(spec):
                spec = ""
            try:
                out.append(format(value, spec))
            except (ValueError, TypeError):
                out.append(str(value))
            if sum(map(len, out)) > _MAX_MESSAGE:
                break
        return _clip("".join(out))


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = _MAX_MESSAGE
_SPEC_NUMBER = re.compile(r"\d+")


def _short_value(value: Any, conversion: str | None) -> Any:
    """``value`` after its conversion, shortened to about a message's length: a long string
    is cut, a large structure abbreviated (``[1, 2, 3, 4, 5, 6, ...]``) without being printed
    whole. Numbers stay numbers, so ``:.2f`` applies."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1_000:
        return f"<an integer of {value.bit_length()} bits>"
    if conversion == "r":
        return _SHORT.repr(value)
    if conversion == "a":
        return _SHORT.repr(value).encode("ascii", "backslashreplace").decode("ascii")
    if isinstance(value, str):
        return value[:_MAX_MESSAGE]
    if isinstance(value, int | float) and conversion is None:
        return value
    if isinstance(value, list | tuple | dict | set | frozenset):
        return _SHORT.repr(value)
    return str(value)[:_MAX_MESSAGE]


def _spec_fits(spec: str) -> bool:
    """Whether a format spec's width and precision stay within a message's length."""
    return all(len(n) < 6 and int(n) <= _MAX_MESSAGE for n in _SPEC_NUMBER.findall(spec))


def _placeholder(field: str, spec: str, conversion: str | None) -> str:
    return (
        "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )


# --- structural checks ------------------------------------------------------------------------


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "integer": _is_integer,
    "int": _is_integer,
    "float": _is_number,
    "number": _is_number,
    "string": lambda v: isinstance(v, str),
    "str": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list | tuple),
    "list": lambda v: isinstance(v, list | tuple),
    "object": lambda v: isinstance(v, Mapping),
    "dict": lambda v: isinstance(v, Mapping),
}


def _compile_enum(
    name: str, members: list[Any]
) -> tuple[str, frozenset[str], tuple[Any, ...], list[Any]]:
    folded = frozenset(m.casefold() for m in members if isinstance(m, str))
    others = tuple(m for m in members if not isinstance(m, str))
    return name, folded, others, members


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``; ``1`` is ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _bound(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else str(value)


def _rule_error(rule: str, field: str, message: str) -> Violation:
    return Violation("rules", rule, field, message)


# --- schema errors ----------------------------------------------------------------------------


def _schema_violations(schema: CompiledSchema, output: dict[str, Any]) -> tuple[Violation, ...]:
    try:
        errors = list(schema.validator.iter_errors(output))
    except Unresolvable as exc:
        return (Violation("schema", "schema_$ref", "", _clip(f"unresolvable $ref: {exc}")),)
    except RecursionError:
        return (Violation("schema", "schema_depth", "", "the answer is nested too deeply"),)
    errors.sort(key=lambda e: _path_key(e.absolute_path))
    return tuple(
        Violation(
            "schema",
            f"schema_{e.validator}",
            _dotted(e.absolute_path),
            _clip(f"{answer_path(_dotted(e.absolute_path))}: {e.message}"),
        )
        for e in errors
    )


def answer_path(path: str) -> str:
    """The JSON path of a field of the answer as a message shows it: ``answer.items[2].score``
    (``answer`` alone for the whole answer)."""
    if not path:
        return "answer"
    return f"answer{path}" if path.startswith("[") else f"answer.{path}"


def _path_key(path: Any) -> tuple[tuple[int, int, str], ...]:
    return tuple((1, p, "") if isinstance(p, int) else (0, 0, str(p)) for p in path)


_PLAIN_KEY = re.compile(r"[^.\[\]\s'\"]+")


def _dotted(path: Any) -> str:
    """``cards[2].value`` for the JSON path ``("cards", 2, "value")``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _clip(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
