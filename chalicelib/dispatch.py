"""The S3 dispatcher: an upload under ``uploads/`` becomes a job message on SQS.

Each record is handled on its own (S3 may batch several), keys are URL-decoded, and the
object must belong to a known job of the tenant its key names. The job moves
PENDING -> QUEUED before the message is sent; if the send fails the event is retried, and
a job found already QUEUED is sent again (the worker treats duplicates as no-ops). A job
already past QUEUED is left alone: a late or second upload changes nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from chalice.app import S3Event

from chalicelib import clients, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import StaleTransition, TransientError
from chalicelib.observability import job_fields, logger, metric

TEST_EVENT = "s3:TestEvent"


class S3NotificationEvent(S3Event):
    """Chalice's S3Event reads ``Records[0]`` eagerly and so fails on ``s3:TestEvent``,
    which has no records; the dispatcher reads every record from the raw event instead."""

    def _extract_attributes(self, event_dict: dict[str, Any]) -> None:
        records = event_dict.get("Records") or [{}]
        s3 = records[0].get("s3", {})
        self.bucket = s3.get("bucket", {}).get("name", "")
        self.key = unquote_plus(s3.get("object", {}).get("key", ""))


def accept_test_events(handler: Any) -> Any:
    """Let the dispatcher's Chalice wrapper build events that have no records."""
    handler.event_class = S3NotificationEvent
    return handler


def handle_s3_event(event: dict[str, Any]) -> None:
    if event.get("Event") == TEST_EVENT:
        logger.info("skipping S3 test event", extra={"bucket": event.get("Bucket")})
        return
    failed = 0
    for record in event.get("Records", []):
        try:
            _dispatch_record(record)
        except TransientError:
            logger.exception("dispatch failed; the event will be retried")
            failed += 1
    if failed:
        raise TransientError(f"{failed} S3 record(s) could not be dispatched")


def _dispatch_record(record: dict[str, Any]) -> None:
    event_name = str(record.get("eventName", ""))
    if not event_name.startswith("ObjectCreated:"):
        logger.info("skipping S3 event", extra={"eventName": event_name})
        return
    s3 = record.get("s3", {})
    bucket = s3.get("bucket", {}).get("name", "")
    key = unquote_plus(s3.get("object", {}).get("key", ""))
    size = s3.get("object", {}).get("size")
    job = _job_for_key(key)
    if job is None:
        logger.warning("skipping object that belongs to no job", extra={"key": key})
        return
    try:
        jobs.mark_queued(job.job_id, source_bytes=size if isinstance(size, int) else None)
    except StaleTransition:
        current = jobs.get_job(job.job_id)
        if current is None or current.status != jobs.QUEUED:
            logger.info(
                "job already left QUEUED; upload event ignored",
                extra=job_fields(job.job_id, status=current.status if current else None),
            )
            return
    _send_job_message(job.job_id, job.tenant, bucket, key)
    logger.info("job queued", extra=job_fields(job.job_id, key=key, bytes=size))
    metric("JobsQueued", 1)


def _job_for_key(key: str) -> jobs.Job | None:
    parsed = storage.parse_source_key(key)
    if parsed is None:
        return None
    job = jobs.get_job(parsed.job_id)
    if job is None or job.tenant != parsed.tenant or job.source_key != key:
        return None
    return job


def job_message(job_id: str, tenant: str, bucket: str, key: str) -> str:
    return json.dumps({"jobId": job_id, "tenant": tenant, "bucket": bucket, "key": key})


def _send_job_message(job_id: str, tenant: str, bucket: str, key: str) -> None:
    queue_url = clients.queue_url(settings().jobs_queue)
    with clients.aws_errors("send job message"):
        clients.sqs().send_message(
            QueueUrl=queue_url, MessageBody=job_message(job_id, tenant, bucket, key)
        )
