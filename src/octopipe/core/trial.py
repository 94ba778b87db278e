"""Trial run of the first unit through the local steps, for ``octopipe validate``.

LLM steps get a schema-shaped mock answer. The whole trial runs within one expression budget
(``core/budget.py``), so ``validate`` ends in bounded time whatever the pipeline computes. A failure is reported as an error only when it
cannot be an artefact of the mock (the failing expression reads no mocked field); otherwise as
a warning. Fan-out ratios seen on the trial unit feed the call estimates.
"""

from __future__ import annotations

import json
from typing import Any

from octopipe.core.budget import Budget
from octopipe.core.config import Pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep
from octopipe.core.expressions import compile_expression
from octopipe.core.schema_values import schema_value
from octopipe.core.steps import CompiledPipeline, StepFailure
from octopipe.core.units import iter_units
from octopipe.core.yamlpos import format_path
from octopipe.errors import ConfigProblem, OctopipeError


def _first_unit(pipeline: Pipeline) -> tuple[str, dict[str, Any]] | None:
    for unit in iter_units(pipeline.config.processing, pipeline.items_path, max_units=1):
        return unit.id, dict(unit.fields)
    return None


def _mock(pipeline: Pipeline, step: str, unit_id: str) -> Any:
    schema = pipeline.schema_for(step)
    return schema_value(schema, unit_id) if schema else {}


def trial_run(pipeline: Pipeline, file: str) -> list[ConfigProblem]:
    """Problems found running the first unit; empty when it went through.

    A rule that is merely false on the trial unit is not a problem (it judges data, and LLM
    answers here are mocks); a rule or expression that *raises* is.
    """
    problems: list[ConfigProblem] = []
    try:
        compiled = CompiledPipeline(pipeline)
        first = _first_unit(pipeline)
    except OctopipeError as exc:
        return [ConfigProblem(file, None, "", f"trial run could not start: {exc}")]
    if first is None:
        return [ConfigProblem(file, None, "processing.items", "the pipeline produces no units")]
    unit_id, record = first
    mocked: set[str] = set()
    budget = Budget()  # the whole trial is bounded like one unit's step
    for cstep in compiled.steps:
        step = cstep.step
        index = pipeline.steps.index(step)
        if isinstance(step, LLMStep):
            prompt = cstep.try_render(unit_id, record, budget)
            if isinstance(prompt, StepFailure):
                _report(problems, pipeline, file, index, prompt, mocked, step)
                break
            answer = _mock(pipeline, step.name, unit_id)
            result = cstep.check_answer(json.dumps(answer), record, budget)
            if result.failure is not None and _raised(result.failure):
                _report(problems, pipeline, file, index, result.failure, mocked | set(answer), step)
            mocked |= set(answer)
            record = {**record, **answer, **(result.delta or {})}
            continue
        if isinstance(step, ExpressionStep):
            result = cstep.run_expression(unit_id, record, budget)
        elif isinstance(step, FanOutStep):
            result = cstep.fan_out(unit_id, record)
        else:
            continue
        if result.failure is not None:
            if result.failure.stage == "expression" or _raised(result.failure):
                _report(problems, pipeline, file, index, result.failure, mocked, step)
            break
        if isinstance(step, FanOutStep):
            if not result.children:
                break  # this unit has no children: later steps never see it
            unit_id, record = result.children[0]
        else:
            record = {**record, **(result.delta or {})}
    return problems


def _raised(failure: StepFailure) -> bool:
    return any(isinstance(e, dict) and e.get("raised") for e in failure.errors)


def _report(
    problems: list[ConfigProblem],
    pipeline: Pipeline,
    file: str,
    index: int,
    failure: StepFailure,
    mocked: set[str],
    step: Any,
) -> None:
    names = _names_in(failure, step)
    level = "warning" if (mocked and (names is None or names & mocked)) else "error"
    detail = failure.errors[0] if failure.errors else {}
    var = detail.get("variable") if isinstance(detail, dict) else None
    path: tuple[str | int, ...] = ("pipeline", "steps", index)
    if var and isinstance(step, ExpressionStep):
        key = "init" if var in step.init else "expressions"
        path = (*path, key, var)
    elif failure.stage == "rules" and step is not None:
        path = ("validation", step.name)
    suffix = " (with a mock LLM answer)" if level == "warning" else ""
    problems.append(
        ConfigProblem(
            file,
            pipeline.positions.line_of(path),
            format_path(path),
            f"trial run of the first unit failed at {failure.stage}{suffix}: {failure.message}",
            level=level,
        )
    )


def _names_in(failure: StepFailure, step: Any) -> set[str] | None:
    detail = failure.errors[0] if failure.errors else {}
    source = detail.get("expression") if isinstance(detail, dict) else None
    if not source:
        return None
    try:
        return set(compile_expression(source).names)
    except OctopipeError:
        return None


def fan_out_ratios(pipeline: Pipeline) -> dict[str, float]:
    """Children per parent for each fan-out step, as seen on the trial unit (best effort)."""
    if not any(isinstance(s, FanOutStep) for s in pipeline.steps):
        return {}
    ratios: dict[str, float] = {}
    try:
        compiled = CompiledPipeline(pipeline)
        first = _first_unit(pipeline)
    except OctopipeError:
        return ratios
    if first is None:
        return ratios
    unit_id, record = first
    for cstep in compiled.steps:
        step = cstep.step
        if isinstance(step, ExpressionStep):
            result = cstep.run_expression(unit_id, record)
            record = {**record, **(result.delta or {})}
        elif isinstance(step, LLMStep):
            answer = _mock(pipeline, step.name, unit_id)
            record = {**record, **(answer if isinstance(answer, dict) else {})}
        elif isinstance(step, FanOutStep):
            result = cstep.fan_out(unit_id, record)
            ratios[step.name] = float(len(result.children))
            if not result.children:
                break
            unit_id, record = result.children[0]
    return ratios


def sample_loads(pipeline: Pipeline, units: int = 5) -> dict[str, tuple[int, int]]:
    """Average (prompt tokens, answer tokens) per LLM step over the first ``units`` units.

    Prompts are rendered for real; answers of earlier LLM steps are schema-shaped mocks, and a
    step's answer size is the size of such a mock (``max_tokens / 4`` without a schema).
    """
    from octopipe.core.costs import estimate_tokens

    compiled = CompiledPipeline(pipeline)
    totals: dict[str, list[int]] = {}
    produced = iter_units(pipeline.config.processing, pipeline.items_path, max_units=units)
    for unit in produced:
        unit_id, record = unit.id, dict(unit.fields)
        for cstep in compiled.steps:
            step = cstep.step
            if isinstance(step, ExpressionStep):
                result = cstep.run_expression(unit_id, record)
                if not result.ok:
                    break
                record = {**record, **(result.delta or {})}
            elif isinstance(step, FanOutStep):
                result = cstep.fan_out(unit_id, record)
                if not result.children:
                    break
                unit_id, record = result.children[0]
            elif isinstance(step, LLMStep):
                prompt = cstep.try_render(unit_id, record)
                if isinstance(prompt, StepFailure):
                    break
                answer = _mock(pipeline, step.name, unit_id)
                out = (
                    estimate_tokens(json.dumps(answer))
                    if answer
                    else ((step.max_tokens or pipeline.config.api.max_tokens) // 4)
                )
                sums = totals.setdefault(step.name, [0, 0, 0])
                sums[0] += estimate_tokens(prompt)
                sums[1] += out
                sums[2] += 1
                record = {**record, **answer}
    return {name: (s[0] // s[2], s[1] // s[2]) for name, s in totals.items() if s[2]}
