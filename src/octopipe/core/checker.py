"""Static checks behind ``octopipe validate``, with no false positives on valid pipelines.

After ``load_pipeline`` has checked structure and files, this module follows the fields a unit
carries from step to step: item fields, expression-step variables, the properties of each LLM
step's schema, fan-out child fields. Every expression, rule and template variable must read a
name that exists at that point; one that does not is an error, with the closest known name.

Then it trial-runs the first unit through the local steps, giving LLM steps a schema-shaped mock
answer. An error there is reported as an error only when the failing expression reads no mocked
field; otherwise it is a warning (the mock, not the pipeline, may be at fault).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from octopipe.core.config import Pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep, RunStep
from octopipe.core.expressions import SAFE_BUILTIN_NAMES, compile_expression
from octopipe.core.units import count_units, iter_units
from octopipe.core.yamlpos import format_path
from octopipe.errors import ConfigError, ConfigProblem, ExpressionError, RenderError

ALWAYS_KNOWN = frozenset({"random", "unit_id", "_repetition_id", "_repetition_seed"})


@dataclass
class StepSummary:
    name: str
    kind: str
    calls: int | None  # LLM calls for one attempt of every unit (None when unknowable)
    fan_out_ratio: float | None = None


@dataclass
class CheckReport:
    pipeline: str
    problems: list[ConfigProblem] = field(default_factory=list)
    steps: list[StepSummary] = field(default_factory=list)
    units: int | None = None

    @property
    def errors(self) -> list[ConfigProblem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "ok": self.ok,
            "units": self.units,
            "steps": [vars(s) for s in self.steps],
            "problems": [p.to_dict() for p in self.problems],
        }


class _Checker:
    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.file = pipeline.config_file.name
        self.report = CheckReport(pipeline.name, list(pipeline.warnings))
        self.open_world = False  # an earlier LLM step had no schema: its fields are unknown

    def problem(
        self,
        path: Sequence[str | int],
        message: str,
        hint: str | None = None,
        level: str = "error",
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.report.problems.append(
            ConfigProblem(
                file or self.file,
                line if line is not None else self.p.positions.line_of(path),
                format_path(path),
                message,
                hint,
                level,
            )
        )

    def located(self, problem: ConfigProblem) -> ConfigProblem:
        """A config problem raised without a line (by ``core/units.py``), with its line."""
        if problem.file != "config.yaml" or problem.line is not None or not problem.key_path:
            return problem
        path = tuple(problem.key_path.split("."))
        return dataclasses.replace(problem, file=self.file, line=self.p.positions.line_of(path))

    def check_names(
        self, names: Iterable[str], known: set[str], path: Sequence[str | int], what: str
    ) -> None:
        for name in sorted(set(names) - known - ALWAYS_KNOWN - SAFE_BUILTIN_NAMES):
            hint = _close(name, known)
            level = "warning" if self.open_world else "error"
            self.problem(
                path,
                f"{what} uses {name!r}, which no item, earlier step or schema defines",
                hint,
                level,
            )

    def compile(
        self, source: str, path: Sequence[str | int], variable: str | None = None
    ) -> frozenset[str]:
        try:
            return compile_expression(source, variable=variable).names
        except ExpressionError as exc:
            self.problem(path, f"bad expression: {exc.detail}")
            return frozenset()

    # --- the walk over steps ----------------------------------------------------------------

    def run(self) -> CheckReport:
        known = self.item_fields()
        template_known = known | set(self.p.config.processing.expressions)
        self.check_processing_expressions(known)
        for i, step in enumerate(self.p.steps):
            base: tuple[str | int, ...] = ("pipeline", "steps", i)
            match step:
                case ExpressionStep():
                    known |= self.check_expression_step(step, base, known)
                case LLMStep():
                    self.check_template(step, known | template_known)
                    known |= self.schema_fields(step)
                case FanOutStep():
                    if step.field not in known:
                        self.check_names([step.field], known, (*base, "field"), "fan-out")
                    known |= {step.child_key, "_fan_index", "_fan_parent_id"}
                case RunStep():
                    pass
            self.check_validation(step.name, known)
        return self.report

    def item_fields(self) -> set[str]:
        processing = self.p.config.processing
        if processing.strategy != "direct":
            return {pos.name for pos in processing.positions}
        fields: set[str] = set()
        try:
            for unit in iter_units(processing, self.p.items_path, max_units=50, repeat=1):
                fields |= set(unit.fields)
        except ConfigError as exc:
            self.report.problems.extend(exc.problems)
        return fields

    def check_processing_expressions(self, known: set[str]) -> None:
        for var, source in self.p.config.processing.expressions.items():
            path = ("processing", "expressions", var)
            self.check_names(self.compile(source, path, var), known, path, "expression")

    def check_expression_step(
        self, step: ExpressionStep, base: tuple[str | int, ...], known: set[str]
    ) -> set[str]:
        step_vars = set(step.init) | set(step.expressions)
        scope = known | step_vars
        blocks = (("init", step.init), ("expressions", step.expressions))
        for key, mapping in blocks:
            for var, source in mapping.items():
                path = (*base, key, var)
                self.check_names(self.compile(source, path, var), scope, path, "expression")
        if step.loop_until:
            path = (*base, "loop_until")
            self.check_names(self.compile(step.loop_until, path), scope, path, "loop_until")
        return step_vars

    def check_template(self, step: LLMStep, known: set[str]) -> None:
        name = self.p.template_name(step)
        path = ("prompts", "templates", step.name)
        context = known | set(self.p.raw) | {"config"} | set(self.p.config.prompts.global_context)
        from octopipe.core.prompts import template_variables  # Jinja: for LLM steps only

        try:
            used = template_variables(self.p.template_dir, name, self.p.folder)
        except RenderError as exc:
            self.problem(
                path,
                f"template error: {exc.detail}",
                file=f"{self.p.config.prompts.template_dir}/{name}",
                line=exc.line,
            )
            return
        self.check_names(used, context, path, f"template {name!r}")

    def schema_fields(self, step: LLMStep) -> set[str]:
        schema = self.p.schema_for(step.name)
        props = schema.get("properties") if schema else None
        if not isinstance(props, dict):
            self.open_world = True
            return set()
        return set(props)

    def check_validation(self, step_name: str, known: set[str]) -> None:
        spec = self.p.validation_for(step_name)
        if spec is None:
            return
        base = ("validation", step_name)
        for key in ("types", "ranges", "enums"):
            self.check_fields(getattr(spec, key), known, (*base, key))
        self.check_fields(spec.required, known, (*base, "required"))
        for j, rule in enumerate(spec.rules):
            for key in ("expr", "when"):
                source = getattr(rule, key)
                if source:
                    path = (*base, "rules", j, key)
                    self.check_names(self.compile(source, path), known, path, "rule")

    def check_fields(self, fields: Iterable[str], known: set[str], path: tuple[str, ...]) -> None:
        for name in fields:
            if name not in known:
                self.check_names([name], known, (*path, name), "validation")


def _close(word: str, options: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def check_pipeline(
    pipeline: Pipeline, *, max_units: int | None = None, repeat: int | None = None
) -> CheckReport:
    """Every static problem of a loaded pipeline, plus a summary (units, calls per step)."""
    checker = _Checker(pipeline)
    report = checker.run()
    try:
        report.units = count_units(
            pipeline.config.processing, pipeline.items_path, max_units=max_units, repeat=repeat
        )
    except ConfigError as exc:
        report.problems.extend(checker.located(p) for p in exc.problems)
    if report.ok:
        from octopipe.core.trial import trial_run

        report.problems.extend(trial_run(pipeline, checker.file))
    report.steps = summarize_steps(pipeline, report.units)
    # Several checks read the items file; each problem is reported once.
    report.problems = list(dict.fromkeys(report.problems))
    return report


def summarize_steps(pipeline: Pipeline, units: int | None) -> list[StepSummary]:
    """LLM calls per step for one attempt per unit; fan-out ratio from the trial unit."""
    from octopipe.core.trial import fan_out_ratios

    ratios = fan_out_ratios(pipeline)
    flowing: float | None = units
    out: list[StepSummary] = []
    for step in pipeline.steps:
        kind = {"chunk": "llm"}.get(step.scope, step.scope)
        calls = round(flowing) if isinstance(step, LLMStep) and flowing is not None else None
        ratio = ratios.get(step.name)
        out.append(StepSummary(step.name, kind, calls if isinstance(step, LLMStep) else 0, ratio))
        if isinstance(step, FanOutStep):
            flowing = flowing * ratio if flowing is not None and ratio is not None else None
    return out


__all__ = ["CheckReport", "StepSummary", "check_pipeline"]
