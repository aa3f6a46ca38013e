"""What a backfill learns from the reprocessing of each job it sent.

The reprocess function asks `cancelled` before it works on a backfill's job, and calls
`count` with the outcome once it has one. Each job's outcome is counted once, however
often its message came (chalicelib/backfills.py `record_outcome`); the count that settles
the last job sent completes the backfill.
"""

from __future__ import annotations

from chalicelib import backfills, jobs
from chalicelib.backfills import BackfillState
from chalicelib.reprocess_message import ReprocessMessage

# By chalicelib.reprocess.Outcome's values (that module calls this one).
COUNTS = {
    "REPROCESSED": "done",
    "FAILED": "failed",
    "ALREADY_CURRENT": "lateCurrent",
    "ORIGINAL_EXPIRED": "lateExpired",
    "SKIPPED": "skipped",
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


def count(message: ReprocessMessage, outcome: str) -> None:
    if message.backfill_id is None:
        return
    counter = COUNTS[outcome]
    if counter == "lateCurrent" and _made_by(message):
        # This very request reprocessed the job, and its invocation ended before counting.
        counter = "done"
    if backfills.record_outcome(message.backfill_id, message.job_id, counter):
        backfills.complete_if_settled(message.backfill_id)


def _made_by(message: ReprocessMessage) -> bool:
    job = jobs.get_job(message.job_id)
    return job is not None and job.last_reprocess_request == message.request_id
