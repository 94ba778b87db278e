"""A unit's record as one JSONL line: encoded, or joined from the texts the ledger stores.

An export line is ``{"unit_id": ..., **visible(record)}`` in compact JSON with non-ASCII kept
(`line`). A record is its fields merged with its steps' outputs, each stored as a JSON text
written the same way (``store/codec.dumps``: same separators, same escaping, same number
formatting). When those documents share no key, hold no hidden field and ``unit_id`` is
either absent or the first field, the merged record's encoding is the texts' members joined
in order: `joined_line` builds it so, without decoding into one dict and encoding it again
(about half of an export's work). For anything else it returns None and the caller encodes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring
from typing import Any

from octopipe.core.fields import HIDDEN_FIELDS, visible

_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode


def line(record: dict[str, Any]) -> str:
    """One JSONL line: ``record`` in compact JSON, non-ASCII kept, then a newline."""
    return _ENCODE(record) + "\n"


def record_line(unit_id: str, parts: Sequence[tuple[dict[str, Any], str]]) -> str:
    """The export line of the unit whose record merges ``parts`` (documents with their
    stored texts, in merge order): `joined_line` when it applies, else merged and encoded."""
    joined = joined_line(unit_id, parts)
    if joined is not None:
        return joined
    record: dict[str, Any] = {}
    for document, _ in parts:
        record.update(document)
    return line({"unit_id": unit_id, **visible(record)})


def joined_line(unit_id: str, parts: Sequence[tuple[dict[str, Any], str]]) -> str | None:
    """``line({"unit_id": unit_id, **visible(merged parts)})`` built from the stored texts,
    or None when the parts share a key, hold a hidden field, or hold ``unit_id`` anywhere
    but first. Each text must be its document as ``store/codec.dumps`` writes it."""
    keys: set[str] = set()
    count = 0
    for document, _ in parts:
        count += len(document)
        keys.update(document)
    if len(keys) != count or not keys.isdisjoint(HIDDEN_FIELDS):
        return None
    members = ",".join(text[1:-1] for document, text in parts if document)
    if "unit_id" not in keys:
        head = '{"unit_id":' + encode_basestring(unit_id)
        return head + ("," + members if members else "") + "}\n"
    if next(iter(parts[0][0]), None) != "unit_id":
        return None
    return "{" + members + "}\n"
