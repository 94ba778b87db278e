"""engine.fingerprint: what a snapshot's fingerprint covers, and the runner's check at open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopipe.engine.fingerprint import differences, fingerprint
from octopipe.engine.runner import Runner
from octopipe.errors import SnapshotChanged
from octopipe.store.ledger import Ledger
from support.admin import expression_pipeline, make_run


def test_every_file_counts_but_caches_and_links_are_never_read(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    (folder / "templates").mkdir(parents=True)
    (folder / "config.yaml").write_text("a: 1\n")
    (folder / "templates" / "t.jinja2").write_text("hi\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "hook.cpython-311.pyc").write_bytes(b"\x00")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    (folder / "templates" / "leak.txt").symlink_to(secret)
    (folder / "dir_link").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(folder / "pipe")  # opening it would block: it must only be named

    first = fingerprint(folder)
    assert sorted(first) == [
        "config.yaml",
        "dir_link",
        "pipe",
        "templates/leak.txt",
        "templates/t.jinja2",
    ]
    assert first["config.yaml"].startswith("sha256:")
    assert first["templates/leak.txt"].startswith("symlink:")
    assert first["pipe"].startswith("special:")
    secret.write_text("changed outside\n")  # a link's target is not part of the snapshot
    (folder / "__pycache__" / "other.pyc").write_bytes(b"\x01")
    assert fingerprint(folder) == first

    (folder / "templates" / "t.jinja2").write_text("hello\n")
    (folder / "config.yaml").unlink()
    (folder / "new.txt").write_text("x")
    assert differences(first, fingerprint(folder)) == [
        "config.yaml (removed)",
        "new.txt (added)",
        "templates/t.jinja2 (changed)",
    ]


def test_a_run_made_without_a_fingerprint_gets_one_at_its_next_start(tmp_path: Path) -> None:
    paths = make_run(expression_pipeline(tmp_path / "p", n_items=2), tmp_path / "runs", "old",
                     drive=False)  # fmt: skip
    ledger = Ledger.open(paths.ledger)
    try:
        assert ledger.snapshot_fingerprint() == fingerprint(paths.config_dir)
        ledger._db.execute("DELETE FROM meta WHERE key = 'snapshot_fingerprint'")
        assert ledger.snapshot_fingerprint() is None
    finally:
        ledger.close()
    Runner(paths, export=False).run()
    ledger = Ledger.open(paths.ledger, readonly=True)
    try:
        assert ledger.snapshot_fingerprint() == fingerprint(paths.config_dir)
        assert any(e.tag == "SNAPSHOT" and "made without one" in e.message for e in ledger.events())
    finally:
        ledger.close()

    (paths.config_dir / "items.yaml").write_text("items: []\n")
    with pytest.raises(SnapshotChanged) as info:
        Runner(paths, export=False).run()
    assert info.value.changed == ["items.yaml (changed)"]
    assert info.value.exit_code == 2
    assert f"`octopipe run {paths.name} --accept-edited-snapshot`" in info.value.message
