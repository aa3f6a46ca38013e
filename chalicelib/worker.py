"""The thumbnail worker and the dead-letter handler, both fed by SQS batches.

Chalice cannot turn on SQS partial batch responses, so a batch is all-or-nothing for
Lambda: if the handler raises, every message in it comes back. To keep one failing job
from replaying its siblings, each record is processed on its own; when any record fails
transiently, the ones that finished are deleted from the queue explicitly before the
handler raises. Only the failed ones return, and after the queue's maxReceiveCount they
go to the dead-letter queue, whose handler ends the job FAILED (never stuck).

A job is claimed (-> PROCESSING) by one conditional write that also proves the message
names the job's tenant, key and the source version the dispatcher pinned, and returns
the job record. The worker then reads exactly that version: GetObject's length is
checked against the byte cap before the body is read, and the file's signature against
the content type the job declared, before anything is decoded.

Bad sources are permanent failures: the job ends FAILED with the error's code at once
and the message is consumed, not retried. Duplicates are harmless: a terminal job is
skipped, and output keys are deterministic. Once the worker has ended a job COMPLETED or
FAILED, the source version is deleted: the outputs are what the service keeps. (A job the
dead-letter handler fails keeps its source until the uploads lifecycle rule expires it,
for whoever investigates why it failed on every retry.)

An invocation that dies (timeout, out of memory) fails its whole batch, whatever record
it died on: the records after that one never ran, yet each was received once more. A job
that kills its worker every time thus takes its siblings to the dead-letter queue after
maxReceiveCount deaths. The dead-letter handler tells them apart by the job's record:
`attempts` counts the worker's claims, so a job claimed fewer than maxReceiveCount times
was not what kept failing, and its message is sent back to the jobs queue (with a
`redrives` count) instead of the job being failed. After MAX_REDRIVES such returns the job
is given up too, so every job still ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chalicelib import clients, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import (
    PROCESSING_FAILED,
    ContentMismatch,
    NotFound,
    ProcessingTimeout,
    SourceError,
    StaleTransition,
    TransientError,
    job_error_message,
    public_message,
)
from chalicelib.formats import DECLARED_FORMATS
from chalicelib.observability import job_fields, logger, metric
from chalicelib.presets import Preset, load_presets


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    tenant: str
    bucket: str
    key: str
    version_id: str | None = None
    # How many times the dead-letter handler has sent this job's message back.
    redrives: int = 0

    @property
    def upload(self) -> jobs.Upload:
        return jobs.Upload(self.job_id, self.tenant, self.key, self.version_id)


class BatchIncomplete(TransientError):
    """Some records of a batch failed; they return to the queue for another try."""


class InvocationEnding(TransientError):
    """The render ran out of what was left of the invocation, not of its own budget: the
    image may be fine, so the record goes back to the queue for a fresh invocation."""


RemainingMillis = Callable[[], int]

# Kept back from the invocation's remaining time for writing outputs and the final status.
FINISHING_SECONDS = 5.0
# Below this much time left, the invocation's clock is not worth honouring: the render gets
# its whole budget, and if Lambda's timeout ends the invocation first, the batch returns.
MIN_RENDER_SECONDS = 1.0


def handle_jobs_batch(
    records: Iterable[dict[str, Any]], remaining_millis: RemainingMillis | None = None
) -> None:
    """``remaining_millis``: the Lambda context's ``get_remaining_time_in_millis``. A batch
    of several slow images must not run into the function's timeout, which would return
    every record of the batch; each render's budget is cut to what the invocation has left."""
    _run_batch(records, lambda record: _process_record(record, remaining_millis))


def handle_dead_letters(records: Iterable[dict[str, Any]]) -> None:
    _run_batch(records, _end_or_send_back)


def _run_batch(
    records: Iterable[dict[str, Any]], process: Callable[[dict[str, Any]], None]
) -> None:
    done: list[dict[str, Any]] = []
    failed = 0
    for record in records:
        try:
            process(record)
        # A batch boundary: whatever one record raises must not cost its siblings
        # their completed work, so every failure is counted and the rest go on.
        except Exception:  # noqa: BLE001
            failed += 1
            logger.exception(
                "record failed; it will be retried",
                extra={"messageId": record.get("messageId"), "attempt": _receive_count(record)},
            )
        else:
            done.append(record)
    if failed:
        _delete_records(done)
        raise BatchIncomplete(f"{failed} of {failed + len(done)} record(s) failed")


