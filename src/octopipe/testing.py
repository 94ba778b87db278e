"""Test doubles for code that drives octopipe's provider contracts.

``FakeBatchProvider`` is an in-process ``providers.batch_base.BatchProvider``: no HTTP, no
clock of its own, every batch and call kept for the test to read. Answers are queued
(``enqueue``) or computed (``answer=``), like ``llm``'s ``MockModel``; a batch runs until it
has been polled ``polls_to_finish`` times (``None``: until the test ends it with ``finish``,
``expire`` or ``fail``, or ``cancel`` is called); a fault for the next call of an operation is
queued with ``fail_next``. It passes the same contract suite as the three vendor adapters
(``tests/providers/test_batch_contract.py``), so an engine test that only needs scheduling
can run on it instead of the emulator.

Imports only ``errors`` and ``providers.batch_base`` / ``providers.base``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from octopipe.errors import ProviderError, TransientProviderError, UsageError
from octopipe.providers.base import LLMResponse, Usage
from octopipe.providers.batch_base import (
    TERMINAL_STATES,
    BatchFinder,
    BatchHandle,
    BatchLineError,
    BatchRequestLine,
    BatchResultLine,
    BatchStatus,
    VendorBatchState,
    check_custom_ids,
    not_run,
)

Answer = str | dict[str, object] | BatchLineError
"""What one request gets: an answer's text, an object (sent as its JSON), or a line error."""
Operation = Literal["submit", "poll", "collect", "cancel", "find"]


@dataclass
class FakeBatch:
    """One batch the fake holds: what was sent and where it is."""

    handle: BatchHandle
    model: str
    lines: list[BatchRequestLine]
    answers: list[Answer]
    state: VendorBatchState = "in_progress"
    polls: int = 0
    done: int = 0
    """Requests finished (answered or failed); a batch ended early keeps these."""
    error: str | None = None


@dataclass(frozen=True)
class Call:
    """One call made to the fake (``history``)."""

    operation: Operation
    batch_id: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


