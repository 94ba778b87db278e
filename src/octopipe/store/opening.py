"""The one way to reach a run's store: open, create, or make a private in-memory one.

Callers get the :mod:`octopipe.store.protocol` types, never the implementation: a reader
(``readonly=True``) gets a ``RunReader`` and cannot write by mistake; the writer gets a
``RunStore``. SQLite (``store/ledger.py``) is behind both today.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal, overload

from octopipe.store.ledger import Ledger
from octopipe.store.protocol import RunReader, RunStore
from octopipe.store.records import RunMeta, StepDef


@overload
def open_run_store(
    path: str | os.PathLike[str], *, readonly: Literal[True], durable: bool = False
) -> RunReader: ...
@overload
def open_run_store(
    path: str | os.PathLike[str], *, readonly: Literal[False] = False, durable: bool = False
) -> RunStore: ...
def open_run_store(
    path: str | os.PathLike[str], *, readonly: bool = False, durable: bool = False
) -> RunReader | RunStore:
    """Open the store at ``path``: read-only (never blocks the writer, never upgrades the
    schema) or read-write (upgrades it first). ``durable`` makes every commit wait for the
    disk. A missing, damaged, foreign or newer store is a ``StoreError`` naming it."""
    return Ledger.open(path, readonly=readonly, durable=durable)


def create_run_store(
    path: str | os.PathLike[str], meta: RunMeta, steps: Sequence[StepDef]
) -> RunStore:
    """A new store at ``path``, appearing complete or not at all; ``StoreError`` if one is
    already there."""
    return Ledger.create(path, meta, steps)


def memory_run_store(meta: RunMeta, steps: Sequence[StepDef]) -> RunStore:
    """A private store in memory with the same behaviour (tests, dry runs)."""
    return Ledger.in_memory(meta, steps)
