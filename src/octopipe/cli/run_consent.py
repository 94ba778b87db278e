"""What code a run may execute, and the user's word on it: the emulator's answer hook named by
``--answers`` and the folder's own post-processing scripts (``--allow-scripts``).

Guarantees: nothing from a pipeline folder runs unless named on the command line; what will
run (and what will not) is printed before the run starts; a run started with a hook or with
scripts allowed is never resumed without them unnoticed (refused, unless ``--generic-answers``
or ``--skip-scripts`` says so), and the choice is recorded on the run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from octopipe.cli.output import console
from octopipe.core.config import Pipeline
from octopipe.core.pipeline_code import CodeListing
from octopipe.engine.control import update_settings
from octopipe.engine.paths import RunPaths
from octopipe.engine.postprocess import NO_SCRIPTS, ScriptPermission, plan
from octopipe.engine.providers_setup import check_answer_hook, split_fake
from octopipe.engine.queries import RunInfo
from octopipe.errors import UsageError
from octopipe.providers.catalog import FAKE

if TYPE_CHECKING:
    from octopipe.emulator.answers import AnswerFn

HOOK_NAME = "emulator_answers.py"  # the name Octobatch's and our examples' hooks go by


def check_answer_flags(provider: str | None, answers: Path | None, generic: bool) -> None:
    if answers is not None and generic:
        raise UsageError("--answers and --generic-answers exclude each other: give one")
    if answers is not None:
        check_answer_hook(provider)
    if generic and split_fake(provider)[0] != FAKE:
        raise UsageError("--generic-answers only applies to --provider fake (the local emulator)")


def load_hook(answers: Path | None) -> AnswerFn | None:
    """Import the answer hook the user named (this runs its code, once)."""
    if answers is None:
        return None
    from octopipe.emulator.answers import load_answer_hook

    return load_answer_hook(answers)


def settle_answers(
    paths: RunPaths,
    stored: RunInfo,
    provider: str | None,
    answers: Path | None,
    generic: bool,
) -> None:
    """Check and record on the run which answers the emulator gives from now on: the hook in
    ``answers``, or its own. A run started with ``--answers`` is never resumed on other
    answers unnoticed: without ``--answers`` again it is refused, unless ``--generic-answers``
    says so."""
    check_answer_flags(provider, answers, generic)
    fake = split_fake(provider)[0] == FAKE
    before = stored.options.get("answers") if fake else None
    if answers is not None:
        if str(answers) != before:
            update_settings(paths, options={"answers": str(answers)})
        console.print(
            f"emulator answers from {answers} (its answer() runs in this process)", markup=False
        )
    elif before and not generic:
        raise UsageError(
            f"run {paths.name!r} was started with --answers {before}: resume it with "
            f"`octopipe run {paths.name} --answers {before}` to run that file again, or with "
            "--generic-answers to go on with the emulator's schema-shaped answers"
        )
    elif before:
        update_settings(paths, options={"answers": None})
        console.print(
            f"emulator answers are now generic (schema-shaped); {before} no longer runs",
            markup=False,
        )


def settle_scripts(
    paths: RunPaths, stored: RunInfo, allow: ScriptPermission, skip: bool
) -> ScriptPermission:
    """The folder scripts that may run from now on, recorded on the run. As with
    ``--answers``: a run started with scripts allowed is never resumed without them
    unnoticed; without the flag again it is refused, unless ``--skip-scripts`` says so."""
    before = ScriptPermission.from_option(stored.options.get("scripts"))
    if allow.given:
        if allow.to_option() != before.to_option():
            update_settings(paths, options={"scripts": allow.to_option()})
        shown = "all of them" if allow.everything else ", ".join(allow.names)
        console.print(
            f"the folder's own scripts you allowed run after the run completes: {shown}",
            markup=False,
        )
        return allow
    if before.given and not skip:
        flags = " ".join(shlex.quote(f) for f in before.flags())
        raise UsageError(
            f"run {paths.name!r} was started with {flags}: resume it with `octopipe run "
            f"{paths.name} {flags}` to run the folder's scripts again, or with --skip-scripts "
            "to run none of them"
        )
    if before.given:
        update_settings(paths, options={"scripts": None})
        console.print("the folder's own scripts no longer run for this run", markup=False)
    return NO_SCRIPTS


def print_carried_code(
    folder: Path, listing: CodeListing, answers: Path | None, *, fake: bool
) -> None:
    """One line naming the folder's code (``validate`` says more): none of it runs, except the
    answer hook named by ``--answers``; a fake run without one is told how to name the
    folder's own ``emulator_answers.py``."""
    if not listing.files:
        return
    paths = ", ".join(f.path for f in listing.files[:8])
    more = f" and {len(listing.files) - 8} more" if len(listing.files) > 8 else ""
    also = f"; the answer hook you named ({answers}) does" if answers is not None else ""
    console.print(
        f"the pipeline folder carries code ({paths}{more}): none of it runs{also}", markup=False
    )
    if fake and answers is None and any(f.path == HOOK_NAME for f in listing.files):
        console.print(
            f"the emulator gives schema-shaped answers; to answer with the folder's {HOOK_NAME} "
            f"instead, add --answers {folder / HOOK_NAME} (its code then runs)",
            markup=False,
        )


def print_scripts(pipeline: Pipeline, allow: ScriptPermission) -> None:
    """Which of the folder's scripts will run when the run completes, and which will not."""
    scripts = [a for a in plan(pipeline) if a.kind in ("script", "run_script")]
    if not scripts:
        return
    allowed = [a.name for a in scripts if allow.allows(a)]
    skipped = [a.name for a in scripts if not allow.allows(a)]
    if allowed:
        console.print(f"folder scripts that will run (allowed): {', '.join(allowed)}", markup=False)
    if skipped:
        console.print(
            f"folder scripts that will be skipped: {', '.join(skipped)} (--allow-scripts runs "
            "them)",
            markup=False,
        )
