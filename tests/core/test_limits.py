"""Size limits: the unit limit is checked before any unit is generated, limits come from the
environment, and bad values there are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopipe.core.config_models import ProcessingSpec
from octopipe.core.limits import Limits, check_file_size
from octopipe.core.units import count_units, iter_units
from octopipe.errors import ConfigError, UsageError


def processing(repeat: int = 1, strategy: str = "direct") -> ProcessingSpec:
    spec: dict[str, object] = {
        "strategy": strategy,
        "items": {"source": "items.yaml", "key": "items"},
        "repeat": repeat,
    }
    if strategy == "permutation":
        spec["positions"] = [f"p{i}" for i in range(10)]
    return ProcessingSpec.model_validate(spec)


@pytest.fixture
def items(tmp_path: Path) -> Path:
    path = tmp_path / "items.yaml"
    path.write_text("items:\n" + "".join(f"  - {{name: n{i}}}\n" for i in range(20)))
    return path


def test_limits_default_and_come_from_the_environment() -> None:
    assert Limits.from_environ({}) == Limits(10_000_000, 4_000_000)
    env = {"OCTOPIPE_MAX_UNITS": " 25 ", "OCTOPIPE_MAX_CONFIG_BYTES": "1_000"}
    assert Limits.from_environ(env) == Limits(25, 1000)


@pytest.mark.parametrize("value", ["x", "0", "-1", "2.5", str(10**13)])
def test_a_bad_limit_names_the_variable(value: str) -> None:
    with pytest.raises(UsageError) as exc:
        Limits.from_environ({"OCTOPIPE_MAX_UNITS": value})
    assert exc.value.message == (
        f"OCTOPIPE_MAX_UNITS must be a whole number from 1 to 1,000,000,000,000, not {value!r}"
    )


def test_a_repeat_past_the_limit_is_refused_at_processing_repeat(items: Path) -> None:
    limits = Limits(max_units=1000)
    with pytest.raises(ConfigError) as exc:
        count_units(processing(repeat=51), items, limits=limits)
    (problem,) = exc.value.problems
    assert problem.key_path == "processing.repeat"
    assert problem.message.startswith(
        "the pipeline makes 1,020 units (20 base units x repeat 51), more than the limit of 1,000"
    )
    with pytest.raises(ConfigError):
        iter_units(processing(repeat=51), items, limits=limits)


def test_max_units_keeps_a_big_pipeline_within_the_limit(items: Path) -> None:
    limits = Limits(max_units=1000)
    assert count_units(processing(repeat=51), items, max_units=1000, limits=limits) == 1000
    units = iter_units(processing(repeat=51), items, max_units=3, limits=limits)
    assert [u.id for u in units] == ["n0__rep0000", "n1__rep0000", "n2__rep0000"]


def test_a_repeat_given_on_the_command_line_is_a_usage_error(items: Path) -> None:
    with pytest.raises(UsageError) as exc:
        count_units(processing(), items, repeat=60, limits=Limits(max_units=1000))
    assert "20 base units x repeat 60" in exc.value.message


def test_permutations_are_counted_before_one_is_made(items: Path) -> None:
    # 20P10 = 670 billion units: refused at once, not after generating ten million of them
    with pytest.raises(ConfigError) as exc:
        iter_units(processing(strategy="permutation"), items)
    assert exc.value.problems[0].key_path == "processing.items.source"
    assert "the pipeline makes 670,442,572,800 units" in exc.value.problems[0].message


def test_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 1001)
    check_file_size(path, "big.json", Limits(max_file_bytes=1001))
    with pytest.raises(ConfigError) as exc:
        check_file_size(path, "schemas/big.json", Limits(max_file_bytes=1000))
    (problem,) = exc.value.problems
    assert problem.file == "schemas/big.json"
    assert problem.message.startswith("the file is 1,001 bytes, more than the 1,000 bytes limit")
