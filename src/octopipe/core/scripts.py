"""Where the scripts a config names really are, and which paths a run may write.

Octobatch runs from its repository root, so the paths its configs give scripts are relative to
that root. octopipe reads a pipeline folder on its own and resolves them this way:

- ``scripts/analyze_results.py`` in ``post_process`` is Octobatch's bundled analysis tool:
  octopipe runs its own built-in analysis (``core/analysis.py``) instead, never a file;
- ``scripts/extract_units.py`` as a run-scope step's ``script`` is Octobatch's unit
  extractor: octopipe's built-in extraction runs instead;
- a path that exists inside the pipeline folder is that file (plain relative paths);
- otherwise ``pipelines/<Name>/rest`` is the folder's own ``rest``: in Octobatch it names the
  pipeline folder ``pipelines/<Name>/``, and this folder *is* the pipeline, whatever it is
  called now (a copy or a renamed folder keeps its config). ``<Name>`` is not compared with
  the folder's name: a script in another pipeline's folder could not be reached anyway (it
  is outside this one), so the only useful reading is this folder's file;
- anything else is looked for inside the folder and is an error if absent (``validate`` says
  so); ``..`` and absolute paths are refused, and links are followed only inside the folder
  (``core/containment.py``, applied by ``core/config.py``).

The output paths a config gives (``post_process[].output``, an analysis ``--output``, a
run step's ``output_dir``, ``gzip`` globs) are relative paths that must stay inside the run
folder and away from what octopipe itself keeps there (:func:`output_problem`).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

ANALYSIS_SCRIPT = "scripts/analyze_results.py"
EXTRACT_SCRIPT = "scripts/extract_units.py"
PIPELINES_PREFIX = "pipelines"

ScriptKind = Literal["analysis", "extract", "folder"]

RESERVED = (
    "config",
    "ledger.db",
    "run.log",
    "trace.jsonl",
    "runner.out",
    "chunks",
    "MANIFEST.json",
)
"""Top-level names of a run folder that octopipe owns: no post-processing output or extraction
folder may be one of them or lie inside one (``chunks/`` is the derived Octobatch view,
rewritten before scripts run; gzip may compress its files)."""


@dataclass(frozen=True)
class ScriptRef:
    """A script named by the config: what it is and, for a folder script, where."""

    written: str  # as the config gives it
    kind: ScriptKind
    relative: str | None = None  # folder scripts: the path inside the pipeline folder
    via_convention: bool = False  # resolved by the ``pipelines/<Name>/`` convention

    @property
    def builtin(self) -> bool:
        return self.kind != "folder"

    def describe(self) -> str:
        if self.kind == "analysis":
            return "octopipe's built-in analysis (Octobatch's scripts/analyze_results.py)"
        if self.kind == "extract":
            return "octopipe's built-in unit extraction (Octobatch's scripts/extract_units.py)"
        if self.via_convention:
            return f"{self.relative} of this folder (Octobatch's {self.written})"
        return f"{self.relative}"


def normalised(written: str) -> str:
    """``./a//b/../c.py`` -> ``a/c.py`` (``/``-separated, never resolved on disk)."""
    return posixpath.normpath(written.replace("\\", "/"))


def escapes(written: str) -> bool:
    """Whether a relative path leaves the folder it is relative to (or is absolute)."""
    norm = normalised(written)
    return (
        PurePosixPath(norm).is_absolute()
        or os.path.isabs(written)
        or norm == ".."
        or norm.startswith("../")
    )


def resolve_script(root: Path, written: str, *, run_step: bool = False) -> ScriptRef:
    """What ``written`` names for the pipeline folder ``root`` (see the module notes). An
    escaping path comes back as a folder script whose ``relative`` is None."""
    norm = normalised(written)
    if escapes(written):
        return ScriptRef(written, "folder", None)
    if not run_step and norm == ANALYSIS_SCRIPT:
        return ScriptRef(written, "analysis")
    if run_step and norm == EXTRACT_SCRIPT:
        return ScriptRef(written, "extract")
    if os.path.lexists(root / norm):
        return ScriptRef(written, "folder", norm)
    parts = norm.split("/")
    if parts[0] == PIPELINES_PREFIX and len(parts) >= 3:
        return ScriptRef(written, "folder", "/".join(parts[2:]), via_convention=True)
    return ScriptRef(written, "folder", norm)


def missing_script_hint(ref: ScriptRef, *, run_step: bool) -> str | None:
    """Why a folder script that does not exist may have been meant otherwise."""
    norm = normalised(ref.written)
    if ref.via_convention:
        return (
            f"looked for {ref.relative} in this folder (Octobatch's pipelines/<Name>/ "
            "convention: the pipeline's own folder)"
        )
    if norm == ANALYSIS_SCRIPT and run_step:
        return "scripts/analyze_results.py is a post_process tool, not a run-scope step script"
    if norm == EXTRACT_SCRIPT and not run_step:
        return "scripts/extract_units.py is a run-scope step (scope: run), not a post_process step"
    if norm.startswith("scripts/"):
        return (
            "of Octobatch's own scripts/ tools, octopipe provides analyze_results.py "
            "(post_process) and extract_units.py (run-scope steps); others must be in the folder"
        )
    return None


def output_problem(written: str, *, folder: bool = False) -> str | None:
    """Why a path a run would write (relative to the run folder) is refused, or None.

    ``folder`` is for a folder octopipe empties and rewrites (extraction's ``output_dir``):
    it must then not be ``outputs`` itself either.
    """
    if not written.strip():
        return "is empty"
    if escapes(written):
        return "leaves the run folder (absolute or '..')"
    norm = normalised(written)
    if norm == ".":
        return "is the run folder itself"
    first = norm.split("/")[0]
    if first in RESERVED or first.startswith((".", "ledger.db")):
        return f"is inside {first!r}, which octopipe keeps in the run folder"
    if folder and norm == "outputs":
        return "is the whole outputs folder (give a folder inside it, e.g. outputs/units)"
    return None


def glob_problem(pattern: str) -> str | None:
    """Why a ``gzip`` glob (relative to the run folder) is refused, or None."""
    if not pattern.strip():
        return "is empty"
    if escapes(pattern) or ".." in normalised(pattern).split("/"):
        return "leaves the run folder (absolute or '..')"
    return None


__all__ = [
    "ANALYSIS_SCRIPT",
    "EXTRACT_SCRIPT",
    "ScriptRef",
    "glob_problem",
    "missing_script_hint",
    "output_problem",
    "resolve_script",
]
