"""Small pipelines and runs for the admin/integrity tests (test_admin_*, test_admin_cli*).

Imported as ``from support.admin import make_run`` from any test folder (engine, cli, tui).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths
from octopipe.engine.runner import Runner
from octopipe.store.ledger import Ledger
from octopipe.store.records import AttemptRecord

EXPRESSION_PIPELINE = """
pipeline:
  name: counter
  steps:
    - name: double
      scope: expression
      expressions:
        twice: "n * 2"
    - name: label
      scope: expression
      expressions:
        label: "'even' if twice % 4 == 0 else 'odd'"
        inverse: "{inverse}"
processing:
  strategy: direct
  items:
    source: items.yaml
    key: items
    name_field: name
  repeat: {repeat}
"""

SLOW_PIPELINE = """
pipeline:
  name: slow
  steps:
    - name: spin
      scope: expression
      init:
        i: 0
        acc: 0
      expressions:
        i: "i + 1"
        acc: "(acc * 31 + i) % 1000003"
      loop_until: "i >= {loops}"
      max_iterations: 100000
processing:
  strategy: direct
  items:
    source: items.yaml
    key: items
    name_field: name
  repeat: {repeat}
"""

LLM_PIPELINE = """
pipeline:
  name: judged
  steps:
    - name: prep
      scope: expression
      expressions:
        target: "n + 1"
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
  repeat: {repeat}
prompts:
  template_dir: templates
  templates:
    judge: judge.jinja2
schemas:
  schema_dir: schemas
  files:
    judge: judge.json
validation:
  judge:
    required: [score]
    rules:
      - name: high_enough
        expr: "score >= {minimum}"
        error: "score {{score}} is below {minimum}"
"""

JUDGE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {"score": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["score"],
}


def write_items(folder: Path, n_items: int, **fields: Callable[[int], object]) -> None:
    """``items.yaml``: items ``item000``.. with ``n`` = their index and each of ``fields``
    computed from it (``category=lambda i: "abc"[i % 3]``)."""
    lines = ["items:"]
    for i in range(n_items):
        lines += [f"  - name: item{i:03d}", f"    n: {i}"]
        lines += [f"    {key}: {value(i)}" for key, value in fields.items()]
    (folder / "items.yaml").write_text("\n".join(lines) + "\n")


def write_judge(folder: Path, template: str, schema: dict[str, object] = JUDGE_SCHEMA) -> None:
    """The judge step's files: ``templates/judge.jinja2`` and ``schemas/judge.json``."""
    (folder / "templates").mkdir(exist_ok=True)
    (folder / "templates" / "judge.jinja2").write_text(template)
    (folder / "schemas").mkdir(exist_ok=True)
    (folder / "schemas" / "judge.json").write_text(json.dumps(schema))


def expression_pipeline(
    folder: Path, n_items: int = 10, repeat: int = 1, inverse: str = "1"
) -> Path:
    """Two expression steps. ``inverse`` is the expression of a field of the second step
    (``"10 // (n % 3)"`` makes every third item fail there)."""
    folder.mkdir(parents=True)
    config = EXPRESSION_PIPELINE.format(repeat=repeat, inverse=inverse.replace('"', '\\"'))
    (folder / "config.yaml").write_text(textwrap.dedent(config))
    write_items(folder, n_items)
    return folder


def slow_pipeline(folder: Path, n_items: int = 20, repeat: int = 50, loops: int = 400) -> Path:
    folder.mkdir(parents=True)
    config = SLOW_PIPELINE.format(repeat=repeat, loops=loops)
    (folder / "config.yaml").write_text(textwrap.dedent(config))
    write_items(folder, n_items)
    return folder


def llm_pipeline(folder: Path, n_items: int = 4, repeat: int = 1, minimum: int = 5) -> Path:
    """prep (expression) -> judge (LLM, rule ``score >= minimum``) -> after (expression)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(LLM_PIPELINE.format(repeat=repeat, minimum=minimum))
    write_items(folder, n_items)
    write_judge(folder, "Rate {{ name }} ({{ target }}).\n")
    return folder


def set_minimum(folder: Path, old: int, new: int) -> None:
    config = folder / "config.yaml"
    text = config.read_text()
    changed = text.replace(f"score >= {old}", f"score >= {new}")
    assert changed != text
    config.write_text(changed)


def make_run(pipeline: Path, runs_dir: Path, name: str, *, drive: bool = True) -> RunPaths:
    created = create_run(pipeline, runs_dir, RunOptions(name=name))
    if drive:
        Runner(created.paths, export=False).run()
    return created.paths


def fail_llm_units(paths: RunPaths, step: str, answers: dict[str, str | None]) -> None:
    """Record one failed attempt for each unit pending at ``step`` that ``answers`` names:
    the raw answer (``None``: no response came back, a provider failure), as if an LLM
    executor had tried and the answer had failed validation."""
    ledger = Ledger.open(paths.ledger)
    try:
        index = [s.name for s in ledger.steps].index(step)
        claimed = ledger.claim_pending(index, 100_000)
        for unit in claimed:
            if unit.unit_id not in answers:
                continue
            raw = answers[unit.unit_id]
            stage = "provider" if raw is None else "rules"
            attempt = AttemptRecord(
                outcome="failed" if raw is not None else "error",
                mode="realtime",
                provider="fake",
                model="fake-1",
                stage=stage,  # type: ignore[arg-type]
                errors=[{"message": f"{stage} failure"}],
                request=f"prompt for {unit.unit_id}",
                response=raw,
            )
            ledger.record_failure(unit.uid, index, attempt, terminal=True)
        ledger.release_in_flight()
    finally:
        ledger.close()


def delete_rows(paths: RunPaths, step_idx: int, count: int) -> list[str]:
    """Simulate attrition: delete ``count`` unit_steps rows of a step; returns their ids."""
    import sqlite3

    conn = sqlite3.connect(paths.ledger)
    try:
        rows = conn.execute(
            """SELECT s.uid, u.unit_id FROM unit_steps s JOIN units u ON u.uid = s.uid
               WHERE s.step_idx = ? ORDER BY s.uid LIMIT ?""",
            (step_idx, count),
        ).fetchall()
        conn.executemany(
            "DELETE FROM unit_steps WHERE step_idx = ? AND uid = ?",
            [(step_idx, uid) for uid, _ in rows],
        )
        conn.commit()
    finally:
        conn.close()
    return sorted(unit_id for _, unit_id in rows)
