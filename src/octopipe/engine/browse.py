"""Read-only views for browsing runs: the dashboard's rows (re-read only when a run changed),
a run's overview, pages of its units, one unit with every attempt, and its log's tail.

Everything opens ledgers read-only and never takes a run lock. Nothing here loads every unit:
the units table is paged by ``RunReader.unit_page`` (a keyset on uid through an index), the
failure counts are one indexed ``GROUP BY`` per run.

``RunIndex`` keeps the last view of each run with the signature it was read at (the ledger
file's and its WAL's size and modification time, and whether the run lock is held); a refresh
stats every run folder and re-reads only the ledgers whose signature moved, so a dashboard over
hundreds of idle runs costs a few ``stat`` calls per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from octopipe.engine.paths import RunPaths, iter_runs
from octopipe.engine.queries import UNREADABLE, RunStatusView, status_of
from octopipe.errors import OctopipeError
from octopipe.store import open_run_store
from octopipe.store.lock import is_held
from octopipe.store.records import AttemptRow, Json, UnitAtStep, UnitRow

VALIDATION_STAGES = frozenset({"parse", "schema", "rules"})
LIVE_STATUSES = frozenset({"running", "pending"})


@dataclass
class DashboardRow:
    """One run as the dashboard lists it."""

    view: RunStatusView
    started_at: str | None = None
    finished_at: str | None = None
    failed_validation: int = 0  # no attempt left, failed at parse/schema/rules
    failed_hard: int = 0  # no attempt left, failed at provider/render/expression

    @property
    def name(self) -> str:
        return self.view.name

    def elapsed_s(self, now: datetime | None = None) -> float | None:
        start = _parse_ts(self.started_at or self.view.created_at)
        if start is None:
            return None
        if self.view.live:
            end = now or datetime.now(UTC)
        else:
            end = _parse_ts(self.finished_at or self.view.updated_at) or start
        return max(0.0, (end - start).total_seconds())

    def eta_s(self, now: datetime | None = None) -> float | None:
        """A linear projection of the time left, for a live run with some progress."""
        progress = self.view.progress
        elapsed = self.elapsed_s(now)
        if not self.view.live or elapsed is None or progress <= 0 or progress >= 1:
            return None
        return elapsed * (1 - progress) / progress

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.view.to_dict(),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "failed_validation": self.failed_validation,
            "failed_hard": self.failed_hard,
            "elapsed_s": _round(self.elapsed_s()),
            "eta_s": _round(self.eta_s()),
        }


def read_row(paths: RunPaths, archived: bool = False) -> DashboardRow:
    """A run's dashboard row, with one read-only open of its ledger."""
    try:
        ledger = open_run_store(paths.ledger, readonly=True)
    except OSError as exc:
        return DashboardRow(RunStatusView.unreadable(paths, archived, f"{paths.ledger}: {exc}"))
    except OctopipeError as exc:
        return DashboardRow(RunStatusView.unreadable(paths, archived, exc.message))
    try:
        view = status_of(ledger, paths, archived)
        info = ledger.run_info()
        by_stage = ledger.failed_by_stage()
    except OctopipeError as exc:
        return DashboardRow(RunStatusView.unreadable(paths, archived, exc.message))
    finally:
        ledger.close()
    validation = sum(
        n for stages in by_stage.values() for s, n in stages.items() if s in VALIDATION_STAGES
    )
    hard = sum(n for stages in by_stage.values() for n in stages.values()) - validation
    return DashboardRow(view, info.started_at, info.finished_at, validation, hard)


def _signature(paths: RunPaths) -> tuple[Any, ...]:
    parts: list[Any] = []
    for path in (paths.ledger, paths.ledger.with_name(paths.ledger.name + "-wal")):
        try:
            st = os.stat(path)
        except OSError:
            parts.append(None)
        else:
            parts.append((st.st_mtime_ns, st.st_size))
    try:
        parts.append(is_held(paths.root))
    except OctopipeError:
        parts.append(None)
    return tuple(parts)


@dataclass
class RunIndex:
    """The dashboard's runs, re-read only when they change (see the module notes)."""

    runs_dir: Path
    _cache: dict[Path, tuple[tuple[Any, ...], DashboardRow]] = field(default_factory=dict)
    reads: int = 0  # ledgers read by the last refresh (for tests and the benchmark)

    def refresh(self, include_archived: bool = False) -> list[DashboardRow]:
        rows: list[DashboardRow] = []
        seen: set[Path] = set()
        self.reads = 0
        for paths, archived in iter_runs(self.runs_dir, include_archived):
            seen.add(paths.root)
            signature = (*_signature(paths), archived)
            cached = self._cache.get(paths.root)
            if cached is not None and cached[0] == signature:
                rows.append(cached[1])
                continue
            row = read_row(paths, archived)
            self.reads += 1
            after = (*_signature(paths), archived)
            if after != signature:
                # Written while we read (or the first read-only open made the WAL file):
                # read again, and remember the state as it is after that read.
                row = read_row(paths, archived)
                after = (*_signature(paths), archived)
            self._cache[paths.root] = (after, row)
            rows.append(row)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        order = {"running": 0, "detached": 1, "paused": 2, "pending": 3, UNREADABLE: 4}
        return sorted(rows, key=lambda r: (r.view.archived, order.get(r.view.status, 5), r.name))


