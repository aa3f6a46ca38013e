"""The sweeper: every job ends COMPLETED or FAILED, even when an event or a message is lost.

Jobs move forward on events, and each of them can be lost without a trace:
- S3 invokes the dispatcher asynchronously; when it fails on every retry (two), the event
  is dropped and the uploaded job stays PENDING;
- a client that never uploads leaves its job PENDING;
- SQS drops a message no one received within the queue's retention period (it is not
  dead-lettered), leaving the job QUEUED or PROCESSING;
- the dead-letter handler may itself fail until the dead-letter queue drops the message.

On a schedule (app.py), the sweeper queries the open-jobs index (chalicelib/jobs.py) for
jobs no write has touched for longer than their rule allows, and acts on at most
SWEEP_MAX_JOBS (200) of them per run: the rest wait for the next run, which starts where
this one ended, since every job it handles leaves the query.

The run's jobs are shared fairly among tenants, so that one tenant's backlog does not
delay another's jobs. A run reads up to SWEEP_SCAN_JOBS (5000) overdue jobs per status,
an equal share of each shard, oldest first; it then takes them one tenant at a time in
turn (tenants whose oldest overdue job is oldest first; within a tenant, one status at a
time in turn, oldest first), so with n tenants waiting each gets at least
SWEEP_MAX_JOBS / n of the run, or all of its jobs. What one tenant can leave overdue is
bounded too: at most MAX_PENDING_UPLOADS (1000) PENDING jobs at once (POST /uploads
refuses more). So while at most 4 tenants sit at that bound, another tenant's overdue
PENDING job is among the jobs read (5000 per status is 625 a shard; 4 tenants' 4000 put
500 in a shard on average) and is handled by the next run, as long as at most
SWEEP_MAX_JOBS tenants are waiting.

The rules:

- PENDING for longer than UPLOAD_URL_TTL_SECONDS + SWEEP_PENDING_GRACE_SECONDS (15 + 15
  minutes). After the presigned form expires no upload can start; the grace lets one that
  started just before finish (25 MiB at 30 kB/s) and its event reach the dispatcher. If
  the source has a stored version, its event was lost: each version is dispatched exactly
  as the dispatcher would have, oldest first, so the first upload is the one the job pins
  and any later one is deleted. If there is none, the job ends FAILED `upload_expired`.
- QUEUED for longer than SWEEP_REQUEUE_AFTER_SECONDS (6 hours 15 minutes). The dispatcher
  sends the message right after the write that queues the job; if every attempt of its
  event fails after that write, the job is QUEUED with no message anywhere, although its
  upload is fine. A retried S3 event sends it again, but Lambda gives up on an event after
  its maximum event age for asynchronous invocations (6 hours); past that and a margin,
  the sweeper sends the message itself, naming the pinned version
  (`dispatch.send_again`), at most SWEEP_MAX_REQUEUES (3) times a job, once per
  interval. Each time is recorded first, by a conditional write that keeps the job QUEUED
  and bumps its `updatedAt` and `requeues` (`jobs.requeue_unchanged`); only the run whose
  write holds sends, and a failed send spends that time. A job that was merely waiting
  (a backlog over 6 hours) gets a duplicate message, which the worker treats as any
  duplicate delivery: a finished job's message is skipped, claims are conditional, and a
  job claimed twice renders the same deterministic outputs and is completed once. A job
  whose re-sends are spent stays QUEUED until the next rule; each run still tries its
  write (refused, it costs one write unit and a place in the run's budget) until then.
- QUEUED or PROCESSING for longer than the jobs queue's retention plus its visibility
  timeout plus SWEEP_STUCK_MARGIN_SECONDS (4 days + 6 minutes + 6 hours) since its last
  write: no message for the job can still be on the jobs queue, so it ends FAILED
  `processing_failed`. A message's retention counts from when it was sent: a QUEUED job's
  message is sent right after its write (the dispatcher's, or the sweeper's re-send), or
  again by a retried S3 event, which Lambda delivers within its maximum event age (6
  hours, the margin). A PROCESSING job was last written when a worker received its
  message: the message returns within one visibility timeout, to be received again (a new
  write) or dropped. A message that went to the dead-letter queue means
  `processing_failed` anyway.
- COMPLETED or FAILED, with its event not handed to the webhooks queue for longer than
  SWEEP_ANNOUNCE_GRACE_SECONDS (1 minute) since the job ended: the hand-over that follows
  the job's end failed (chalicelib/job_events.py). The sweeper sends the event; a
  duplicate hand-over is harmless, deliveries are claimed per event and endpoint.

Every write is conditional and holds only if no write has touched the job since the
sweeper read it (the same `updatedAt`): a worker or dispatcher moving the job at the
same moment wins and the sweeper skips it. So runs may overlap, and two runs do what one
does.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import zip_longest

from chalicelib import dispatch, job_events, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import (
    PROCESSING_FAILED,
    SweepIncomplete,
    TransientError,
    UnexpectedAwsError,
    UploadExpired,
    job_error_message,
)
from chalicelib.jobs import JobStatus
from chalicelib.observability import job_fields, logger, metric
from chalicelib.timestamps import iso_utc

# What a sweep did with a job (the `action` dimension of the JobsSwept metric).
DISPATCHED = "dispatched"  # a lost upload event, dispatched now
REQUEUED = "requeued"  # a QUEUED job's message, sent again
UPLOAD_EXPIRED = UploadExpired.code  # ended FAILED: nothing was uploaded
STUCK = PROCESSING_FAILED  # ended FAILED: its message can no longer arrive
# ... and what it did not do.
SKIPPED = "skipped"  # the job moved meanwhile (a worker or dispatcher won the race)
REQUEUES_SPENT = "requeues_spent"  # QUEUED, re-sent SWEEP_MAX_REQUEUES times: left to STUCK
ERRORS = "errors"  # AWS failed; the job is tried again next run (a failed re-send: next interval)
ANNOUNCED = "announced"  # an ended job's event, handed to the webhooks queue now
SWEPT = frozenset({DISPATCHED, REQUEUED, UPLOAD_EXPIRED, STUCK, ANNOUNCED})

Rule = Callable[[jobs.OpenJob], str]

UPLOAD_EXPIRED_MESSAGE = job_error_message(UPLOAD_EXPIRED)
STUCK_MESSAGE = job_error_message(STUCK)


@dataclass(frozen=True)
class Cutoffs:
    """A job whose last write is older than its rule's cutoff is the sweeper's."""

    pending: str
    stuck: str
    # QUEUED jobs: the later of the requeue and stuck cutoffs (stuck alone without requeues).
    queued: str
    # Ended jobs whose event is not on the webhooks queue yet.
    unannounced: str

    @classmethod
    def at(cls, now: datetime) -> Cutoffs:
        config = settings()
        pending_age = config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds
        stuck_age = (
            config.jobs_queue_retention_seconds
            + config.jobs_queue_visibility_timeout_seconds
            + config.sweep_stuck_margin_seconds
        )
        queued_age = stuck_age
        if config.sweep_max_requeues:
            queued_age = min(stuck_age, config.sweep_requeue_after_seconds)
        return cls(
            pending=iso_utc(now - timedelta(seconds=pending_age)),
            stuck=iso_utc(now - timedelta(seconds=stuck_age)),
            queued=iso_utc(now - timedelta(seconds=queued_age)),
            unannounced=iso_utc(now - timedelta(seconds=config.sweep_announce_grace_seconds)),
        )


@dataclass
class SweepReport:
    """How many jobs each action took (DISPATCHED, REQUEUED, UPLOAD_EXPIRED, STUCK, SKIPPED,
    REQUEUES_SPENT, ERRORS)."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def examined(self) -> int:
        return sum(self.counts.values())


