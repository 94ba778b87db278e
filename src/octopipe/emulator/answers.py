"""What the emulator answers, independent of the vendor wire format.

Guarantees:

- ``EmulatorRequest`` is the vendor-neutral view of one incoming call (model, prompt text,
  system text, JSON schema and *which native field carried it*), handed to answer functions
  and kept in the emulator's request log for tests to inspect.
- ``default_answer`` is deterministic: a schema-valid value (see ``schema_values``) when the
  request carries a schema, otherwise a short sentence; both depend only on the prompt.
- ``make_answer`` applies an answer function, the ``malformed`` fault (text that is never
  valid JSON) and the request's ``max_tokens`` (text cut, finish reason ``length``), and counts
  tokens as ``ceil(len(text) / 4)``.
- ``load_answer_hook`` imports a user's answer hook from the file they named (``--answers``):
  it is the only way code from outside the package comes to answer requests, and nothing ever
  looks for such a file by itself.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.schema_values import WORDS, schema_value, seed_from_text
from octopipe.errors import AnswerHookError

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class EmulatorRequest:
    """One call as the emulator understood it.

    ``structured_via`` names the native field that carried ``schema``: ``response_format``
    (OpenAI), ``tool`` or ``output_config`` (Anthropic), ``responseJsonSchema`` or
    ``responseSchema`` (Gemini); ``None`` when there was no schema.
    """

    vendor: str
    endpoint: str
    model: str
    prompt: str
    system: str | None = None
    schema: Mapping[str, Any] | None = None
    structured_via: str | None = None
    tool_name: str | None = None
    max_tokens: int | None = None
    path: str = ""
    body: Mapping[str, Any] = field(default_factory=dict, repr=False)


AnswerFn = Callable[[EmulatorRequest], str | dict[str, Any]]


@dataclass(frozen=True)
class Answer:
    """The answer to render: ``data`` is the parsed JSON object when there is one."""

    text: str
    data: dict[str, Any] | None
    truncated: bool
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int = 0


def count_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def default_answer(request: EmulatorRequest) -> str | dict[str, Any]:
    """Schema-shaped value when a schema was sent, else a sentence; same prompt, same answer."""
    if request.schema is not None:
        return schema_value(request.schema, request.prompt)
    rng = random.Random(seed_from_text(request.prompt))
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))
    return f"Emulated answer {seed_from_text(request.prompt) % 10**6:06d}: {words}."


def load_answer_hook(path: Path) -> AnswerFn:
    """The ``answer(request)`` function of the Python file at ``path``, wrapped so that a
    ``None`` answer falls back to ``default_answer``. Importing the file runs its code, in this
    process, with its environment: call this only for a file the user named."""
    spec = importlib.util.spec_from_file_location("octopipe_answer_hook", path)
    if spec is None or spec.loader is None:
        raise AnswerHookError(f"{path}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except OSError as exc:
        raise AnswerHookError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:  # the user's own code: any failure is reported, not a traceback
        raise AnswerHookError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    hook = getattr(module, "answer", None)
    if not callable(hook):
        raise AnswerHookError(f"{path}: defines no answer(request) function")

    def answer(request: EmulatorRequest) -> str | dict[str, Any]:
        value = hook(request)
        return default_answer(request) if value is None else value

    return answer


def make_answer(
    request: EmulatorRequest,
    answer_fn: AnswerFn | None,
    *,
    malformed: bool = False,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Answer:
    raw = (answer_fn or default_answer)(request)
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    if malformed:
        text = break_json(text)
    truncated = False
    if request.max_tokens is not None and count_tokens(text) > request.max_tokens:
        text, truncated = text[: request.max_tokens * CHARS_PER_TOKEN], True
    prompt_tokens = count_tokens((request.system or "") + request.prompt)
    return Answer(
        text=text,
        data=None if malformed or truncated else _as_object(raw),
        truncated=truncated,
        input_tokens=prompt_tokens,
        output_tokens=count_tokens(text),
        cached_input_tokens=min(cached_input_tokens, prompt_tokens),
        cache_write_tokens=min(cache_write_tokens, max(0, prompt_tokens - cached_input_tokens)),
    )


def break_json(text: str) -> str:
    """A prefix of ``text`` that no JSON parser accepts."""
    broken = text[: max(1, len(text) // 2)]
    return broken + "{" if _parses(broken) else broken


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _as_object(raw: str | dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
