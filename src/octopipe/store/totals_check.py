"""Checking and rebuilding the totals kept by triggers: the LLM totals row (migration
``0006_attempt_totals``) and the cost per provider, model and tier (``0007_cost_groups``).

The row is maintained by triggers, so it only drifts when the file was edited by hand or
damaged. ``verify`` compares it with a scan of the attempts (one pass over the covering index
``attempts_by_step``); ``repair`` rewrites it from that scan. A ledger made before the
migration has no row and nothing to check: readers scan the attempts themselves.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from octopipe.store.reads import cost_by_tier, scanned_cost_groups, scanned_cost_totals
from octopipe.store.schema import COST_GROUPS_FILL, has_table

_COLUMNS = ("cost_usd", "unpriced", "attempts", "input_tokens", "output_tokens", "cached_tokens")

_STORED = """SELECT COALESCE(cost_usd, 0), unpriced, attempts, input_tokens, output_tokens,
                    cached_tokens FROM attempt_totals WHERE kind = 'llm'"""

_REBUILD = """
INSERT OR REPLACE INTO attempt_totals
SELECT 'llm', COUNT(*), COUNT(*) - COUNT(cost_usd), SUM(cost_usd), COALESCE(SUM(input_tokens), 0),
       COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cached_tokens), 0)
FROM attempts WHERE mode != 'local'"""


_GROUP_COLUMNS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "known_usd",
    "unknown_calls",
    "standard_known_usd",
    "standard_unknown_calls",
)

_REBUILD_GROUPS = "DELETE FROM cost_groups"


def totals_problems(conn: sqlite3.Connection) -> list[str]:
    """One line per column of the kept totals (the LLM totals row, the rows per tier) that
    disagrees with the attempts (costs within 1e-9 relative or 1e-9 USD agree: sums taken in
    another order may differ in the last bits); a missing row is one problem; no table (an
    old ledger) is none."""
    return _llm_row_problems(conn) + _group_problems(conn)


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


def _group_problems(conn: sqlite3.Connection) -> list[str]:
    if not has_table(conn, "cost_groups"):
        return []
    kept = {(g.provider, g.model, g.tier): g for g in cost_by_tier(conn)}
    scanned = {(g.provider, g.model, g.tier): g for g in scanned_cost_groups(conn)}
    problems = []
    for key in sorted(kept.keys() | scanned.keys()):
        have, want = kept.get(key), scanned.get(key)
        where = "/".join(key)
        if have is None or want is None:
            problems.append(
                f"the cost totals of {where} are "
                + ("missing" if have is None else "kept for calls the attempts do not have")
            )
            continue
        problems += [
            f"the cost totals of {where} say {name} = {getattr(have, name)!r}, "
            f"the attempts add up to {getattr(want, name)!r}"
            for name in _GROUP_COLUMNS
            if not _agree(getattr(have, name), getattr(want, name))
        ]
    return problems


def rebuild_totals(conn: sqlite3.Connection) -> bool:
    """Rewrite the kept totals from the attempts when they disagree with them; returns whether
    it did. The caller holds the write transaction."""
    row_wrong, groups_wrong = bool(_llm_row_problems(conn)), bool(_group_problems(conn))
    if row_wrong:
        conn.execute(_REBUILD)
    if groups_wrong:
        conn.execute(_REBUILD_GROUPS)
        conn.execute(COST_GROUPS_FILL)
    return row_wrong or groups_wrong


def _agree(kept: Any, actual: Any) -> bool:
    if isinstance(kept, float) or isinstance(actual, float):
        if not isinstance(kept, int | float) or not isinstance(actual, int | float):
            return False
        return math.isclose(kept, actual, rel_tol=1e-9, abs_tol=1e-9)
    return bool(kept == actual)
