"""What ``octopipe report --json`` must say about a run, computed independently: plain SQL on
the ledger file (no index hints, none of the store's queries), records merged and errors
counted in Python, row by row. Tests compare every figure of a report with this.

Imported as ``from support.report_oracle import expected_report`` from any test folder.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from octopipe.core.error_text import error_keys

LLM = ("batch", "realtime")
MISSING = object()


def expected_report(
    ledger: Path, *, top: int = 10, failures_by: str | None = None
) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        return _expected(db, top, failures_by)
    finally:
        db.close()


def _expected(db: sqlite3.Connection, top: int, failures_by: str | None) -> dict[str, Any]:
    names = [r[0] for r in db.execute("SELECT name FROM steps ORDER BY idx")]
    scopes = [r[0] for r in db.execute("SELECT scope FROM steps ORDER BY idx")]
    steps = [_step(db, k, names[k], scopes[k], top, failures_by) for k in range(len(names))]
    run = db.execute("SELECT started_at, finished_at FROM run").fetchone()
    first = _sum_usage([s["first_attempts"] for s in steps])
    retry_usage = _sum_usage([_usage_only(s["retries"]) for s in steps])
    total = _sum_usage([first, retry_usage])
    valid = steps[-1]["valid"]
    failed = sum(s["failed"] for s in steps)
    elapsed = _elapsed(run[0], run[1]) if run[1] else None
    known = total["cost"]["known_usd"]
    return {
        "units": steps[0]["input"],
        "valid": valid,
        "failed": failed,
        "retrying": sum(s["retrying"] for s in steps),
        "units_done": valid + failed,
        "models": sorted({m for s in steps for m in s["models"]}),
        "first_attempts": first,
        "retries": {
            "units": sum(s["retries"]["units"] for s in steps),
            "extra_attempts": sum(s["retries"]["extra_attempts"] for s in steps),
            **retry_usage,
        },
        "total": total,
        "cost_per_valid_unit": _per(total["cost"], valid),
        "retry_cost_share": None
        if total["cost"]["unknown_cost_calls"] or not known
        else retry_usage["cost"]["known_usd"] / known,
        "max_iterations": sum(s["max_iterations"] for s in steps),
        "started_at": run[0],
        "finished_at": run[1],
        "elapsed_s": elapsed,
        "units_per_s": None if not elapsed else (valid + failed) / elapsed,
        "calls_per_s": None if not elapsed else total["calls"] / elapsed,
        "failures_by": failures_by,
        "steps": steps,
    }


def _step(
    db: sqlite3.Connection, k: int, name: str, scope: str, top: int, failures_by: str | None
) -> dict[str, Any]:
    states = Counter(
        dict(
            db.execute("SELECT state, COUNT(*) FROM unit_steps WHERE step_idx = ? GROUP BY 1", (k,))
        )
    )
    total = sum(states.values())
    valid, exhausted = states["valid"], states["exhausted"]
    by_stage: dict[str, Counter[str]] = {"failed": Counter(), "exhausted": Counter()}
    for state, stage, n in db.execute(
        """SELECT state, last_stage, COUNT(*) FROM unit_steps
           WHERE step_idx = ? AND state IN ('failed', 'exhausted') GROUP BY 1, 2""",
        (k,),
    ):
        by_stage[state][stage or "unknown"] += n
    attempts = db.execute(
        """SELECT uid, attempt_no, outcome, mode, provider, model, input_tokens, output_tokens,
                  cached_tokens, cost_usd FROM attempts WHERE step_idx = ?""",
        (k,),
    ).fetchall()
    first = [a for a in attempts if a[1] == 1]
    again = [a for a in attempts if a[1] > 1]
    first_usage, retry_usage = _usage(first), _usage(again)
    step_total = _sum_usage([first_usage, retry_usage])
    hits = sum(
        json.loads(d)["units"]
        for (d,) in db.execute("SELECT data_json FROM events WHERE tag = 'MAX_ITERATIONS'")
        if json.loads(d).get("step") == k
    )
    fan_out = None
    if scope == "fan_out":
        (children,) = db.execute(
            "SELECT COUNT(*) FROM units WHERE origin_step = ?", (k + 1,)
        ).fetchone()
        fan_out = {
            "parents": total,
            "fanned_out": valid,
            "children": children,
            "children_per_parent": None if not valid else round(children / valid, 4),
        }
    now_failing = [
        (uid, unit_id, stage, errors)
        for uid, unit_id, stage, errors in db.execute(
            """SELECT s.uid, u.unit_id, s.last_stage, s.last_error FROM unit_steps s
               JOIN units u ON u.uid = s.uid
               WHERE s.step_idx = ? AND s.state IN ('failed', 'exhausted')""",
            (k,),
        )
    ]
    failed_attempts = [
        (uid, unit_id, stage, errors)
        for uid, unit_id, stage, errors in db.execute(
            """SELECT a.uid, u.unit_id, a.stage, a.errors_json FROM attempts a
               JOIN units u ON u.uid = a.uid
               WHERE a.step_idx = ? AND a.outcome != 'valid'""",
            (k,),
        )
    ]
    errors, n_errors = _groups(now_failing, top, "units")
    attempt_errors, n_attempt_errors = _groups(failed_attempts, top, "attempts")
    is_llm = scope == "chunk"
    data: dict[str, Any] = {
        "name": name,
        "scope": scope,
        "input": total,
        "valid": valid,
        "pending": states["pending"],
        "in_flight": states["in_flight"],
        "retrying": states["failed"],
        "failed": exhausted,
        "retrying_by_stage": dict(sorted(by_stage["failed"].items())),
        "failed_by_stage": dict(sorted(by_stage["exhausted"].items())),
        "yield": None if not total else round(valid / total, 4),
        "pass_rate": None if not valid + exhausted else round(valid / (valid + exhausted), 4),
        "first_attempt_pass_rate": None
        if not is_llm or not first
        else round(sum(a[2] == "valid" for a in first) / len(first), 4),
        "attempts": len(attempts),
        "failed_attempts": sum(a[2] != "valid" for a in attempts),
        "first_attempts": first_usage,
        "retries": {
            "units": len({a[0] for a in again}),
            "extra_attempts": len(again),
            **retry_usage,
        },
        "total": step_total,
        "cost_per_valid_unit": _per(step_total["cost"], valid),
        "models": sorted({f"{a[4]}/{a[5]}" for a in attempts if a[3] in LLM and a[5]}),
        "max_iterations": hits,
        "fan_out": fan_out,
        "errors": errors,
        "error_groups": n_errors if now_failing else 0,
        "attempt_errors": attempt_errors,
        "attempt_error_groups": n_attempt_errors,
    }
    if failures_by is not None:
        data["failures_by"] = _values(db, k, failures_by) if states["failed"] or exhausted else []
    return data


def _json(text: str | None) -> Any:
    try:
        return None if text is None else json.loads(text)
    except ValueError:
        return "unreadable"


def _usage(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    calls = [r for r in rows if r[3] in LLM]
    unknown = sum(r[9] is None for r in calls)
    known = sum(r[9] for r in calls if r[9] is not None)
    return {
        "calls": len(calls),
        "input_tokens": sum(r[6] for r in calls),
        "output_tokens": sum(r[7] for r in calls),
        "cached_tokens": sum(r[8] for r in calls),
        "cost": {
            "usd": None if unknown else known,
            "known_usd": known,
            "unknown_cost_calls": unknown,
        },
    }


def _usage_only(retries: dict[str, Any]) -> dict[str, Any]:
    return {
        k: retries[k] for k in ("calls", "input_tokens", "output_tokens", "cached_tokens", "cost")
    }


def _sum_usage(parts: list[dict[str, Any]]) -> dict[str, Any]:
    unknown = sum(p["cost"]["unknown_cost_calls"] for p in parts)
    known = sum(p["cost"]["known_usd"] for p in parts)
    return {
        "calls": sum(p["calls"] for p in parts),
        "input_tokens": sum(p["input_tokens"] for p in parts),
        "output_tokens": sum(p["output_tokens"] for p in parts),
        "cached_tokens": sum(p["cached_tokens"] for p in parts),
        "cost": {
            "usd": None if unknown else known,
            "known_usd": known,
            "unknown_cost_calls": unknown,
        },
    }


def _per(cost: dict[str, Any], valid: int) -> float | None:
    return None if cost["usd"] is None or not valid else cost["usd"] / valid


def _groups(
    rows: list[tuple[int, str, str | None, str | None]], top: int, count: str
) -> tuple[list[dict[str, Any]], int]:
    """Rows (uid, unit id, stage, stored errors) by error key; samples: the first and last
    unit of each stored variant (stage, text) of a key, the lowest three."""
    counts: Counter[tuple[str | None, str]] = Counter()
    variants: dict[tuple[str | None, str], dict[tuple[str | None, str | None], list[int]]] = (
        defaultdict(dict)
    )
    names = {}
    for uid, unit_id, stage, text in rows:
        names[uid] = unit_id
        errors = _json(text)
        if errors == "unreadable":
            keys = ["(stored errors are not valid JSON: `octopipe verify` names the row)"]
        else:
            keys = error_keys(errors) or ["(no error message recorded)"]
        for key in keys:
            counts[(stage, key)] += 1
            variants[(stage, key)].setdefault((stage, text), []).append(uid)
    order = sorted(counts, key=lambda g: (-counts[g], g[1], g[0] or ""))
    out = []
    for group in order[:top]:
        ends = {u for uids in variants[group].values() for u in (min(uids), max(uids))}
        out.append(
            {
                "stage": group[0],
                "message": group[1],
                count: counts[group],
                "samples": [names[u] for u in sorted(ends)[:3]],
            }
        )
    return out, len(order)


def _values(db: sqlite3.Connection, k: int, field: str) -> list[dict[str, Any]]:
    """Each unit's record at step k, merged in Python; grouped by the field's value."""
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for uid, state, fields in db.execute(
        """SELECT s.uid, s.state, u.fields_json FROM unit_steps s JOIN units u ON u.uid = s.uid
           WHERE s.step_idx = ?""",
        (k,),
    ):
        record = json.loads(fields)
        for (delta,) in db.execute(
            """SELECT output_json FROM unit_steps WHERE uid = ? AND step_idx < ?
               AND state = 'valid' AND output_json IS NOT NULL ORDER BY step_idx""",
            (uid, k),
        ):
            record.update(json.loads(delta))
        value = record.get(field, MISSING)
        tally["<missing>" if value is MISSING else json.dumps(value)][state] += 1
    rows = []
    for key, states in tally.items():
        units = sum(states.values())
        failing = states["failed"] + states["exhausted"]
        rows.append(
            {
                "value": None if key == "<missing>" else json.loads(key),
                "missing": key == "<missing>",
                "units": units,
                "valid": states["valid"],
                "retrying": states["failed"],
                "failed": states["exhausted"],
                "fail_rate": round(failing / units, 4),
            }
        )
    return sorted(
        rows,
        key=lambda r: (
            -(r["retrying"] + r["failed"]),
            -r["fail_rate"],
            json.dumps(r["value"]),
        ),
    )


def _elapsed(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    return max((parse(end) - parse(start)).total_seconds(), 0.0)


def assert_matches(actual: Any, expected: Any, where: str = "report") -> None:
    """Every figure of ``expected`` is in ``actual`` with the same value (floats to 1e-6
    relative: the report rounds rates to 4 digits and money to 8)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{where}: no {key!r}"
            assert_matches(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, int | float), f"{where}: {actual!r} != {expected!r}"
        rounded = math.isclose(actual, round(expected, 4), rel_tol=1e-9)  # a 4-digit rate
        assert rounded or math.isclose(actual, expected, rel_tol=1e-4, abs_tol=1e-8), (
            f"{where}: {actual!r} != {expected!r}"
        )
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
