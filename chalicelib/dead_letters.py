"""The dead-letter handler: every job whose message reaches the dead-letter queue ends.

An invocation that dies (timeout, out of memory) fails its whole batch, whatever record
it died on: the records after that one never ran, yet each was received once more. A job
that kills its worker every time thus takes its siblings to the dead-letter queue after
maxReceiveCount deaths. The handler tells them apart by the job's record: `attempts`
counts the worker's claims, so a job claimed fewer than maxReceiveCount times was not
what kept failing, and its message is sent back to the jobs queue (with one more
`redrives`) instead of the job being failed. After MAX_REDRIVES such returns the job is
given up too, so every job still ends. (A job this handler fails keeps its source until
the uploads lifecycle rule expires it, for whoever investigates why it failed.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from chalicelib import clients, job_events, job_message, jobs, sqs_batch
from chalicelib.config import settings
from chalicelib.errors import PROCESSING_FAILED, job_error_message
from chalicelib.job_message import JobMessage
from chalicelib.observability import job_fields, log_job_failed, logger, metric

# The jobs queue's redrive policy (infra/template.yaml): a message is dead-lettered on its
# receive after this many. tests/test_pipeline.py checks the two agree.
MAX_RECEIVE_COUNT = 3
# How many times one job's message may come back from the dead-letter queue to the jobs
# queue while the job was not what failed it. Each return allows MAX_RECEIVE_COUNT more
# receives, so a job caught in batches with one poisonous job after another still ends.
MAX_REDRIVES = 2

# What a job the dead-letter handler gives up says; why it was given up (one of the two
# reasons below) goes to the log.
GIVEN_UP = job_error_message(PROCESSING_FAILED)
GIVEN_UP_AFTER_RETRIES = "Processing failed repeatedly; the job was given up after its retries."
GIVEN_UP_AFTER_REDRIVES = (
    "Processing kept failing in batches with other jobs; the job was given up after "
    f"{MAX_REDRIVES} more rounds of retries."
)


def handle_dead_letters(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _end_or_send_back)


def _end_or_send_back(record: sqs_batch.SqsRecord) -> None:
    message = job_message.parse(record.body)
    if message is None:
        logger.error("dead letter is not a job message", extra={"messageId": record.message_id})
        return
    # One conditional write decides in the common case: fail the job if it was claimed
    # maxReceiveCount times; refused, it comes back as it stood, to tell why.
    reason = GIVEN_UP_AFTER_RETRIES
    outcome = jobs.give_up(
        message.upload, code=PROCESSING_FAILED, message=GIVEN_UP, min_attempts=MAX_RECEIVE_COUNT
    )
    spent = message.redrives >= MAX_REDRIVES
    if spent and not outcome.moved and _is_open_job_of(outcome.job, message):
        reason = GIVEN_UP_AFTER_REDRIVES
        outcome = jobs.give_up(message.upload, code=PROCESSING_FAILED, message=GIVEN_UP)
    job = outcome.job
    if outcome.moved:
        log_job_failed(message.job_id, PROCESSING_FAILED, reason)
        job_events.announce(job)
    elif job is None or not job.owns(message.upload):
        logger.error("dropping dead letter for an unknown job", extra=job_fields(message.job_id))
    elif job.is_terminal:
        logger.info(
            "dead letter of a finished job", extra=job_fields(job.job_id, status=job.status)
        )
    else:
        _redrive(message, job.attempts)


def _is_open_job_of(job: jobs.Job | None, message: JobMessage) -> bool:
    return job is not None and job.owns(message.upload) and not job.is_terminal


def _redrive(message: JobMessage, attempts: int) -> None:
    """Send the job's message back to the jobs queue, its redrives counted."""
    redriven = message.redriven()
    queue_url = clients.queue_url(settings().jobs_queue)
    with clients.aws_errors("send job message back"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=redriven.to_body())
    logger.warning(
        "dead-lettered with a batch that kept failing; job message sent back",
        extra=job_fields(message.job_id, attempts=attempts, redrives=redriven.redrives),
    )
    metric("JobsRedriven", 1)
