"""Test modules import shared helpers from the ``support`` package only: no test module imports
a sibling file (another test module, a conftest, a helper) by its bare name, which works only
when pytest happens to put that file's folder on ``sys.path``."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _bare_names() -> set[str]:
    """Names a test file outside ``support`` could be imported by (its basename)."""
    return {p.stem for p in TESTS.rglob("*.py") if "support" not in p.relative_to(TESTS).parts}


def _bare_imports(path: Path, names: set[str], root: Path = TESTS) -> list[str]:
    """``file:line module`` for each import of a name in ``names`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            if module.split(".")[0] in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {module}")
    return found


def test_no_test_module_imports_a_sibling_by_bare_name() -> None:
    names = _bare_names()
    offenders = [hit for path in sorted(TESTS.rglob("*.py")) for hit in _bare_imports(path, names)]
    assert offenders == []


def test_the_check_sees_a_bare_import(tmp_path: Path) -> None:
    module = tmp_path / "test_probe.py"
    module.write_text("import conftest\nfrom test_report import build\nfrom support.cli import x\n")
    found = _bare_imports(module, {"conftest", "test_report"}, tmp_path)
    assert found == ["test_probe.py:1 conftest", "test_probe.py:2 test_report"]
