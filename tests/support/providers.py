"""Builders shared by the provider tests (``from support.providers import ...``)."""

from __future__ import annotations

from typing import Any

from octopipe.providers.base import LLMRequest

PROVIDERS = ("openai", "openai-compatible", "anthropic", "gemini")
SECRET_KEY = "sk-octopipe-test-SECRET-0123456789"
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["pass", "fail"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
        "reasons": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 1},
    },
    "required": ["verdict", "score", "reasons"],
    "additionalProperties": False,
}


def make_request(**overrides: Any) -> LLMRequest:
    """A realistic request with a short timeout; any field can be overridden."""
    fields: dict[str, Any] = {
        "unit_id": "unit-0001",
        "step": "judge",
        "model": "emu-model",
        "prompt": "Judge this short story about a lighthouse keeper.",
        "timeout_s": 5.0,
    }
    fields.update(overrides)
    return LLMRequest(**fields)
