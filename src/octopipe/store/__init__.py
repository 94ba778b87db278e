"""The run store: its protocols, the one way to open it, its records, and the run lock.

The engine uses :class:`RunReader` / :class:`RunStore` (``store/protocol.py``) opened with
:func:`open_run_store`; SQLite (``store/ledger.py``) is the implementation behind them. See
``store/README.md`` for the schema and the guarantees.
"""

from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock, holder_pid, is_held
from octopipe.store.opening import create_run_store, memory_run_store, open_run_store
from octopipe.store.protocol import ReportReader, RunReader, RunStore
from octopipe.store.records import (
    AttemptRecord,
    AttemptRow,
    BatchRow,
    ClaimedUnit,
    CleanWalk,
    CommandRow,
    CostTotals,
    EventRow,
    Failure,
    FailureRow,
    RunInfo,
    RunMeta,
    RunnerIdentity,
    StepDef,
    StepReport,
    Success,
    VerifyReport,
)

__all__ = [
    "AttemptRecord",
    "AttemptRow",
    "BatchRow",
    "ClaimedUnit",
    "CleanWalk",
    "CommandRow",
    "CostTotals",
    "EventRow",
    "Failure",
    "FailureRow",
    "Ledger",
    "ReportReader",
    "RunInfo",
    "RunLock",
    "RunMeta",
    "RunReader",
    "RunStore",
    "RunnerIdentity",
    "StepDef",
    "StepReport",
    "Success",
    "VerifyReport",
    "create_run_store",
    "holder_pid",
    "is_held",
    "memory_run_store",
    "open_run_store",
]