def _delete_records(records: list[dict[str, Any]]) -> None:
    for record in records:
        queue_url = clients.queue_url_from_arn(record["eventSourceARN"])
        with clients.aws_errors("delete finished message"):
            clients.sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=record["receiptHandle"])


def _receive_count(record: dict[str, Any]) -> int:
    return int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))


def parse_message(body: str) -> JobMessage | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    fields = ("jobId", "tenant", "bucket", "key")
    if not all(isinstance(payload.get(name), str) and payload[name] for name in fields):
        return None
    version_id = payload.get("versionId")
    if version_id is not None and not (isinstance(version_id, str) and version_id):
        return None
    redrives = payload.get("redrives", 0)
    # bool is an int to Python, not to JSON: `true` is no count.
    if isinstance(redrives, bool) or not isinstance(redrives, int) or redrives < 0:
        return None
    return JobMessage(
        payload["jobId"], payload["tenant"], payload["bucket"], payload["key"], version_id, redrives
    )


# --- the worker ---------------------------------------------------------------------------


def _process_record(record: dict[str, Any], remaining_millis: RemainingMillis | None) -> None:
    message = parse_message(record.get("body", ""))
    if message is None:
        logger.error("dropping malformed job message", extra={"messageId": record.get("messageId")})
        return
    claimed = jobs.claim(message.upload)
    if not claimed.moved or claimed.job is None:
        _log_unclaimed(message, claimed.job)
        return
    job = claimed.job
    started = time.perf_counter()
    try:
        _make_thumbnails(job, message, remaining_millis)
    except SourceError as exc:
        if _end_failed(job.job_id, exc):
            _discard_source(message)
    except StaleTransition:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job.job_id))
    else:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("job completed", extra=job_fields(job.job_id, durationMs=round(elapsed_ms, 1)))
        metric("JobsCompleted", 1)
        metric("JobDuration", elapsed_ms, "Milliseconds")
        _discard_source(message)


def _log_unclaimed(message: JobMessage, current: jobs.Job | None) -> None:
    if current is None or current.tenant != message.tenant or current.source_key != message.key:
        logger.error("dropping message for an unknown job", extra=job_fields(message.job_id))
    elif current.is_terminal:
        logger.info(
            "duplicate delivery of a finished job",
            extra=job_fields(current.job_id, status=current.status),
        )
        metric("DuplicateDeliveries", 1)
    else:
        logger.error(
            "dropping message for a source version the job did not pin",
            extra=job_fields(current.job_id, versionId=message.version_id),
        )


def _make_thumbnails(
    job: jobs.Job, message: JobMessage, remaining_millis: RemainingMillis | None
) -> None:
    from chalicelib import imaging

    config = settings()
    presets = _job_presets(job)
    try:
        data = storage.read_source(
            message.bucket, message.key, message.version_id, max_bytes=config.max_upload_bytes
        )
    except NotFound as exc:
        raise SourceGone("The uploaded object no longer exists.") from exc
    _check_declared_format(job.content_type, data)
    budget, cut_short = render_budget(config.render_time_budget_seconds, remaining_millis)
    try:
        result = imaging.render(
            data,
            presets,
            max_pixels=config.max_pixels,
            max_frames=config.max_frames,
            time_budget=budget,
        )
    except ProcessingTimeout as exc:
        if cut_short:
            raise InvocationEnding(f"The invocation ended within {budget:.1f} s") from exc
        exc.detail = f"budget: {budget:g} s"
        raise
    written = [
        storage.Output(
            storage.output_key(job.tenant, job.job_id, rendition.preset, rendition.extension),
            rendition.data,
            rendition.content_type,
        )
        for rendition in result.outputs
    ]
    storage.write_outputs(written)
    outputs = [
        {
            "preset": rendition.preset,
            "width": rendition.width,
            "height": rendition.height,
            "format": rendition.format,
            "contentType": rendition.content_type,
            "bytes": len(rendition.data),
            "key": output.key,
        }
        for rendition, output in zip(result.outputs, written, strict=True)
    ]
    source = {
        "contentType": result.source.content_type,
        "bytes": len(data),
        "width": result.source.width,
        "height": result.source.height,
        "format": result.source.format,
    }
    jobs.complete(job.job_id, source=source, outputs=outputs)


