"""No import circle in ``src/``: the module graph, function-level imports included, is acyclic.

An edge ``a -> b`` is any ``import``/``from ... import`` of an ``octopipe`` module anywhere in
``a`` (module level, inside a function, under ``TYPE_CHECKING``), resolved to the module that
exists (``from octopipe.x import y`` is ``octopipe.x.y`` when that is a module, else
``octopipe.x``). Importing a package's submodule also runs the package's ``__init__``, but
that is not an edge of the importer: a package re-exporting its own modules is no circle.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    known = {module_name(p): p for p in SRC.joinpath("octopipe").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
                    break
        graph[name] = edges
    return graph


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    # catalog builds adapters inside functions; the emulator's modules import each other
    assert "octopipe.providers.openai_adapter" in graph["octopipe.providers.catalog"]
    assert "octopipe.providers.base" in graph["octopipe.providers.openai_adapter"]
    assert len(graph) > 100


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules, the first repeated at the end), or None."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def test_src_has_no_import_cycle() -> None:
    assert cycle_in(import_graph()) is None


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ],
)
def test_the_cycle_check_tells_a_circle_from_a_chain(
    graph: dict[str, set[str]], cycle: bool
) -> None:
    assert (cycle_in(graph) is not None) is cycle
