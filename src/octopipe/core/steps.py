"""Compile a pipeline's steps once, then run one unit through one step (pure, no I/O).

``CompiledPipeline(pipeline)`` builds every expression program, prompt renderer and answer
validator up front: a bad expression or template surfaces at start, not at unit 40,000. The
per-unit methods return values or ``StepFailure`` records; they never raise for a unit-level
problem, so one unit's error can never stop the others.

The record a step sees is the unit's fields merged with the outputs of its earlier steps; each
method returns the *delta* (the fields this step adds), which is what the ledger stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from octopipe.core.budget import Budget, activate
from octopipe.core.config import Pipeline
from octopipe.core.config_models import ExpressionStep, FanOutStep, LLMStep, Step
from octopipe.core.expressions import ExpressionProgram, ProgramResult, UnitRandom, unit_random
from octopipe.core.fields import HIDDEN_FIELDS, visible
from octopipe.core.storable import unstorable_fields
from octopipe.core.units import Unit, fan_out_children
from octopipe.errors import ExpressionError, RenderError

if TYPE_CHECKING:  # imported where needed: Jinja and jsonschema only for steps that use them
    from octopipe.core.prompts import PromptRenderer
    from octopipe.core.validation import AnswerValidator, Outcome

_NO_RANDOM = UnitRandom(0)  # handed to programs that never read `random`


@dataclass(frozen=True)
class StepFailure:
    """A unit's failure at one step. ``stage`` is render/provider/parse/schema/rules/expression."""

    stage: str
    message: str
    errors: tuple[dict[str, Any], ...] = ()
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "message": self.message, "errors": list(self.errors)}


