"""How many requests go into one provider batch, and what a batch is expected to cost.

A batch is bounded by the smallest of: the provider's request-count limit, its byte limit
(``registry.yaml``, from the vendors' documentation), the pipeline's ``api.batch.max_requests``
/ ``max_bytes``, and ``processing.chunk_size`` (Octobatch's one-chunk-one-batch, kept as an
upper bound). Sizes are measured on the request as it will be serialised, with a margin for
the vendor's envelope, so a packed batch is never refused for its size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from octopipe.core.config_models import ApiSpec
from octopipe.core.costs import cost_usd, estimate_tokens
from octopipe.core.registry import Registry
from octopipe.providers.base import LLMRequest, Usage

# Bytes of JSON envelope per line beyond the prompt, system text and schema (custom_id, method,
# url, model, message roles, generation settings): measured at ~250 on the three vendors.
LINE_OVERHEAD_BYTES = 512
# Keep this share of a byte limit free: the estimate must never exceed the real size.
BYTES_MARGIN = 0.9
# What a first batch assumes an answer costs before any answer has been seen.
DEFAULT_ANSWER_TOKENS = 200


@dataclass(frozen=True)
class BatchLimits:
    max_requests: int
    max_bytes: int | None


def batch_limits(
    registry: Registry, provider: str, model: str, api: ApiSpec, chunk_size: int
) -> BatchLimits:
    limits = registry.limits(provider, model)
    counts = [chunk_size, api.batch.max_requests, limits.batch_max_requests]
    sizes = [api.batch.max_bytes, limits.batch_max_bytes]
    known_sizes = [int(s * BYTES_MARGIN) for s in sizes if s]
    return BatchLimits(
        max_requests=min(c for c in counts if c),
        max_bytes=min(known_sizes) if known_sizes else None,
    )


def request_bytes(request: LLMRequest) -> int:
    """An upper estimate of the request's size on the wire (UTF-8 JSON)."""
    size = len(request.prompt.encode()) + LINE_OVERHEAD_BYTES
    if request.system:
        size += len(request.system.encode())
    if request.schema is not None and request.structured_output:
        size += _schema_bytes(request.schema)
    return size + request.prompt.count('"') + request.prompt.count("\\")  # escapes


_SCHEMA_SIZES: dict[int, tuple[Any, int]] = {}


def _schema_bytes(schema: Any) -> int:
    """Serialised size of a step's schema, measured once per schema object."""
    known = _SCHEMA_SIZES.get(id(schema))
    if known is None or known[0] is not schema:
        known = (schema, len(json.dumps(schema, separators=(",", ":")).encode()))
        _SCHEMA_SIZES[id(schema)] = known
    return known[1]


def pack(sizes: list[int], limits: BatchLimits) -> int:
    """How many of the requests (in order) fit in one batch: at least one."""
    taken, total = 0, 0
    for size in sizes:
        if taken >= limits.max_requests:
            break
        if limits.max_bytes is not None and taken and total + size > limits.max_bytes:
            break
        taken += 1
        total += size
    return max(1, taken) if sizes else 0


@dataclass
class CostModel:
    """Expected batch cost: prompt tokens estimated from the text, answer tokens from the
    answers seen so far (``DEFAULT_ANSWER_TOKENS`` before the first)."""

    registry: Registry
    answers_seen: int = 0
    answer_tokens_seen: int = 0

    def observe(self, output_tokens: int) -> None:
        self.answers_seen += 1
        self.answer_tokens_seen += output_tokens

    def answer_tokens(self) -> int:
        if not self.answers_seen:
            return DEFAULT_ANSWER_TOKENS
        return max(1, round(self.answer_tokens_seen / self.answers_seen))

    def estimate(self, provider: str, model: str, requests: list[LLMRequest]) -> float | None:
        prompt = sum(estimate_tokens(r.prompt) + estimate_tokens(r.system or "") for r in requests)
        usage = Usage(prompt, self.answer_tokens() * len(requests))
        return cost_usd(self.registry, provider, model, usage, "batch")
