"""Options shared by several commands."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import click

from octopipe.core.limits import current_limits, unit_count_problem
from octopipe.engine.paths import default_runs_dir

runs_dir_option = click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder holding runs (default: $OCTOPIPE_RUNS_DIR or ./runs).",
)


def runs_dir_or_default(value: Path | None) -> Path:
    return value if value is not None else default_runs_dir()


class UnitCount(click.ParamType):
    """A number of units (``--repeat``, ``--max-units``): a whole number from 1 to the unit
    limit (``OCTOPIPE_MAX_UNITS``), checked before anything is created."""

    name = "integer"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        number: int = click.INT.convert(cast(Any, value), param, ctx)
        if number < 1:
            self.fail(f"{number} is not a positive whole number", param, ctx)
        problem = unit_count_problem(number, current_limits())
        if problem is not None:
            self.fail(problem, param, ctx)
        return number


UNIT_COUNT = UnitCount()


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses ``nan`` and ``inf``: they slip through a range check
    (every comparison with NaN is false) and would mean "no limit" or "never"."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def positive_amount() -> FiniteFloatRange:
    """A finite number above zero (an amount of money, seconds)."""
    return FiniteFloatRange(min=0, min_open=True)


def count(most: int) -> click.IntRange:
    """A whole number from 1 to ``most`` (a sanity bound: SQLite and the event loop need one)."""
    return click.IntRange(min=1, max=most)