@dataclass(frozen=True)
class StepResult:
    """What a step produced for one unit: the delta to store, or a failure."""

    delta: dict[str, Any] | None = None
    failure: StepFailure | None = None
    warnings: tuple[dict[str, Any], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    children: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None


_MESSAGE_PARTS = 10


def outcome_failure(outcome: Outcome) -> StepFailure:
    """The failure of an answer or record: every violation in ``errors``, and a message that
    lists them (the first ten, then how many more)."""
    errors = tuple(v.to_dict() for v in outcome.violations)
    failing = [v.message for v in outcome.violations if v.level == "error"]
    message = "; ".join(failing[:_MESSAGE_PARTS]) or "invalid answer"
    if len(failing) > _MESSAGE_PARTS:
        message += f"; and {len(failing) - _MESSAGE_PARTS} more"
    return StepFailure(outcome.stage or "rules", message, errors, retryable=True)


class CompiledStep:
    """One step with everything it needs compiled."""

    def __init__(self, pipeline: Pipeline, step: Step) -> None:
        self.step = step
        self.name = step.name
        self.program: ExpressionProgram | None = None
        self.renderer: PromptRenderer | None = None
        self.validator: AnswerValidator | None = None
        self.unit_expressions: ExpressionProgram | None = None
        self.uses_random = False
        spec = pipeline.validation_for(step.name)
        schema = pipeline.schema_for(step.name)
        coerce = not pipeline.config.schemas.strict_mode
        match step:
            case ExpressionStep():
                self.program = ExpressionProgram.compile(
                    step.init, step.expressions, step.loop_until, step.max_iterations
                )
                self.uses_random = self.program.uses_random
                if spec is not None or schema is not None:
                    from octopipe.core.validation import AnswerValidator

                    self.validator = AnswerValidator(schema, spec, coerce=coerce)
            case LLMStep():
                from octopipe.core.prompts import PromptRenderer
                from octopipe.core.validation import AnswerValidator

                self.renderer = PromptRenderer(
                    pipeline.template_dir,
                    pipeline.template_name(step),
                    config=pipeline.raw,
                    global_context=pipeline.config.prompts.global_context,
                    root=pipeline.folder,
                )
                self.validator = AnswerValidator(schema, spec, coerce=coerce)
                if pipeline.config.processing.expressions:
                    self.unit_expressions = ExpressionProgram.compile(
                        {}, pipeline.config.processing.expressions, None, 1
                    )
            case FanOutStep():
                pass
            case _:
                raise TypeError(f"step {step.name!r} of scope {step.scope!r} is not a unit step")

    @property
    def is_llm(self) -> bool:
        return isinstance(self.step, LLMStep)

    # --- expression steps -------------------------------------------------------------------

    def run_expression(
        self, unit_id: str, record: Mapping[str, Any], budget: Budget | None = None
    ) -> StepResult:
        """The step's expressions and rules for one unit, within ``budget`` (a fresh one by
        default). Raises only ``EvaluationCancelled``, when the budget is cancelled."""
        with activate(budget or Budget()) as active:
            return self._run_expression(unit_id, record, active)

    def _run_expression(
        self, unit_id: str, record: Mapping[str, Any], budget: Budget
    ) -> StepResult:
        assert isinstance(self.step, ExpressionStep) and self.program is not None
        try:
            rng = unit_random(unit_id, self.name) if self.uses_random else _NO_RANDOM
            result = self.program.run(record, rng, budget)
        except ExpressionError as exc:
            return StepResult(
                failure=StepFailure(
                    "expression",
                    exc.message,
                    (
                        {
                            "variable": exc.variable,
                            "expression": exc.expression,
                            "message": exc.detail,
                        },
                    ),
                )
            )
        info = {"iterations": result.iterations, "hit_max_iterations": result.hit_max_iterations}
        if result.hit_max_iterations and self.step.fail_on_max_iterations:
            return StepResult(
                info=info,
                failure=StepFailure(
                    "expression",
                    f"loop did not finish within {self.step.max_iterations} iterations",
                    ({"rule": "max_iterations", "iterations": result.iterations},),
                ),
            )
        delta = dict(result.values)
        unstorable = unstorable_fields(delta)
        if unstorable:
            return StepResult(
                info=info,
                failure=StepFailure(
                    "expression",
                    "; ".join(unstorable),
                    tuple({"message": problem} for problem in unstorable),
                ),
            )
        if self.validator is None:
            return StepResult(delta=self._with_metadata(delta, result), info=info)
        outcome = self.validator.validate_record(delta, record)
        if not outcome.ok:
            failure = outcome_failure(outcome)
            # Deterministic math gives the same answer again: never retried.
            return StepResult(
                info=info,
                failure=StepFailure(
                    failure.stage, failure.message, failure.errors, retryable=False
                ),
            )
        warnings = tuple(w.to_dict() for w in outcome.warnings)
        return StepResult(
            delta=self._with_metadata(dict(outcome.output or delta), result),
            warnings=warnings,
            info=info,
        )

    def _with_metadata(self, delta: dict[str, Any], result: ProgramResult) -> dict[str, Any]:
        """``delta`` with Octobatch's ``_metadata`` (``expression_step``, ``iterations``,
        ``timeout``) when the loop reached ``max_iterations``: recorded on the unit."""
        if not result.hit_max_iterations:
            return delta
        metadata = {"expression_step": self.name, "iterations": result.iterations, "timeout": True}
        return {**delta, "_metadata": metadata}

    # --- LLM steps ----------------------------------------------------------------------------

    def render(self, unit_id: str, record: Mapping[str, Any], budget: Budget | None = None) -> str:
        """The prompt for this unit, within ``budget`` (a fresh one by default). Raises
        ``RenderError`` (a unit-level failure)."""
        assert self.renderer is not None
        with activate(budget or Budget()) as active:
            fields: Mapping[str, Any] = record
            if self.unit_expressions is not None:
                rng = unit_random(unit_id, self.name)
                try:
                    extra = self.unit_expressions.run(record, rng, active).values
                except ExpressionError as exc:
                    raise RenderError(
                        self.renderer.template_name, f"processing.expressions: {exc.message}"
                    ) from exc
                fields = {**record, **extra}
            return self.renderer.render(fields, active)

    def try_render(
        self, unit_id: str, record: Mapping[str, Any], budget: Budget | None = None
    ) -> str | StepFailure:
        try:
            return self.render(unit_id, record, budget)
        except RenderError as exc:
            return StepFailure(
                "render",
                exc.message,
                ({"template": exc.template, "line": exc.line, "message": exc.detail},),
            )

    def check_answer(
        self, raw_text: str, record: Mapping[str, Any], budget: Budget | None = None
    ) -> StepResult:
        """Parse, repair, schema-check and rule-check an LLM answer for this unit, the rules
        within ``budget`` (a fresh one by default)."""
        assert self.validator is not None
        with activate(budget or Budget()):
            outcome = self.validator.validate_answer(raw_text, record)
        if not outcome.ok:
            return StepResult(failure=outcome_failure(outcome))
        warnings = tuple(w.to_dict() for w in outcome.warnings)
        return StepResult(
            delta=dict(outcome.output or {}), warnings=warnings, info={"repaired": outcome.repaired}
        )

    # --- fan-out steps ----------------------------------------------------------------------

    def fan_out(self, unit_id: str, record: Mapping[str, Any]) -> StepResult:
        assert isinstance(self.step, FanOutStep)
        elements = record.get(self.step.field)
        if not isinstance(elements, list):
            kind = "missing" if elements is None else type(elements).__name__
            return StepResult(
                failure=StepFailure(
                    "expression",
                    f"fan-out field {self.step.field!r} is {kind}, not a list",
                    ({"field": self.step.field},),
                )
            )
        parent = Unit(unit_id, dict(record))
        children = fan_out_children(parent, self.step.field, self.step.child_key, elements)
        return StepResult(delta={}, children=tuple((c.id, c.fields) for c in children))


__all__ = [
    "HIDDEN_FIELDS",
    "CompiledPipeline",
    "CompiledStep",
    "StepFailure",
    "StepResult",
    "visible",
]


class CompiledPipeline:
    """All unit steps of a pipeline, compiled once."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.steps = [CompiledStep(pipeline, step) for step in pipeline.unit_steps]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> CompiledStep:
        return self.steps[index]

    def index(self, name: str) -> int:
        for i, step in enumerate(self.steps):
            if step.name == name:
                return i
        raise KeyError(name)
