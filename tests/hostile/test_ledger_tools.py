"""The ledger's tools through the real command line: repair then resume completes units that
had attempts, verify sees what repair must fix, exports follow revalidation, and a run refuses
a snapshot edited after init (so a planted or swapped file never runs or mixes results)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from support.hostile import Result, Sandbox

NEVER = """
    rules:
      - name: never
        expr: "{expr}"
        error: "never passes"
"""
SECOND_STEP = """    - name: critic
      prompt_template: critic.jinja2
"""


def _run(sandbox: Sandbox, *args: object) -> Result:
    return sandbox.octopipe("run", *args, "--provider", "fake", "--yes", timeout=90)


def _sql(sandbox: Sandbox, run: str, query: str, params: tuple[object, ...] = ()) -> list:
    conn = sqlite3.connect(sandbox.runs / run / "ledger.db")
    try:
        rows = conn.execute(query, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


def _uid(sandbox: Sandbox, run: str, unit_id: str) -> int:
    return _sql(sandbox, run, "SELECT uid FROM units WHERE unit_id = ?", (unit_id,))[0][0]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["unit_id"] for line in path.read_text().splitlines()]


def _failing_run(sandbox: Sandbox) -> Result:
    """Every unit fails judge's rule: 3 attempts each, exhausted; the run completes."""
    sandbox.edit_config("required: [verdict]", "required: [verdict]" + NEVER.format(expr="False"))
    ran = _run(sandbox, sandbox.pipeline, "--run", "r")
    assert ran.code == 0, ran
    assert _sql(sandbox, "r", "SELECT COUNT(*) FROM attempts WHERE step_idx = 1") == [(9,)]
    return ran


# --- class 10: repair and resume ---------------------------------------------------------------


def test_repair_then_resume_completes_a_unit_that_had_attempts(sandbox: Sandbox) -> None:
    ran = _failing_run(sandbox)
    _sql(sandbox, "r", "DELETE FROM unit_steps WHERE step_idx = 1 AND uid = ?",
         (_uid(sandbox, "r", "a"),))  # fmt: skip
    found = sandbox.octopipe("verify", "r")
    assert found.code == 1 and "missing at judge (1)" in found.out, found

    repaired = sandbox.octopipe("repair", "r")
    assert repaired.code == 0 and "r: requeued 1 missing unit(s)" in repaired.out, repaired
    resumed = _run(sandbox, "r")
    assert resumed.code == 0, resumed
    assert "UNIQUE" not in resumed.text and "Traceback" not in resumed.text
    clean = sandbox.octopipe("verify", "r")
    assert clean.code == 0 and "r: every unit is accounted for" in clean.out, clean
    # the old attempts kept, the new ones numbered after them, the unit terminal again
    numbers = _sql(sandbox, "r", "SELECT attempt_no FROM attempts WHERE uid = ? AND "
                   "step_idx = 1 ORDER BY id", (_uid(sandbox, "r", "a"),))  # fmt: skip
    assert [n for (n,) in numbers] == [1, 2, 3, 4, 5, 6]
    assert _sql(sandbox, "r", "SELECT state, attempts FROM unit_steps WHERE step_idx = 1 "
                "ORDER BY uid") == [("exhausted", 6), ("exhausted", 3), ("exhausted", 3)]  # fmt: skip
    assert max(r.seconds for r in (ran, resumed)) < 60
    sandbox.assert_contained(ran, found, repaired, resumed, clean)


def test_verify_names_miscounted_and_stranded_units_and_repair_fixes_them(
    sandbox: Sandbox,
) -> None:
    _failing_run(sandbox)
    b, c = _uid(sandbox, "r", "b"), _uid(sandbox, "r", "c")
    # what the old repair left (a row recreated from nothing), and a runner that died mid-call
    _sql(sandbox, "r", "UPDATE unit_steps SET state = 'pending', attempts = 0, attempts_base = 0"
         " WHERE step_idx = 1 AND uid = ?", (b,))  # fmt: skip
    _sql(sandbox, "r", "UPDATE unit_steps SET state = 'in_flight' WHERE step_idx = 1 AND uid = ?",
         (c,))  # fmt: skip
    found = sandbox.octopipe("verify", "r", "--deep")
    assert found.code == 1, found
    assert "miscounted at judge (1): attempt counter behind the stored attempts\n    b" in found.out
    assert "stranded at judge (1): in flight, no live runner\n    c" in found.out
    data = json.loads(sandbox.octopipe("verify", "r", "--json", "--deep").out)
    judge = data["steps"][1]
    assert (judge["miscounted"], judge["stranded"], data["ok"]) == (["b"], ["c"], False)

    repaired = sandbox.octopipe("repair", "r")
    assert repaired.code == 0, repaired
    assert "raised the attempt counter of 1 unit(s)" in repaired.out
    assert "returned 1 stranded in-flight unit(s) to pending" in repaired.out
    assert sandbox.octopipe("verify", "r", "--deep").code == 0
    resumed = _run(sandbox, "r")
    assert resumed.code == 0 and "UNIQUE" not in resumed.text, resumed
    assert sandbox.octopipe("verify", "r").code == 0


