"""A pipeline folder may read only itself: every path is checked *after following links*.

A folder from someone else can hold a symlink (``templates/leak.txt -> ~/.ssh/id_rsa``, or
``schemas/ext -> /etc``). Opening it, including it from a template or copying it into a run's
snapshot would read the target. The helpers here resolve links first and refuse a path whose
real location is outside the pipeline folder (a link pointing inside it is fine):

- :func:`resolve_inside` for one path (config, items, templates, schemas, scripts);
- :func:`escapes_in` for a whole folder the run snapshots (``templates/``, ``schemas/``);
- ``core/template_loader.py`` builds Jinja's loader for the prompt templates on
  :func:`resolve_inside`, so an ``include``/``import``/``extends`` of a link is refused at
  validate and at render (kept apart so that runs without prompts never import Jinja);
- :func:`copy_contained`, which builds a run's snapshot from real, inside files only.

Every refusal is an :class:`Escape` naming the path and where it points; the target's contents
are never read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path


class Escape(Exception):
    """``path`` resolves (through a link) to ``target``, which is not inside the folder."""

    def __init__(self, shown: str, target: Path, *, loop: bool = False) -> None:
        self.shown = shown
        self.target = target
        if loop:
            reason = f"{shown} is a link to {target}, a folder that contains it (a loop)"
        else:
            reason = f"{shown} is a link to {target}, outside the pipeline folder"
        self.reason = reason
        super().__init__(reason)


def real_root(folder: Path) -> Path:
    return Path(os.path.realpath(folder))


def resolve_inside(root: Path, path: Path, shown: str | None = None) -> Path:
    """The real path of ``path``; ``Escape`` when it lies outside ``root`` (a real path)."""
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(root):
        raise Escape(shown or _shown(root, path), real)
    return real


def escapes_in(root: Path, folder: Path) -> Iterator[Escape]:
    """Every link under ``folder`` whose target is outside ``root`` or loops back above it.

    Links to folders inside ``root`` are followed (their content is what a snapshot copies);
    each real folder is visited once.
    """
    for _, _, escape in _walk(root, folder):
        if escape is not None:
            yield escape


def copy_contained(root: Path, source: Path, dest: Path) -> None:
    """Copy ``source`` (a file or folder inside ``root``) to ``dest`` from real files only.

    Links are followed only to their real, inside targets, and the real file is what is
    copied (never the link). Any link pointing outside raises ``Escape``; dangling links are
    left out (there is nothing to copy).
    """
    real = resolve_inside(root, source)
    if real.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(real, dest)
        return
    if not real.is_dir():
        return
    for path, target, escape in _walk(root, source):
        if escape is not None:
            raise escape
        if target is None:
            continue
        out = dest / path.relative_to(source)
        if target.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(target, out)


def _walk(root: Path, folder: Path) -> Iterator[tuple[Path, Path | None, Escape | None]]:
    """(path as seen under ``folder``, its real target or None if dangling, escape or None)."""
    start = Path(os.path.realpath(folder))
    if not start.is_relative_to(root):
        yield folder, None, Escape(_shown(root, folder), start)
        return
    yield folder, start, None
    visited = {start}
    pending: list[tuple[Path, Path]] = [(folder, start)]
    while pending:
        seen_as, real_dir = pending.pop()
        try:
            entries = sorted(os.scandir(real_dir), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = seen_as / entry.name
            target = Path(os.path.realpath(entry.path))
            if entry.is_symlink():
                if not target.is_relative_to(root):
                    yield path, None, Escape(_shown(root, path), target)
                    continue
                if target.is_dir() and real_dir.is_relative_to(target):
                    yield path, None, Escape(_shown(root, path), target, loop=True)
                    continue
                if not target.exists():
                    yield path, None, None
                    continue
            if target.is_dir():
                if target in visited:
                    continue
                visited.add(target)
                pending.append((path, target))
            elif not target.is_file():
                continue  # a FIFO or device: nothing a pipeline reads
            yield path, target, None


def _shown(root: Path, path: Path) -> str:
    """``path`` relative to the pipeline folder when it is written under it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(root))
    except ValueError:
        return str(path)
