"""What every part of the ledger shares: the connection, the lock, transactions, guards.

``LedgerCore`` owns one SQLite connection and serialises its use with a re-entrant lock, so a
``Ledger`` may be shared between threads. :meth:`LedgerCore.transaction` is the only way to
write: the outermost use is ``BEGIN IMMEDIATE ... COMMIT``, nested uses are savepoints, and an
exception anywhere rolls back exactly what its block wrote. ``guarded`` turns SQLite errors
into ``StoreError`` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from octopipe.errors import CorruptValue, StoreError
from octopipe.store.codec import Clock, dumps
from octopipe.store.connection import store_error
from octopipe.store.intent import writer_waiting
from octopipe.store.records import Json, StepDef

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound="LedgerCore")

LEVELS = ("debug", "info", "warning", "error")


def guarded(method: Callable[Concatenate[C, P], R]) -> Callable[Concatenate[C, P], R]:
    """Serialise the call and turn SQLite errors into ``StoreError``; a damaged stored value
    (``CorruptValue``) gets the ledger's file name in front of the row it names."""

    @functools.wraps(method)
    def wrapper(self: C, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as exc:
                raise store_error(exc, self._where) from exc
            except CorruptValue as exc:
                prefix = f"run ledger {self._where}: "
                if exc.message.startswith(prefix):
                    raise
                raise CorruptValue(prefix + exc.message) from None

    return wrapper


class LedgerCore:
    """The connection and the transaction discipline; see :class:`octopipe.store.Ledger`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        where: str,
        *,
        readonly: bool,
        clock: Clock,
        durable: bool = False,
        run_dir: Path | None = None,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._where = where
        self._run_dir = run_dir  # where writers leave their intent (None: in memory)
        self._owner: int | None = None  # the registered runner the claims carry
        self._readonly = readonly
        self._durable = durable
        self._now = clock
        self._lock = threading.RLock()
        self._depth = 0
        self._steps = tuple(
            StepDef(name, scope)
            for name, scope in conn.execute("SELECT name, scope FROM steps ORDER BY idx")
        )
        if conn.execute("SELECT COUNT(*) FROM run").fetchone()[0] != 1:
            raise StoreError(f"run ledger {where} has no run record: the file is incomplete")

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            with contextlib.suppress(sqlite3.Error):
                if not self._readonly:
                    conn.execute("PRAGMA optimize")
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def steps(self) -> tuple[StepDef, ...]:
        return self._steps

    @property
    def path(self) -> str:
        return self._where

    def writer_waiting(self) -> bool:
        """True while another process waits to write into this ledger (``store/intent.py``):
        the runner leaves SQLite's write lock free for a moment when it sees one."""
        return self._run_dir is not None and writer_waiting(self._run_dir)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"run ledger {self._where} is closed")
        return self._conn

    # --- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change. Nested uses become savepoints of the outermost one."""
        with self._lock:
            if self._readonly:
                raise StoreError(f"run ledger {self._where} was opened read-only")
            db = self._db
            savepoint = f"sp{self._depth}" if self._depth else None
            try:
                db.execute(f"SAVEPOINT {savepoint}" if savepoint else "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, self._where) from exc
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(sqlite3.Error):
                    if savepoint:
                        db.execute(f"ROLLBACK TO {savepoint}")
                        db.execute(f"RELEASE {savepoint}")
                    else:
                        db.execute("ROLLBACK")
                raise
            self._depth -= 1
            try:
                db.execute(f"RELEASE {savepoint}" if savepoint else "COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if not savepoint and db.in_transaction:
                        db.execute("ROLLBACK")
                raise store_error(exc, self._where) from exc

    @contextlib.contextmanager
    def durable_transaction(self) -> Iterator[None]:
        """A transaction whose commit waits for the disk (``synchronous=FULL``) even when the
        ledger runs with ``NORMAL``: for the few records that must survive a power cut because
        money moves right after them (a batch intent, a submission). Nested in an outer
        transaction, the outer commit decides."""
        with self._lock:
            if self._depth or self._durable:
                with self.transaction():
                    yield
                return
            self._db.execute("PRAGMA synchronous = FULL")
            try:
                with self.transaction():
                    yield
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA synchronous = NORMAL")

    @guarded
    def _read(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return fn(self._db, *args, **kwargs)

    def _step(
        self, step_idx: int, *, must_be: str | None = None, must_not_be: str | None = None
    ) -> None:
        if not 0 <= step_idx < len(self._steps):
            raise ValueError(f"step {step_idx} is not a step of this run")
        scope = self._steps[step_idx].scope
        if must_be is not None and scope != must_be:
            raise ValueError(f"step {step_idx} is a {scope} step, not {must_be}")
        if must_not_be is not None and scope == must_not_be:
            raise ValueError(f"step {step_idx} is a {scope} step; use add_children")

    def _event(self, level: str, tag: str, message: str, data: Json | None) -> int:
        if level not in LEVELS:
            raise ValueError(f"event level must be one of {LEVELS}, not {level!r}")
        cur = self._db.execute(
            "INSERT INTO events(ts, level, tag, message, data_json) VALUES (?, ?, ?, ?, ?)",
            (
                self._now(),
                level,
                tag,
                message,
                None if data is None else dumps(data, what=f"event {tag}"),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    # --- the results' version ---------------------------------------------------------------

    def _results_changed(self) -> None:
        """Count one change of what the exports show (a verdict, a requeue, a repair), inside
        the caller's transaction. Exports record the count they were written at, so a stale
        one is known without reading the records (``results_version``)."""
        self._db.execute(
            """INSERT INTO meta(key, value) VALUES ('results_version', '1')
               ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"""
        )

    @guarded
    def results_version(self) -> int:
        """How many changes of results this ledger has seen: equal numbers, equal exports."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'results_version'").fetchone()
        try:
            return 0 if row is None else int(row[0])
        except ValueError:
            raise CorruptValue(
                f"run ledger {self._where}: its results version {row[0]!r} is not a number"
            ) from None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads against one consistent snapshot (a writer's open transaction
        already is one)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")


def marks(values: Sequence[object]) -> str:
    """``?,?,?`` for an ``IN (...)`` list of ``values``."""
    return ",".join("?" * len(values))
