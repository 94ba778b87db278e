"""Trial run of the first unit through the local steps, for ``octopipe validate``.

LLM steps get a schema-shaped mock answer, made plausible where the unit already says what a
field holds (``schema_values.schema_value(..., like=record)``: an answer field named like a
field of the unit takes its value, strings in arrays are drawn from the unit's own lists of
strings). The whole trial runs within one expression budget (``core/budget.py``), so
``validate`` ends in bounded time whatever the pipeline computes.

Mock values can make a valid pipeline fail (a mocked card is not a card), so the trial tracks
*taint*: the fields of mock answers are tainted, and so is every expression-step variable whose
expression reads a tainted name, through any chain of aliases and arithmetic (``_p_cards =
player_cards_used`` then ``sum([_card_val[c] for c in _p_cards])``). A failure is a warning
when the failing expression, rule or template reads a tainted name, and an error only when it
reads none: then the mock cannot be the cause. A rule that is merely false is no problem at all
(it judges data); the trial goes on past it with the values the step computed. Fan-out ratios
seen on the trial unit feed the call estimates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from octopipe.core.budget import Budget
from octopipe.core.config import Pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep
from octopipe.core.expressions import compile_expression, unit_random
from octopipe.core.schema_values import schema_value
from octopipe.core.steps import CompiledPipeline, CompiledStep, StepFailure
from octopipe.core.units import iter_units
from octopipe.core.yamlpos import format_path
from octopipe.errors import ConfigProblem, OctopipeError


def _first_unit(pipeline: Pipeline) -> tuple[str, dict[str, Any]] | None:
    for unit in iter_units(pipeline.config.processing, pipeline.items_path, max_units=1):
        return unit.id, dict(unit.fields)
    return None


def _mock(
    pipeline: Pipeline, step: str, unit_id: str, like: Mapping[str, Any] | None = None
) -> Any:
    schema = pipeline.schema_for(step)
    return schema_value(schema, unit_id, like=like) if schema else {}


def tainted_variables(step: ExpressionStep, tainted: set[str]) -> set[str]:
    """The variables of ``step`` whose value derives from a ``tainted`` name, directly or
    through other variables of the step (in any order: loops feed later values back)."""
    sources: dict[str, frozenset[str]] = {}
    for mapping in (step.init, step.expressions):
        for var, source in mapping.items():
            sources[var] = sources.get(var, frozenset()) | _names(source)
    derived: set[str] = set()
    changed = True
    while changed:
        changed = False
        for var, names in sources.items():
            if var not in derived and names & (tainted | derived):
                derived.add(var)
                changed = True
    return derived


def _names(source: str | None) -> frozenset[str]:
    if not source:
        return frozenset()
    try:
        return compile_expression(source).names
    except OctopipeError:
        return frozenset()


class _Trial:
    def __init__(self, pipeline: Pipeline, file: str) -> None:
        self.pipeline = pipeline
        self.file = file
        self.problems: list[ConfigProblem] = []
        self.tainted: set[str] = set()
        self.budget = Budget()  # the whole trial is bounded like one unit's step

    def run(self, compiled: CompiledPipeline, unit_id: str, record: dict[str, Any]) -> None:
        for cstep in compiled.steps:
            step = cstep.step
            if isinstance(step, LLMStep):
                next_record = self.llm_step(cstep, step, unit_id, record)
            elif isinstance(step, ExpressionStep):
                next_record = self.expression_step(cstep, step, unit_id, record)
            elif isinstance(step, FanOutStep):
                result = cstep.fan_out(unit_id, record)
                if result.failure is not None:
                    self.report(step, result.failure, frozenset({step.field}))
                if not result.children:
                    return  # this unit has no children: later steps never see it
                unit_id, next_record = result.children[0]
            else:
                continue
            if next_record is None:
                return
            record = next_record

    def llm_step(
        self, cstep: CompiledStep, step: LLMStep, unit_id: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        prompt = cstep.try_render(unit_id, record, self.budget)
        if isinstance(prompt, StepFailure):
            self.report(step, prompt, self.template_names(step))
            return None
        answer = _mock(self.pipeline, step.name, unit_id, like=record)
        result = cstep.check_answer(json.dumps(answer), record, self.budget)
        self.tainted |= set(answer)
        if result.failure is not None and _raised(result.failure):
            self.report(step, result.failure, self.rule_names(step.name, result.failure))
        return {**record, **answer, **(result.delta or {})}

    def expression_step(
        self, cstep: CompiledStep, step: ExpressionStep, unit_id: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        derived = tainted_variables(step, self.tainted)
        result = cstep.run_expression(unit_id, record, self.budget)
        if result.failure is None:
            self.tainted |= derived
            return {**record, **(result.delta or {})}
        if result.failure.stage == "expression":
            self.report(step, result.failure, _failing_expression(result.failure), derived)
            return None
        # The step computed its values; its rules were false or raised.
        self.tainted |= derived
        if _raised(result.failure):
            self.report(step, result.failure, self.rule_names(step.name, result.failure))
        values = self.values_of(cstep, unit_id, record)
        return None if values is None else {**record, **values}

    def values_of(
        self, cstep: CompiledStep, unit_id: str, record: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What an expression step computed, when its rules turned the unit down."""
        assert cstep.program is not None
        try:
            rng = unit_random(unit_id, cstep.name)
            return dict(cstep.program.run(record, rng, self.budget).values)
        except OctopipeError:
            return None

    def template_names(self, step: LLMStep) -> frozenset[str] | None:
        from octopipe.core.prompts import template_variables  # Jinja: for LLM steps only

        try:
            return template_variables(
                self.pipeline.template_dir, self.pipeline.template_name(step), self.pipeline.folder
            )
        except OctopipeError:
            return None

    def rule_names(self, step_name: str, failure: StepFailure) -> frozenset[str] | None:
        """Names read by the rules that raised (None when they cannot be told)."""
        spec = self.pipeline.validation_for(step_name)
        if spec is None:
            return None
        raised = {e.get("rule") for e in failure.errors if isinstance(e, dict) and e.get("raised")}
        names: set[str] = set()
        found = False
        for rule in spec.rules:
            if (rule.name or rule.expr) in raised:
                found = True
                names |= _names(rule.expr) | _names(rule.when)
        return frozenset(names) if found else None

    def report(
        self,
        step: Any,
        failure: StepFailure,
        names: frozenset[str] | None,
        also_tainted: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        tainted = self.tainted | set(also_tainted)
        mock_made = bool(tainted) and (names is None or bool(names & tainted))
        level = "warning" if mock_made else "error"
        detail = failure.errors[0] if failure.errors else {}
        var = detail.get("variable") if isinstance(detail, dict) else None
        index = self.pipeline.steps.index(step)
        path: tuple[str | int, ...] = ("pipeline", "steps", index)
        if var and isinstance(step, ExpressionStep):
            key = "init" if var in step.init else "expressions"
            path = (*path, key, var)
        elif failure.stage == "rules" and step is not None:
            path = ("validation", step.name)
        suffix = " (it reads a value made from a mock LLM answer)" if mock_made else ""
        self.problems.append(
            ConfigProblem(
                self.file,
                self.pipeline.positions.line_of(path),
                format_path(path),
                f"trial run of the first unit failed at {failure.stage}{suffix}: {failure.message}",
                level=level,
            )
        )


def trial_run(pipeline: Pipeline, file: str) -> list[ConfigProblem]:
    """Problems found running the first unit; empty when it went through.

    A rule that is merely false on the trial unit is not a problem (it judges data, and LLM
    answers here are mocks); a rule or expression that *raises* is, as an error only when
    nothing it reads derives from a mock answer.
    """
    try:
        compiled = CompiledPipeline(pipeline)
        first = _first_unit(pipeline)
    except OctopipeError as exc:
        return [ConfigProblem(file, None, "", f"trial run could not start: {exc}")]
    if first is None:
        return [ConfigProblem(file, None, "processing.items", "the pipeline produces no units")]
    trial = _Trial(pipeline, file)
    trial.run(compiled, *first)
    return trial.problems


def _raised(failure: StepFailure) -> bool:
    return any(isinstance(e, dict) and e.get("raised") for e in failure.errors)


def _failing_expression(failure: StepFailure) -> frozenset[str] | None:
    """Names the failing expression reads (None when the failure names no expression)."""
    detail = failure.errors[0] if failure.errors else {}
    source = detail.get("expression") if isinstance(detail, dict) else None
    if not source:
        return None
    try:
        return compile_expression(source).names
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