def sweep(now: datetime | None = None) -> SweepReport:
    """One run: end, dispatch or re-send overdue open jobs, up to SWEEP_MAX_JOBS, shared
    among tenants.

    Raises SweepIncomplete after the run if AWS failed for any job (the invocation then
    counts as an error; nothing is lost, the job is found again next run)."""
    cutoffs = Cutoffs.at(now or datetime.now(UTC))
    report = SweepReport()
    config = settings()
    budget = config.sweep_max_jobs
    per_shard = -(-config.sweep_scan_jobs // jobs.OPEN_SHARDS)
    rules: tuple[tuple[JobStatus, str, Rule], ...] = (
        (JobStatus.PENDING, cutoffs.pending, _sweep_pending),
        (JobStatus.QUEUED, cutoffs.queued, partial(_sweep_queued, stuck_before=cutoffs.stuck)),
        (JobStatus.PROCESSING, cutoffs.stuck, _sweep_stuck),
    )
    overdue = [
        (rule, job)
        for status, cutoff, rule in rules
        for job in jobs.open_jobs_before(status, cutoff, per_shard)
    ]
    overdue += [(_announce, job) for job in jobs.unannounced_before(cutoffs.unannounced, per_shard)]
    for rule, job in fair_share(overdue)[:budget]:
        report.counts[_apply(rule, job)] += 1
    # A run that found nothing logs at DEBUG: every few minutes, that is most runs.
    level = logging.INFO if report.examined else logging.DEBUG
    extra = {"swept": dict(report.counts), "budget": budget, "overdue": len(overdue)}
    logger.log(level, "sweep done", extra=extra)
    if report.counts[ERRORS]:
        raise SweepIncomplete(f"{report.counts[ERRORS]} job(s) could not be swept")
    return report


def fair_share[R](overdue: list[tuple[R, jobs.OpenJob]]) -> list[tuple[R, jobs.OpenJob]]:
    """`overdue` in the order a run takes them: one job of each tenant in turn, tenants
    whose oldest job is oldest first; a tenant's turns go to its statuses in turn, and
    within a status to its oldest job first."""
    queues: dict[str, dict[str, list[tuple[R, jobs.OpenJob]]]] = defaultdict(dict)
    for rule, job in sorted(overdue, key=lambda pair: pair[1].updated_at):
        queues[job.tenant].setdefault(job.status, []).append((rule, job))
    # dicts keep insertion order: tenants, and their statuses, by their oldest job.
    return _round_robin([_round_robin(list(by_status.values())) for by_status in queues.values()])


def _round_robin[T](queues: list[list[T]]) -> list[T]:
    """The first of each queue, then the second of each, and so on."""
    return [item for turn in zip_longest(*queues) for item in turn if item is not None]


def _apply(rule: Rule, job: jobs.OpenJob) -> str:
    try:
        action = rule(job)
    except TransientError:
        logger.exception("job not swept; the next run retries", extra=job_fields(job.job_id))
        return ERRORS
    except UnexpectedAwsError as exc:
        fields = job_fields(job.job_id, awsErrorCode=exc.aws_code, operation=exc.operation)
        logger.exception("job not swept: an AWS error no retry cures", extra=fields)
        return ERRORS
    if action in SWEPT:
        metric("JobsSwept", 1, action=action)
    return action


def _sweep_pending(job: jobs.OpenJob) -> str:
    versions = storage.source_versions(settings().uploads_bucket, job.source_key)
    if not versions:
        return _end_failed(job, UPLOAD_EXPIRED, UPLOAD_EXPIRED_MESSAGE)
    first, *later = versions
    outcome = dispatch.dispatch(first)
    for other in later:
        _reject_later_upload(job, other)
    fields = job_fields(job.job_id, versionId=first.version_id, outcome=outcome)
    if outcome is not dispatch.DispatchOutcome.QUEUED_NOW:
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
    except (TransientError, UnexpectedAwsError):
        logger.warning(
            "later upload not rejected; the lifecycle rule will expire it",
            extra=job_fields(job.job_id, versionId=other.version_id),
            exc_info=True,
        )


def _sweep_queued(job: jobs.OpenJob, *, stuck_before: str) -> str:
    if job.updated_at < stuck_before:
        return _sweep_stuck(job)
    requeue = jobs.requeue_unchanged(job, max_requeues=settings().sweep_max_requeues)
    if not requeue.moved or requeue.job is None:
        return _requeue_refused(job, requeue.job)
    dispatch.send_again(requeue.job)
    fields = job_fields(job.job_id, requeues=requeue.job.requeues, updatedAt=job.updated_at)
    logger.warning("job message lost; the sweeper sent it again", extra=fields)
    return REQUEUED


def _requeue_refused(job: jobs.OpenJob, current: jobs.Job | None) -> str:
    if current is None or current.status is not JobStatus.QUEUED:
        return _moved_meanwhile(job)
    if current.updated_at != job.updated_at:
        return _moved_meanwhile(job)
    # Every run until the job is stuck: DEBUG, as for an empty run.
    fields = job_fields(job.job_id, updatedAt=job.updated_at)
    logger.debug("job message sent again as often as allowed; left to the stuck rule", extra=fields)
    return REQUEUES_SPENT


def _moved_meanwhile(job: jobs.OpenJob) -> str:
    logger.info("job moved while being swept; left to it", extra=job_fields(job.job_id))
    return SKIPPED


def _sweep_stuck(job: jobs.OpenJob) -> str:
    return _end_failed(job, STUCK, STUCK_MESSAGE)


def _announce(job: jobs.OpenJob) -> str:
    """Hand an ended job's event over: the job's end could not (chalicelib/job_events.py)."""
    current = jobs.get_job(job.job_id)
    event = None if current is None else job_events.of(current)
    if event is None:
        return SKIPPED
    job_events.send(event)
    jobs.mark_announced(event.job_id, event.event_id)
    logger.info("job event handed over late", extra=job_fields(job.job_id))
    return ANNOUNCED


def _end_failed(job: jobs.OpenJob, code: str, message: str) -> str:
    """End `job` FAILED with `code`, which is then the action taken; SKIPPED if it moved."""
    failed = jobs.fail_unchanged(job, code=code, message=message)
    if not failed.moved:
        return _moved_meanwhile(job)
    job_events.announce(failed.job)
    fields = job_fields(job.job_id, code=code, status=job.status, updatedAt=job.updated_at)
    logger.warning("job ended by the sweeper", extra=fields)
    metric("JobsFailed", 1, code=code)
    return code
