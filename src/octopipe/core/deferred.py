"""A unit's input record read only when something reads it.

Checking a batch's answers rarely needs the units' inputs: the rules of most steps read only
the fields the answer itself holds (`AnswerValidator` knows which fields its checks read). A
`DeferredRecord` stands for an input record until then: the first read of any of its fields
calls its loader (the collector reads a whole slice's records from the ledger at once), and
every read after that sees the same record. `resolved` gives the record itself, for code that
merges it (a plain ``dict`` merge of a mapping that is not a dict goes key by key).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Record = Mapping[str, Any]


class DeferredRecord(Mapping[str, Any]):
    """The record ``load()`` returns, loaded at the first read."""

    __slots__ = ("_load", "_record")

    def __init__(self, load: Callable[[], Record]) -> None:
        self._load = load
        self._record: Record | None = None

    def value(self) -> Record:
        if self._record is None:
            self._record = self._load()
        return self._record

    @property
    def loaded(self) -> bool:
        return self._record is not None

    def __getitem__(self, key: str) -> Any:
        return self.value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value())

    def __len__(self) -> int:
        return len(self.value())

    def __repr__(self) -> str:
        return f"DeferredRecord({self._record!r})" if self.loaded else "DeferredRecord(<unread>)"


def resolved(record: Record) -> Record:
    """``record`` itself, or what a `DeferredRecord` stands for (read now if not yet)."""
    return record.value() if type(record) is DeferredRecord else record


__all__ = ["DeferredRecord", "resolved"]
