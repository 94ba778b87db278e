"""Support for the batch-mode engine tests (``tests/engine/test_batch_*.py``).

Everything goes through the vendors' real SDKs to the emulator on 127.0.0.1:

- ``drive_batch``: one pass of the runner in this process through
  ``providers_setup.llm_executor("batch", ...)`` (the path ``octopipe run --batch`` takes), with
  a short poll interval. With ``emulator=`` the run talks to an emulator the test owns (through
  ``OCTOPIPE_EMULATOR_URL``), so batches outlive the runner as at a real provider.
- ``fruit_pipeline``: LLM step -> fan-out -> LLM step, with an answer function that is right
  unless told otherwise, so tests can check both ends of a fan-out between two batch steps.
- ``batch_rows`` / ``batch_units_of``: what the ledger recorded about batches.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octopipe.emulator import EmulatorConfig, EmulatorRequest, EmulatorThread
from octopipe.engine import providers_setup
from octopipe.engine.batch import BatchOptions
from octopipe.engine.paths import RunPaths
from octopipe.engine.realtime import RealtimeOptions
from octopipe.engine.runner import Runner, RunOutcome
from support.realtime import _recording_emulators, ledger_rows

FAST = BatchOptions(poll_interval_s=0.05, linger_s=0.0)


@dataclass
class BatchDrive:
    outcome: RunOutcome
    emulator: Any
    executors: list[Any]

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.emulator.stats())


@contextlib.contextmanager
def _emulator_url(emulator: EmulatorThread | None) -> Iterator[None]:
    if emulator is None:
        yield
        return
    old = os.environ.get(providers_setup.EMULATOR_URL_ENV)
    os.environ[providers_setup.EMULATOR_URL_ENV] = emulator.emulator.root_url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(providers_setup.EMULATOR_URL_ENV, None)
        else:
            os.environ[providers_setup.EMULATOR_URL_ENV] = old


def drive_batch(
    paths: RunPaths,
    provider: str = "fake:openai",
    model: str | None = "gpt-4o-mini",
    *,
    emulator_config: EmulatorConfig | None = None,
    emulator: EmulatorThread | None = None,
    batch: BatchOptions = FAST,
    mode: str = "batch",
    progress: Any = None,
    **options: Any,
) -> BatchDrive:
    executors: list[Any] = []
    with (
        _emulator_url(emulator),
        _recording_emulators() as started,
        providers_setup.llm_executor(
            mode,
            RealtimeOptions(provider=provider, model=model, **options),
            batch=batch,
            emulator_config=emulator_config,
        ) as factory,
    ):

        def make(ctx: Any) -> Any:
            executor = factory(ctx)
            executors.append(executor)
            return executor

        outcome = Runner(paths, executor=make, progress=progress).run()
    return BatchDrive(outcome, started[0] if started else emulator, executors)


# --- a pipeline with a fan-out between two LLM steps -----------------------------------------

FRUIT_CONFIG = """\
pipeline:
  name: fruit
  steps:
    - name: pick
      prompt_template: pick.jinja2
    - name: split
      scope: fan_out
      field: fruits
      child_field: fruit
    - name: describe
      prompt_template: describe.jinja2
processing:
  strategy: direct
  items: {source: items.yaml, key: items}
  chunk_size: CHUNK
  validation_retry: {max_attempts: 3}
prompts:
  template_dir: templates
schemas:
  schema_dir: schemas
  files: {pick: pick.json, describe: describe.json}
validation:
  describe:
    required: [description]
    rules:
      - name: about_the_fruit
        expr: "description == 'about ' + fruit"
        error: "described {description} instead of {fruit}"
