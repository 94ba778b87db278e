"""Typed, frozen models of a pipeline's ``config.yaml`` (Octobatch's format plus our additions).

Every key Octobatch reads or documents has a field here; keys Octobatch documented but ignored
have a meaning in octopipe (see each field's docstring). Unknown keys are refused
(``extra="forbid"``); ``core/config.py`` turns pydantic's errors into line-numbered problems.

Steps are a discriminated union on ``scope`` (missing scope means an LLM step, ``chunk``), so a
``match`` over a step is exhaustive.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Tag, field_validator, model_validator
from pydantic import Discriminator as PydDiscriminator


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- steps ------------------------------------------------------------------------------------


class StepBase(Model):
    name: str = Field(min_length=1)
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier_like(cls, value: str) -> str:
        if not value.replace("_", "a").replace("-", "a").isalnum():
            raise ValueError("step names may use letters, digits, '_' and '-' only")
        return value


class LLMStep(StepBase):
    """A step answered by an LLM (Octobatch ``scope: chunk``, the default)."""

    scope: Literal["chunk"] = "chunk"
    prompt_template: str | None = None
    """Octobatch keeps it cosmetic; here, when ``prompts.templates`` has no entry for the step,
    this file (under ``prompts.template_dir``) is the template."""
    provider: str | None = None
    model: str | None = None
    # ours
    system: str | None = None
    """System prompt sent with every request of this step."""
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    structured_output: bool | None = None
    """Send the step's schema as the provider's native structured output (default: on)."""
    # documented in Octobatch's pipelines/CONTEXT.md, never implemented: accepted, warned.
    requests_per_triple: int | None = None
    outputs_per_request: int | None = None
    depends_on: list[str] | None = None


class ExpressionStep(StepBase):
    """Local computation with the safe expression language; free and instant."""

    scope: Literal["expression"]
    init: dict[str, str] = Field(default_factory=dict)
    expressions: dict[str, str] = Field(min_length=1)
    loop_until: str | None = None
    max_iterations: int = Field(default=1000, gt=0)
    fail_on_max_iterations: bool = False
    """Ours: when true, a unit whose loop hits ``max_iterations`` fails (stage ``expression``);
    otherwise it goes on with ``_metadata.timeout`` set, as in Octobatch."""

    @field_validator("init", "expressions", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML turns `x: 0` into an int; an expression is its source text.
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else repr(v) for k, v in value.items()}
        return value

    @field_validator("loop_until", mode="before")
    @classmethod
    def _stringify_loop(cls, value: Any) -> Any:
        return value if value is None or isinstance(value, str) else repr(value)


class FanOutStep(StepBase):
    """One unit becomes one child per element of an array field (``PARENT__fanNNN``)."""

    scope: Literal["fan_out"]
    field: str
    child_field: str | None = None

    @property
    def child_key(self) -> str:
        return self.child_field or self.field


class UploadSpec(Model):
    """Octobatch's extraction upload to a cloud drive: parsed so that ``validate`` can refuse
    it by name (octopipe uploads nothing)."""

    provider: str
    folder_id: str | None = None
    credentials_env: str | None = None
    delete_local: bool = False


class RunStep(StepBase):
    """Runs once when every unit is terminal: a script, or extraction of one file per record.

    ``script: scripts/extract_units.py`` (Octobatch's extractor), or no script with any of
    the extraction keys, is octopipe's built-in extraction; any other script is folder code,
    run as Octobatch runs it (``python SCRIPT --run-dir RUN --step-name NAME --config
    RUN/config/config.yaml``) only when the user allows it.
    """

    scope: Literal["run"]
    script: str | None = None
    args: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Ours: the script's time limit (default ``api.subprocess_timeout_seconds``, 600 s)."""
    output_dir: str | None = None
    """Extraction: the folder (relative to the run folder) emptied and filled with one file
    per record; default ``outputs/units``."""
    filename_expression: str | None = None
    """Extraction: the file name (without ``.json``) from ``data``, the record; default
    ``data['unit_id']``."""
    content_expression: str | None = None
    """Extraction: what the file holds, from ``data``; default the whole record."""
    compression: Literal["gzip", "none"] | None = None
    upload: UploadSpec | None = None
    """Octobatch's Google Drive upload: refused by ``validate`` (octopipe uploads nothing)."""

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @property
    def extraction_keys(self) -> bool:
        return any(
            v is not None
            for v in (self.output_dir, self.filename_expression, self.content_expression)
        )


def _step_tag(value: Any) -> str:
    if isinstance(value, dict):
        scope = value.get("scope", "chunk")
        return scope if isinstance(scope, str) else "chunk"
    return str(getattr(value, "scope", "chunk"))


Step = Annotated[
    Annotated[LLMStep, Tag("chunk")]
    | Annotated[ExpressionStep, Tag("expression")]
    | Annotated[FanOutStep, Tag("fan_out")]
    | Annotated[RunStep, Tag("run")],
    PydDiscriminator(_step_tag),
]
STEP_SCOPES = ("chunk", "expression", "fan_out", "run")


class PipelineSection(Model):
    name: str | None = None
    steps: list[Step] = Field(min_length=1)


# --- api --------------------------------------------------------------------------------------


class RetrySpec(Model):
    max_attempts: int = Field(default=3, ge=1)
    """Attempts per provider call for transient errors (429, 5xx, timeouts)."""
    initial_delay_seconds: float = Field(default=1.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)
    max_delay_seconds: float = Field(default=300.0, gt=0)


class RealtimeSpec(Model):
    cost_cap_usd: float | None = Field(default=None, gt=0)
    auto_retry: bool = True
    """Octobatch documents it and ignores it. Here: when false, units that fail validation in
    realtime are not retried automatically; they wait for ``octopipe retry``."""
    concurrency: int | None = Field(default=None, gt=0)
    pause_after_outage_seconds: float = Field(default=60, gt=0, allow_inf_nan=False)
    """Ours: how long every call may fail (refused connections, timeouts, 5xx) before the run
    pauses with the reason. Meanwhile no new unit is sent, one waiting unit probes the
    provider at growing intervals, and no unit is charged an attempt for the outage."""
    service_tier: Literal["standard", "flex"] = "standard"
    """Ours: ``flex`` sends realtime calls at the flex tier (like ``run --flex``): OpenAI's
    ``service_tier: "flex"``, at flex prices, slower, sometimes "resource unavailable"."""
    flex_fallback: Literal["standard", "batch", "none"] = "none"
    """Ours: what a flex call that stays "resource unavailable" after its in-call retries
    becomes (like ``run --flex-fallback``): ``standard`` sends it once at the standard tier
    (and price); ``batch`` returns the unit to pending, uncharged, and sends the rest of its
    step through the batch API (at batch prices); ``none`` parks the unit, uncharged, to try
    flex again later."""


class BatchSpec(Model):
    """Ours: how batch jobs are packed and supervised."""

    max_requests: int | None = Field(default=None, gt=0)
    max_bytes: int | None = Field(default=None, gt=0)
    deadline_hours: float = Field(default=24, gt=0)
    fallback_to_realtime: bool = False


MAX_POLL_INTERVAL_S = 86_400.0
"""The longest batch poll interval accepted (``api.poll_interval_seconds``, ``--poll-interval``)."""


class ApiSpec(Model):
    provider: str | None = None
    model: str | None = None
    max_inflight_batches: int = Field(default=10, ge=1)
    poll_interval_seconds: float = Field(
        default=30, gt=0, le=MAX_POLL_INTERVAL_S, allow_inf_nan=False
    )
    """Octobatch ignores it (CLI ``--interval``); here the batch poller uses it, with backoff.
    At most ``MAX_POLL_INTERVAL_S`` (a day): a batch polled less often than that would sit
    finished and uncollected past the providers' result windows."""
    retry: RetrySpec = Field(default_factory=RetrySpec)
    realtime: RealtimeSpec = Field(default_factory=RealtimeSpec)
    subprocess_timeout_seconds: float = Field(default=600, gt=0, allow_inf_nan=False)
    """The time limit of post-process scripts and run-scope step scripts (as in Octobatch),
    unless an entry sets its own ``timeout_seconds``."""
    max_tokens: int = Field(default=4096, gt=0)
    # ours
    base_url: str | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    request_timeout_seconds: float = Field(default=120, gt=0)
    structured_output: bool = True
    temperature: float | None = Field(default=None, ge=0, le=2)
    batch: BatchSpec = Field(default_factory=BatchSpec)


# --- processing -------------------------------------------------------------------------------


class ItemsSpec(Model):
    source: str
    key: str | None = None
    name_field: str = "name"


class PositionSpec(Model):
    name: str
    name_field: str | None = None
    source_key: str | None = None


class ValidationRetrySpec(Model):
    max_attempts: int = Field(default=3, ge=1)
    """Octobatch documents and ignores it. Here: total LLM attempts per unit and step when the
    answer fails parsing, schema or rules (first try included)."""


class ProcessingSpec(Model):
    strategy: Literal["permutation", "cross_product", "direct"] = "permutation"
    items: ItemsSpec
    positions: list[PositionSpec] = Field(default_factory=list)
    repeat: int = Field(default=1, ge=1)
    expressions: dict[str, str] = Field(default_factory=dict)
    chunk_size: int = Field(default=100, ge=1)
    """Upper bound on requests per provider batch (Octobatch's chunk)."""
    validation_retry: ValidationRetrySpec = Field(default_factory=ValidationRetrySpec)

    @field_validator("positions", mode="before")
    @classmethod
    def _position_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("expressions", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else repr(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _positions_needed(self) -> ProcessingSpec:
        if self.strategy in ("permutation", "cross_product") and not self.positions:
            raise ValueError(f"strategy {self.strategy!r} needs a non-empty 'positions' list")
        return self


# --- prompts, schemas, validation -------------------------------------------------------------


class PromptsSpec(Model):
    template_dir: str = "templates"
    templates: dict[str, str] = Field(default_factory=dict)
    global_context: dict[str, Any] = Field(default_factory=dict)


class SchemasSpec(Model):
    schema_dir: str = "schemas"
    files: dict[str, str] = Field(default_factory=dict)
    strict_mode: bool = False
    """Octobatch documents and ignores it. Here: when true, answers are checked against the
    schema as they are, with no coercion (a numeric string stays a schema error)."""
    log_validation_errors: bool = True
    """Octobatch documents and ignores it. Here: each validation failure is logged to run.log."""


class RuleSpec(Model):
    name: str | None = None
    expr: str
    error: str | None = None
    level: Literal["error", "warning"] = "error"
    when: str | None = None


TypeName = Literal[
    "integer",
    "int",
    "float",
    "number",
    "string",
    "str",
    "boolean",
    "bool",
    "array",
    "list",
    "object",
    "dict",
]


class ValidationSpec(Model):
    required: list[str] = Field(default_factory=list)
    types: dict[str, TypeName] = Field(default_factory=dict)
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    enums: dict[str, list[Any]] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)


# --- post-processing and monitoring -----------------------------------------------------------


class PostProcessSpec(Model):
    type: Literal["script", "gzip"] = "script"
    name: str | None = None
    description: str | None = None
    script: str | None = None
    args: list[str] = Field(default_factory=list)
    output: str | None = None
    """A script's standard output is written to ``RUN/outputs/<output>``."""
    timeout_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Ours: the script's time limit (default ``api.subprocess_timeout_seconds``, 600 s)."""
    files: list[str] = Field(default_factory=list)
    """``gzip``: glob patterns relative to the run folder."""
    keep_originals: bool = False

    @field_validator("args", mode="before")
    @classmethod
    def _args_as_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @model_validator(mode="after")
    def _fields_for_type(self) -> PostProcessSpec:
        if self.type == "script" and not self.script:
            raise ValueError("a 'script' post-process needs 'script'")
        if self.type == "gzip" and not self.files:
            raise ValueError("a 'gzip' post-process needs 'files' (glob patterns)")
        return self


class WarningsSpec(Model):
    failure_rate_threshold: float | None = Field(default=None, ge=0, le=1)
    long_running_minutes: float | None = Field(default=None, gt=0)
    high_token_usage: int | None = Field(default=None, gt=0)


class MonitoringSpec(Model):
    warnings: WarningsSpec = Field(default_factory=WarningsSpec)


class PipelineConfig(Model):
    """The whole ``config.yaml``."""

    pipeline: PipelineSection
    api: ApiSpec = Field(default_factory=ApiSpec)
    processing: ProcessingSpec
    prompts: PromptsSpec = Field(default_factory=PromptsSpec)
    schemas: SchemasSpec = Field(default_factory=SchemasSpec)
    validation: dict[str, ValidationSpec] = Field(default_factory=dict)
    post_process: list[PostProcessSpec] = Field(default_factory=list)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    prices: str | None = None
    """octopipe: a price file inside the folder (``core/price_file.py``) that overrides or adds
    to the price database for this pipeline's runs."""

    @field_validator("validation", mode="before")
    @classmethod
    def _null_validation_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value
