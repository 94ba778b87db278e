"""``--flex-fallback batch``: when a unit's flex call is still "resource unavailable" after
the in-call retries, that unit (uncharged) and the rest of its step go to the batch API; with
flex never available every unit ends valid through batch, every attempt is tier ``batch`` and
costs its usage at the database's batch price."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage as DbUsage
from genai_prices import calc_price

from octopipe.emulator import EmulatorConfig, EmulatorThread
from support.cli import octopipe, walk_copy
from support.realtime import offline_env, walk_answer

MODEL = "gpt-6-luna"


def test_flex_never_available_sends_every_unit_through_batch(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    config = EmulatorConfig(answer_fn=walk_answer, flex_unavailable_rate=1.0, seed=3)
    with EmulatorThread(config) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        result = octopipe(
            "run", str(pipeline), "--provider", "fake", "--model", MODEL, "--flex",
            "--flex-fallback", "batch", "--yes", "--run", "fb", "--runs-dir", str(runs),
            cwd=tmp_path, env=env, timeout=240,
        )  # fmt: skip
        stats = emulator.stats()
    assert result.returncode == 0, result.stdout + result.stderr
    assert stats["faults"].get("flex_unavailable", 0) > 0, stats
    status = json.loads(
        octopipe("status", "fb", "--json", "--runs-dir", str(runs), cwd=tmp_path).stdout
    )
    assert status["status"] == "complete" and status["failed"] == 0
    assert status["valid"] == status["units"] > 0
    [priced] = status["price_history"]  # one session, its record kept with its start time
    assert priced["database"] == status["prices"]["database"] and priced["session_started_at"]
    info = json.loads(
        octopipe("info", "fb", "--json", "--runs-dir", str(runs), cwd=tmp_path).stdout
    )
    assert json.dumps(info).count("session_started_at") >= 1

    db = sqlite3.connect(runs / "fb" / "ledger.db")
    rows = db.execute(
        "SELECT tier, mode, attempt_no, input_tokens, output_tokens, cached_tokens, cost_usd "
        "FROM attempts WHERE mode IN ('realtime', 'batch')"
    ).fetchall()
    assert rows and {(r[0], r[1]) for r in rows} == {("batch", "batch")}
    assert {r[2] for r in rows} == {1}  # "unavailable" spent no attempt
    now = datetime.now(UTC)
    expected = 0.0
    for *_, inp, out, cached, _ in rows:
        usage = DbUsage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out)
        price = calc_price(
            usage, MODEL, provider_id="openai", genai_request_timestamp=now,
            price_context={"processing": "batch"},
        )  # fmt: skip
        expected += float(price.total_price)
    assert sum(r[6] for r in rows) == pytest.approx(expected, rel=1e-9)
    assert status["cost_usd"] == pytest.approx(expected, rel=1e-9)
    log = (runs / "fb" / "run.log").read_text()
    assert "flex stays unavailable; the rest runs in batch" in log


def test_flex_fallback_batch_is_a_choice_of_the_cli(tmp_path: Path) -> None:
    result = octopipe("run", "--help", cwd=tmp_path)
    assert "'batch' sends that unit" in " ".join(result.stdout.split())