def _check_declared_format(content_type: str, data: bytes) -> None:
    """The file's signature must be a format its declared content type allows. A signature
    of no accepted format is left to the engine, which fails it unsupported_format."""
    from chalicelib.imaging.decode import sniff_format

    found = sniff_format(data)
    if found is not None and found not in DECLARED_FORMATS.get(content_type, frozenset()):
        raise ContentMismatch(
            f"The upload was declared {content_type}, but it is a {found} file.",
            detail=f"declared: {content_type}; found: {found}",
        )


def _discard_source(message: JobMessage) -> None:
    """Delete the source version of a job the worker has ended. A failure only leaves it to
    the uploads lifecycle rule: the job is final, and a retry would not come back here."""
    if message.version_id is None:
        return
    try:
        storage.delete_source(message.bucket, message.key, message.version_id)
    except TransientError:
        logger.warning(
            "source not deleted; the lifecycle rule will expire it",
            extra=job_fields(message.job_id),
            exc_info=True,
        )


def remaining_time(lambda_context: object) -> RemainingMillis | None:
    """The Lambda context's clock, if the context has one."""
    clock = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return clock if callable(clock) else None


def render_budget(
    configured: float, remaining_millis: RemainingMillis | None
) -> tuple[float, bool]:
    """Seconds the next render may take, and whether that is less than its own budget."""
    if remaining_millis is None:
        return configured, False
    left = remaining_millis() / 1000 - FINISHING_SECONDS
    if left >= configured or left < MIN_RENDER_SECONDS:
        return configured, False
    return left, True


class SourceGone(SourceError):
    code = PROCESSING_FAILED


class PresetRemoved(SourceError):
    code = PROCESSING_FAILED


def _job_presets(job: jobs.Job) -> list[Preset]:
    configured = load_presets(settings().presets_json)
    missing = [name for name in job.presets if name not in configured]
    if missing:
        raise PresetRemoved(f"Preset(s) no longer configured: {', '.join(missing)}.")
    return [configured[name] for name in job.presets]


def _end_failed(job_id: str, error: SourceError) -> bool:
    """End the job FAILED with the error's code and public message; False if it had
    already ended elsewhere. The error's own text, and its cause's, go to the log only."""
    try:
        jobs.fail(job_id, code=error.code, message=public_message(error))
    except StaleTransition:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job_id))
        return False
    cause = error.__cause__
    _log_failed(
        job_id,
        error.code,
        error.message,
        cause=None if cause is None else f"{type(cause).__name__}: {cause}",
    )
    return True


def _log_failed(job_id: str, code: str, reason: str, *, cause: str | None = None) -> None:
    fields = job_fields(job_id, code=code, reason=reason)
    if cause is not None:
        fields["cause"] = cause
    logger.warning("job failed", extra=fields)
    metric("JobsFailed", 1, code=code)


# --- the dead-letter handler --------------------------------------------------------------

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


def _end_or_send_back(record: dict[str, Any]) -> None:
    message = parse_message(record.get("body", ""))
    if message is None:
        logger.error(
            "dead letter is not a job message", extra={"messageId": record.get("messageId")}
        )
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
        _log_failed(message.job_id, PROCESSING_FAILED, reason)
    elif job is None or not _owns(job, message):
        logger.error("dropping dead letter for an unknown job", extra=job_fields(message.job_id))
    elif job.is_terminal:
        logger.info(
            "dead letter of a finished job", extra=job_fields(job.job_id, status=job.status)
        )
    else:
        _redrive(record["body"], message, job.attempts)


def _owns(job: jobs.Job, message: JobMessage) -> bool:
    return job.tenant == message.tenant and job.source_key == message.key


def _is_open_job_of(job: jobs.Job | None, message: JobMessage) -> bool:
    return job is not None and _owns(job, message) and not job.is_terminal


def _redrive(body: str, message: JobMessage, attempts: int) -> None:
    """Send the job's message back to the jobs queue: the same body, its redrives counted."""
    payload = json.loads(body)
    payload["redrives"] = message.redrives + 1
    queue_url = clients.queue_url(settings().jobs_queue)
    with clients.aws_errors("send job message back"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps(payload))
    logger.warning(
        "dead-lettered with a batch that kept failing; job message sent back",
        extra=job_fields(message.job_id, attempts=attempts, redrives=payload["redrives"]),
    )
    metric("JobsRedriven", 1)
