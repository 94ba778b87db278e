"""A fanned-out run whose outcome is set in SQL (set-based, as a big run would leave it):
``build(folder)`` -> the run's paths, for the report tests of every folder (engine, cli, store).
The fixture's figures are fixed: which units fail where, with which errors, and at what cost."""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths
from octopipe.store.totals_check import rebuild_totals
from support.admin import write_items, write_judge

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
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(textwrap.dedent(CONFIG))
    write_items(folder, n_items, category=lambda i: "abc"[i % 3])
    schema: dict[str, object] = {"type": "object", "properties": {"score": {"type": "integer"}}}
    write_judge(folder, "Judge {{ name }} part {{ part }}.\n", schema)
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
    # attempts inserted by SQL, not through the ledger: add them to the kept totals as the
    # ledger's own writer does (migration 0008: by statement, not by trigger)
    db.execute("BEGIN")
    rebuild_totals(db)
    db.execute("COMMIT")
    db.close()
    return paths