"""


def fruit_pipeline(folder: Path, units: int = 12, chunk: int = 5) -> Path:
    (folder / "templates").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "config.yaml").write_text(FRUIT_CONFIG.replace("CHUNK", str(chunk)))
    items = "".join(f"  - {{name: n{i}, n: {i}}}\n" for i in range(units))
    (folder / "items.yaml").write_text("items:\n" + items)
    (folder / "templates" / "pick.jinja2").write_text("Pick {{ n % 3 + 1 }} fruits for {{ n }}.")
    (folder / "templates" / "describe.jinja2").write_text("Describe the fruit <{{ fruit }}>.")
    (folder / "schemas" / "pick.json").write_text(
        '{"type": "object", "required": ["fruits"], "properties": '
        '{"fruits": {"type": "array", "items": {"type": "string"}}}}'
    )
    (folder / "schemas" / "describe.json").write_text(
        '{"type": "object", "required": ["description"], "properties": '
        '{"description": {"type": "string"}}}'
    )
    return folder


def fruit_answer(request: EmulatorRequest) -> dict[str, Any]:
    pick = re.search(r"Pick (\d+) fruits for (\d+)\.", request.prompt)
    if pick:
        count, n = int(pick.group(1)), int(pick.group(2))
        return {"fruits": [f"fruit{n}x{i}" for i in range(count)]}
    fruit = re.search(r"<(.+)>", request.prompt)
    assert fruit is not None, request.prompt
    return {"description": f"about {fruit.group(1)}"}


def fruit_children(units: int) -> int:
    return sum(n % 3 + 1 for n in range(units))


# --- ledger reads ---------------------------------------------------------------------------------


def batch_rows(paths: RunPaths) -> list[dict[str, Any]]:
    cols = ("local_id", "step_idx", "provider_batch_id", "state", "n_units", "estimate_usd")
    rows = ledger_rows(paths, f"SELECT {', '.join(cols)}, actual_usd FROM batches ORDER BY id")
    return [dict(zip((*cols, "actual_usd"), r, strict=True)) for r in rows]


def batch_units_of(paths: RunPaths, local_id: str) -> list[str]:
    return [
        r[0]
        for r in ledger_rows(
            paths,
            "SELECT u.unit_id FROM batch_units bu JOIN batches b ON b.id = bu.batch_id "
            "JOIN units u ON u.uid = bu.uid WHERE b.local_id = ? ORDER BY u.uid",
            local_id,
        )
    ]


# --- the emulator's account, shared with someone else ----------------------------------------

_PREFIXES = {"openai": "batch_", "anthropic": "msgbatch_", "gemini": "gbatch"}


def foreign_batches(emulator: EmulatorThread, vendor: str, count: int, size: int = 1) -> None:
    """``count`` batches of another program on the same account, created now (newer than
    anything submitted before), each of ``size`` requests with metadata that is not ours."""
    store = emulator.emulator.core.batches
    for i in range(count):
        intent = f"someone-else-{i}"
        store.create(
            vendor,
            "emu-model",
            [f"other{i}-{k}" for k in range(size)],
            ["a request of another program"] * size,
            prefix=_PREFIXES[vendor],
            metadata={"octopipe_intent": intent} if vendor == "openai" else {},
            extra=(
                {"display_name": f"octopipe?octopipe_intent={intent}", "line_metadata": [{}] * size}
                if vendor == "gemini"
                else {}
            ),
        )


# --- the in-process fake provider (no HTTP) ------------------------------------------------------


def drive_fake(
    paths: RunPaths,
    fake: Any,
    *,
    model: str = "gpt-4o-mini",
    batch: BatchOptions = FAST,
    max_cost_usd: float | None = None,
) -> RunOutcome:
    """One pass of the runner with a ``BatchExecutor`` whose every provider is ``fake`` (an
    ``octopipe.testing.FakeBatchProvider``): the scheduling, the ledger and the judge are
    real, the provider is in-process."""
    import dataclasses

    from octopipe.engine.batch import BatchExecutor
    from octopipe.engine.cost_budget import CostBudget

    options = dataclasses.replace(batch, provider="fake", model=model)

    def make(ctx: Any) -> Any:
        budget = CostBudget.of_run(ctx, max_cost_usd)
        return BatchExecutor(ctx, options, lambda name: fake, budget=budget)

    return Runner(paths, executor=make).run()
