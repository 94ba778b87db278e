"""The layering of docs/ARCHITECTURE.md, enforced: who may import whom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "octopipe"
FORBIDDEN = {
    "core": (
        "octopipe.providers",
        "octopipe.store",
        "octopipe.engine",
        "octopipe.cli",
        "octopipe.tui",
        "octopipe.emulator",
    ),
    "store": (
        "octopipe.providers",
        "octopipe.engine",
        "octopipe.cli",
        "octopipe.tui",
        "octopipe.emulator",
    ),
    "providers": (
        "octopipe.store",
        "octopipe.engine",
        "octopipe.cli",
        "octopipe.tui",
        "octopipe.emulator",
    ),
    # the emulator is an application of its own: core and errors only
    "emulator": (
        "octopipe.providers",
        "octopipe.store",
        "octopipe.engine",
        "octopipe.cli",
        "octopipe.tui",
    ),
    "engine": ("octopipe.cli", "octopipe.tui", "sqlite3"),
    "cli": ("textual", "octopipe.tui", "octopipe.store", "sqlite3"),
    # the TUI reads and changes runs through the engine only: never the ledger, a provider
    # or SQLite itself (tui/port.py is its one door to the engine)
    "tui": ("octopipe.cli", "octopipe.store", "octopipe.providers", "sqlite3"),
}
# What the engine may import of the store: its protocols, the function that opens it, the
# records going in and out, the run lock and the codec's clock. The SQLite implementation
# (ledger, schema, connection, the queries) stays behind them.
ENGINE_MAY_USE_OF_STORE = (
    "octopipe.store",
    "octopipe.store.protocol",
    "octopipe.store.records",
    "octopipe.store.lock",
    "octopipe.store.codec",
)
CORE_FORBIDDEN_MODULES = (
    "socket",
    "subprocess",
    "urllib.request",
    "http.client",
    "requests",
    "httpx",
    "httpx2",
    "aiohttp",
    "sqlite3",
    "asyncio",
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(package: str) -> None:
    bad = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in modules(package)
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    }
    assert not bad, sorted(bad)


EMULATOR_USERS = ("engine/providers_setup.py", "cli/")


def test_only_the_engines_provider_setup_and_the_cli_import_the_emulator() -> None:
    users = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if not path.is_relative_to(SRC / "emulator")
        and any(
            n == "octopipe.emulator" or n.startswith("octopipe.emulator.") for n in imports_of(path)
        )
    }
    assert users, "the check sees no importer at all"
    assert sorted(u for u in users if not u.startswith(EMULATOR_USERS)) == []


def test_every_package_has_a_row_in_the_layer_table() -> None:
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(FORBIDDEN)


def test_engine_uses_the_store_only_through_its_interface() -> None:
    bad = sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for path in modules("engine")
        for name in imports_of(path)
        if name.startswith("octopipe.store") and name not in ENGINE_MAY_USE_OF_STORE
    )
    assert bad == []


def test_nothing_outside_the_store_reaches_the_sqlite_ledger() -> None:
    """``Ledger`` is the store's implementation: every other package opens a run's store with
    ``open_run_store`` / ``create_run_store`` and types it as ``RunReader`` / ``RunStore``."""
    bad = sorted(
        f"{path.relative_to(SRC)} imports Ledger from {node.module}"
        for path in SRC.rglob("*.py")
        if path.parent.name != "store"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("octopipe.store")
        and any(alias.name == "Ledger" for alias in node.names)
    )
    assert bad == []


def test_core_does_no_network_or_processes() -> None:
    bad = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in modules("core")
        for name in imports_of(path)
        if any(name == m or name.startswith(m + ".") for m in CORE_FORBIDDEN_MODULES)
    }
    assert not bad, sorted(bad)


def test_only_costs_module_multiplies_prices() -> None:
    """Prices are read in one place: nothing outside core/costs.py touches per-million rates."""
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "costs.py" and "_per_million" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


BUILT_IN_PROVIDERS = ("openai", "anthropic", "gemini", "openai-compatible")


def test_provider_names_are_spelled_only_in_the_catalog() -> None:
    """Everything else asks the provider catalog (providers/catalog.py) or the registry data
    (providers/registry.yaml); the emulator speaks the vendors' wire formats by name."""
    offenders = sorted(
        f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}"
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] != "emulator" and path.name != "catalog.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in BUILT_IN_PROVIDERS
    )
    assert offenders == []


def test_the_test_doubles_use_only_the_provider_contracts() -> None:
    """``octopipe.testing`` (the fake batch provider) stands in for an adapter: it may use what
    an adapter may, and nothing of the engine it is used to test."""
    names = imports_of(SRC / "testing.py")
    bad = sorted(n for n in names if n.startswith("octopipe.") and not n.startswith(
        ("octopipe.errors", "octopipe.providers.base", "octopipe.providers.batch_base")
    ))  # fmt: skip
    assert bad == []


BATCH_PLAN_FORBIDDEN = (
    "asyncio",
    "time",
    "random",
    "datetime",
    "octopipe.store",
    "octopipe.providers",
)


def test_the_batch_planner_reads_no_clock_and_does_no_io() -> None:
    names = imports_of(SRC / "engine" / "batch_plan.py")
    bad = sorted(
        n for n in names if any(n == f or n.startswith(f + ".") for f in BATCH_PLAN_FORBIDDEN)
    )
    assert bad == []
    assert {n for n in names if n.startswith("octopipe.engine")} == set()


def test_no_mixin_in_the_engine() -> None:
    """Collaborators are objects handed what they need, not mixins sharing attributes."""
    mixins = [
        f"{path.relative_to(SRC)}: {node.name}"
        for path in modules("engine")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and (node.name.endswith("Mixin") or any(
            isinstance(b, ast.Name) and b.id.endswith("Mixin") for b in node.bases
        ))
    ]  # fmt: skip
    assert mixins == []


def test_only_the_tui_imports_textual() -> None:
    """``textual`` is the optional extra ``tui``: no module outside ``tui/`` may need it."""
    bad = sorted(
        f"{path.relative_to(SRC)} imports {name}"
        for path in SRC.rglob("*.py")
        if not path.is_relative_to(SRC / "tui")
        for name in imports_of(path)
        if name.split(".")[0] in ("textual", "textual_serve")
    )
    assert bad == []


def test_textual_is_an_optional_extra_not_a_dependency() -> None:
    import tomllib

    project = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("textual")]
    assert {d.split(">")[0] for d in project["optional-dependencies"]["tui"]} == {
        "textual",
        "textual-serve",
    }
