"""Revalidation: run the validation of LLM steps again on the raw answers already stored.

No API call is made. For every failed (or exhausted) unit of an LLM step, the raw response of
its last attempt and the record the step saw are read from the ledger (``iter_failures``) and
checked with the step's current validator:

* it passes: ``record_revalidation(delta=coerced output)``; the unit is valid and pending at
  the next step (resume the run to carry it on);
* it still fails: the unit keeps its state, with the new stage and errors;
* it cannot be parsed at all: the same, and counted apart. Its attempts and raw text are
  never touched (Octobatch dropped these records; here nothing is deleted);
* it has no raw response (a render or provider failure, nothing came back): skipped, counted.

Which config: the run's own snapshot (``config/``) by default; with ``use_source`` the pipeline
folder the run was made from, or a folder given explicitly. The source folder is looked for in
the run's options and in its ``INIT`` event (keys ``source`` / ``pipeline_dir``); runs made by
an ``init`` that did not record it need the folder to be given.

The snapshot must still match the fingerprint its ledger recorded at init
(``engine.fingerprint``); an edited one is refused, naming the files. To validate with other
rules, point ``use_source``/``source`` at a pipeline folder: that is the opt-in path.

The run's lock is taken for the whole pass: revalidation is refused while a runner is live.
Exports the run had written are refreshed at the end when units changed verdict.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from octopipe.core.config import load_pipeline
from octopipe.core.steps import CompiledPipeline, CompiledStep
from octopipe.engine.exports import refresh_exports
from octopipe.engine.fingerprint import check_snapshot
from octopipe.engine.paths import RunPaths
from octopipe.engine.postprocess import refresh_after_change
from octopipe.engine.runlog import RunLog
from octopipe.errors import RunLocked, UsageError
from octopipe.store import RunReader, RunStore, open_run_store
from octopipe.store.lock import RunLock, holder_pid
from octopipe.store.records import FailureRow

GROUP = 500  # units per transaction
SOURCE_KEYS = ("source", "pipeline_dir", "source_dir")


@dataclass
class StepRevalidation:
    step: str
    checked: int = 0
    passed: int = 0
    still_failing: int = 0
    unparseable: int = 0
    skipped: int = 0  # no raw response to check (render/provider/expression failures)
    by_stage: dict[str, int] = field(default_factory=dict)  # stages of the still failing


@dataclass
class RevalidationReport:
    config: str  # the folder whose config was used
    steps: list[StepRevalidation]

    @property
    def passed(self) -> int:
        return sum(s.passed for s in self.steps)

    @property
    def still_failing(self) -> int:
        return sum(s.still_failing for s in self.steps)

    @property
    def unparseable(self) -> int:
        return sum(s.unparseable for s in self.steps)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "passed": self.passed,
            "still_failing": self.still_failing,
            "unparseable": self.unparseable,
            "skipped": self.skipped,
            "steps": [asdict(s) for s in self.steps],
        }


def recorded_source(ledger: RunReader) -> Path | None:
    """The pipeline folder the run was created from, if its ledger recorded it."""
    candidates: list[Any] = [ledger.run_info().options]
    after = 0
    while page := ledger.events(after_id=after, limit=100):
        for event in page:
            if event.tag == "INIT" and isinstance(event.data, dict):
                candidates += [event.data, event.data.get("options")]
        after = page[-1].id
        if after > 1_000:  # INIT is among the first events
            break
    for data in candidates:
        if isinstance(data, dict):
            for key in SOURCE_KEYS:
                if isinstance(data.get(key), str) and data[key]:
                    return Path(data[key])
    return None


def revalidate_run(
    paths: RunPaths,
    *,
    step: str | None = None,
    use_source: bool = False,
    source: Path | None = None,
) -> RevalidationReport:
    """Revalidate the failed units of one LLM step (``step``) or of every LLM step."""
    lock = RunLock(paths.root)
    if not lock.try_acquire():
        pid = holder_pid(paths.root)
        who = f" (process {pid})" if pid else ""
        raise RunLocked(
            f"run {paths.name!r} is being driven by a live runner{who}; pause it first "
            f"(`octopipe pause {paths.name}`), then revalidate"
        )
    try:
        ledger = open_run_store(paths.ledger)
        try:
            folder = _config_folder(ledger, paths, use_source, source)
            if folder == paths.config_dir:
                check_snapshot(ledger, paths)
            report = _revalidate(ledger, folder, step)
            totals = {k: v for k, v in report.to_dict().items() if k != "steps"}
            ledger.log_event("info", "REVALIDATE", _summary(report), totals)
            log = RunLog(paths.log)
            try:
                log.write("REVALIDATE", _summary(report) + f" (config {report.config})")
                refreshed = refresh_exports(ledger, paths)  # may fail: the pass is logged
                if refreshed:
                    log.write("EXPORT", ", ".join(f.path.name for f in refreshed))
                refresh_after_change(ledger, paths, log)  # built-ins re-run; scripts go stale
            finally:
                log.close()
        finally:
            ledger.close()
        return report
    finally:
        lock.release()


def _summary(report: RevalidationReport) -> str:
    return (
        f"{report.passed} passed, {report.still_failing} still failing, "
        f"{report.unparseable} unparseable, {report.skipped} skipped (no raw response)"
    )


def _config_folder(
    ledger: RunStore, paths: RunPaths, use_source: bool, source: Path | None
) -> Path:
    if source is not None:
        folder = source
    elif use_source:
        found = recorded_source(ledger)
        if found is None:
            raise UsageError(
                f"run {paths.name!r} does not record the pipeline folder it was created from; "
                "give it: --use-source-config PATH"
            )
        folder = found
    else:
        return paths.config_dir
    if not folder.is_dir():
        raise UsageError(f"pipeline folder {folder} does not exist")
    return folder.resolve()


def _revalidate(ledger: RunStore, folder: Path, step: str | None) -> RevalidationReport:
    compiled = CompiledPipeline(load_pipeline(folder))
    names = [s.name for s in ledger.steps]
    if step is not None:
        if step not in names:
            raise UsageError(f"no step {step!r} in this run; steps: {', '.join(names)}")
        if ledger.steps[names.index(step)].scope != "chunk":
            raise UsageError(
                f"step {step!r} is not an LLM step: it has no stored answers to revalidate "
                "(use `octopipe retry` to run it again)"
            )
        wanted = [step]
    else:
        wanted = [s.name for s in ledger.steps if s.scope == "chunk"]
    results = []
    for name in wanted:
        try:
            cstep = compiled[compiled.index(name)]
        except KeyError:
            raise UsageError(f"the config in {folder} has no step {name!r}") from None
        if not cstep.is_llm or cstep.validator is None:
            raise UsageError(f"in the config in {folder}, step {name!r} is not an LLM step")
        results.append(_revalidate_step(ledger, names.index(name), cstep))
    return RevalidationReport(str(folder), results)


def _revalidate_step(ledger: RunStore, index: int, cstep: CompiledStep) -> StepRevalidation:
    result = StepRevalidation(cstep.name)
    by_stage: dict[str, int] = {}
    # Each group is read in full before it is written: passing units leave the failed set.
    for group in _groups(ledger.iter_failures(index), GROUP):
        with ledger.transaction():
            for row in group:
                result.checked += 1
                if row.raw_response is None:
                    result.skipped += 1
                    continue
                checked = cstep.check_answer(row.raw_response, row.input)
                if checked.ok:
                    ledger.record_revalidation(row.uid, index, delta=checked.delta or {})
                    result.passed += 1
                    continue
                assert checked.failure is not None
                failure = checked.failure
                errors = list(failure.errors) or [{"message": failure.message}]
                ledger.record_revalidation(
                    row.uid, index, delta=None, stage=failure.stage, errors=errors
                )
                if failure.stage == "parse":
                    result.unparseable += 1
                else:
                    result.still_failing += 1
                by_stage[failure.stage] = by_stage.get(failure.stage, 0) + 1
    result.by_stage = dict(sorted(by_stage.items()))
    return result


def _groups(rows: Iterator[FailureRow], size: int) -> Iterator[list[FailureRow]]:
    """Pages of rows, each read completely before any of it is written."""
    group: list[FailureRow] = []
    for row in rows:
        group.append(row)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group
