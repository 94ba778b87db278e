"""Size limits on what a pipeline folder (or a command line) can make octopipe do.

A pipeline folder is untrusted input: without bounds, ``repeat: 1e20`` fills the disk and a
50 MB config takes half a minute to parse. Each limit has a default that no real pipeline
comes near, and an environment variable that raises (or lowers) it on purpose:

- ``OCTOPIPE_MAX_UNITS`` (default 10,000,000): the most units one run may have, after
  ``repeat`` and ``--max-units``. ``validate``, ``init``/``run``, ``units`` and ``try`` refuse a
  pipeline that makes more, before anything is created; ``--repeat`` and ``--max-units`` above
  it are refused as bad options.
- ``OCTOPIPE_MAX_CONFIG_BYTES`` (default 4,000,000 bytes): the largest config, schema or template file
  (items files are data: they are streamed or bounded by the unit limit instead).

Pure: reads the environment mapping it is given (``current_limits`` passes ``os.environ``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from octopipe.errors import ConfigError, UsageError

UNITS_ENV = "OCTOPIPE_MAX_UNITS"
FILE_BYTES_ENV = "OCTOPIPE_MAX_CONFIG_BYTES"
DEFAULT_MAX_UNITS = 10_000_000
DEFAULT_MAX_FILE_BYTES = 4_000_000
_CEILING = 10**12  # no limit may be raised past this (the ledger stores 64-bit integers)


@dataclass(frozen=True)
class Limits:
    max_units: int = DEFAULT_MAX_UNITS
    """Most units a run may have."""
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    """Largest config, schema or template file."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Limits:
        return cls(
            max_units=_read(environ, UNITS_ENV, DEFAULT_MAX_UNITS),
            max_file_bytes=_read(environ, FILE_BYTES_ENV, DEFAULT_MAX_FILE_BYTES),
        )


def current_limits() -> Limits:
    """The limits in force for this process (defaults, or as the environment sets them)."""
    return Limits.from_environ(os.environ)


def _read(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _CEILING:
        raise UsageError(f"{name} must be a whole number from 1 to {_CEILING:,}, not {text!r}")
    return value


def unit_count_problem(count: int, limits: Limits) -> str | None:
    """Why ``count`` (a --repeat or --max-units value) is refused, or None."""
    if count > limits.max_units:
        return (
            f"{count:,} is more than {limits.max_units:,}, the most units a run may have "
            f"(set {UNITS_ENV} to raise the limit)"
        )
    return None


def too_many_units(total: int, base: int, repeats: int, limits: Limits) -> str | None:
    """Why a pipeline making ``total`` units is refused, or None."""
    if total <= limits.max_units:
        return None
    made = f"{base:,} base units x repeat {repeats:,}" if repeats > 1 else f"{base:,} units"
    return (
        f"the pipeline makes {total:,} units ({made}), more than the limit of "
        f"{limits.max_units:,} (set {UNITS_ENV} to raise it, or take the first N with --max-units)"
    )


def check_file_size(path: Path, shown: str, limits: Limits | None = None) -> None:
    """Raise ``ConfigError`` (naming ``shown``) when the file at ``path`` is over the limit."""
    limit = (limits or current_limits()).max_file_bytes
    try:
        size = path.stat().st_size
    except OSError:
        return  # missing or unreadable: the reader says so
    if size > limit:
        raise ConfigError.single(shown, file_too_big(size, limit))


def file_too_big(size: int, limit: int) -> str:
    return (
        f"the file is {_megabytes(size)}, more than the {_megabytes(limit)} limit for pipeline "
        f"files (set {FILE_BYTES_ENV} to raise it)"
    )


def _megabytes(size: int) -> str:
    return f"{size:,} bytes" if size < 100_000 else f"{size / 1_000_000:.1f} MB"
