"""One module per emulated vendor; ``VENDORS`` maps vendor names to their handlers."""

from __future__ import annotations

from octopipe.emulator.vendors.anthropic import AnthropicVendor
from octopipe.emulator.vendors.base import Vendor
from octopipe.emulator.vendors.gemini import GeminiVendor
from octopipe.emulator.vendors.openai import OpenAIVendor

VENDORS: dict[str, Vendor] = {
    "openai": OpenAIVendor(),
    "anthropic": AnthropicVendor(),
    "gemini": GeminiVendor(),
}

__all__ = ["VENDORS", "AnthropicVendor", "GeminiVendor", "OpenAIVendor", "Vendor"]
