"""The engine uses what clients and executors declare (``RealtimeProvider.endpoint``,
``BatchProvider.finder``/``lister``, ...): no ``getattr``/``hasattr`` on a client, provider,
executor, finder or lister anywhere in ``engine/``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "src" / "octopipe" / "engine"
PROBED = re.compile(r"client|provider|executor|finder|lister", re.IGNORECASE)


def probes(source: str) -> list[str]:
    """``line: call`` for each getattr/hasattr whose first argument names a client-like object."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id in ("getattr", "hasattr") and node.args:
            target = ast.unparse(node.args[0])
            if PROBED.search(target):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_engine_probes_no_client() -> None:
    offenders = {
        str(path.relative_to(ENGINE)): hits
        for path in sorted(ENGINE.rglob("*.py"))
        if (hits := probes(path.read_text()))
    }
    assert offenders == {}


def test_the_check_sees_a_probe() -> None:
    source = (
        "x = getattr(client, 'recent', None)\n"
        "y = hasattr(self.executor, 'flush')\n"
        "z = getattr(response, 'service_tier', None)\n"
    )
    assert probes(source) == [
        "1: getattr(client, 'recent', None)",
        "2: hasattr(self.executor, 'flush')",
    ]
