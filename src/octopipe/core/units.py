"""Units: the things a pipeline runs its steps over, generated from the items file.

Strategies (``processing.strategy``), with Octobatch's unit-id conventions:

- ``direct``: each item (a mapping) is one unit; its keys become the unit's fields. The id is
  the item's ``items.name_field`` value, else its ``id``, else its ``name``.
- ``permutation``: ordered k-permutations without replacement of one list, k = number of
  positions; each position field holds a whole item; the id is the items' names (same
  ``name_field``/``id``/``name`` rule, or the item itself when it is a string or number)
  joined by ``-``.
- ``cross_product``: the Cartesian product of the lists ``items_file[source_key]`` (default
  ``source_key``: position name + ``s``); names from the position's ``name_field``, else the
  items' ``name_field``, then ``id``, then ``name``; joined by ``-``. ``items.key`` is not used
  (as in Octobatch).

Names are sanitized (space -> ``_``, ``/`` -> ``-``); a name or id holding a control or
format character (newline, tab, bidi override, zero-width space) is refused, naming the item.
``repeat: N`` clones every base unit N times as ``<id>__repNNNN`` with ``_repetition_id`` and
``_repetition_seed``, interleaved (all base units for repetition 0, then all for 1, ...) so that
``max_units`` samples every item; the base stream is generated again for each repetition
instead of being stored. Indexes are padded to 4 digits (fan-out children ``__fanNNN``: 3) and
widen past that (``__rep10000``), exactly as Octobatch writes them, so ids of existing runs are
reproduced.

**Streaming.** :func:`iter_units` holds at most the permutation/cross-product lists (small by
nature) and, for ``direct``, one compact 8-byte hash per id for duplicate detection: a
million-item JSONL or CSV file is never held in memory.

**Duplicate ids are an error** (a ``ConfigError`` naming the id and the items file):

- ``direct``: every id of the first repetition goes into :class:`_IdSet` (64-bit hashes in an
  array, ~16-32 bytes per id whatever its length); a hash hit is confirmed by re-reading the
  items before it, so the check is exact. The error comes when the stream reaches the
  duplicate; ids of later repetitions are unique by construction.
- ``permutation``/``cross_product``: checked before the first unit: within each position's
  list the sanitized names must be unique (a duplicate name there always produces a duplicate
  id, which the error names). When no name contains ``-`` that is also sufficient, because an
  id then splits back into its parts. When one does (``a-b`` + ``c`` vs ``a`` + ``b-c``), the
  produced ids are also checked exhaustively as for ``direct``, up to
  :data:`EXHAUSTIVE_ID_CHECK_LIMIT` units; beyond it the run store's primary key is the guard.

Nested values (item dicts) are shared between the units that contain them: treat
``Unit.fields`` as read-only.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import unicodedata
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from octopipe.core import items as items_io
from octopipe.core.config_models import PositionSpec, ProcessingSpec
from octopipe.core.limits import Limits, current_limits, too_many_units
from octopipe.core.yamlpos import format_path
from octopipe.errors import ConfigError, UsageError

EXHAUSTIVE_ID_CHECK_LIMIT = 2_000_000
"""Above this many units, ambiguous permutation/cross-product ids are left to the store's key."""

