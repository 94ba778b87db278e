"""Builders shared by the ledger tests (``from support.ledger import ...``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from octopipe.store.ledger import Ledger
from octopipe.store.records import AttemptRecord, RunMeta, StepDef, Success

WALK_CLASSIFY_JUDGE = (
    StepDef("walk", "expression"),
    StepDef("classify", "chunk"),
    StepDef("judge", "chunk"),
)
EXPAND_JUDGE = (StepDef("expand", "fan_out"), StepDef("judge", "chunk"))

MakeLedger = Callable[..., Ledger]


def run_meta(**overrides: Any) -> RunMeta:
    values: dict[str, Any] = {"name": "run-1", "pipeline_name": "demo", "mode": "realtime"}
    values.update(overrides)
    return RunMeta(**values)


def units(n: int, prefix: str = "u") -> list[tuple[str, dict[str, Any]]]:
    return [(f"{prefix}{i:05d}", {"i": i}) for i in range(n)]


def valid_attempt(response: str = '{"ok": true}', **kw: Any) -> AttemptRecord:
    return AttemptRecord(outcome="valid", provider="fake", model="m", response=response, **kw)


def failed_attempt(
    stage: str = "parse", response: str | None = "not json {", **kw: Any
) -> AttemptRecord:
    errors = kw.pop("errors", [{"rule": stage, "message": f"{stage} failed"}])
    return AttemptRecord(
        outcome="failed",
        provider="fake",
        model="m",
        stage=stage,  # type: ignore[arg-type]
        response=response,
        errors=errors,
        **kw,
    )


def pass_step(ledger: Ledger, step_idx: int, n: int | None = None) -> list[int]:
    """Claim up to ``n`` pending units of a step (all if None) and make them valid."""
    claimed = ledger.claim_pending(step_idx, n if n is not None else 10**9)
    delta_key = ledger.steps[step_idx].name
    ledger.record_successes(step_idx, [Success(c.uid, {delta_key: c.record["i"]}) for c in claimed])
    return [c.uid for c in claimed]


def tamper(ledger: Ledger, sql: str, params: Sequence[Any] = ()) -> None:
    """Damage the ledger the way a bug or a hand edit would (tests of the integrity tools)."""
    conn: sqlite3.Connection = ledger._db
    conn.execute(sql, params)
