"""Commands to look at a pipeline before spending money: ``units`` and ``try``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.rule import Rule

from octopipe.cli.options import UNIT_COUNT
from octopipe.cli.output import console, print_json
from octopipe.core.config import load_pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep
from octopipe.core.steps import CompiledPipeline, StepFailure, visible
from octopipe.core.units import iter_units
from octopipe.errors import EXIT_FAILURE, EXIT_OK, UsageError


@click.command()
@click.argument("pipeline", type=click.Path(exists=True, path_type=Path))
@click.option("--max-units", type=UNIT_COUNT, help="Stop after N units.")
@click.option("--repeat", type=UNIT_COUNT, help="Override processing.repeat.")
def units(pipeline: Path, max_units: int | None, repeat: int | None) -> int:
    """Stream the units a pipeline generates, one JSON object per line."""
    loaded = load_pipeline(pipeline)
    out = sys.stdout
    for unit in iter_units(
        loaded.config.processing, loaded.items_path, max_units=max_units, repeat=repeat
    ):
        out.write(json.dumps(unit.fields, ensure_ascii=False, default=str))
        out.write("\n")
    out.flush()
    return EXIT_OK


@click.command(name="try")
@click.argument("pipeline", type=click.Path(exists=True, path_type=Path))
@click.option("--unit", "unit_id", required=True, help="The unit id (see `octopipe units`).")
@click.option(
    "--step",
    "stop_step",
    help="Stop after this step (default: the first LLM step without an answer, or the end).",
)
@click.option(
    "--response",
    type=click.File("rb"),
    help="An LLM answer (file, or - for stdin) to validate at --step, or at the first LLM step.",
)
@click.option("--repeat", type=UNIT_COUNT, help="Override processing.repeat.")
@click.option("--json", "as_json", is_flag=True, help="Print each step's result as JSON.")
def try_unit(
    pipeline: Path,
    unit_id: str,
    stop_step: str | None,
    response: Any,
    repeat: int | None,
    as_json: bool,
) -> int:
    """Run one unit through the local steps: expressions evaluated, prompts rendered, and a
    given answer validated exactly as a run would validate it."""
    loaded = load_pipeline(pipeline)
    compiled = CompiledPipeline(loaded)
    if stop_step is not None and stop_step not in [s.name for s in compiled.steps]:
        raise UsageError(f"no unit step named {stop_step!r} in {loaded.name}")
    answer_text = _read_answer(response) if response is not None else None
    answer_step = stop_step or next((s.name for s in compiled.steps if s.is_llm), None)
    current_id, record = _find_unit(loaded, unit_id, repeat)
    results: list[dict[str, Any]] = []
    ok = True
    for cstep in compiled.steps:
        entry: dict[str, Any] = {"step": cstep.name, "unit_id": current_id}
        step = cstep.step
        if isinstance(step, ExpressionStep):
            result = cstep.run_expression(current_id, record)
        elif isinstance(step, FanOutStep):
            result = cstep.fan_out(current_id, record)
            if result.ok:
                current_id, record = _pick_child(result.children, unit_id)
                entry["children"] = len(result.children)
                entry["continuing_with"] = current_id
        elif isinstance(step, LLMStep):
            prompt = cstep.try_render(current_id, record)
            if isinstance(prompt, StepFailure):
                entry["failure"] = prompt.to_dict()
                results.append(entry)
                ok = False
                break
            entry["prompt"] = prompt
            if answer_text is None or cstep.name != answer_step:
                entry["waiting_for"] = "an answer (pass --response FILE)"
                results.append(entry)
                break
            result = cstep.check_answer(answer_text, record)
        else:
            continue
        if result.failure is not None:
            entry["failure"] = result.failure.to_dict()
            ok = False
        else:
            entry["output"] = visible(result.delta or {})
            entry["warnings"] = list(result.warnings)
            record = {**record, **(result.delta or {})}
        if result.info:
            entry["info"] = result.info
        results.append(entry)
        if not ok or cstep.name == stop_step:
            break
    if as_json:
        print_json({"ok": ok, "steps": results, "record": visible(record)})
    else:
        _print_steps(results)
    return EXIT_OK if ok else EXIT_FAILURE


def _read_answer(response: Any) -> str:
    """The text of ``--response FILE``; a file that is not UTF-8 text is a usage error."""
    name = getattr(response, "name", "the answer")
    data = response.read()
    try:
        return str(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--response {name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); an LLM answer is text"
        ) from None


def _find_unit(pipeline: Any, unit_id: str, repeat: int | None) -> tuple[str, dict[str, Any]]:
    base_id = unit_id.split("__fan", 1)[0]
    for unit in iter_units(pipeline.config.processing, pipeline.items_path, repeat=repeat):
        if unit.id == base_id:
            return unit.id, dict(unit.fields)
    raise UsageError(f"no unit {base_id!r} in {pipeline.name} (list them with `octopipe units`)")


def _pick_child(
    children: tuple[tuple[str, dict[str, Any]], ...], wanted: str
) -> tuple[str, dict[str, Any]]:
    for child_id, fields in children:
        if wanted == child_id or wanted.startswith(child_id + "__"):
            return child_id, dict(fields)
    if not children:
        raise UsageError("the fan-out produced no children for this unit")
    return children[0][0], dict(children[0][1])


def _print_steps(results: list[dict[str, Any]]) -> None:
    for entry in results:
        console.print(Rule(f"{entry['step']}  ({entry['unit_id']})"))
        if "prompt" in entry:
            console.print("[bold]prompt[/bold]")
            console.print(entry["prompt"], markup=False)
        if "waiting_for" in entry:
            console.print(f"[yellow]stopped: waiting for {entry['waiting_for']}[/yellow]")
        if "failure" in entry:
            failure = entry["failure"]
            console.print(
                f"[red]FAILED at {failure['stage']}[/red]: {failure['message']}", markup=True
            )
            for error in failure["errors"]:
                console.print(f"  - {json.dumps(error, default=str)}", markup=False)
        if "output" in entry:
            console.print("[green]output[/green]")
            console.print(json.dumps(entry["output"], indent=2, default=str), markup=False)
        for warning in entry.get("warnings", []):
            console.print(f"[yellow]warning[/yellow]: {warning.get('message')}")
        if "children" in entry:
            console.print(
                f"fan-out: {entry['children']} children; continuing with {entry['continuing_with']}"
            )
