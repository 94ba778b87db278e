"""The price sources of a run: the database (bundled or refreshed), the user's price file and
the pipeline's, put together in front of the registry (``core/registry.Registry.rates``).

- ``~/.config/octopipe/prices.yaml`` (`user_price_file`): the user's own prices; optional.
- the pipeline's ``prices:`` file (inside the folder, copied into the run's snapshot); wins
  over the user's.
- ``~/.cache/octopipe/genai-prices.json`` (`snapshot_file`): the database as ``octopipe
  models --refresh`` last fetched it; without it, the data bundled with genai-prices.

A price file that cannot be read or parsed is a ``ConfigError`` naming the file, line and key:
a run never starts with prices silently missing. `price_record` is what a run records about
the prices that priced it (run options ``prices``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from octopipe.core import price_db
from octopipe.core.config import Pipeline
from octopipe.core.price_file import PriceOverrides, parse_price_file
from octopipe.core.registry import Registry, load_registry
from octopipe.errors import ConfigError
from octopipe.store.codec import utc_now

MAX_PRICE_FILE_BYTES = 1_000_000


def user_price_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "octopipe" / "prices.yaml"


def snapshot_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "octopipe" / "genai-prices.json"


def read_price_file(path: Path, shown: str | None = None) -> PriceOverrides:
    """The prices of the file at ``path`` (``shown``: its name in messages)."""
    name = shown or str(path)
    try:
        if path.stat().st_size > MAX_PRICE_FILE_BYTES:
            raise ConfigError.single(
                name, f"price file is larger than {MAX_PRICE_FILE_BYTES:,} bytes"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError.single(name, f"cannot read price file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError.single(name, "price file is not UTF-8 text") from None
    return parse_price_file(text, name, load_registry().price_file_providers())


@functools.cache
def _database_ready() -> bool:
    """Use the refreshed snapshot if there is one (once per process)."""
    return price_db.use_snapshot_file(snapshot_file())


def price_registry(pipeline: Pipeline | None = None, registry: Registry | None = None) -> Registry:
    """``registry`` (the packaged one by default) with the user's and the pipeline's price
    files in front of the database."""
    _database_ready()
    out = registry or load_registry()
    user = user_price_file()
    if user.is_file():
        out = out.with_prices(read_price_file(user))
    if pipeline is not None and pipeline.prices_path is not None:
        shown = pipeline.prices_path.name
        out = out.with_prices(read_price_file(pipeline.prices_path, shown))
    return out


def price_record(pipeline: Pipeline | None = None) -> dict[str, Any]:
    """What prices a run: the database and its version, and each price file in front of it
    (the user's by its path, the pipeline's by its name in the folder) with its SHA-256."""
    _database_ready()
    files: list[dict[str, Any]] = []
    user = user_price_file()
    if user.is_file():
        files.append({"file": str(user), "sha256": _sha256(user)})
    if pipeline is not None and pipeline.prices_path is not None:
        shown = str(pipeline.config.prices)
        files.append({"file": shown, "sha256": _sha256(pipeline.prices_path)})
    return {"database": price_db.database_version(), "price_files": files}


def session_prices(options: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The run options that record ``record`` as the price source of a new session:
    ``prices`` (the latest) and ``price_history``, every session's record in order, each with
    the time it started (a run from before the history began starts it with its last record)."""
    history = list(options.get("price_history") or [])
    if not history and options.get("prices"):
        history.append(dict(options["prices"]))
    stamped = {**record, "session_started_at": utc_now()}
    return {"prices": record, "price_history": [*history, stamped]}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


__all__ = [
    "price_record",
    "price_registry",
    "read_price_file",
    "session_prices",
    "snapshot_file",
    "user_price_file",
]
