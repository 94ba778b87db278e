"""Checking and rebuilding the totals kept by triggers: the LLM totals row (migration
``0006_attempt_totals``) and the rows per tier (``0007_tier_totals``).

The row is maintained by triggers, so it only drifts when the file was edited by hand or
damaged. ``verify`` compares it with a scan of the attempts (one pass over the covering index
``attempts_by_step``); ``repair`` rewrites it from that scan. A ledger made before the
migration has no row and nothing to check: readers scan the attempts themselves.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from octopipe.store.reads import scanned_cost_totals, scanned_tier_totals
from octopipe.store.schema import has_table

_COLUMNS = ("cost_usd", "unpriced", "attempts", "input_tokens", "output_tokens", "cached_tokens")

_STORED = """SELECT COALESCE(cost_usd, 0), unpriced, attempts, input_tokens, output_tokens,
                    cached_tokens FROM attempt_totals WHERE kind = 'llm'"""

_REBUILD = """
INSERT OR REPLACE INTO attempt_totals
SELECT 'llm', COUNT(*), COUNT(*) - COUNT(cost_usd), SUM(cost_usd), COALESCE(SUM(input_tokens), 0),
       COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cached_tokens), 0)
FROM attempts WHERE mode != 'local'"""


_TIER_COLUMNS = ("calls", "known_usd", "unpriced")

_REBUILD_TIERS = """
DELETE FROM tier_totals;
INSERT INTO tier_totals
SELECT COALESCE(tier, CASE mode WHEN 'batch' THEN 'batch' ELSE 'standard' END) AS t, COUNT(*),
       COALESCE(SUM(cost_usd), 0), COUNT(*) - COUNT(cost_usd)
FROM attempts WHERE mode != 'local' GROUP BY t"""


def totals_problems(conn: sqlite3.Connection) -> list[str]:
    """One line per column of the kept totals (the LLM totals row, the rows per tier) that
    disagrees with the attempts (costs within 1e-9 relative or 1e-9 USD agree: sums taken in
    another order may differ in the last bits); a missing row is one problem; no table (an
    old ledger) is none."""
    return _llm_row_problems(conn) + _tier_problems(conn)


def _llm_row_problems(conn: sqlite3.Connection) -> list[str]:
    if not has_table(conn, "attempt_totals"):
        return []
    stored = conn.execute(_STORED).fetchall()
    if len(stored) != 1:
        return ["the LLM totals row (attempt_totals) is missing"]
    scanned = scanned_cost_totals(conn)
    return [
        f"the LLM totals row says {name} = {kept!r}, the attempts add up to {actual!r}"
        for name, kept, actual in zip(_COLUMNS, stored[0], scanned, strict=True)
        if not _agree(kept, actual)
    ]


def _tier_problems(conn: sqlite3.Connection) -> list[str]:
    if not has_table(conn, "tier_totals"):
        return []
    kept = {
        r[0]: r[1:]
        for r in conn.execute("SELECT tier, calls, known_usd, unpriced FROM tier_totals")
        if r[1] != 0
    }
    scanned = {r[0]: r[1:] for r in scanned_tier_totals(conn)}
    problems = []
    for tier in sorted(kept.keys() | scanned.keys()):
        have, want = kept.get(tier, (0, 0.0, 0)), scanned.get(tier, (0, 0.0, 0))
        problems += [
            f"the {tier} tier's totals row says {name} = {k!r}, the attempts add up to {a!r}"
            for name, k, a in zip(_TIER_COLUMNS, have, want, strict=True)
            if not _agree(k, a)
        ]
    return problems


def rebuild_totals(conn: sqlite3.Connection) -> bool:
    """Rewrite the kept totals from the attempts when they disagree with them; returns whether
    it did. The caller holds the write transaction."""
    if not totals_problems(conn):
        return False
    if _llm_row_problems(conn):
        conn.execute(_REBUILD)
    if _tier_problems(conn):
        for statement in _REBUILD_TIERS.split(";"):
            conn.execute(statement)
    return True


def _agree(kept: Any, actual: Any) -> bool:
    if isinstance(kept, float) or isinstance(actual, float):
        if not isinstance(kept, int | float) or not isinstance(actual, int | float):
            return False
        return math.isclose(kept, actual, rel_tol=1e-9, abs_tol=1e-9)
    return bool(kept == actual)
