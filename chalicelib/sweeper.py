"""The sweeper: every job ends COMPLETED or FAILED, even when an event or a message is lost.

Jobs move forward on events, and each of them can be lost without a trace:
- S3 invokes the dispatcher asynchronously; when it fails on every retry (two), the event
  is dropped and the uploaded job stays PENDING;
- a client that never uploads leaves its job PENDING;
- SQS drops a message no one received within the queue's retention period (it is not
  dead-lettered), leaving the job QUEUED or PROCESSING;
- the dead-letter handler may itself fail until the dead-letter queue drops the message.

On a schedule (app.py), the sweeper queries the open-jobs index (chalicelib/jobs.py) for
jobs no write has touched for longer than their rule allows, at most SWEEP_MAX_JOBS
(200) per run: the rest wait for the next run, which starts where this one ended, since
every job it handles leaves the query. The rules:

- PENDING for longer than UPLOAD_URL_TTL_SECONDS + SWEEP_PENDING_GRACE_SECONDS (15 + 15
  minutes). After the presigned form expires no upload can start; the grace lets one that
  started just before finish (25 MiB at 30 kB/s) and its event reach the dispatcher. If
  the source has a stored version, its event was lost: each version is dispatched exactly
  as the dispatcher would have, oldest first, so the first upload is the one the job pins
  and any later one is deleted. If there is none, the job ends FAILED `upload_expired`.
- QUEUED or PROCESSING for longer than the jobs queue's retention plus its visibility
  timeout plus SWEEP_STUCK_MARGIN_SECONDS (4 days + 6 minutes + 6 hours): no message for
  the job can still be on the jobs queue, so it ends FAILED `processing_failed`. A
  message's retention counts from when it was sent: a QUEUED job's message is sent right
  after its write, or again by a retried S3 event, which Lambda delivers within its
  maximum event age for asynchronous invocations (6 hours, the margin). A PROCESSING job
  was last written when a worker received its message: the message returns within one
  visibility timeout, to be received again (a new write) or dropped. A message that went
  to the dead-letter queue means `processing_failed` anyway.

Every end is one conditional write that holds only if no write has touched the job since
the sweeper read it (the same `updatedAt`): a worker or dispatcher moving the job at the
same moment wins and the sweeper skips it. So runs may overlap, and two runs do what one
does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from chalicelib import dispatch, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import PROCESSING_FAILED, StaleTransition, TransientError, UploadExpired
from chalicelib.observability import job_fields, logger, metric

# What a sweep did with a job (the `action` dimension of the JobsSwept metric).
DISPATCHED = "dispatched"  # a lost upload event, dispatched now
UPLOAD_EXPIRED = UploadExpired.code  # ended FAILED: nothing was uploaded
STUCK = PROCESSING_FAILED  # ended FAILED: its message can no longer arrive
# ... and what it did not do.
SKIPPED = "skipped"  # the job moved meanwhile (a worker or dispatcher won the race)
ERRORS = "errors"  # AWS failed; the job is tried again next run
SWEPT = frozenset({DISPATCHED, UPLOAD_EXPIRED, STUCK})

UPLOAD_EXPIRED_MESSAGE = "No file was uploaded before the upload URL expired."
STUCK_MESSAGE = (
    "The job was not processed within the jobs queue's retention period; "
    "its message was lost and it was given up."
)


class SweepIncomplete(TransientError):
    """Some jobs could not be handled; the next run tries them again."""


@dataclass(frozen=True)
class Cutoffs:
    """A job whose last write is older than its rule's cutoff is the sweeper's."""

    pending: str
    stuck: str

    @classmethod
    def at(cls, now: datetime) -> Cutoffs:
        config = settings()
        pending_age = config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds
        stuck_age = (
            config.jobs_queue_retention_seconds
            + config.jobs_queue_visibility_timeout_seconds
            + config.sweep_stuck_margin_seconds
        )
        return cls(
            pending=_timestamp(now - timedelta(seconds=pending_age)),
            stuck=_timestamp(now - timedelta(seconds=stuck_age)),
        )


@dataclass
class SweepReport:
    """How many jobs each action took (DISPATCHED, UPLOAD_EXPIRED, STUCK, SKIPPED, ERRORS)."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def examined(self) -> int:
        return sum(self.counts.values())