_NAME_FALLBACKS = ("id", "name")


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit: its id and its fields (which include ``unit_id``)."""

    id: str
    fields: dict[str, Any]


# --- public API -------------------------------------------------------------------------------


def iter_units(
    processing: ProcessingSpec,
    items_path: Path,
    *,
    max_units: int | None = None,
    repeat: int | None = None,
    limits: Limits | None = None,
) -> Iterator[Unit]:
    """Stream the units of a pipeline, in their final order.

    ``repeat`` overrides ``processing.repeat``; ``max_units`` truncates the final stream.
    A pipeline making more units than ``limits.max_units`` (after ``max_units``) is refused
    by this call, except for a streamed ``direct`` file without repeat, which is not counted
    here (``count_units`` is the check before a run). Problems with the items file as a whole
    are raised by this call; a bad item of a streamed
    ``direct`` file, or a duplicate id there, is raised when the iteration reaches it.
    """
    repeats = _repeats(processing, repeat)
    limit = _limit(max_units)
    plan = _plan(processing, items_path)
    if plan.count_is_cheap or repeats > 1:
        _check_total(plan.count(), repeats, limit, repeat is not None, limits)
    stream = _repeated(plan, repeats)
    return stream if limit is None else itertools.islice(stream, limit)


def count_units(
    processing: ProcessingSpec,
    items_path: Path,
    *,
    max_units: int | None = None,
    repeat: int | None = None,
    limits: Limits | None = None,
) -> int:
    """How many units :func:`iter_units` yields, computed without generating them.

    ``n``, ``nPk`` or the product of the list lengths, times the repeat, capped by
    ``max_units``. A streamed ``direct`` file is counted by lines (JSONL) or rows (CSV) without
    typing its items, so per-item problems are left to :func:`iter_units`. A count over
    ``limits.max_units`` is refused (``ConfigError`` at ``processing.repeat`` or the items, or
    ``UsageError`` when ``repeat`` was given).
    """
    repeats = _repeats(processing, repeat)
    limit = _limit(max_units)
    return _check_total(
        _plan(processing, items_path).count(), repeats, limit, repeat is not None, limits
    )


def fan_out_children(
    parent: Unit, field: str, child_field: str | None, elements: Sequence[Any]
) -> list[Unit]:
    """One child per element: ``<parent>__fanNNN``, parent fields + the element.

    The element goes under ``child_field`` (default: ``field``, replacing the array); children
    also get ``_fan_index`` (from 0) and ``_fan_parent_id``.
    """
    key = child_field or field
    children: list[Unit] = []
    for index, element in enumerate(elements):
        child_id = f"{parent.id}__fan{index:03d}"
        fields = dict(parent.fields)
        fields[key] = element
        fields["_fan_index"] = index
        fields["_fan_parent_id"] = parent.id
        fields["unit_id"] = child_id
        children.append(Unit(child_id, fields))
    return children


def sanitize(name: str) -> str:
    """A name as it appears in unit ids: spaces become ``_`` and slashes ``-``."""
    return name.replace(" ", "_").replace("/", "-")


def repetition_seed(base_id: str, repetition: int) -> int:
    """Octobatch's ``_repetition_seed``: the low 31 bits of sha256(base id), plus the index.

    Octobatch computes ``int(hexdigest, 16) & 0x7FFFFFFF``, i.e. from the *last* bytes of the
    digest; this is the same value. Kept so Octobatch-era expressions that read it keep their
    values; octopipe's own random streams are seeded from the unit id and the step.
    """
    digest = hashlib.sha256(base_id.encode("utf-8")).digest()
    return (int.from_bytes(digest[-4:], "big") & 0x7FFFFFFF) + repetition


# --- repetition ---------------------------------------------------------------------------------


class _Plan(Protocol):
    count_is_cheap: bool
    """Whether ``count`` is arithmetic (no pass over a streamed file)."""

    def count(self) -> int: ...

    def units(self, check_ids: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, fields) of each base unit; fields are fresh dicts the caller may update."""
        ...


_CACHED_BASE_UNITS = 10_000  # base units kept in memory when repeating (Monte Carlo pipelines)


def _repeated(plan: _Plan, repeats: int) -> Iterator[Unit]:
    if repeats == 1:
        for unit_id, fields in plan.units(True):
            yield Unit(unit_id, fields)
        return
    if plan.count() <= _CACHED_BASE_UNITS:
        yield from _repeated_small(plan, repeats)
        return
    for rep in range(repeats):
        suffix = f"__rep{rep:04d}"
        for base_id, fields in plan.units(rep == 0):
            unit_id = base_id + suffix
            fields["unit_id"] = unit_id
            fields["_repetition_id"] = rep
            fields["_repetition_seed"] = repetition_seed(base_id, rep)
            yield Unit(unit_id, fields)


