"""Bookkeeping fields of a unit record, and the record without them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HIDDEN_FIELDS = frozenset({"_metadata", "_raw_text"})
"""Fields kept for bookkeeping: expressions do not see them, exports leave them out."""


def visible(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without bookkeeping fields (what exports and expressions see)."""
    return {k: v for k, v in record.items() if k not in HIDDEN_FIELDS}
