"""Load YAML and remember where every key came from.

``load_yaml_with_positions(text, file)`` returns the plain Python data *and* a ``Positions``
index mapping each key path (a tuple of mapping keys and sequence indexes) to its 1-based line.
Config errors use it to name the line of the key a problem is about, or of the nearest parent
that exists (a missing key is reported at the mapping that should hold it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from octopipe.errors import ConfigError

KeyPath = tuple[str | int, ...]


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
    """Parse one YAML document; raise ``ConfigError`` naming the line on a syntax error."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError.single(file, f"invalid YAML: {problem}", line=line) from exc
    finally:
        loader.dispose()
    if node is None:
        return None, Positions()
    positions = Positions()
    _index(node, (), positions)
    positions.lines.setdefault((), node.start_mark.line + 1)
    return data, positions


def _index(node: yaml.Node, path: KeyPath, positions: Positions) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            positions.lines[child] = key_node.start_mark.line + 1
            _index(value_node, child, positions)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions.lines[child] = item.start_mark.line + 1
            _index(item, child, positions)
