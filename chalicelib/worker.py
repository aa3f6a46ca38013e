"""The thumbnail worker and the dead-letter handler, both fed by SQS batches.

Chalice cannot turn on SQS partial batch responses, so a batch is all-or-nothing for
Lambda: if the handler raises, every message in it comes back. To keep one failing job
from replaying its siblings, each record is processed on its own; when any record fails
transiently, the ones that finished are deleted from the queue explicitly before the
handler raises. Only the failed ones return, and after the queue's maxReceiveCount they
go to the dead-letter queue, whose handler ends the job FAILED (never stuck).

Bad sources are permanent failures: the job ends FAILED with the error's code at once
and the message is consumed, not retried. Duplicates are harmless: a terminal job is
skipped, and output keys are deterministic.
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
    FileTooLarge,
    NotFound,
    SourceError,
    StaleTransition,
    TransientError,
)
from chalicelib.observability import job_fields, logger, metric
from chalicelib.presets import Preset, load_presets


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    tenant: str
    bucket: str
    key: str


class BatchIncomplete(TransientError):
    """Some records of a batch failed; they return to the queue for another try."""


def handle_jobs_batch(records: Iterable[dict[str, Any]]) -> None:
    _run_batch(records, _process_record)


def handle_dead_letters(records: Iterable[dict[str, Any]]) -> None:
    _run_batch(records, _fail_dead_letter)


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
    return JobMessage(payload["jobId"], payload["tenant"], payload["bucket"], payload["key"])


# --- the worker ---------------------------------------------------------------------------


def _process_record(record: dict[str, Any]) -> None:
    message = parse_message(record.get("body", ""))
    if message is None:
        logger.error("dropping malformed job message", extra={"messageId": record.get("messageId")})
        return
    job = jobs.get_job(message.job_id)
    if job is None or job.tenant != message.tenant or job.source_key != message.key:
        logger.error("dropping message for an unknown job", extra=job_fields(message.job_id))
        return
    if job.is_terminal:
        logger.info(
            "duplicate delivery of a finished job", extra=job_fields(job.job_id, status=job.status)
        )
        metric("DuplicateDeliveries", 1)
        return
    started = time.perf_counter()
    try:
        _make_thumbnails(job, message)
    except SourceError as exc:
        _end_failed(job.job_id, exc.code, exc.message)
    except StaleTransition:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job.job_id))
    else:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("job completed", extra=job_fields(job.job_id, durationMs=round(elapsed_ms, 1)))
        metric("JobsCompleted", 1)
        metric("JobDuration", elapsed_ms, "Milliseconds")


def _make_thumbnails(job: jobs.Job, message: JobMessage) -> None:
    from chalicelib import imaging

    config = settings()
    presets = _job_presets(job)
    try:
        head = storage.head_source(message.bucket, message.key)
    except NotFound as exc:
        raise SourceGone("The uploaded object no longer exists.") from exc
    if head.bytes > config.max_upload_bytes:
        raise FileTooLarge(
            f"The upload is {head.bytes} bytes; the limit is {config.max_upload_bytes}."
        )
    jobs.start_processing(job.job_id)
    try:
        data = storage.read_source(message.bucket, message.key)
    except NotFound as exc:
        raise SourceGone("The uploaded object no longer exists.") from exc
    result = imaging.render(data, presets, max_pixels=config.max_pixels)
    outputs = []
    for rendition in result.outputs:
        key = storage.output_key(job.tenant, job.job_id, rendition.preset, rendition.extension)
        storage.write_output(key, rendition.data, rendition.content_type)
        outputs.append(
            {
                "preset": rendition.preset,
                "width": rendition.width,
                "height": rendition.height,
                "format": rendition.format,
                "contentType": rendition.content_type,
                "bytes": len(rendition.data),
                "key": key,
            }
        )
    source = {
        "contentType": result.source.content_type,
        "bytes": len(data),
        "width": result.source.width,
        "height": result.source.height,
        "format": result.source.format,
    }
    jobs.complete(job.job_id, source=source, outputs=outputs)


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


def _end_failed(job_id: str, code: str, message: str) -> None:
    try:
        jobs.fail(job_id, code=code, message=message)
    except StaleTransition:
        logger.info("job finished elsewhere meanwhile", extra=job_fields(job_id))
        return
    logger.warning("job failed", extra=job_fields(job_id, code=code, reason=message))
    metric("JobsFailed", 1, code=code)


# --- the dead-letter handler --------------------------------------------------------------


def _fail_dead_letter(record: dict[str, Any]) -> None:
    message = parse_message(record.get("body", ""))
    if message is None:
        logger.error(
            "dead letter is not a job message", extra={"messageId": record.get("messageId")}
        )
        return
    _end_failed(
        message.job_id,
        PROCESSING_FAILED,
        "Processing failed repeatedly; the job was given up after its retries.",
    )
