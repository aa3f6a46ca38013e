"""The thumbnail worker, fed by SQS batches of job messages (chalicelib/job_message.py).

Each record is processed on its own, behind the partial-batch boundary
(chalicelib/sqs_batch.py): a record that fails transiently returns to the queue alone,
and after the queue's maxReceiveCount goes to the dead-letter queue, whose handler
(chalicelib/dead_letters.py) ends the job FAILED (never stuck).

A job is claimed (-> PROCESSING) by one conditional write that also proves the message
names the job's tenant, key and the source version the dispatcher pinned, and returns
the job record. The worker then reads exactly that version: GetObject's length is
checked against the byte cap before the body is read, and the file's signature against
the content type the job declared, before anything is decoded.

Bad sources are permanent failures: the job ends FAILED with the error's code at once
and the message is consumed, not retried. Duplicates are harmless: a terminal job is
skipped, and output keys are deterministic. Before a job completes, the pinned source
version is copied to the job's original (kept ORIGINALS_RETENTION_DAYS for reprocessing,
chalicelib/reprocess.py); once the worker has ended a job COMPLETED or FAILED, the source
version itself is deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from chalicelib import job_events, job_message, jobs, rendering, sqs_batch, storage
from chalicelib.config import settings
from chalicelib.errors import (
    ContentMismatch,
    NotFound,
    PresetRemoved,
    SourceError,
    SourceGone,
    TransientError,
    UnexpectedAwsError,
    public_message,
)
from chalicelib.formats import DECLARED_FORMATS
from chalicelib.job_message import JobMessage
from chalicelib.observability import job_fields, log_job_failed, logger, metric
from chalicelib.presets import Preset, load_presets, parse_preset
from chalicelib.rendering import RemainingMillis


def handle_jobs_batch(
    records: Iterable[Mapping[str, object]], remaining_millis: RemainingMillis | None = None
) -> None:
    """``remaining_millis``: the Lambda context's ``get_remaining_time_in_millis``. A batch
    of several slow images must not run into the function's timeout, which would return
    every record of the batch; each render's budget is cut to what the invocation has left."""
    sqs_batch.run_batch(records, lambda record: _process_record(record, remaining_millis))


# --- the worker ---------------------------------------------------------------------------


def _process_record(record: sqs_batch.SqsRecord, remaining_millis: RemainingMillis | None) -> None:
    message = job_message.parse(record.body)
    if message is None:
        logger.error("dropping malformed job message", extra={"messageId": record.message_id})
        return
    try:
        _process_message(message, remaining_millis)
    except UnexpectedAwsError as exc:
        # A bug or a misconfiguration, not a busy AWS: said loudly, with the AWS code. The
        # record fails as any other does: back to the queue, at last to the dead-letter
        # handler, which ends the job FAILED.
        fields = job_fields(message.job_id, awsErrorCode=exc.aws_code, operation=exc.operation)
        logger.error("job message failed on an AWS error no retry cures", extra=fields)
        raise


def _process_message(message: JobMessage, remaining_millis: RemainingMillis | None) -> None:
    claimed = jobs.claim(message.upload)
    if not claimed.moved or claimed.job is None:
        _log_unclaimed(message, claimed.job)
        return
    job = claimed.job
    started = time.perf_counter()
    try:
        completed = _make_thumbnails(job, message, remaining_millis)
    except SourceError as exc:
        if _end_failed(job.job_id, exc):
            _discard_source(message)
        return
    if not completed:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job.job_id))
    else:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("job completed", extra=job_fields(job.job_id, durationMs=round(elapsed_ms, 1)))
        metric("JobsCompleted", 1)
        metric("JobDuration", elapsed_ms, "Milliseconds")
        _discard_source(message)


def _log_unclaimed(message: JobMessage, current: jobs.Job | None) -> None:
    if current is None or not current.owns(message.upload):
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
) -> bool:
    """Render, store and record the job's outputs: True if this completed the job, False if
    it had ended elsewhere meanwhile. Raises SourceError when the source cannot be used."""
    config = settings()
    presets = _job_presets(job)
    try:
        data = storage.read_source(
            message.bucket, message.key, message.version_id, max_bytes=config.max_upload_bytes
        )
    except NotFound as exc:
        raise SourceGone("The uploaded object no longer exists.") from exc
    _check_declared_format(job.content_type, data)
    rendered = rendering.render_and_store(job.tenant, job.job_id, data, presets, remaining_millis)
    completed = jobs.complete(
        job.job_id,
        source=rendered.source,
        outputs=rendered.outputs,
        placeholder=rendered.placeholder,
        original=_keep_original(job, message, len(data)),
    )
    if completed.moved:
        job_events.announce(completed.job)
    return completed.moved


def _keep_original(job: jobs.Job, message: JobMessage, size: int) -> dict[str, object] | None:
    """Copy the pinned source version to the job's original, kept ORIGINALS_RETENTION_DAYS
    for reprocessing (chalicelib/reprocess.py); None when the stage keeps none. Done before
    the job completes: a completed job's original exists (until it expires)."""
    days = settings().originals_retention_days
    if days == 0:
        return None
    key = storage.original_key(job.tenant, job.job_id, job.filename)
    storage.keep_original(message.bucket, message.key, message.version_id, key)
    return {"key": key, "bytes": size, "expiresAt": int(time.time()) + days * 86400}


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
    except (TransientError, UnexpectedAwsError):
        logger.warning(
            "source not deleted; the lifecycle rule will expire it",
            extra=job_fields(message.job_id),
            exc_info=True,
        )


def _job_presets(job: jobs.Job) -> list[Preset]:
    configured = load_presets(settings().presets_json)
    missing = [name for name in job.presets if name not in configured]
    if missing:
        raise PresetRemoved(f"Preset(s) no longer configured: {', '.join(missing)}.")
    own = [
        parse_preset(document, f"requestedOutputs[{index}]")
        for index, document in enumerate(job.requested_outputs)
    ]
    return [configured[name] for name in job.presets] + own


def _end_failed(job_id: str, error: SourceError) -> bool:
    """End the job FAILED with the error's code and public message; False if it had
    already ended elsewhere. The error's own text, and its cause's, go to the log only."""
    failed = jobs.fail(job_id, code=error.code, message=public_message(error))
    if not failed.moved:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job_id))
        return False
    job_events.announce(failed.job)
    cause = error.__cause__
    log_job_failed(
        job_id,
        error.code,
        error.message,
        cause=None if cause is None else f"{type(cause).__name__}: {cause}",
    )
    return True
