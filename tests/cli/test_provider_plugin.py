"""A third-party provider, added by an installed package through the ``octopipe.providers``
entry point, is used by ``validate`` and ``run`` with no change to octopipe's code.

The "package" is a folder on the child's ``PYTHONPATH`` holding a module and a ``*.dist-info``
with an ``entry_points.txt``: exactly what ``pip install`` leaves behind, without pip. Its
adapter answers in-process (no network); its key comes from its own variable.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

PLUGIN = '''\
"""A provider plugin: answers every request with a verdict naming its unit and key."""
import json

from octopipe.providers import LLMResponse, ProviderSpec, Usage


class EchoProvider:
    name = "echo"
    endpoint = None

    def __init__(self, settings):
        self.key = settings.api_key

    async def complete(self, request):
        answer = {"verdict": f"echo {request.unit_id} via {request.model} key={self.key}"}
        return LLMResponse(
            text=json.dumps(answer), usage=Usage(12, 3), finish_reason="stop",
            model=request.model, request_id=None, latency_s=0.0,
        )

    async def aclose(self):
        pass


SPEC = ProviderSpec(name="echo", realtime=EchoProvider, key_variables=("ECHO_API_KEY",))


def broken():
    raise RuntimeError("this plugin cannot start")
'''

CONFIG = """\
pipeline:
  name: plugged
  steps:
    - name: judge
      prompt_template: judge.jinja2
processing:
  strategy: direct
  items: {source: items.yaml, key: items, name_field: name}
prompts: {template_dir: templates}
schemas: {schema_dir: schemas, files: {judge: judge.json}}
api: {provider: PROVIDER, model: echo-1}
"""

SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string"}},
    "required": ["verdict"],
}


def install_plugin(site: Path) -> None:
    """Lay out ``octopipe_echo`` as pip would: the module and its dist-info."""
    site.mkdir()
    (site / "octopipe_echo.py").write_text(PLUGIN)
    info = site / "octopipe_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: octopipe-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[octopipe.providers]\necho = octopipe_echo:SPEC\nbroken = octopipe_echo:broken\n"
    )


def make_pipeline(folder: Path, provider: str) -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "config.yaml").write_text(CONFIG.replace("PROVIDER", provider))
    (folder / "items.yaml").write_text("items:\n  - {name: a}\n  - {name: b}\n")
    (folder / "templates" / "judge.jinja2").write_text("Judge {{ name }}. Answer JSON.\n")
    (folder / "schemas" / "judge.json").write_text(json.dumps(SCHEMA))
    return folder


def octopipe(*args: str, cwd: Path, site: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    env |= {"ECHO_API_KEY": "echo-secret", "NO_COLOR": "1", "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "octopipe", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    install_plugin(tmp_path / "site")
    return tmp_path / "site"


def test_a_plugin_provider_runs_a_pipeline_end_to_end(tmp_path: Path, site: Path) -> None:
    pipeline = make_pipeline(tmp_path / "pipe", "echo")

    validated = octopipe("validate", str(pipeline), cwd=tmp_path, site=site)
    ran = octopipe("run", str(pipeline), "--yes", "--run", "r", cwd=tmp_path, site=site)

    assert validated.returncode == 0, validated.stderr
    assert ran.returncode == 0, ran.stdout + ran.stderr
    ledger = sqlite3.connect(f"file:{tmp_path / 'runs' / 'r' / 'ledger.db'}?mode=ro", uri=True)
    try:
        outputs = ledger.execute(
            "SELECT u.unit_id, s.output_json FROM unit_steps s JOIN units u USING (uid) "
            "ORDER BY u.unit_id"
        ).fetchall()
        attempts = ledger.execute(
            "SELECT DISTINCT mode, provider, model, outcome FROM attempts"
        ).fetchall()
    finally:
        ledger.close()
    verdicts = [(unit, json.loads(output)["verdict"]) for unit, output in outputs]
    assert verdicts == [
        ("a", "echo a via echo-1 key=echo-secret"),
        ("b", "echo b via echo-1 key=echo-secret"),
    ]
    assert attempts == [("realtime", "echo", "echo-1", "valid")]


def test_without_the_plugin_the_provider_is_unknown_naming_the_line(
    tmp_path: Path, site: Path
) -> None:
    pipeline = make_pipeline(tmp_path / "pipe", "echo")

    result = octopipe("validate", str(pipeline), cwd=tmp_path, site=None)

    assert result.returncode == 2, result.stderr
    assert (
        "pipe/config.yaml:11 [api.provider]: unknown provider 'echo'; expected one of "
        "openai, anthropic, gemini, openai-compatible, fake\n"
    ) in result.stderr, result.stderr


def test_a_plugin_has_no_batch_api_unless_its_spec_gives_one(tmp_path: Path, site: Path) -> None:
    pipeline = make_pipeline(tmp_path / "pipe", "echo")

    result = octopipe(
        "run", str(pipeline), "--batch", "--yes", "--run", "b", cwd=tmp_path, site=site
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "provider 'echo' has no batch API" in result.stderr, result.stderr
    assert not (tmp_path / "runs" / "b").exists()


def test_a_plugin_that_fails_to_load_is_named_and_stops_only_its_own_runs(
    tmp_path: Path, site: Path
) -> None:
    broken = make_pipeline(tmp_path / "broken", "broken")
    fine = make_pipeline(tmp_path / "fine", "echo")

    refused = octopipe("run", str(broken), "--yes", "--run", "x", cwd=tmp_path, site=site)
    ran = octopipe("run", str(fine), "--yes", "--run", "y", cwd=tmp_path, site=site)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (
        "provider plugin 'broken' (octopipe_echo:broken) failed to load: "
        "RuntimeError: this plugin cannot start"
    ) in refused.stderr, refused.stderr
    assert ran.returncode == 0, ran.stderr
