"""Turn an LLM's answer text into a JSON object.

The fast path is one strict ``json`` decode. Only when it fails is the answer searched for an
object (inside a code fence, or surrounded by prose) and, as a last resort, handed to
``json_repair`` (trailing commas, single quotes, truncated output, ``+5``, comments...). NaN and
±Infinity are refused on every path: JSON has no such values and they would poison the rules
and the stored record.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import json_repair

from octopipe.errors import OctopipeError

__all__ = [
    "RESPONSE_WRAPPER_KEY",
    "AnswerParseError",
    "loads_strict",
    "parse_answer",
    "parse_text",
    "unwrap_response",
]

RESPONSE_WRAPPER_KEY = "response"
"""Key of a double-wrapped answer: ``{"response": "<the real JSON, as text>"}``."""


class AnswerParseError(OctopipeError):
    """The answer holds no usable JSON object (a unit-level failure of stage ``parse``)."""


class _NonFiniteNumber(Exception):
    """Raised from inside the decoder for NaN / Infinity literals and overflowing floats."""


def _refuse_constant(name: str) -> Any:
    raise _NonFiniteNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFiniteNumber(text)
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)

# An opening fence at the start of a line with an optional info string ("json", "jsonc"...),
# then the body up to the closing fence or, for truncated output, to the end of the text.
_FENCE = re.compile(r"(?:^|\n)[ \t]*```[ \t]*([^\n`]*)\n?(.*?)(?:```|\Z)", re.DOTALL)

# The repair library answers ``{}`` when it gives up; accept that only for a real ``{}``.
_EMPTY_OBJECT = re.compile(r"\{\s*\}")

# Strings are matched whole (so nothing inside them is touched); escaped backslashes are
# consumed as pairs.
_EMPTY_THEN_SPACE = re.compile(
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|\[\s*\]|\{\s*\})(\s+(?=[\]},]))?""", re.DOTALL
)
_ODD_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")
# Placeholders for string literals while the repair library runs (private-use characters).
_SHIELD_OPEN, _SHIELD_CLOSE = "\ue000", "\ue001"
_SHIELDED_TEXT = re.compile(f"{_SHIELD_OPEN}([0-9]+){_SHIELD_CLOSE}")
_SHIELDED_LITERAL = re.compile(f'"{_SHIELD_OPEN}[0-9]+{_SHIELD_CLOSE}"')
_STRING_LITERAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_LENIENT_STRINGS = json.JSONDecoder(strict=False)

_NON_FINITE_MESSAGE = "the answer contains NaN or Infinity, which JSON does not allow"


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses NaN, ±Infinity and overflowing floats (raises ValueError)."""
    try:
        return _DECODER.decode(text)
    except _NonFiniteNumber as exc:
        raise ValueError(f"non-finite number {exc}") from None


def parse_answer(raw: str) -> tuple[dict[str, Any], bool]:
    """Parse an answer into a JSON object; return ``(object, repaired)``.

    ``repaired`` is true when the strict decode of the whole text failed and the object had to
    be extracted (fences, prose) or repaired, or when a double-wrapped answer
    ``{"response": "<json>"}`` (that single key, holding JSON text) was unwrapped.

    Raises `AnswerParseError` for empty text, text with no object, a top-level value that is
    not an object (list, string, number...), NaN or Infinity.
    """
    return parse_text(raw, unwrap=True)


def parse_text(raw: str, *, unwrap: bool) -> tuple[dict[str, Any], bool]:
    """`parse_answer`, with the single-key ``response`` unwrapping optional.

    The validator turns unwrapping off when the step's schema declares a ``response``
    property itself.
    """
    if not isinstance(raw, str):
        raise AnswerParseError(f"the answer is {type(raw).__name__}, not text")
    try:
        value: Any = _DECODER.decode(raw)
    except _NonFiniteNumber:
        raise AnswerParseError(_NON_FINITE_MESSAGE) from None
    except (ValueError, RecursionError):
        obj, repaired = _extract(raw), True
    else:
        if not isinstance(value, dict):
            raise AnswerParseError(f"the answer is a JSON {_json_kind(value)}, not an object")
        obj, repaired = value, False
    if unwrap and len(obj) == 1:
        inner = unwrap_response(obj)
        if inner is not None:
            return inner, True
    return obj, repaired


def unwrap_response(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object inside ``{"response": "<json text or fenced json>"}``, or None.

    None when there is no string ``response`` key or its text does not hold a JSON object.
    """
    inner = obj.get(RESPONSE_WRAPPER_KEY)
    if not isinstance(inner, str):
        return None
    text = inner.strip()
    if not text.startswith(("{", "```")):
        return None
    try:
        return parse_text(text, unwrap=False)[0]
    except AnswerParseError:
        return None