def sweep(now: datetime | None = None) -> SweepReport:
    """One run: end or dispatch every overdue open job, up to SWEEP_MAX_JOBS of them.

    Raises SweepIncomplete after the run if AWS failed for any job (the invocation then
    counts as an error; nothing is lost, the job is found again next run)."""
    cutoffs = Cutoffs.at(now or datetime.now(UTC))
    report = SweepReport()
    budget = settings().sweep_max_jobs
    rules: tuple[tuple[str, str, Callable[[jobs.OpenJob], str]], ...] = (
        (jobs.PENDING, cutoffs.pending, _sweep_pending),
        (jobs.QUEUED, cutoffs.stuck, _sweep_stuck),
        (jobs.PROCESSING, cutoffs.stuck, _sweep_stuck),
    )
    for status, cutoff, rule in rules:
        for job in jobs.open_jobs_before(status, cutoff, budget - report.examined):
            report.counts[_apply(rule, job)] += 1
        if report.examined >= budget:
            break
    # A run that found nothing logs at DEBUG: every few minutes, that is most runs.
    level = logging.INFO if report.examined else logging.DEBUG
    logger.log(level, "sweep done", extra={"swept": dict(report.counts), "budget": budget})
    if report.counts[ERRORS]:
        raise SweepIncomplete(f"{report.counts[ERRORS]} job(s) could not be swept")
    return report


def _apply(rule: Callable[[jobs.OpenJob], str], job: jobs.OpenJob) -> str:
    try:
        action = rule(job)
    except StaleTransition:
        logger.info("job moved while being swept; left to it", extra=job_fields(job.job_id))
        return SKIPPED
    except TransientError:
        logger.exception("job not swept; the next run retries", extra=job_fields(job.job_id))
        return ERRORS
    if action in SWEPT:
        metric("JobsSwept", 1, action=action)
    return action


def _sweep_pending(job: jobs.OpenJob) -> str:
    versions = storage.source_versions(settings().uploads_bucket, job.source_key)
    if not versions:
        _end_failed(job, UPLOAD_EXPIRED, UPLOAD_EXPIRED_MESSAGE)
        return UPLOAD_EXPIRED
    first, *later = versions
    outcome = dispatch.dispatch(first)
    for other in later:
        _reject_later_upload(job, other)
    fields = job_fields(job.job_id, versionId=first.version_id, outcome=outcome)
    if outcome != dispatch.QUEUED:
        # A late event dispatched it between the query and now.
        logger.info("job dispatched meanwhile; left to it", extra=fields)
        return SKIPPED
    logger.warning("upload event lost; the sweeper dispatched the job", extra=fields)
    return DISPATCHED


def _reject_later_upload(job: jobs.OpenJob, other: storage.StoredObject) -> None:
    """Dispatch a later upload as its own lost event would have been (it is deleted). A
    failure only leaves it to the uploads lifecycle rule: the job itself is dispatched."""
    try:
        dispatch.dispatch(other)
    except TransientError:
        logger.warning(
            "later upload not rejected; the lifecycle rule will expire it",
            extra=job_fields(job.job_id, versionId=other.version_id),
            exc_info=True,
        )


def _sweep_stuck(job: jobs.OpenJob) -> str:
    _end_failed(job, STUCK, STUCK_MESSAGE)
    return STUCK


def _end_failed(job: jobs.OpenJob, code: str, message: str) -> None:
    jobs.fail_unchanged(job, code=code, message=message)
    fields = job_fields(job.job_id, code=code, status=job.status, updatedAt=job.updated_at)
    logger.warning("job ended by the sweeper", extra=fields)
    metric("JobsFailed", 1, code=code)


def _timestamp(moment: datetime) -> str:
    """`moment` as jobs.now_iso writes `updatedAt`, so strings compare as times."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