def _repeated_small(plan: _Plan, repeats: int) -> Iterator[Unit]:
    """Repeats of a small base list: generate and hash the base units once, copy per repeat."""
    base = [(uid, fields, repetition_seed(uid, 0)) for uid, fields in plan.units(True)]
    for rep in range(repeats):
        suffix = f"__rep{rep:04d}"
        for base_id, base_fields, seed0 in base:
            unit_id = base_id + suffix
            fields = dict(base_fields)
            fields["unit_id"] = unit_id
            fields["_repetition_id"] = rep
            fields["_repetition_seed"] = seed0 + rep
            yield Unit(unit_id, fields)


def _check_total(
    base: int, repeats: int, max_units: int | None, repeat_given: bool, limits: Limits | None
) -> int:
    """The number of units made (capped by ``max_units``), refused past the unit limit."""
    total = base * repeats
    made = total if max_units is None else min(total, max_units)
    problem = too_many_units(made, base, repeats, limits or current_limits())
    if problem is None:
        return made
    if repeat_given:
        raise UsageError(problem)
    key = "processing.repeat" if repeats > 1 else "processing.items.source"
    raise ConfigError.single("config.yaml", problem, key_path=key)


def _repeats(processing: ProcessingSpec, repeat: int | None) -> int:
    repeats = processing.repeat if repeat is None else repeat
    if repeats < 1:
        raise UsageError(f"repeat must be at least 1, not {repeats}")
    return repeats


def _limit(max_units: int | None) -> int | None:
    if max_units is not None and max_units < 0:
        raise UsageError(f"max units must be 0 or more, not {max_units}")
    return max_units


def _plan(processing: ProcessingSpec, items_path: Path) -> _Plan:
    match processing.strategy:
        case "direct":
            return _DirectPlan(items_path, processing.items.key, processing.items.name_field)
        case "permutation":
            return _permutation_plan(processing, items_path)
        case "cross_product":
            return _cross_product_plan(processing, items_path)


# --- direct -------------------------------------------------------------------------------------


