"""Provider adapters behind one protocol, and the catalog that says which serves which name.

``octopipe.providers.catalog`` is the catalog module (its ``catalog()`` is not re-exported
here, so the name stays the module's). Importing this package is cheap: the vendor SDKs are imported only when an adapter is built
(``make_provider``, ``make_batch_provider``) or an adapter module is imported directly.
"""

from octopipe.providers.base import (
    LLMRequest,
    LLMResponse,
    ProviderSettings,
    RealtimeProvider,
    Usage,
)
from octopipe.providers.catalog import (
    ProviderSpec,
    make_batch_provider,
    make_provider,
    resolve_api_key,
)

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "ProviderSettings",
    "ProviderSpec",
    "RealtimeProvider",
    "Usage",
    "make_batch_provider",
    "make_provider",
    "resolve_api_key",
]
