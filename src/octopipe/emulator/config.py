"""Emulator settings: latency, rate limits, faults, answers.

Guarantees: an ``EmulatorConfig`` is validated when built (unknown fault kinds, probabilities
outside [0, 1] or summing above 1 raise ``ValueError``), so a running emulator never meets a
setting it does not understand. ``parse_fault`` reads the CLI form ``KIND=PROBABILITY``.

The ``batch_*`` fields reproduce the batch APIs' failure modes; each is off by default. How
every vendor renders them is described in ``emulator.batch_faults``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from octopipe.emulator.answers import AnswerFn

# Status faults answer with the vendor's error body for that status. "429" is an injected
# rate limit (with Retry-After), "quota" the vendor's quota/billing-exhausted error, "hang"
# holds the connection until the client gives up, "malformed" answers 200 with broken JSON
# in the answer's text, "shapeless" answers 200 (usage included: billed) without the part the
# API promises (OpenAI: a choice without ``message``; Anthropic: no ``content``; Gemini: a
# candidate without ``content``).
STATUS_FAULTS = ("400", "401", "403", "429", "500", "503", "529")
FAULT_KINDS = (*STATUS_FAULTS, "quota", "hang", "malformed", "shapeless")
NO_FAULT = "ok"
VENDORS = ("openai", "anthropic", "gemini")
# Per-request faults inside a batch: "failed" is a per-line 500, "400" a per-line invalid
# request, "dropped" a line silently missing from the results.
LINE_FAULT_KINDS = ("failed", "400", "dropped")
# How a cut results download ends (see ``EmulatorConfig.batch_truncate_style``).
TRUNCATE_STYLES = ("clean", "abort")
# Faults a batch-create call can meet (the realtime statuses, quota exhaustion, a hang).
SUBMIT_FAULT_KINDS = (*STATUS_FAULTS, "quota", "hang")


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulator behaves. Every field has a harmless default (instant, no faults)."""

    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port."""
    latency_ms: float = 0.0
    """Added before every answer (faults included, except rate-limit refusals)."""
    jitter_ms: float = 0.0
    """Uniform extra latency in ``[0, jitter_ms]``."""
    rpm: int | None = None
    """Requests accepted per (vendor, model) per sliding window; ``None`` is unlimited."""
    rpm_by_model: Mapping[str, int] = field(default_factory=dict)
    """Per-model overrides of ``rpm``, keyed by model name."""
    rpm_window_s: float = 60.0
    account_rpm: int | None = None
    """Requests per window the whole account (per vendor) accepts, whatever the model; the
    client is not told but reads it from the rate-limit headers (``emulator.account_limits``)."""
    account_tpm: int | None = None
    """Tokens (prompt + completion, as answered) per window the account accepts, per vendor."""
    faults: Mapping[str, float] = field(default_factory=dict)
    """Fault kind -> probability per request, drawn from a generator seeded with ``seed``."""
    fault_schedule: tuple[str, ...] = ()
    """Faults for the first requests in order (``"ok"`` for none); probabilities apply after."""
    retry_after_s: float = 1.0
    """Retry-After sent with injected 429s."""
    hang_max_s: float = 300.0
    """A hung request is released after this long, or when the emulator stops."""
    flex_unavailable_rate: float = 0.0
    """Share of flex-tier requests (OpenAI ``service_tier: "flex"``) answered with the 429
    "resource unavailable" flex sends when it has no capacity, drawn from a generator seeded
    with ``seed`` (0: flex always has capacity; 1: never)."""
    cached_input_tokens: int = 0
    """Reported as cached prompt tokens in every answer (capped at the prompt's size)."""
    cache_write_tokens: int = 0
    """Reported as prompt tokens written to the cache in every answer (capped at the
    prompt's uncached part; Anthropic ``cache_creation_input_tokens``, OpenAI
    ``prompt_tokens_details.cache_write_tokens``; Gemini reports none)."""
    api_key: str | None = None
    """When set, requests with another key get the vendor's authentication error."""
    answer_fn: AnswerFn | None = None
    """Supplies answers; the default is ``answers.default_answer``."""
    seed: int = 0
    max_recorded_requests: int = 1000
    batch_delay_s: float = 0.0
    """Batch jobs complete this many seconds after creation (0: as soon as they are read).
    Requests "finish" evenly over that time, in input order: that is what a job that ends
    early (expired, cancelled) delivers."""
    batch_expire_s: float | None = None
    """A job still running this many seconds after creation ends ``expired``, with the answers
    of the requests finished by then; ``None`` (or a value >= ``batch_delay_s``): never."""
    batch_line_faults: Mapping[str, float] = field(default_factory=dict)
    """Line fault kind (``LINE_FAULT_KINDS``) -> probability per request of a batch, drawn from
    a generator seeded with (``seed``, job id, line index): the same job gets the same faults."""
    batch_line_fault_schedule: tuple[str, ...] = ()
    """Line faults for the first requests across all batch jobs, in creation then input order
    (``"ok"`` for none); ``batch_line_faults`` applies after."""
    batch_expire_jobs: tuple[bool, ...] = ()
    """With ``batch_expire_s``: which jobs (by creation order) may expire; empty means all."""
    batch_fail_schedule: tuple[bool, ...] = ()
    """``True`` at position N: the Nth created batch job fails as a whole when it would have
    completed (jobs past the tuple do not)."""
    batch_truncate_schedule: tuple[bool, ...] = ()
    """``True`` at position N: the first ``batch_truncate_downloads`` downloads of the results
    of the Nth created batch job are cut in the middle of their last line, like an interrupted
    download; later downloads are whole. (OpenAI: the output file; the others: the results.)"""
    batch_truncate_downloads: int = 1
    """How many downloads of a scheduled job's results are cut before one arrives whole."""
    batch_truncate_rate: float = 0.0
    """Probability that any one results download (any job, any file) is cut, drawn from a
    generator seeded with (``seed``, job id, file, download number)."""
    batch_truncate_style: str = "clean"
    """How a cut download ends: ``clean`` (the body simply stops, its Content-Length says so:
    a proxy or a server that gave up) or ``abort`` (Content-Length announces the whole file and
    the connection closes early, as when a network drops)."""
    batch_submit_faults: tuple[str, ...] = ()
    """Faults for the next batch-create calls only, in order (``"ok"`` for none), e.g.
    ``("429", "429", "ok")``; consumed before ``fault_schedule`` and ``faults``."""

    def __post_init__(self) -> None:
        for kind in (*self.faults, *self.fault_schedule):
            check_fault_kind(kind, allow_ok=True)
        if any(not 0.0 <= p <= 1.0 for p in self.faults.values()):
            raise ValueError("fault probabilities must be between 0 and 1")
        if sum(self.faults.values()) > 1.0 + 1e-9:
            raise ValueError("fault probabilities must not add up to more than 1")
        for name in ("rpm", "account_rpm", "account_tpm"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.batch_delay_s < 0:
            raise ValueError("batch_delay_s must not be negative")
        if self.batch_expire_s is not None and self.batch_expire_s <= 0:
            raise ValueError("batch_expire_s must be positive (or None)")
        self._check_batch_faults()
        if self.rpm_window_s <= 0 or self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("rpm_window_s must be positive, latencies non-negative")

    def _check_batch_faults(self) -> None:
        for kind in (*self.batch_line_faults, *self.batch_line_fault_schedule):
            if kind not in LINE_FAULT_KINDS and kind != NO_FAULT:
                raise ValueError(
                    f"unknown batch line fault {kind!r}; known: {', '.join(LINE_FAULT_KINDS)}"
                )
        probabilities = self.batch_line_faults.values()
        if any(not 0.0 <= p <= 1.0 for p in probabilities) or sum(probabilities) > 1.0 + 1e-9:
            raise ValueError("batch line fault probabilities must be in [0, 1] and add up to <= 1")
        if self.batch_truncate_downloads < 1:
            raise ValueError("batch_truncate_downloads must be at least 1")
        if not 0.0 <= self.batch_truncate_rate <= 1.0:
            raise ValueError("batch_truncate_rate must be between 0 and 1")
        if self.batch_truncate_style not in TRUNCATE_STYLES:
            raise ValueError(
                f"unknown batch_truncate_style {self.batch_truncate_style!r}; "
                f"known: {', '.join(TRUNCATE_STYLES)}"
            )
        for kind in self.batch_submit_faults:
            if kind not in SUBMIT_FAULT_KINDS and kind != NO_FAULT:
                raise ValueError(
                    f"unknown batch submit fault {kind!r}; known: {', '.join(SUBMIT_FAULT_KINDS)}"
                )

    def rpm_for(self, model: str) -> int | None:
        return self.rpm_by_model.get(model, self.rpm)


def check_fault_kind(kind: str, *, allow_ok: bool = False) -> str:
    if kind in FAULT_KINDS or (allow_ok and kind == NO_FAULT):
        return kind
    raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")


def parse_fault(text: str) -> tuple[str, float]:
    """``"500=0.1"`` -> ``("500", 0.1)``; a bare kind means probability 1."""
    kind, _, probability = text.partition("=")
    try:
        value = float(probability) if probability else 1.0
    except ValueError:
        raise ValueError(f"bad fault {text!r}: expected KIND=PROBABILITY") from None
    return check_fault_kind(kind.strip()), value
