"""Load YAML from a pipeline folder under guard, and remember where every key came from.

A pipeline folder is untrusted input, so YAML is composed by :class:`GuardedLoader`, which
refuses, naming the line:

- **alias bombs**: each alias counts the values it stands for (its anchored value, expanded);
  past :data:`MAX_ALIAS_EXPANSION` values (or :data:`ALIAS_FACTOR` times the values written
  so far, for big files) the document is refused *before* anything is built from it;
- **recursive aliases** (``&a [*a]``, a merge key ``<<: *a`` inside ``a``): refused outright;
- **nesting** deeper than :data:`MAX_NESTING` levels;
- **duplicate keys** in one mapping (each reported, with the line of the first).

Parsing is libyaml's (when installed); composing is PyYAML's Python composer with the checks
above, so every node is seen once. Constructing is ``SafeConstructor``'s.

``load_yaml_with_positions(text, file)`` returns the plain Python data *and* a ``Positions``
index mapping each key path (a tuple of mapping keys and sequence indexes) to its 1-based line.
Config errors use it to name the line of the key a problem is about, or of the nearest parent
that exists (a missing key is reported at the mapping that should hold it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from octopipe.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]

MAX_ALIAS_EXPANSION = 100_000
"""Values aliases may add to a small document (each alias counts its value, expanded)."""
ALIAS_FACTOR = 10
"""A big document's aliases may add this many times the values written in it."""
MAX_NESTING = 100
"""Deepest nesting of mappings and sequences accepted."""

try:  # libyaml's parser when PyYAML was built with it; the checks are the same either way
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - depends on how PyYAML was installed
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _Refused(yaml.YAMLError):
    """A document the guard will not compose: why, and where."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.problem_mark = mark


class _GuardedComposer(Composer):
    """PyYAML's composer, counting alias expansion, refusing cycles, deep nesting, duplicates."""

    if TYPE_CHECKING:  # provided by the parser this composer is mixed with

        def check_event(self, *choices: type) -> bool: ...
        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self._written = 0  # nodes composed from the text (an alias counts once)
        self._extra = 0  # values aliases stand for beyond those
        self._sizes: dict[int, int] = {}
        self._path: list[Any] = []
        self.duplicates: list[tuple[ScalarNode, ScalarNode, KeyPath]] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._written += 1
        if self.check_event(AliasEvent):
            return self._alias()
        if len(self._path) >= MAX_NESTING:
            event = self.peek_event()
            raise _Refused(
                f"values are nested more than {MAX_NESTING} levels deep", event.start_mark
            )
        self._path.append(index)
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def _alias(self) -> Any:
        event = self.peek_event()
        target = self.anchors.get(event.anchor)
        if target is None:
            return super().compose_node(None, 0)  # PyYAML's "undefined alias" error
        if target.end_mark is None:  # a sequence or mapping still being composed
            line = target.start_mark.line + 1
            raise _Refused(
                f"recursive alias *{event.anchor}: the value anchored on line {line} "
                "contains itself",
                event.start_mark,
            )
        self._extra += _expanded_size(target, self._sizes)
        budget = max(MAX_ALIAS_EXPANSION, ALIAS_FACTOR * self._written)
        if self._extra > budget:
            raise _Refused(
                f"aliases expand to more than {budget:,} values (an alias bomb?); write the "
                "values out or use fewer aliases",
                event.start_mark,
            )
        self.get_event()
        return target

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], ScalarNode] = {}
        for key, _ in node.value:
            if not isinstance(key, ScalarNode):
                continue
            seen = first.setdefault((key.tag, key.value), key)
            if seen is not key:
                self.duplicates.append((key, seen, self.key_path(key)))
        return node

    def key_path(self, key: ScalarNode) -> KeyPath:
        """Path of ``key`` inside the mapping being composed (top of ``_path``)."""
        parts: list[str | int] = []
        for index in self._path[1:]:
            if isinstance(index, int):
                parts.append(index)
            elif isinstance(index, ScalarNode):
                parts.append(index.value)
        return (*parts, key.value)


def _expanded_size(node: Node, sizes: dict[int, int]) -> int:
    """Values ``node`` stands for with every alias inside it expanded (memoised, iterative)."""
    stack = [node]
    while stack:
        current = stack[-1]
        if id(current) in sizes:
            stack.pop()
            continue
        children = _children(current)
        pending = [c for c in children if id(c) not in sizes]
        if pending:
            stack.extend(pending)
            continue
        sizes[id(current)] = 1 + sum(sizes[id(c)] for c in children)
        stack.pop()
    return sizes[id(node)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class GuardedLoader(_GuardedComposer, _Parser, SafeConstructor, Resolver):
    """A safe loader whose composer refuses alias bombs, cycles, deep nesting, duplicates."""

    def __init__(self, stream: str) -> None:
        _Parser.__init__(self, stream)
        _GuardedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def load_yaml_node(
    text: str, file: str, loader_class: type[GuardedLoader] = GuardedLoader
) -> tuple[Any, Node | None]:
    """Compose and construct one YAML document under guard; ``ConfigError`` naming the line."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if loader.duplicates:
            duplicates = sorted(loader.duplicates, key=lambda dup: dup[0].start_mark.line)
            raise ConfigError([_duplicate_problem(file, *dup) for dup in duplicates])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        if isinstance(exc, _Refused):
            raise ConfigError.single(file, exc.message, line=line) from None
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if isinstance(exc, ComposerError) and context and context_mark is not None:
            problem = f"{context} on line {context_mark.line + 1}, {problem} here"
        raise ConfigError.single(file, f"invalid YAML: {problem}", line=line) from exc
    except RecursionError:  # only without libyaml, which bounds nesting itself
        raise ConfigError.single(file, "values are nested too deeply") from None
    finally:
        loader.dispose()
    return data, node


def _duplicate_problem(
    file: str, key: ScalarNode, first: ScalarNode, path: KeyPath
) -> ConfigProblem:
    return ConfigProblem(
        file,
        key.start_mark.line + 1,
        format_path(path),
        f"duplicate key {key.value!r} (first on line {first.start_mark.line + 1})",
    )


@dataclass
class Positions:
    """Key path -> 1-based line number."""

    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path`` or of its closest recorded ancestor."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def format_path(path: Sequence[str | int]) -> str:
    """``("pipeline", "steps", 0, "name")`` -> ``pipeline.steps[0].name``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml_with_positions(text: str, file: str) -> tuple[Any, Positions]:
    """Parse one YAML document under guard; raise ``ConfigError`` naming the line."""
    data, node = load_yaml_node(text, file)
    if node is None:
        return None, Positions()
    positions = Positions()
    _index(node, (), positions)
    positions.lines.setdefault((), node.start_mark.line + 1)
    return data, positions


def _index(node: Node, path: KeyPath, positions: Positions) -> None:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node)
            child = (*path, key)
            positions.lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, positions)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions.lines[child] = item.start_mark.line + 1
            _index(item, child, positions)