# --- class 14: exports follow the ledger -------------------------------------------------------


def test_revalidated_units_reach_the_outputs(sandbox: Sandbox) -> None:
    _failing_run(sandbox)
    outputs = sandbox.runs / "r" / "outputs"
    assert _ids(outputs / "judge_validated.jsonl") == []
    assert _ids(outputs / "judge_failures.jsonl") == ["a", "b", "c"]

    sandbox.edit_config('expr: "False"', 'expr: "True"')  # the rule was wrong: fix it
    checked = sandbox.octopipe("revalidate", "r", "--use-source-config")
    assert checked.code == 0 and "3 passed" in checked.out, checked
    assert _ids(outputs / "judge_validated.jsonl") == ["a", "b", "c"]
    assert _ids(outputs / "judge_failures.jsonl") == []

    before = {p.name: p.read_bytes() for p in outputs.iterdir()}
    resumed = _run(sandbox, "r")  # complete: nothing to do, outputs already current
    assert resumed.code == 0, resumed
    assert {p.name: p.read_bytes() for p in outputs.iterdir()} == before
    sandbox.assert_contained(checked, resumed)


# --- class 15: the snapshot is the one the ledger was made from --------------------------------


def _two_judges(sandbox: Sandbox) -> Path:
    """judge and critic, two LLM steps of the same scope; a run of them created, not run."""
    sandbox.edit_config("      prompt_template: judge.jinja2\n",
                        "      prompt_template: judge.jinja2\n" + SECOND_STEP)  # fmt: skip
    sandbox.edit_config(
        "    judge: judge.json\n", "    judge: judge.json\n    critic: judge.json\n"
    )
    sandbox.write("templates/critic.jinja2", "Criticise {{ value }}. JSON with a verdict.\n")
    made = sandbox.octopipe("init", sandbox.pipeline, "--run", "r", "--mode", "realtime")
    assert made.code == 0, made
    return sandbox.runs / "r" / "config"


def test_a_snapshot_with_swapped_steps_is_refused_even_when_accepted(sandbox: Sandbox) -> None:
    snapshot = _two_judges(sandbox)
    config = snapshot / "config.yaml"
    original = config.read_text()
    judge = "    - name: judge\n      prompt_template: judge.jinja2\n"
    assert judge + SECOND_STEP in original
    config.write_text(original.replace(judge + SECOND_STEP, SECOND_STEP + judge))

    refused = _run(sandbox, "r")
    assert refused.code == 2, refused
    assert "its snapshot" in refused.err and "config.yaml (changed)" in refused.err
    assert "--accept-edited-snapshot" in refused.err and "Traceback" not in refused.text
    accepted = _run(sandbox, "r", "--accept-edited-snapshot")
    assert accepted.code == 2, accepted
    assert "(score (expression), critic (chunk), judge (chunk))" in accepted.err
    assert "(score (expression), judge (chunk), critic (chunk))" in accepted.err
    revalidated = sandbox.octopipe("revalidate", "r")
    assert revalidated.code == 2 and "config.yaml (changed)" in revalidated.err, revalidated
    # nothing was driven: the run is as init left it
    assert _sql(sandbox, "r", "SELECT status FROM run") == [("pending",)]
    assert _sql(sandbox, "r", "SELECT COUNT(*) FROM attempts") == [(0,)]

    config.write_text(original)  # put the snapshot back: the run goes
    ran = _run(sandbox, "r")
    assert ran.code == 0, ran
    sandbox.assert_contained(refused, accepted, revalidated, ran)


def test_an_edited_template_runs_only_when_accepted_knowingly(sandbox: Sandbox) -> None:
    snapshot = _two_judges(sandbox)
    (snapshot / "templates" / "judge.jinja2").write_text("Judge {{ value }} again, in JSON.\n")
    (snapshot / "notes.txt").write_text("added by hand\n")
    refused = _run(sandbox, "r")
    assert refused.code == 2, refused
    assert "notes.txt (added), templates/judge.jinja2 (changed)" in refused.err

    accepted = _run(sandbox, "r", "--accept-edited-snapshot")
    assert accepted.code == 0, accepted
    events = _sql(sandbox, "r", "SELECT message FROM events WHERE tag = 'SNAPSHOT' ORDER BY id")
    assert events[-1] == (
        "accepted an edited snapshot: notes.txt (added), templates/judge.jinja2 (changed)",
    )
    again = _run(sandbox, "r")  # the accepted snapshot is the run's snapshot now
    assert again.code == 0, again


def test_code_planted_in_a_snapshot_never_runs(sandbox: Sandbox) -> None:
    made = sandbox.octopipe("init", sandbox.pipeline, "--run", "r", "--mode", "realtime")
    assert made.code == 0, made
    planted = sandbox.runs / "r" / "config" / "emulator_answers.py"
    planted.write_text(sandbox.code_that_marks() + "def answer(request):\n    return None\n")
    refused = _run(sandbox, "r")
    assert refused.code == 2, refused
    assert "emulator_answers.py (added)" in refused.err
    assert refused.seconds < 30
    sandbox.assert_contained(made, refused)