class _DirectPlan:
    def __init__(self, path: Path, key: str | None, name_field: str) -> None:
        self._path = path
        self._key = key
        self._name_field = name_field
        self._items: list[Any] | None = None
        self.count_is_cheap = items_io.items_format(path) not in items_io.STREAMED_FORMATS
        if not self.count_is_cheap:
            items_io.iter_items_with_lines(path, key)  # checks the file now, reads it later
        else:
            self._items = items_io.load_item_list(path, key)
            if not self._items:
                raise _items_error(path, "the list of items is empty", key_path=_prefix(key))

    def count(self) -> int:
        if self._items is None:
            return items_io.count_items(self._path, self._key)
        return len(self._items)

    def units(self, check_ids: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        add_id = _IdSet().add if check_ids else None
        name_field = self._name_field
        for index, (line, item) in enumerate(self._source()):
            value = item.get(name_field) if type(item) is dict else None
            if type(value) is str and value:  # the common case, inlined: this loop is hot
                unit_id = value.replace(" ", "_").replace("/", "-")
            else:
                unit_id = self._id_of(index, line, item)
            if not unit_id.isprintable() and (bad := unprintable(unit_id)) is not None:
                raise self._item_error(index, line, f"has the unit id {unit_id!r}, {bad}")
            if add_id is not None and not add_id(unit_id):
                self._confirm_duplicate(unit_id, index, line)
            fields = {"unit_id": unit_id, **item}
            fields["unit_id"] = unit_id
            yield unit_id, fields

    def _source(self) -> Iterator[tuple[int | None, Any]]:
        if self._items is None:
            return items_io.iter_items_with_lines(self._path, self._key)
        return ((None, item) for item in self._items)

    def _id_of(self, index: int, line: int | None, item: Any) -> str:
        if not isinstance(item, dict):
            raise self._item_error(
                index,
                line,
                f"is {items_io.describe_type(item)}; direct items must be mappings (their keys become the unit's "
                "fields)",
            )
        value = _raw_name(item, self._name_field)
        if value is None:
            raise self._item_error(index, line, _no_name_message(self._name_field))
        name = _name_text(value)
        if name is None:
            raise self._item_error(index, line, _bad_name_message(value))
        return sanitize(name)

    def _confirm_duplicate(self, unit_id: str, index: int, line: int | None) -> None:
        """Raise if an earlier item really has ``unit_id`` (else it was a hash collision)."""
        for earlier, (earlier_line, item) in enumerate(self._source()):
            if earlier >= index:
                return
            if self._id_of(earlier, earlier_line, item) == unit_id:
                if earlier_line is None:
                    earlier_line = items_io.item_line(self._path, self._key, earlier)
                first = _where(earlier, earlier_line)
                raise self._item_error(
                    index,
                    line,
                    f"has the unit id {unit_id!r} that {first} already has (duplicate unit id)",
                )

    def _item_error(self, index: int, line: int | None, message: str) -> ConfigError:
        if line is None:
            line = items_io.item_line(self._path, self._key, index)
        return _items_error(
            self._path,
            f"{_where(index, line)} {message}",
            line=line,
            key_path=(*_prefix(self._key), index),
        )


# --- permutation and cross_product --------------------------------------------------------------


class _CombinationPlan:
    """Units from index tuples over small in-memory lists, one list per position."""

    count_is_cheap = True

    def __init__(
        self,
        path: Path,
        positions: Sequence[str],
        lists: Sequence[list[Any]],
        names: Sequence[list[str]],
        *,
        permutation: bool,
    ) -> None:
        self._path = path
        self._positions = list(positions)
        self._lists = list(lists)
        self._names = list(names)
        self._permutation = permutation
        self._ambiguous = len(self._positions) > 1 and any(
            "-" in name for group in self._names for name in group
        )

    def count(self) -> int:
        if self._permutation:
            return math.perm(len(self._lists[0]), len(self._positions))
        return math.prod(len(group) for group in self._lists)

    def units(self, check_ids: bool) -> Iterator[tuple[str, dict[str, Any]]]:
        check = check_ids and self._ambiguous and self.count() <= EXHAUSTIVE_ID_CHECK_LIMIT
        seen = _IdSet() if check else None
        positions, lists, names = self._positions, self._lists, self._names
        for number, combo in enumerate(self._index_tuples()):
            unit_id = "-".join([group[i] for group, i in zip(names, combo, strict=True)])
            if seen is not None and not seen.add(unit_id):
                self._confirm_duplicate(unit_id, number)
            fields: dict[str, Any] = {"unit_id": unit_id}
            for position, group, i in zip(positions, lists, combo, strict=True):
                fields[position] = group[i]
            yield unit_id, fields

    def _index_tuples(self) -> Iterator[tuple[int, ...]]:
        if self._permutation:
            return itertools.permutations(range(len(self._lists[0])), len(self._positions))
        return itertools.product(*(range(len(group)) for group in self._lists))

    def _confirm_duplicate(self, unit_id: str, number: int) -> None:
        for earlier, combo in enumerate(self._index_tuples()):
            if earlier >= number:
                return
            if "-".join(group[i] for group, i in zip(self._names, combo, strict=True)) == unit_id:
                raise _items_error(
                    self._path,
                    f"duplicate unit id {unit_id!r}: names containing '-' join into the same "
                    "id for two different combinations; rename the items",
                )


def _permutation_plan(processing: ProcessingSpec, path: Path) -> _CombinationPlan:
    key = processing.items.key
    items = items_io.load_item_list(path, key)
    positions = _position_names(processing.positions)
    if not items:
        raise _items_error(path, "the list of items is empty", key_path=_prefix(key))
    if len(items) < len(positions):
        raise _items_error(
            path,
            f"permutation over {len(positions)} positions needs at least {len(positions)} "
            f"items; the list has {len(items)}",
            key_path=_prefix(key),
        )
    names = _names_of(path, items, processing.items.name_field, _prefix(key))
    clash = _first_repeat(names)
    if clash is not None:
        first, second = clash
        k = len(positions)
        chosen = [first, *[i for i in range(len(items)) if i != first][: k - 1]]
        example = "-".join(names[i] for i in chosen)
        raise _duplicate_name_error(path, items, names, _prefix(key), first, second, example)
    return _CombinationPlan(
        path, positions, [items] * len(positions), [names] * len(positions), permutation=True
    )


def _cross_product_plan(processing: ProcessingSpec, path: Path) -> _CombinationPlan:
    data = items_io.load_items(path)
    if not isinstance(data, dict):
        raise _items_error(
            path,
            "cross_product reads one list per position from a mapping (source_key -> list); "
            f"the items file holds {items_io.describe_type(data)}",
            line=items_io.key_line(path, ()),
        )
    positions = _position_names(processing.positions)
    lists: list[list[Any]] = []
    names: list[list[str]] = []
    for spec in processing.positions:
        source_key = spec.source_key or spec.name + "s"
        group = _source_list(path, data, source_key, spec.name)
        lists.append(group)
        names.append(
            _names_of(path, group, spec.name_field or processing.items.name_field, (source_key,))
        )
    for position, group_names in enumerate(names):
        clash = _first_repeat(group_names)
        if clash is not None:
            first, second = clash
            example = "-".join(
                group_names[first] if p == position else other[0] for p, other in enumerate(names)
            )
            source_key = processing.positions[position].source_key or positions[position] + "s"
            raise _duplicate_name_error(
                path, lists[position], group_names, (source_key,), first, second, example
            )
    return _CombinationPlan(path, positions, lists, names, permutation=False)


def _source_list(path: Path, data: dict[str, Any], source_key: str, position: str) -> list[Any]:
    if source_key not in data:
        keys = [str(k) for k in data]
        raise _items_error(
            path,
            f"no list {source_key!r} for position {position!r} (source_key, default: position "
            f"name + 's'); the items file has {', '.join(repr(k) for k in keys[:10])}",
            line=items_io.key_line(path, ()),
            key_path=(source_key,),
            hint=items_io.closest(source_key, keys),
        )
    group = data[source_key]
    if not isinstance(group, list):
        raise _items_error(
            path,
            f"{source_key!r} (position {position!r}) must be a list, not {items_io.describe_type(group)}",
            line=items_io.key_line(path, (source_key,)),
            key_path=(source_key,),
        )
    if not group:
        raise _items_error(
            path,
            f"{source_key!r} (position {position!r}) is empty",
            line=items_io.key_line(path, (source_key,)),
            key_path=(source_key,),
        )
    return group


def _position_names(positions: Sequence[PositionSpec]) -> list[str]:
    names = [spec.name for spec in positions]
    for index, name in enumerate(names):
        if name == "unit_id" or name in names[:index]:
            problem = "is reserved" if name == "unit_id" else "is used twice"
            raise ConfigError.single(
                "config.yaml",
                f"position name {name!r} {problem}",
                key_path=f"processing.positions[{index}].name",
            )
    return names


def _names_of(
    path: Path, items: list[Any], name_field: str, prefix: tuple[str | int, ...]
) -> list[str]:
    """Sanitized name of each item: its name field (dicts) or the item itself (scalars)."""
    names: list[str] = []
    for index, item in enumerate(items):
        value = _raw_name(item, name_field) if isinstance(item, dict) else item
        text = None if value is None else _name_text(value)
        if text is None:
            key_path = (*prefix, index)
            problem = (
                _no_name_message(name_field)
                if isinstance(item, dict) and value is None
                else _bad_name_message(value)
            )
            raise _items_error(
                path,
                f"item {index} of {_list_label(prefix)} {problem}",
                line=items_io.key_line(path, key_path),
                key_path=key_path,
            )
        name = sanitize(text)
        if not name.isprintable() and (bad := unprintable(name)) is not None:
            key_path = (*prefix, index)
            raise _items_error(
                path,
                f"item {index} of {_list_label(prefix)} has the name {name!r}, {bad}",
                line=items_io.key_line(path, key_path),
                key_path=key_path,
            )
        names.append(name)
    return names


def _duplicate_name_error(
    path: Path,
    items: list[Any],
    names: list[str],
    prefix: tuple[str | int, ...],
    first: int,
    second: int,
    example: str,
) -> ConfigError:
    key_path = (*prefix, second)
    return _items_error(
        path,
        f"duplicate unit id {example!r}: items {first} and {second} of {_list_label(prefix)} "
        f"have the same name {names[second]!r}",
        line=items_io.key_line(path, key_path),
        key_path=key_path,
    )


def _first_repeat(names: list[str]) -> tuple[int, int] | None:
    first_seen: dict[str, int] = {}
    for index, name in enumerate(names):
        earlier = first_seen.setdefault(name, index)
        if earlier != index:
            return earlier, index
    return None


# --- names and messages -------------------------------------------------------------------------


def _raw_name(item: dict[str, Any], name_field: str) -> Any:
    """The first usable of ``item[name_field]``, ``item["id"]``, ``item["name"]``, or None."""
    value = item.get(name_field)
    if value is not None and value != "":
        return value
    for fallback in _NAME_FALLBACKS:
        value = item.get(fallback)
        if value is not None and value != "":
            return value
    return None


def _name_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float):
        return str(value)
    return None


