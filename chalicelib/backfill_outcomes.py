"""What a backfill learns from the reprocessing of each job it sent.

The reprocess function asks `cancelled` before it works on a backfill's job, and calls
`count` with the outcome once it has one. Each job's outcome is counted once, however
often its message came (chalicelib/backfills.py `record_outcome`); the count that settles
the last job sent completes the backfill.
"""

from __future__ import annotations

from chalicelib import backfills
from chalicelib.backfills import BackfillState
from chalicelib.reprocess import Outcome
from chalicelib.reprocess_message import ReprocessMessage

COUNTS = {
    Outcome.REPROCESSED: "done",
    Outcome.FAILED: "failed",
    Outcome.ALREADY_CURRENT: "lateCurrent",
    Outcome.ORIGINAL_EXPIRED: "lateExpired",
    Outcome.SKIPPED: "skipped",
}


def cancelled(message: ReprocessMessage) -> bool:
    """Whether `message` is a cancelled backfill's: its job is then left as it is, and
    counted so."""
    if message.backfill_id is None:
        return False
    backfill = backfills.get(message.backfill_id)
    if backfill is None or backfill.state is not BackfillState.CANCELLED:
        return False
    backfills.record_outcome(message.backfill_id, message.job_id, "cancelled")
    return True


def count(message: ReprocessMessage, outcome: Outcome) -> None:
    if message.backfill_id is None:
        return
    if backfills.record_outcome(message.backfill_id, message.job_id, COUNTS[outcome]):
        backfills.complete_if_settled(message.backfill_id)
