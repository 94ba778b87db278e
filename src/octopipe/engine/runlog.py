"""The run's human log (``run.log``) and its trace (``trace.jsonl``).

Each ``run.log`` line is ``<UTC time> [TAG] message`` with the time read once per line. Lines
are appended and flushed as they are written; a crash loses at most the line being written.
``trace.jsonl`` gets one JSON object per provider call or batch operation. Neither ever holds
an API key: callers pass structured values, and ``redact`` scrubs known key variables anyway.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENAI_COMPATIBLE_API_KEY",
)


def _secrets() -> list[str]:
    return [v for k in _KEY_VARIABLES if (v := os.environ.get(k, "")) and len(v) >= 8]


def redact(text: str) -> str:
    for secret in _secrets():
        text = text.replace(secret, "[redacted]")
    return text


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class RunLog:
    """Appends tagged lines to ``run.log`` and optionally echoes them to a stream."""

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        self.echo = echo
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, tag: str, message: str) -> None:
        line = f"{utc_stamp()} [{tag}] {redact(message)}\n"
        self._file.write(line)
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()

    def close(self) -> None:
        self._file.close()


class Trace:
    """One JSON line per provider call or batch operation."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8", buffering=1)

    def write(self, **fields: Any) -> None:
        fields.setdefault("ts", utc_stamp())
        self._file.write(redact(json.dumps(fields, default=str, ensure_ascii=False)) + "\n")

    def close(self) -> None:
        self._file.close()
