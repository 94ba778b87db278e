"""Provider adapters behind one protocol, plus the local emulator (``providers.emulator``).

Importing this package is cheap: the vendor SDKs are imported only by ``make_provider`` (or by
importing an adapter module directly).
"""

from octopipe.providers.base import (
    LLMRequest,
    LLMResponse,
    ProviderSettings,
    RealtimeProvider,
    Usage,
    make_provider,
    resolve_api_key,
)

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "ProviderSettings",
    "RealtimeProvider",
    "Usage",
    "make_provider",
    "resolve_api_key",
]
