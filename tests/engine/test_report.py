"""``run_report`` on runs whose outcome is set in SQL (set-based, like a big run would leave
it): every figure equals the independent computation of ``report_oracle``, and the figures
the fixture was built to produce are the ones reported."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_oracle import assert_matches, expected_report

from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths
from octopipe.engine.report import run_report
from octopipe.errors import UsageError

CONFIG = """
pipeline:
  name: fanned
  steps:
    - name: prep
      scope: expression
      expressions:
        parts: "[1, 2] if n % 2 == 0 else [1, 2, 3]"
    - name: split
      scope: fan_out
      field: parts
      child_field: part
    - name: judge
      prompt_template: judge.jinja2
    - name: after
      scope: expression
      expressions:
        doubled: "score * 2"
processing:
  strategy: direct
  items:
    source: items.yaml
    key: items
    name_field: name
prompts:
  template_dir: templates
schemas:
  schema_dir: schemas
  files:
    judge: judge.json
"""

RULE = (
    "json_array(json_object('stage', 'rules', 'rule', 'high', 'path', '', 'message', "
    "'score ' || (c.uid % 5) || ' is below 5', 'level', 'error'), json_object('stage', "
    "'rules', 'message', 'tone is off', 'level', 'warning'))"
)
PARSE = (
    "json_array(json_object('stage', 'parse', 'message', 'Expecting value: line 1 column ' "
    "|| (c.uid % 9 + 1) || ' (char ' || (c.uid % 9) || ')'))"
)
PROVIDER = (
    "json_array(json_object('type', 'TransientProviderError', 'status', 503, 'message', "
    "'openai: overloaded, request req_' || hex(c.uid * 7919) || 'abc (HTTP 503)'))"
)


def fanned_pipeline(folder: Path, n_items: int) -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "config.yaml").write_text(textwrap.dedent(CONFIG))
    lines = ["items:"]
    for i in range(n_items):
        lines += [f"  - name: item{i:03d}", f"    n: {i}", f"    category: {'abc'[i % 3]}"]
    (folder / "items.yaml").write_text("\n".join(lines) + "\n")
    (folder / "templates" / "judge.jinja2").write_text("Judge {{ name }} part {{ part }}.\n")
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}}
    (folder / "schemas" / "judge.json").write_text(json.dumps(schema))
    return folder


def attempts_sql(attempt_no: int, failing: str, passing: str) -> str:
    """One attempt at judge (step 2) for every child matching ``failing`` or ``passing``."""
    return f"""
        INSERT INTO attempts(uid, step_idx, attempt_no, mode, provider, model, started_at,
                             finished_at, outcome, stage, errors_json, input_tokens,
                             output_tokens, cached_tokens, cost_usd)
        SELECT c.uid, 2, {attempt_no},
               CASE WHEN c.uid % 4 = 0 THEN 'realtime' ELSE 'batch' END, 'openai',
               CASE WHEN c.uid % 4 = 0 THEN 'gpt-4o' ELSE 'gpt-4o-mini' END,
               '2025-03-01T10:00:00Z', '2025-03-01T10:30:00Z',
               CASE WHEN NOT ({failing}) THEN 'valid'
                    WHEN c.uid % 3 = 0 THEN 'error' ELSE 'failed' END,
               CASE WHEN NOT ({failing}) THEN NULL WHEN c.uid % 3 = 0 THEN 'provider'
                    WHEN c.uid % 3 = 1 THEN 'rules' ELSE 'parse' END,
               CASE WHEN NOT ({failing}) THEN '[]' WHEN c.uid % 3 = 0 THEN {PROVIDER}
                    WHEN c.uid % 3 = 1 THEN {RULE} ELSE {PARSE} END,
               100 + c.uid % 10, 20 + c.uid % 5, c.uid % 3,
               CASE WHEN c.uid % 11 = 0 THEN NULL ELSE 0.0001 * (1 + c.uid % 3) END
        FROM units c WHERE c.origin_step = 2 AND (({failing}) OR ({passing}))"""


def build(tmp_path: Path, n_items: int = 60, *, unpriced: bool = False) -> RunPaths:
    """A finished-looking run of ``fanned``, its outcome set in SQL:

    * prep: every unit valid (parts [1, 2] or [1, 2, 3]; [] when n % 10 == 0; category
      rewritten to "z" when n % 15 == 0) but n % 20 == 7, failed at stage expression with
      the engine's summary entry after the error;
    * split: valid (children made) but n % 25 == 3, failed (the field names no message);
    * judge, by child uid % 7: 0 failed after 3 attempts, 1 valid at its 2nd, 2 retrying
      after 1, 3 in flight, 4 pending, else valid at the 1st; attempts cost 0.0001-0.0003,
      unknown when uid % 11 == 0; rules, parse and provider errors with numbers and ids;
    * after: valid for the valid at judge but uid % 13 == 0, failed with a local attempt;
    * 4 units hit max_iterations at prep.
    """
    paths = create_run(
        fanned_pipeline(tmp_path / "fanned", n_items), tmp_path / "runs", RunOptions(name="fixture")
    ).paths
    db = sqlite3.connect(paths.ledger)
    db.executescript(f"""
        BEGIN;
        UPDATE unit_steps SET
            state = CASE WHEN (SELECT json_extract(fields_json, '$.n') FROM units u
                               WHERE u.uid = unit_steps.uid) % 20 = 7
                         THEN 'exhausted' ELSE 'valid' END,
            attempts = 1, updated_at = 'T'
        WHERE step_idx = 0;
        UPDATE unit_steps SET
            output_json = (SELECT CASE
                WHEN json_extract(fields_json, '$.n') % 10 = 0 THEN '{{"parts": []}}'
                WHEN json_extract(fields_json, '$.n') % 15 = 0
                    THEN '{{"parts": [1, 2, 3], "category": "z"}}'
                WHEN json_extract(fields_json, '$.n') % 2 = 0 THEN '{{"parts": [1, 2]}}'
                ELSE '{{"parts": [1, 2, 3]}}' END FROM units u WHERE u.uid = unit_steps.uid)
        WHERE step_idx = 0 AND state = 'valid';
        UPDATE unit_steps SET last_stage = 'expression',
            last_error = '[{{"variable": "parts", "expression": "x", "message": "division by zero"}}, {{"message": "parts = ''x'': division by zero", "iterations": 1, "hit_max_iterations": false}}]'
        WHERE step_idx = 0 AND state = 'exhausted';
        INSERT INTO attempts(uid, step_idx, attempt_no, mode, outcome, stage, errors_json)
            SELECT uid, 0, 1, 'local', 'failed', 'expression', last_error FROM unit_steps
            WHERE step_idx = 0 AND state = 'exhausted';
        INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json, last_stage,
                               last_error, updated_at)
            SELECT 1, s.uid,
                   CASE WHEN json_extract(u.fields_json, '$.n') % 25 = 3 THEN 'exhausted'
                        ELSE 'valid' END, 1,
                   CASE WHEN json_extract(u.fields_json, '$.n') % 25 = 3 THEN NULL ELSE '{{}}' END,
                   CASE WHEN json_extract(u.fields_json, '$.n') % 25 = 3 THEN 'expression' END,
                   CASE WHEN json_extract(u.fields_json, '$.n') % 25 = 3
                        THEN '[{{"field": "parts"}}, {{"message": "fan-out field ''parts'' is missing, not a list"}}]' END,
                   'T'
            FROM unit_steps s JOIN units u ON u.uid = s.uid
            WHERE s.step_idx = 0 AND s.state = 'valid';
        INSERT INTO units(unit_id, parent_uid, origin_step, fields_json)
            SELECT u.unit_id || '__fan' || printf('%03d', p.key), u.uid, 2,
                   json_set(json_patch(u.fields_json, prep.output_json), '$.part', p.value)
            FROM unit_steps s JOIN units u ON u.uid = s.uid
            JOIN unit_steps prep ON prep.step_idx = 0 AND prep.uid = s.uid,
                 json_each(prep.output_json, '$.parts') p
            WHERE s.step_idx = 1 AND s.state = 'valid' ORDER BY u.uid, p.key;
        {attempts_sql(1, "c.uid % 7 IN (0, 1, 2)", "c.uid % 7 IN (5, 6)")};
        {attempts_sql(2, "c.uid % 7 = 0", "c.uid % 7 = 1")};
        {attempts_sql(3, "c.uid % 7 = 0", "0")};
        INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json, last_attempt_id,
                               last_stage, last_error, updated_at)
            SELECT 2, c.uid,
                   CASE c.uid % 7 WHEN 0 THEN 'exhausted' WHEN 2 THEN 'failed'
                        WHEN 3 THEN 'in_flight' WHEN 4 THEN 'pending' ELSE 'valid' END,
                   CASE c.uid % 7 WHEN 0 THEN 3 WHEN 1 THEN 2 WHEN 2 THEN 1 WHEN 3 THEN 0
                        WHEN 4 THEN 0 ELSE 1 END,
                   CASE WHEN c.uid % 7 IN (1, 5, 6) THEN '{{"score": 7}}' END,
                   a.id, a.stage, CASE WHEN c.uid % 7 IN (0, 2) THEN a.errors_json END, 'T'
            FROM units c LEFT JOIN attempts a ON a.uid = c.uid AND a.step_idx = 2
                AND a.attempt_no = (SELECT MAX(attempt_no) FROM attempts x
                                    WHERE x.uid = c.uid AND x.step_idx = 2)
            WHERE c.origin_step = 2;
        INSERT INTO attempts(uid, step_idx, attempt_no, mode, outcome, stage, errors_json)
            SELECT uid, 3, 1, 'local', 'failed', 'expression',
                   '[{{"message": "doubled: value ' || (uid * 3) || ' too large"}}]'
            FROM unit_steps WHERE step_idx = 2 AND state = 'valid' AND uid % 13 = 0;
        INSERT INTO unit_steps(step_idx, uid, state, attempts, output_json, last_stage,
                               last_error, updated_at)
            SELECT 3, s.uid, CASE WHEN s.uid % 13 = 0 THEN 'exhausted' ELSE 'valid' END, 1,
                   CASE WHEN s.uid % 13 = 0 THEN NULL ELSE '{{"doubled": 14}}' END,
                   CASE WHEN s.uid % 13 = 0 THEN 'expression' END,
                   CASE WHEN s.uid % 13 = 0 THEN a.errors_json END, 'T'
            FROM unit_steps s LEFT JOIN attempts a ON a.uid = s.uid AND a.step_idx = 3
            WHERE s.step_idx = 2 AND s.state = 'valid';
        INSERT INTO events(ts, level, tag, message, data_json) VALUES
            ('T', 'warning', 'MAX_ITERATIONS', 'x', '{{"step": 0, "units": 3, "first": "a"}}'),
            ('T', 'warning', 'MAX_ITERATIONS', 'x', '{{"step": 0, "units": 1, "first": "b"}}');
        UPDATE run SET status = 'complete', started_at = '2025-03-01T10:00:00.000Z',
                       finished_at = '2025-03-01T11:00:00.000Z';
        COMMIT;
    """)
    if unpriced:
        db.execute("UPDATE attempts SET cost_usd = NULL")
        db.commit()
    db.close()
    return paths


@pytest.fixture
def run(tmp_path: Path) -> RunPaths:
    return build(tmp_path)


def test_every_figure_equals_the_independent_computation(run: RunPaths) -> None:
    report = run_report(run).to_dict()
    assert_matches(report, expected_report(run.ledger))


def test_the_fixture_outcomes_are_the_ones_reported(run: RunPaths) -> None:
    """The figures the fixture was built to produce, counted here by hand from its rules."""
    report = run_report(run).to_dict()
    prep, split, judge, after = report["steps"]
    assert (prep["input"], prep["valid"], prep["failed"]) == (60, 57, 3)  # n = 7, 27, 47
    assert prep["failed_by_stage"] == {"expression": 3}
    assert prep["max_iterations"] == 4
    assert prep["errors"] == [
        {
            "stage": "expression",
            "message": "division by zero",
            "units": 3,
            "samples": ["item007", "item047"],  # the first and last with that message
        }
    ]
    assert (split["input"], split["valid"], split["failed"]) == (57, 54, 3)  # n = 3, 28, 53
    # fanned out: 54 parents; n % 10 == 0 -> no children (6), others 2 or 3 parts
    children = sum(
        0 if n % 10 == 0 else 3 if n % 15 == 0 or n % 2 else 2
        for n in range(60)
        if n % 20 != 7 and n % 25 != 3
    )
    assert split["fan_out"]["children"] == children == judge["input"]
    assert split["fan_out"]["fanned_out"] == 54
    assert split["errors"][0]["message"] == "fan-out field '<s>' is missing, not a list"
    exhausted, second = _children(run, "uid % 7 = 0"), _children(run, "uid % 7 = 1")
    assert judge["failed"] == exhausted and judge["retrying"] == _children(run, "uid % 7 = 2")
    assert judge["retries"]["units"] == exhausted + second
    assert judge["retries"]["extra_attempts"] == 2 * exhausted + second
    assert judge["models"] == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    messages = {e["message"] for e in judge["attempt_errors"]}
    assert messages == {
        "score <n> is below <n>",
        "Expecting value: line <n> column <n> (char <n>)",
        "openai: overloaded, request <id> (HTTP <n>)",
    }
    assert after["failed_by_stage"] == {"expression": after["failed"]} and after["failed"]
    assert report["total"]["cost"]["unknown_cost_calls"] > 0
    assert report["total"]["cost"]["usd"] is None  # some calls have no known price
    assert report["cost_per_valid_unit"] is None
    assert report["elapsed_s"] == 3600.0


def _children(run: RunPaths, where: str) -> int:
    db = sqlite3.connect(run.ledger)
    try:
        return db.execute(
            f"SELECT COUNT(*) FROM units WHERE origin_step = 2 AND {where}"
        ).fetchone()[0]
    finally:
        db.close()


def test_failures_by_a_field_follow_the_record_at_each_step(run: RunPaths) -> None:
    """``category`` comes from the items, but prep rewrote it to "z" for n % 15 == 0: from
    split on, those units count under "z"."""
    report = run_report(run, failures_by="category").to_dict()
    assert_matches(report, expected_report(run.ledger, failures_by="category"))
    prep, split, judge, _ = report["steps"]
    assert {r["value"] for r in prep["failures_by"]} == {"a", "b", "c"}
    assert "z" in {r["value"] for r in judge["failures_by"]}
    failing = {r["value"]: r["failed"] for r in split["failures_by"]}
    assert failing == {"a": 1, "b": 1, "c": 1, "z": 0}  # n = 3, 28 and 53 failed there


def test_failures_by_a_field_no_record_has_is_refused_naming_the_fields(run: RunPaths) -> None:
    with pytest.raises(UsageError) as info:
        run_report(run, failures_by="colour")
    message = str(info.value)
    assert message.startswith("--failures-by 'colour': neither the failing units' records")
    assert "(fields of the first unit: unit_id, name, n, category, parts)" in message


def test_top_limits_the_error_groups_and_counts_them_all(run: RunPaths) -> None:
    report = run_report(run, top=1).to_dict()
    judge = report["steps"][2]
    assert len(judge["attempt_errors"]) == 1 and judge["attempt_error_groups"] == 3
    assert_matches(report, expected_report(run.ledger, top=1))


def test_unknown_prices_stay_unknown_never_zero(tmp_path: Path) -> None:
    run = build(tmp_path, unpriced=True)
    report = run_report(run).to_dict()
    assert_matches(report, expected_report(run.ledger))
    total = report["total"]["cost"]
    assert total == {
        "usd": None,
        "known_usd": 0.0,
        "unknown_cost_calls": total["unknown_cost_calls"],
    }
    assert total["unknown_cost_calls"] == report["total"]["calls"] > 0
    assert report["cost_per_valid_unit"] is None and report["retry_cost_share"] is None
    assert report["steps"][2]["cost_per_valid_unit"] is None


def test_a_run_made_before_the_report_index_reads_the_same(run: RunPaths) -> None:
    """A ledger without migration 0003 (made by an older octopipe, so without the later
    0004 either) opens read-only for the report and gives the same figures; the next writer
    builds the index."""
    before = run_report(run).to_dict()
    db = sqlite3.connect(run.ledger)
    db.executescript(
        "DROP INDEX attempts_by_step; DROP TABLE runners;"
        "ALTER TABLE unit_steps DROP COLUMN claimed_by;"
        # an older octopipe had no later migration either (0005_attempt_tiers: two columns)
        "ALTER TABLE attempts DROP COLUMN tier; ALTER TABLE attempts DROP COLUMN standard_cost_usd;"
        # nor the maintained totals (0006_attempt_totals: a table and its triggers)
        "DROP TABLE attempt_totals; DROP TRIGGER attempt_totals_insert; "
        "DROP TRIGGER attempt_totals_update; DROP TRIGGER attempt_totals_delete; "
        "DELETE FROM migrations WHERE name IN "
        "('0003_attempts_by_step', '0004_claim_owners', '0005_attempt_tiers', "
        "'0006_attempt_totals');"
        "PRAGMA user_version = 2;"
    )
    db.close()
    assert run_report(run).to_dict() == before
    from octopipe.store.ledger import Ledger

    Ledger.open(run.ledger).close()
    db = sqlite3.connect(run.ledger)
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
    db.close()
    assert "attempts_by_step" in names


def _set_running(run: RunPaths, updated_at: str) -> None:
    db = sqlite3.connect(run.ledger)
    db.execute(
        "UPDATE run SET status = 'running', finished_at = NULL, updated_at = ?", (updated_at,)
    )
    db.commit()
    db.close()


def test_a_live_run_is_timed_to_now(run: RunPaths) -> None:
    from datetime import UTC, datetime

    from octopipe.store.lock import RunLock

    _set_running(run, "2025-03-01T10:05:00.000Z")
    lock = RunLock(run.root)
    assert lock.try_acquire()
    try:
        now = datetime(2025, 3, 1, 10, 20, tzinfo=UTC)
        report = run_report(run, now=now).to_dict()
    finally:
        lock.release()
    assert report["status"] == "running" and report["finished_at"] is None
    assert report["elapsed_s"] == 1200.0  # 10:00 to now, 10:20
    assert report["units_per_s"] == pytest.approx(report["units_done"] / 1200.0)


def test_a_detached_run_is_timed_to_its_last_status_change(run: RunPaths) -> None:
    from datetime import UTC, datetime

    _set_running(run, "2025-03-01T10:05:00.000Z")
    report = run_report(run, now=datetime(2025, 3, 2, tzinfo=UTC)).to_dict()
    assert report["status"] == "detached"
    assert report["elapsed_s"] == 300.0  # 10:00 to 10:05, not to now