@dataclass(frozen=True)
class Totals:
    runs: int
    input_tokens: int
    output_tokens: int
    known_cost_usd: float
    """What the calls with a known price cost (a lower bound while some runs have unknowns)."""
    unknown_cost_runs: int

    @property
    def cost_usd(self) -> float | None:
        """The runs' cost; ``None`` as soon as one run has a call without a price."""
        return None if self.unknown_cost_runs else self.known_cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 12),
            "known_cost_usd": round(self.known_cost_usd, 12),
            "unknown_cost_runs": self.unknown_cost_runs,
        }


def totals(rows: list[DashboardRow]) -> Totals:
    return Totals(
        runs=len(rows),
        input_tokens=sum(r.view.input_tokens for r in rows),
        output_tokens=sum(r.view.output_tokens for r in rows),
        known_cost_usd=sum(r.view.known_cost_usd for r in rows),
        unknown_cost_runs=sum(1 for r in rows if r.view.unknown_cost_attempts),
    )


# --- one run ------------------------------------------------------------------------------------


@dataclass
class UnitAttempts:
    """One unit at one step in the inspector: input, output, and every attempt there."""

    step: str
    scope: str
    row: UnitAtStep
    attempts: list[AttemptRow]


@dataclass
class UnitDetail:
    unit_id: str
    fields: Json
    steps: list[UnitAttempts]


def units_page(
    paths: RunPaths,
    step_idx: int,
    *,
    states: tuple[Any, ...] = (),
    stage: str | None = None,
    prefix: str | None = None,
    after_uid: int = 0,
    after_unit_id: str = "",
    limit: int = 200,
) -> list[UnitRow]:
    """A page of units at a step: uid order after ``after_uid``; with ``prefix``, id order
    after ``after_unit_id``."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        return ledger.unit_page(
            step_idx,
            states=states,
            stage=stage,
            prefix=prefix,
            after_uid=after_uid,
            after_unit_id=after_unit_id,
            limit=limit,
        )
    finally:
        ledger.close()


def unit_detail(paths: RunPaths, unit_id: str) -> UnitDetail | None:
    """Everything the ledger holds about one unit, ``None`` if the run has no such unit."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        found = ledger.unit_fields(unit_id)
        if found is None:
            return None
        uid, fields = found
        attempts = ledger.attempts_for(unit_id)
        steps = []
        for row in ledger.unit_at_steps(uid):
            step = ledger.steps[row.step_idx]
            mine = [a for a in attempts if a.step_idx == row.step_idx]
            steps.append(UnitAttempts(step.name, step.scope, row, mine))
        return UnitDetail(unit_id, fields, steps)
    finally:
        ledger.close()


def failed_by_stage(paths: RunPaths) -> dict[str, dict[str, int]]:
    """Units with no attempt left, by step name and stage."""
    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        names = [s.name for s in ledger.steps]
        return {names[k]: v for k, v in sorted(ledger.failed_by_stage().items())}
    finally:
        ledger.close()


@dataclass(frozen=True)
class LogChunk:
    lines: list[str]
    offset: int  # where the next read starts


def log_tail(path: Path, offset: int | None = None, *, max_bytes: int = 256_000) -> LogChunk:
    """New complete lines of a log after ``offset`` (``None``: the last ``max_bytes``)."""
    try:
        size = path.stat().st_size
    except OSError:
        return LogChunk([], 0 if offset is None else offset)
    if offset is None or offset > size:
        offset = max(0, size - max_bytes)
        skip_partial = offset > 0
    else:
        skip_partial = False
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(max_bytes)
    end = data.rfind(b"\n")
    if end < 0:
        return LogChunk([], offset)
    text = data[: end + 1].decode("utf-8", "replace")
    lines = text.splitlines()
    if skip_partial and lines:
        lines = lines[1:]
    return LogChunk(lines, offset + end + 1)


def log_level(line: str) -> str:
    """``error``, ``warning`` or ``info`` for a ``run.log`` line, from its tag."""
    start, end = line.find("["), line.find("]")
    tag = line[start + 1 : end].upper() if 0 <= start < end else ""
    if any(w in tag for w in ("ERROR", "FATAL", "FAIL", "CRASH")):
        return "error"
    if any(w in tag for w in ("WARN", "PAUSE", "RETRY", "OUTAGE", "LIMIT")):
        return "warning"
    return "info"


def _parse_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def export_results(paths: RunPaths) -> str:
    """What ``octopipe export RUN`` does: the last step's validated records into
    ``outputs/`` (read-only ledger; the file is written atomically). Returns a summary."""
    from octopipe.engine.exports import write_export  # heavy: only when exporting

    ledger = open_run_store(paths.ledger, readonly=True)
    try:
        written = write_export(ledger, paths, len(ledger.steps) - 1)
    finally:
        ledger.close()
    return f"{written.records:,} {written.kind} record(s) of {written.step} -> {written.path}"