_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SPECIAL = {"\n": "a line feed", "\r": "a carriage return", "\t": "a tab"}


def unprintable(name: str) -> str | None:
    """Why ``name`` cannot be (part of) a unit id, or None.

    Ids appear in terminals, file names, logs and spreadsheets: control characters (newlines,
    tabs, NUL), format characters (bidi overrides and isolates, zero-width spaces) and line
    separators are refused; other Unicode, non-breaking spaces included, is fine.
    """
    for char in name:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            code = f"U+{ord(char):04X}"
            named = unicodedata.name(char, "")
            if char in _SPECIAL or not named:
                shown = f"{code} ({_SPECIAL.get(char, 'a control character')})"
            else:
                shown = f"{code} {named}"
            return f"which holds {shown}; ids must be printable text"
    return None


def _no_name_message(name_field: str) -> str:
    tried = ", ".join(repr(f) for f in dict.fromkeys((name_field, *_NAME_FALLBACKS)))
    return f"has no name for its unit id (tried {tried})"


def _bad_name_message(value: Any) -> str:
    return (
        f"has a name that is {items_io.describe_type(value)}; ids are built from strings or numbers"
    )


def _where(index: int, line: int | None) -> str:
    return f"item {index}" + ("" if line is None else f" (line {line})")


def _prefix(key: str | None) -> tuple[str | int, ...]:
    return () if key is None else (key,)


