"""The run's price record and its cost split by tier and model: a batch run priced by the
pipeline's own price file shows, in ``status`` and ``report`` (text and JSON), which source and
version priced it, what each (model, tier) cost, what the same answers would have cost in
realtime at standard prices, and the saving -- all checked against usage x the file's prices,
computed here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from support.cli import octopipe, walk_copy

PRICES = (
    "openai:\n  house-model-7b:\n    standard: {input: 0.5, output: 1.5}\n"
    "    batch: {input: 0.25, output: 0.75}\n"
)
M = 1_000_000


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("split")
    pipeline = walk_copy(tmp)
    (pipeline / "prices.yaml").write_text(PRICES, encoding="utf-8")
    config = pipeline / "config.yaml"
    config.write_text("prices: prices.yaml\n" + config.read_text(encoding="utf-8"))
    runs = tmp / "runs"
    result = octopipe(
        "run", str(pipeline), "--batch", "--provider", "fake", "--model", "house-model-7b",
        "--yes", "--run", "b", "--runs-dir", str(runs), cwd=tmp,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return tmp, runs, pipeline


def _cli(run: tuple[Path, Path, Path], *args: str) -> str:
    tmp, runs, _ = run
    result = octopipe(*args, "--runs-dir", str(runs), cwd=tmp)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _expected_record(pipeline: Path) -> dict[str, object]:
    import genai_prices

    digest = hashlib.sha256((pipeline / "prices.yaml").read_bytes()).hexdigest()
    return {
        "database": f"genai-prices {genai_prices.__version__} (bundled data)",
        "price_files": [{"file": "prices.yaml", "sha256": digest}],
    }


def test_status_info_and_report_json_name_what_priced_the_run(
    batch_run: tuple[Path, Path, Path],
) -> None:
    expected = _expected_record(batch_run[2])
    assert json.loads(_cli(batch_run, "status", "b", "--json"))["prices"] == expected
    assert json.loads(_cli(batch_run, "info", "b", "--json"))["options"]["prices"] == expected
    assert json.loads(_cli(batch_run, "report", "b", "--json"))["prices"] == expected


def test_status_text_names_the_price_source(batch_run: tuple[Path, Path, Path]) -> None:
    import genai_prices

    out = _cli(batch_run, "status", "b")
    assert f"priced by genai-prices {genai_prices.__version__} (bundled data) with prices.yaml" in (
        out
    )


def test_cost_by_tier_is_usage_times_the_files_prices(batch_run: tuple[Path, Path, Path]) -> None:
    data = json.loads(_cli(batch_run, "status", "b", "--json"))
    costs = data["costs"]
    [tier] = costs["by_tier"]
    assert tier["tier"] == "batch"
    tokens_in, tokens_out = tier["input_tokens"], tier["output_tokens"]
    assert tokens_in == data["input_tokens"] and tokens_out == data["output_tokens"] > 0
    batch = (tokens_in * 0.25 + tokens_out * 0.75) / M
    standard = (tokens_in * 0.5 + tokens_out * 1.5) / M
    assert tier["cost_usd"] == pytest.approx(batch, rel=1e-9)
    assert tier["standard_cost_usd"] == pytest.approx(standard, rel=1e-9)
    assert tier["saving_usd"] == pytest.approx(standard - batch, rel=1e-9)
    assert costs["saving_usd"] == pytest.approx(standard - batch, rel=1e-9)
    [model] = costs["by_model"]
    assert model["model"] == "fake/house-model-7b" and model["calls"] == tier["calls"] > 0


def test_report_json_and_text_show_the_split(batch_run: tuple[Path, Path, Path]) -> None:
    status = json.loads(_cli(batch_run, "status", "b", "--json"))["costs"]
    report = json.loads(_cli(batch_run, "report", "b", "--json"))["cost_by_tier"]
    assert report == status
    text = _cli(batch_run, "report", "b")
    assert "cost by model and tier" in text
    row = next(line for line in text.splitlines() if line.startswith("fake/house-model-7b"))
    assert row.split()[1] == "batch"


def test_unknown_stays_unknown_in_the_split(tmp_path: Path) -> None:
    pipeline = walk_copy(tmp_path)
    runs = tmp_path / "runs"
    result = octopipe(
        "run", str(pipeline), "--realtime", "--provider", "fake", "--model", "house-model-7b",
        "--yes", "--run", "u", "--runs-dir", str(runs), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    status = octopipe("status", "u", "--json", "--runs-dir", str(runs), cwd=tmp_path)
    [tier] = json.loads(status.stdout)["costs"]["by_tier"]
    assert tier["cost_usd"] is None and tier["standard_cost_usd"] is None
    assert tier["saving_usd"] is None and tier["unknown_cost_calls"] == tier["calls"] > 0
    text = octopipe("status", "u", "--runs-dir", str(runs), cwd=tmp_path).stdout
    row = next(line for line in text.splitlines() if line.startswith("fake/house-model-7b"))
    assert row.split()[-3:] == ["unknown", "unknown", "unknown"]


def test_ps_shows_each_runs_tiers_from_the_kept_totals(batch_run: tuple[Path, Path, Path]) -> None:
    status = json.loads(_cli(batch_run, "status", "b", "--json"))
    [listed] = json.loads(_cli(batch_run, "ps", "--json"))
    [tier] = listed["cost_by_tier"]
    assert tier["tier"] == "batch" and tier["unknown_cost_calls"] == 0
    assert tier["calls"] == status["costs"]["by_tier"][0]["calls"] > 0
    assert tier["cost_usd"] == pytest.approx(status["cost_usd"], rel=1e-9)
    header, row = _cli(batch_run, "ps").splitlines()[:2]
    assert header.split()[8] == "tiers" and row.split()[8] == "batch"


@pytest.mark.parametrize(
    ("tiers", "text"),
    [
        ([], "-"),
        ([{"tier": "flex", "known_cost_usd": 0.0}], "flex"),
        (
            [{"tier": "batch", "known_cost_usd": 0.8}, {"tier": "flex", "known_cost_usd": 0.2}],
            "batch 80%, flex 20%",
        ),
        (
            [{"tier": "flex", "known_cost_usd": 0.0}, {"tier": "standard", "known_cost_usd": 0.0}],
            "flex, standard",
        ),
    ],
)
def test_ps_tiers_text(tiers: list[dict[str, object]], text: str) -> None:
    from octopipe.cli.status_cmds import tiers_text

    assert tiers_text(tiers) == text  # type: ignore[arg-type]
