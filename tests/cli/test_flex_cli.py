"""Flex: ``run --flex`` sends OpenAI realtime calls at ``service_tier: "flex"``, handles the
429 "resource unavailable" flex answers as its own retryable error (no unit charged an
attempt for it, no rate-limit slow-down), records tier ``flex`` on every attempt and prices it
at the database's flex prices; models or providers without flex are refused before the run."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage as DbUsage
from genai_prices import calc_price

from octopipe.emulator import EmulatorConfig, EmulatorThread
from support.cli import octopipe, runs_in, walk_copy
from support.realtime import offline_env, walk_answer

MODEL = "gpt-6-luna"  # the registry's default OpenAI model, priced for flex


def test_a_flex_run_with_unavailable_answers_ends_valid_at_flex_prices(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    config = EmulatorConfig(answer_fn=walk_answer, flex_unavailable_rate=0.3, seed=7)
    with EmulatorThread(config) as emulator:
        env = offline_env(OCTOPIPE_EMULATOR_URL=emulator.emulator.root_url)
        result = octopipe(
            "run", str(pipeline), "--provider", "fake", "--model", MODEL, "--flex", "--yes",
            "--run", "flex", "--runs-dir", str(runs), cwd=tmp_path, env=env, timeout=180,
        )  # fmt: skip
        stats = emulator.stats()
        sent = emulator.requests
    assert result.returncode == 0, result.stdout + result.stderr
    assert stats["faults"].get("flex_unavailable", 0) > 0, stats
    assert sent and all(r.body.get("service_tier") == "flex" for r in sent)
    status = json.loads(
        octopipe("status", "flex", "--json", "--runs-dir", str(runs), cwd=tmp_path).stdout
    )
    assert status["status"] == "complete" and status["failed"] == 0
    assert status["valid"] == status["units"] > 0

    db = sqlite3.connect(runs / "flex" / "ledger.db")
    rows = db.execute(
        "SELECT tier, attempt_no, input_tokens, output_tokens, cached_tokens, cost_usd "
        "FROM attempts WHERE mode = 'realtime'"
    ).fetchall()
    assert rows and {r[0] for r in rows} == {"flex"}
    assert {r[1] for r in rows} == {1}  # no validation attempt spent on "unavailable"
    now = datetime.now(UTC)
    expected = 0.0
    for _, _, inp, out, cached, _ in rows:
        usage = DbUsage(input_tokens=inp, cache_read_tokens=cached, output_tokens=out)
        price = calc_price(
            usage, MODEL, provider_id="openai", genai_request_timestamp=now,
            price_context={"service_tier": "flex"},
        )  # fmt: skip
        expected += float(price.total_price)
    assert sum(r[5] for r in rows) == pytest.approx(expected, rel=1e-9)
    assert status["cost_usd"] == pytest.approx(expected, rel=1e-9)
    [tier] = status["costs"]["by_tier"]
    assert tier["tier"] == "flex" and tier["saving_usd"] > 0


def test_flex_on_a_model_without_flex_prices_is_refused_before_the_run(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), "--provider", "fake", "--model", "gpt-4o-mini", "--flex",
        "--yes", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "--flex: step 'report' uses fake/gpt-4o-mini, which has no known flex price"
        in result.stderr
    )
    assert runs_in(runs) == []


def test_flex_on_a_provider_without_flex_is_refused(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), "--provider", "fake:anthropic", "--flex", "--yes",
        "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "which has no flex tier" in result.stderr
    assert runs_in(runs) == []


def test_flex_with_batch_is_refused(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    result = octopipe(
        "run", str(pipeline), "--batch", "--provider", "fake", "--flex", "--yes",
        "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--flex is a realtime tier" in result.stderr