class FakeBatchProvider:
    """An in-process batch provider (see the module doc)."""

    def __init__(
        self,
        name: str = "fake",
        *,
        answer: Callable[[BatchRequestLine], Answer] | None = None,
        polls_to_finish: int | None = 1,
        can_find: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.can_find = can_find
        self.polls_to_finish = polls_to_finish
        self._answer = answer
        self._queued: deque[Answer] = deque()
        self._faults: dict[str, deque[ProviderError]] = {}
        self._ids = itertools.count(1)
        self._clock = clock
        self.batches: dict[str, FakeBatch] = {}
        self.history: list[Call] = []

    # --- what a test does ------------------------------------------------------------------------

    def enqueue(self, *answers: Answer) -> None:
        """Answers for the next requests submitted, in order (before ``answer=``)."""
        self._queued.extend(answers)

    def fail_next(self, operation: Operation, error: ProviderError) -> None:
        """The next call of ``operation`` raises ``error`` (queued: several in a row)."""
        self._faults.setdefault(operation, deque()).append(error)

    def finish(self, batch_id: str) -> None:
        """The batch completes: every request answered."""
        self._end(self.batches[batch_id], "completed", len(self.batches[batch_id].lines))

    def expire(self, batch_id: str, done: int = 0) -> None:
        """The batch expires after its first ``done`` requests finished."""
        self._end(self.batches[batch_id], "expired", done)

    def fail(self, batch_id: str, error: str = "the batch failed") -> None:
        """The batch fails as a whole (no request has a result)."""
        batch = self.batches[batch_id]
        batch.error = error
        self._end(batch, "failed", 0)

    def forget(self, batch_id: str) -> None:
        """The provider no longer knows the batch (deleted, or another account)."""
        del self.batches[batch_id]

    def requests(self) -> list[BatchRequestLine]:
        """Every request submitted, in order."""
        return [line for batch in self.batches.values() for line in batch.lines]

    def calls(self, operation: Operation) -> list[Call]:
        return [c for c in self.history if c.operation == operation]

    # --- the BatchProvider contract -------------------------------------------------------------

    async def submit(
        self, lines: Sequence[BatchRequestLine], *, model: str, metadata: dict[str, str]
    ) -> BatchHandle:
        check_custom_ids(lines)
        self._call("submit", None, requests=len(lines), model=model)
        answers = [self._answer_for(line) for line in lines]
        batch_id = f"fakebatch_{next(self._ids)}"
        handle = BatchHandle(self.name, batch_id, self._clock(), dict(metadata))
        self.batches[batch_id] = FakeBatch(handle, model, list(lines), answers)
        return handle

    async def poll(self, handle: BatchHandle) -> BatchStatus:
        batch = self._batch("poll", handle)
        if batch.state not in TERMINAL_STATES:
            batch.polls += 1
            if self.polls_to_finish is not None and batch.polls >= self.polls_to_finish:
                self.finish(handle.provider_batch_id)
        failed = sum(isinstance(a, BatchLineError) for a in batch.answers[: batch.done])
        return BatchStatus(batch.state, batch.done, len(batch.lines), failed, batch.error)

    async def collect(self, handle: BatchHandle) -> AsyncIterator[BatchResultLine]:
        batch = self._batch("collect", handle)
        if batch.state not in TERMINAL_STATES:
            raise UsageError(f"batch {handle.provider_batch_id} has not ended")
        if batch.state == "failed":
            return
        for i, (line, answer) in enumerate(zip(batch.lines, batch.answers, strict=True)):
            if i >= batch.done:
                kind: Literal["cancelled", "expired"] = (
                    "expired" if batch.state == "expired" else "cancelled"
                )
                yield BatchResultLine(line.custom_id, None, not_run(kind))
            elif isinstance(answer, BatchLineError):
                yield BatchResultLine(line.custom_id, None, answer)
            else:
                yield BatchResultLine(line.custom_id, _response(line, answer, batch.model))

    async def cancel(self, handle: BatchHandle) -> None:
        batch = self._batch("cancel", handle)
        if batch.state not in TERMINAL_STATES:
            self._end(batch, "cancelled", batch.done)

    def lister(self) -> None:
        """None: the fake lists no batches by size (it plays vendors found by metadata, or none)."""
        return None

    def finder(self) -> BatchFinder | None:
        """This fake when it plays a vendor whose batches carry metadata (``can_find``)."""
        return self if self.can_find else None

    async def find(self, metadata_key: str, value: str, *, since: float) -> list[BatchHandle]:
        self._call("find", None, key=metadata_key, value=value)
        return [
            b.handle
            for b in reversed(self.batches.values())
            if b.handle.created_at >= since and b.handle.metadata.get(metadata_key) == value
        ]

    async def aclose(self) -> None:
        return None

    # --- helpers -----------------------------------------------------------------------------

    def _call(self, operation: Operation, batch_id: str | None, **detail: object) -> None:
        self.history.append(Call(operation, batch_id, detail))
        faults = self._faults.get(operation)
        if faults:
            raise faults.popleft()

    def _batch(self, operation: Operation, handle: BatchHandle) -> FakeBatch:
        self._call(operation, handle.provider_batch_id)
        batch = self.batches.get(handle.provider_batch_id)
        if batch is None:
            raise TransientProviderError(
                f"no batch {handle.provider_batch_id}", provider=self.name, status=404
            )
        return batch

    def _answer_for(self, line: BatchRequestLine) -> Answer:
        if self._queued:
            return self._queued.popleft()
        if self._answer is not None:
            return self._answer(line)
        raise UsageError(
            f"FakeBatchProvider: no answer enqueued for request {line.custom_id!r} "
            "(enqueue() one, or pass answer=)"
        )

    def _end(self, batch: FakeBatch, state: VendorBatchState, done: int) -> None:
        batch.state = state
        batch.done = done


def _response(line: BatchRequestLine, answer: str | dict[str, object], model: str) -> LLMResponse:
    text = answer if isinstance(answer, str) else json.dumps(answer)
    usage = Usage(
        input_tokens=max(1, len(line.request.prompt) // 4), output_tokens=max(1, len(text) // 4)
    )
    return LLMResponse(text, usage, "stop", model, None, 0.0)


__all__ = ["Call", "FakeBatch", "FakeBatchProvider"]