def _extract(raw: str) -> dict[str, Any]:
    """The first JSON object in a text that is not plain JSON: fenced, in prose, or broken."""
    text = raw.strip()
    if not text:
        raise AnswerParseError("the answer is empty")
    candidate = _fenced_body(text) if "```" in text else text
    start = candidate.find("{")
    if start < 0:
        raise AnswerParseError("no JSON object found in the answer")
    end = candidate.rfind("}")
    if end > start:
        # Prose around a well-formed object: still no need for the repair library.
        try:
            value = _DECODER.decode(candidate[start : end + 1])
        except _NonFiniteNumber:
            raise AnswerParseError(_NON_FINITE_MESSAGE) from None
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(value, dict):
                return value
    try:
        repaired = _repair(candidate[start:])
    except RecursionError:
        raise AnswerParseError("the answer is nested too deeply") from None
    except Exception as exc:  # the repair library is best effort; never let it crash a run
        raise AnswerParseError(f"the answer is not repairable JSON ({exc})") from None
    if isinstance(repaired, list):
        # Several values side by side ('{...} and {...}', or trailing prose with braces):
        # the first object is the answer.
        repaired = next((v for v in repaired if isinstance(v, dict)), repaired)
    if not isinstance(repaired, dict) or (
        not repaired and not _EMPTY_OBJECT.match(candidate, start)
    ):
        raise AnswerParseError("no JSON object found in the answer")
    if _has_non_finite(repaired):
        raise AnswerParseError(_NON_FINITE_MESSAGE)
    return repaired


def _fenced_body(text: str) -> str:
    """The body of the best code fence: the first ``json`` one holding ``{``, else the first
    holding ``{``; the whole text when no fence holds an object."""
    fallback: str | None = None
    for match in _FENCE.finditer(text):
        info, body = match.group(1).strip().lower(), match.group(2)
        if "{" not in body:
            continue
        if info.startswith("json"):
            return body
        if fallback is None:
            fallback = body
    return text if fallback is None else fallback


def _repair(text: str) -> Any:
    """``json_repair`` on a broken JSON text, with its string decoding kept out of the way.

    The library repairs structure well but decodes string contents lossily (it drops a
    trailing newline, misreads escapes after an escaped backslash, splits surrogate pairs).
    So every well-formed double-quoted literal is swapped for a placeholder before the
    library runs and decoded by ``json`` afterwards — unless some literal does not sit where
    a JSON string can (unescaped quotes inside a string, say), in which case the library's
    own heuristics get the untouched text.
    """
    shielded, literals = _shield_strings(text)
    repaired = json_repair.loads(
        _sidestep_repair_bugs(shielded), skip_json_loads=True, stream_stable=True
    )
    if literals:
        repaired = _unshield(repaired, literals)
    return _join_surrogates(repaired)


def _shield_strings(text: str) -> tuple[str, list[str]]:
    if '"' not in text or _SHIELD_OPEN in text or _SHIELD_CLOSE in text:
        return text, []
    literals: list[str] = []

    def swap(match: re.Match[str]) -> str:
        literals.append(match[0])
        return f'"{_SHIELD_OPEN}{len(literals) - 1}{_SHIELD_CLOSE}"'

    shielded = _STRING_LITERAL.sub(swap, text)
    for match in _SHIELDED_LITERAL.finditer(shielded):
        before, after = match.start() - 1, match.end()
        while before >= 0 and shielded[before].isspace():
            before -= 1
        while after < len(shielded) and shielded[after].isspace():
            after += 1
        if (before >= 0 and shielded[before] not in "{[,:") or (
            after < len(shielded) and shielded[after] not in ":,]}"
        ):
            return text, []
    return shielded, literals


def _unshield(value: Any, literals: list[str]) -> Any:
    if isinstance(value, str):
        if _SHIELD_OPEN not in value:
            return value
        whole = _SHIELDED_TEXT.fullmatch(value)
        if whole is not None:
            return _decode_literal(literals[int(whole[1])])
        return _SHIELDED_TEXT.sub(lambda m: _decode_literal(literals[int(m[1])]), value)
    if isinstance(value, dict):
        return {_unshield(k, literals): _unshield(v, literals) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshield(v, literals) for v in value]
    return value


def _decode_literal(literal: str) -> str:
    try:
        decoded = _LENIENT_STRINGS.decode(literal)  # raw newlines/tabs inside are tolerated
    except ValueError:  # an invalid escape such as \x: let the library read this one string
        decoded = json_repair.loads(literal, skip_json_loads=True, stream_stable=True)
    return decoded if isinstance(decoded, str) else literal[1:-1]


def _sidestep_repair_bugs(text: str) -> str:
    """Rewrite valid-JSON spellings the repair library decodes wrongly into equivalent ones.

    Nothing here repairs anything (the text means the same JSON before and after):

    * an empty string or container followed by whitespace inside an array is dropped by the
      library (``[\\n "a",\\n ""\\n]`` gives ``["a"]``; json_repair issue #164): the whitespace
      between such a value and the next ``,`` / ``]`` / ``}`` is removed;
    * the escapes ``\\f`` and ``\\/`` come out as two characters: they are spelled
      ``\\u000c`` and ``/``.
    """
    if "[" in text:
        text = _EMPTY_THEN_SPACE.sub(_drop_space_after_empty, text)
    if "\\" in text:
        text = _ODD_ESCAPE.sub(_spell_escape, text)
    return text


def _drop_space_after_empty(match: re.Match[str]) -> str:
    token = match[1]
    if match[2] and (token in ('""', "''") or token[0] in "[{"):
        return token
    return match[0]


def _spell_escape(match: re.Match[str]) -> str:
    char = match[1]
    return "/" if char == "/" else "\\u000c" if char == "f" else match[0]


def _join_surrogates(value: Any) -> Any:
    """Merge the UTF-16 surrogate pairs the repair library leaves apart (``"\\ud83d\\ude00"``
    decodes to two lone surrogates there, to one emoji in ``json``)."""
    if isinstance(value, str):
        if _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    if isinstance(value, dict):
        return {_join_surrogates(k): _join_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_surrogates(v) for v in value]
    return value


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
