"""Error messages turned into group keys, so a report can say "412 units: score <n> is below
<n>" instead of listing 412 slightly different sentences.

``error_keys(errors)`` is what ``octopipe report`` groups a failure by: the distinct keys of
the entries of its stored errors that count. An entry counts when it is an object with a
``message`` and is not a warning (``level: warning``); the one-line summary the engine
appends to a local or render failure -- the last of several entries, holding only
``message`` and loop information -- repeats the others and is counted only when no other
entry has a message (a fan-out failure names just the field).

``error_key(message)`` makes the key of one message. In order:

1. quoted values (``'...'``, ``"..."``, backquoted) become ``'<s>'``: what a model answered
   or an item held, not what went wrong;
2. identifiers -- UUIDs, long hex strings, words of 8 or more characters mixing letters and
   digits (``req_01HX9Z``, ``batch_6745a1``) -- become ``<id>``;
3. numbers (integers, decimals, exponents, a sign; dotted like versions and addresses)
   become ``<n>``, a unit right after one is kept (``30.5s`` -> ``<n>s``);
4. runs of whitespace become one space, and the key is cut at ``MAX_KEY`` characters.

Pure and deterministic: the same message gives the same key on every machine.
"""

from __future__ import annotations

import functools
import re
from typing import Any

MAX_KEY = 240
_SUMMARY_KEYS = frozenset({"message", "iterations", "hit_max_iterations"})

_QUOTED = re.compile(
    r"""(?<!\w)(?:'(?:[^'\\\n]|\\.){0,400}'|"(?:[^"\\\n]|\\.){0,400}"|`[^`\n]{0,400}`)(?!\w)"""
)
_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_HEX = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b")
_MIXED = re.compile(r"\b(?=\w*\d)(?=\w*[A-Za-z])\w{8,}\b")
_MEASURE = re.compile(r"(?<![\w.\-])\d+(?:\.\d+)?(?=[a-zA-Z%µ]{1,3}\b)")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)*(?:[eE][-+]?\d+)?(?!\w)")
_SPACE = re.compile(r"\s+")


def error_keys(errors: Any) -> list[str]:
    """The distinct keys of the entries of ``errors`` (a stored error list) that count, in
    order; ``[]`` for anything that is not a list."""
    if not isinstance(errors, list):
        return []
    messages = [
        entry
        for entry in errors
        if isinstance(entry, dict)
        and isinstance(entry.get("message"), str)
        and entry.get("level") != "warning"
    ]
    summary = errors[-1] if len(errors) > 1 else None
    if isinstance(summary, dict) and summary.keys() <= _SUMMARY_KEYS and len(messages) > 1:
        messages = [entry for entry in messages if entry is not summary]
    return list(dict.fromkeys(error_key(entry["message"]) for entry in messages))


@functools.lru_cache(maxsize=65_536)
def error_key(message: str) -> str:
    """The group key of one message (the steps of the module docstring)."""
    text = _QUOTED.sub("'<s>'", message)
    text = _UUID.sub("<id>", text)
    text = _HEX.sub("<id>", text)
    text = _MIXED.sub("<id>", text)
    text = _MEASURE.sub("<n>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MAX_KEY else text[: MAX_KEY - 1] + "…"