def _list_label(prefix: tuple[str | int, ...]) -> str:
    return f"{format_path(prefix)!r}" if prefix else "the items list"


def _items_error(
    path: Path,
    message: str,
    *,
    line: int | None = None,
    key_path: tuple[str | int, ...] = (),
    hint: str | None = None,
) -> ConfigError:
    return ConfigError.single(
        str(path), message, line=line, key_path=format_path(key_path), hint=hint
    )


# --- compact id set -----------------------------------------------------------------------------


class _IdSet:
    """A set of strings kept as 64-bit hashes in one array (open addressing, linear probing).

    ``add`` returns False when an equal *hash* is already present: the caller confirms the
    duplicate from the source (hash collisions are possible, if astronomically rare). Memory
    is 8 bytes per slot at a load factor of at most 1/2, whatever the length of the ids.
    """

    __slots__ = ("_mask", "_size", "_table")

    def __init__(self) -> None:
        self._mask = 1023
        self._size = 0
        self._table = array("q", [0]) * (self._mask + 1)

    def add(self, key: str) -> bool:
        digest = hash(key) or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        slot = digest & mask
        while True:
            present = table[slot]
            if present == 0:
                break
            if present == digest:
                return False
            slot = (slot + 1) & mask
        table[slot] = digest
        self._size += 1
        if self._size * 2 > mask:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._table
        mask = self._mask * 2 + 1
        table = array("q", [0]) * (mask + 1)
        for digest in old:
            if digest:
                slot = digest & mask
                while table[slot]:
                    slot = (slot + 1) & mask
                table[slot] = digest
        self._table, self._mask = table, mask
