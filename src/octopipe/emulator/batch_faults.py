"""The batch APIs' failure modes, decided for the emulator's batch jobs.

Guarantees:

- Every decision is taken once and deterministically: a job's fate (whole-batch failure, cut
  downloads, per-line faults) when it is created, a create call's refusal when it arrives.
  Schedules are consumed in order; line-fault probabilities are drawn from a generator seeded
  with (``seed``, job id, line index), so the same job always meets the same faults whatever
  the order in which jobs are read.
- A refused create call creates nothing, so it consumes no job-level schedule entry.
- ``truncate`` cuts a JSONL payload in the middle of its last line. Downloads are cut one by
  one (``cut_download``): the first ``batch_truncate_downloads`` of a scheduled job's results,
  and any download with probability ``batch_truncate_rate`` (drawn from (``seed``, the job's
  creation ordinal, file, download number), so a seed replays the same cuts); the next
  download of the same file may well arrive whole, as after a real interruption. The bytes a provider reports for a file are always the whole file's.

How the vendors render each mode (the vendor modules in ``vendors/*_batch.py`` do it):

============  ============================  ============================  ======================
mode          OpenAI                        Anthropic                     Gemini
============  ============================  ============================  ======================
expired       ``expired``; output file has  ``ended``; finished results,  ``BATCH_STATE_EXPIRED``
              the finished lines, error     the rest ``{"type":           and no output at all
              file ``batch_expired`` lines  "expired"}``                  (as the real API)
cancelled     ``cancelled``; the same with  ``ended``; the rest           ``BATCH_STATE_CANCELLED``
              ``batch_cancelled``           ``{"type": "canceled"}``      and no output
failed job    ``failed``, ``errors.data``,  no such state: ``ended`` with ``BATCH_STATE_FAILED``,
              no files                      every request ``errored``     an LRO ``error``, no
                                            (``api_error``)               output
line failed   error file, status 500        ``errored``, ``api_error``    ``error`` code 13
line 400      error file, status 400        ``errored``,                  ``error`` code 3
                                            ``invalid_request_error``
line dropped  in neither file               absent from the results       absent from the
                                                                          responses / file
truncated     a download of the output      a download of the results     a download of the
              (or error) file cut           JSONL cut                     results file cut
                                                                          (file-based jobs)
============  ============================  ============================  ======================
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field

from octopipe.emulator.config import NO_FAULT, EmulatorConfig

DROPPED = "dropped"


@dataclass(frozen=True)
class JobFaults:
    """What will go wrong with one job."""

    fails: bool = False
    """The job ends in the vendor's whole-batch failure instead of completing."""
    truncated: bool = False
    """The first downloads of the job's results are cut in the middle of their last line."""
    may_expire: bool = True
    """``config.batch_expire_s`` applies to this job (see ``batch_expire_jobs``)."""
    lines: tuple[str | None, ...] = ()
    """Per request, in input order: a ``LINE_FAULT_KINDS`` kind or ``None``."""
    ordinal: int = field(default=0, compare=False)
    """The job's place in creation order (0 for the first): what download cuts are drawn by."""

    def line(self, index: int) -> str | None:
        return self.lines[index] if index < len(self.lines) else None


class BatchFaultPlan:
    """Hands out ``JobFaults`` to new jobs and faults to batch-create calls."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._seed = config.seed
        self._line_weights = sorted(config.batch_line_faults.items())
        self._line_queue: deque[str] = deque(config.batch_line_fault_schedule)
        self._fail = config.batch_fail_schedule
        self._truncate = config.batch_truncate_schedule
        self._expire = config.batch_expire_jobs
        self._submit: deque[str] = deque(config.batch_submit_faults)
        self._cut_first = config.batch_truncate_downloads
        self._cut_rate = config.batch_truncate_rate
        self._downloads: Counter[tuple[int, str]] = Counter()
        self._jobs_created = 0
        self._lock = threading.Lock()

    def next_submit_fault(self) -> str | None:
        """The scheduled fault for this batch-create call, if any (``"ok"`` gives ``None``)."""
        with self._lock:
            kind = self._submit.popleft() if self._submit else NO_FAULT
        return None if kind == NO_FAULT else kind

    def for_new_job(self, job_id: str, total: int) -> JobFaults:
        with self._lock:
            ordinal = self._jobs_created
            self._jobs_created += 1
            scheduled = [
                self._line_queue.popleft() for _ in range(min(total, len(self._line_queue)))
            ]
        lines = [
            (None if scheduled[i] == NO_FAULT else scheduled[i])
            if i < len(scheduled)
            else self._draw(job_id, i)
            for i in range(total)
        ]
        return JobFaults(
            fails=_nth(self._fail, ordinal),
            truncated=_nth(self._truncate, ordinal),
            may_expire=_nth(self._expire, ordinal) if self._expire else True,
            lines=tuple(lines),
            ordinal=ordinal,
        )

    def cut_download(self, faults: JobFaults, file: str, *, scheduled: bool) -> bool:
        """Whether this download of the job's results file ``file`` (``"output"``,
        ``"errors"``, ``"results"``) is cut; counts the download. ``scheduled``: the job's
        truncate schedule applies to this file (else only the rate)."""
        key = (faults.ordinal, file)
        with self._lock:
            number = self._downloads[key]
            self._downloads[key] += 1
        if scheduled and faults.truncated and number < self._cut_first:
            return True
        if not self._cut_rate:
            return False
        draw = random.Random(f"{self._seed}:cut:{faults.ordinal}:{file}:{number}").random()
        return draw < self._cut_rate

    def _draw(self, job_id: str, index: int) -> str | None:
        if not self._line_weights:
            return None
        draw = random.Random(f"{self._seed}:{job_id}:{index}").random()
        for kind, probability in self._line_weights:
            if draw < probability:
                return kind
            draw -= probability
        return None


def truncate(data: bytes) -> bytes:
    """``data`` cut in the middle of its last line (what an interrupted download leaves)."""
    body = data.rstrip(b"\n")
    if not body:
        return data
    start = body.rfind(b"\n") + 1
    return body[: start + (len(body) - start) // 2]


def _nth(schedule: tuple[bool, ...], index: int) -> bool:
    return schedule[index] if index < len(schedule) else False
