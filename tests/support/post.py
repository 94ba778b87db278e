"""A local pipeline (no LLM step) with every kind of post-processing, for the engine tests of
``engine/postprocess.py``: made in a temp folder, driven by the runner in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from octopipe.engine.create import RunOptions, create_run
from octopipe.engine.paths import RunPaths
from octopipe.engine.postprocess import NO_SCRIPTS, ScriptPermission
from octopipe.engine.runner import Runner, RunOutcome

SCRIPT = """import json, os, sys
from pathlib import Path
run = Path(sys.argv[1])
failures = sum(len(p.read_text().splitlines()) for p in run.glob("chunks/*/*_failures.jsonl"))
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": sorted(os.environ),
                  "failure_lines": failures}))
print("to stderr", file=sys.stderr)
"""

STEP_SCRIPT = """import argparse
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("--run-dir"); p.add_argument("--step-name"); p.add_argument("--config")
a = p.parse_args()
(Path(a.run_dir) / "outputs" / "step.txt").write_text(f"{a.step_name} {a.config}\\n")
print("step script done")
"""


def league(tmp: Path, edit: Any = None, files: dict[str, str] | None = None) -> Path:
    """20 units (4 players x 5); ``judge`` fails the units that scored 3 (terminally).
    ``files`` adds files to the folder (relative path -> text)."""
    folder = tmp / "league"
    (folder / "tools").mkdir(parents=True)
    for relative, text in (files or {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text)
    (folder / "items.yaml").write_text(
        "players:\n"
        + "".join(f"  - {{name: p{i}, team: {'red' if i % 2 else 'blue'}}}\n" for i in range(4))
    )
    (folder / "tools" / "echo.py").write_text(SCRIPT)
    (folder / "tools" / "step.py").write_text(STEP_SCRIPT)
    config: dict[str, Any] = {
        "pipeline": {
            "steps": [
                {
                    "name": "score",
                    "scope": "expression",
                    "expressions": {
                        "points": "random.randint(0, 5)",
                        "band": "'high' if points >= 3 else 'low'",
                    },
                },
                {"name": "judge", "scope": "expression", "expressions": {"checked": "True"}},
                {
                    "name": "files",
                    "scope": "run",
                    "script": "scripts/extract_units.py",
                    "output_dir": "outputs/units",
                    "content_expression": "{'team': data['team'], 'points': data['points']}",
                },
                {"name": "step_script", "scope": "run", "script": "tools/step.py"},
            ]
        },
        "processing": {
            "strategy": "direct",
            "items": {"source": "items.yaml", "key": "players"},
            "repeat": 5,
            "chunk_size": 7,
        },
        "validation": {"judge": {"rules": [{"name": "not_three", "expr": "points != 3"}]}},
        "post_process": [
            {
                "name": "Bands",
                "script": "scripts/analyze_results.py",
                "args": ["--group-by", "team", "--count-field", "band"],
                "output": "bands.txt",
            },
            {
                "name": "Points CSV",
                "script": "scripts/analyze_results.py",
                "args": [
                    "--group-by",
                    "team",
                    "--numeric-field",
                    "points",
                    "--output-format",
                    "csv",
                    "--output",
                    "points.csv",
                ],
            },
            {
                "name": "Echo",
                "script": "pipelines/League/tools/echo.py",
                "args": ["one", "two"],
                "output": "echo.json",
            },
            {"name": "Zip", "type": "gzip", "files": ["outputs/*_validated.jsonl"]},
        ],
    }
    if edit is not None:
        edit(config)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def make_league_run(
    tmp: Path, edit: Any = None, name: str = "league", files: dict[str, str] | None = None
) -> RunPaths:
    folder = league(tmp, edit, files)
    return create_run(folder, tmp / "runs", RunOptions(name=name, mode="realtime")).paths


def drive(paths: RunPaths, allow: ScriptPermission = NO_SCRIPTS) -> RunOutcome:
    return Runner(paths, post=allow).run()


def echo_output(paths: RunPaths) -> dict[str, Any]:
    return json.loads((paths.outputs / "echo.json").read_text().splitlines()[0])
