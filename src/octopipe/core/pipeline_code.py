"""The code a pipeline folder carries, so that ``validate`` (and ``run``, before it starts) can
say so.

A pipeline folder is untrusted input (SPEC §10): octopipe runs none of its code unless the
user names it. This module only *finds* that code, never runs or imports it:

- every file under the folder that is code by its suffix (Python, shell, other interpreters,
  native libraries), by its executable bit or by a ``#!`` first line; links are listed by
  their own name and never followed; ``.git`` and ``__pycache__`` are skipped;
- every script the config names (``post_process[i].script``, a run-scope step's ``script``),
  whether or not the file exists, resolved by Octobatch's path conventions
  (``core/scripts.py``), and saying which are octopipe's built-ins (Octobatch's
  ``scripts/analyze_results.py`` and ``scripts/extract_units.py``: octopipe's own code, which
  always runs) and which are folder code that runs only with ``--allow-scripts`` (or
  ``--allow-script NAME``), with the command that would run.

The walk stops after ``MAX_ENTRIES`` folder entries (``CodeListing.complete`` is then false),
so a folder with millions of files cannot stall ``validate``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from octopipe.core.config import Pipeline
from octopipe.core.config_models import RunStep
from octopipe.core.scripts import resolve_script
from octopipe.core.yamlpos import format_path

MAX_ENTRIES = 50_000
SKIPPED_DIRS = frozenset({".git", "__pycache__"})
PYTHON_SUFFIXES = frozenset({".py", ".pyw", ".pyc", ".pyo", ".pyz"})
CODE_SUFFIXES = PYTHON_SUFFIXES | {
    ".sh", ".bash", ".zsh", ".ksh", ".csh", ".fish", ".ps1", ".bat", ".cmd", ".exe", ".com",
    ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php", ".lua", ".r", ".jl", ".tcl",
    ".so", ".dylib", ".dll", ".jar",
}  # fmt: skip


@dataclass(frozen=True)
class CodeFile:
    """One piece of code in the folder: ``path`` relative to it (``/``-separated)."""

    path: str
    kind: str  # "python", "executable" or "script" (named by the config)
    named_by: str | None = None  # the config key naming it, e.g. "post_process[0].script"
    runs: str = ""  # when octopipe would run it

    def to_dict(self) -> dict[str, str | None]:
        return {"path": self.path, "kind": self.kind, "named_by": self.named_by, "runs": self.runs}


@dataclass(frozen=True)
class CodeListing:
    files: list[CodeFile] = field(default_factory=list)
    complete: bool = True  # false when the walk stopped at MAX_ENTRIES


NEVER = "never run by octopipe"
AS_HOOK = "runs only if you name it: `octopipe run ... --provider fake --answers {path}`"
ALLOW = "runs only with `--allow-scripts` (or `--allow-script {name}`) on run/post: {command}"
BUILTIN = {
    "analysis": "built-in: octopipe's own analysis runs instead (no code from the folder)",
    "extract": "built-in: octopipe's own unit extraction runs instead (no code from the folder)",
}


def folder_code(folder: Path, pipeline: Pipeline | None = None) -> CodeListing:
    """The code under ``folder``, plus the scripts ``pipeline``'s config names."""
    root = folder.resolve()
    found, complete = _walk(root)
    named = _named_scripts(root, pipeline) if pipeline is not None else {}
    files: list[CodeFile] = []
    for path in sorted(set(found) | set(named)):
        if path in named:
            key, runs = named[path]
            files.append(CodeFile(path, "script", key, runs))
        elif found[path] == "python":
            files.append(CodeFile(path, "python", None, AS_HOOK.format(path=root / path)))
        else:
            files.append(CodeFile(path, "executable", None, NEVER))
    return CodeListing(files, complete)


def _walk(root: Path) -> tuple[dict[str, str], bool]:
    found: dict[str, str] = {}
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            seen += 1
            if seen > MAX_ENTRIES:
                return found, False
            path = Path(dirpath, name)
            kind = _code_kind(path)
            if kind is not None:
                found[path.relative_to(root).as_posix()] = kind
    return found, True


def _code_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in PYTHON_SUFFIXES:
        return "python"
    if suffix in CODE_SUFFIXES:
        return "executable"
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None  # a link is listed by its name only; its target is never looked at
    if info.st_mode & 0o111:
        return "executable"
    try:
        with path.open("rb") as handle:
            return "executable" if handle.read(2) == b"#!" else None
    except OSError:
        return None


def _named_scripts(root: Path, pipeline: Pipeline) -> dict[str, tuple[str, str]]:
    """Path -> (config key, when it runs) for every script the config names: a built-in by
    the path the config gives, a folder script by its path inside the folder."""
    named: dict[str, tuple[str, str]] = {}
    for i, post in enumerate(pipeline.config.post_process):
        if post.script:
            key = format_path(("post_process", i, "script"))
            name = post.name or post.script
            args = " ".join(["RUN_DIR", *post.args])
            named.update(_entry(root, post.script, key, name, args, run_step=False))
    for i, step in enumerate(pipeline.config.pipeline.steps):
        if isinstance(step, RunStep) and step.script:
            key = format_path(("pipeline", "steps", i, "script"))
            args = " ".join(
                [
                    "--run-dir RUN_DIR",
                    f"--step-name {step.name}",
                    "--config RUN_DIR/config/config.yaml",
                ]
            )
            named.update(_entry(root, step.script, key, step.name, args, run_step=True))
    return named


def _entry(
    root: Path, written: str, key: str, name: str, args: str, *, run_step: bool
) -> dict[str, tuple[str, str]]:
    ref = resolve_script(root, written, run_step=run_step)
    if ref.builtin:
        return {_relative(root, written): (key, BUILTIN[ref.kind])}
    path = ref.relative if ref.relative is not None else written
    shown = f"python {path} {args}"
    if ref.via_convention:
        shown += f" (Octobatch's {written})"
    return {path: (key, ALLOW.format(name=_quoted(name), command=shown))}


def _quoted(name: str) -> str:
    return f"'{name}'" if any(c.isspace() for c in name) else name


def _relative(root: Path, script: str) -> str:
    """``script`` as a path relative to the folder (normalised, links not followed)."""
    joined = Path(os.path.normpath(root / script))
    return joined.relative_to(root).as_posix() if joined.is_relative_to(root) else script


__all__ = ["CodeFile", "CodeListing", "folder_code"]
