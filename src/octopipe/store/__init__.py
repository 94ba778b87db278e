"""The run ledger (SQLite) and the run lock. See ``store/README.md`` for the schema."""

from octopipe.store.ledger import Ledger
from octopipe.store.lock import RunLock, holder_pid, is_held
from octopipe.store.records import (
    AttemptRecord,
    AttemptRow,
    BatchRow,
    ClaimedUnit,
    CommandRow,
    CostTotals,
    EventRow,
    Failure,
    FailureRow,
    RunInfo,
    RunMeta,
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
    "CommandRow",
    "CostTotals",
    "EventRow",
    "Failure",
    "FailureRow",
    "Ledger",
    "RunInfo",
    "RunLock",
    "RunMeta",
    "StepDef",
    "StepReport",
    "Success",
    "VerifyReport",
    "holder_pid",
    "is_held",
]
