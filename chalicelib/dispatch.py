"""The S3 dispatcher: an upload under ``uploads/`` becomes a job message on SQS.

Each record is handled on its own (S3 may batch several), keys are URL-decoded, and the
object must belong to a known job of the tenant its key names. The uploads bucket is
versioned, so every upload is a version of its own: the first one to arrive pins its
version (with its size and ETag) on the job as it moves PENDING -> QUEUED, in one
conditional write that also proves the job exists and owns the key, and the message
names that version, the only one the worker reads.

`dispatch` does this for one stored object, whoever found it: the S3 event handler here,
or the sweeper (chalicelib/sweeper.py) for an upload whose event was lost. `send_again`
is the sweeper's way into the retry below, for a job left QUEUED whose message was
never sent (every attempt of its event failed after the write).

When the write is refused, it returns the job as it stood:
- the same version, still QUEUED: the send had failed and the event is a retry, so the
  message is sent again (the worker treats duplicates as no-ops);
- the same version, further on: a duplicate event, ignored;
- another version (a second POST while the presigned form lived): ignored whatever the
  job's state, and that version is deleted, so rejected bytes are not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from chalice.app import S3Event

from chalicelib import clients, job_message, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import TransientError, UnexpectedAwsError
from chalicelib.jobs import JobStatus
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


def handle_s3_event(event: Mapping[str, object]) -> None:
    if event.get("Event") == TEST_EVENT:
        logger.info("skipping S3 test event", extra={"bucket": event.get("Bucket")})
        return
    failed = 0
    records = event.get("Records")
    for record in records if isinstance(records, list) else []:
        try:
            _dispatch_record(record)
        except TransientError:
            logger.exception("dispatch failed; the event will be retried")
            failed += 1
        except UnexpectedAwsError as exc:
            fields = {"awsErrorCode": exc.aws_code, "operation": exc.operation}
            logger.exception("dispatch failed on an AWS error no retry cures", extra=fields)
            failed += 1
    if failed:
        raise TransientError(f"{failed} S3 record(s) could not be dispatched")


def _dispatch_record(record: object) -> None:
    fields = _object(record)
    event_name = str(fields.get("eventName", ""))
    if not event_name.startswith("ObjectCreated:"):
        logger.info("skipping S3 event", extra={"eventName": event_name})
        return
    s3 = _object(fields.get("s3"))
    created = _object(s3.get("object"))
    size = created.get("size")
    dispatch(
        storage.StoredObject(
            bucket=str(_object(s3.get("bucket")).get("name", "")),
            key=unquote_plus(str(created.get("key", ""))),
            version_id=_optional_str(created, "versionId"),
            size=size if isinstance(size, int) else None,
            etag=_optional_str(created, "eTag"),
        )
    )


class DispatchOutcome(StrEnum):
    """What `dispatch` did with an object (logged as its value). Not a job status:
    QUEUED_NOW is the dispatch that moved the job to JobStatus.QUEUED."""

    QUEUED_NOW = "queued"  # the job pinned it and its message was sent
    SENT_AGAIN = "sent_again"  # the job had pinned it and was still QUEUED: message sent again
    ALREADY_DISPATCHED = "already_dispatched"  # the job pinned it and has moved on
    REJECTED = "rejected"  # another upload of a job that pinned a different one (deleted)
    NOT_A_JOB = "not_a_job"  # the key belongs to no job of the tenant it names


def dispatch(stored: storage.StoredObject) -> DispatchOutcome:
    """Queue the job `stored` belongs to, pinning this version, as its upload event asks;
    returns what was done (one of the outcomes above). Raises TransientError when AWS
    fails: nothing is lost, since the same call later finds the job where it was left."""
    parsed = storage.parse_source_key(stored.key)
    if parsed is None:
        logger.warning("skipping object that belongs to no job", extra={"key": stored.key})
        return DispatchOutcome.NOT_A_JOB
    upload = jobs.Upload(parsed.job_id, parsed.tenant, stored.key, stored.version_id)
    outcome = jobs.queue_upload(upload, size=stored.size, etag=stored.etag)
    if outcome.moved:
        _send_job_message(upload, stored.bucket)
        fields = job_fields(upload.job_id, key=stored.key, bytes=stored.size)
        logger.info("job queued", extra=fields)
        metric("JobsQueued", 1)
        return DispatchOutcome.QUEUED_NOW
    return _handle_refused(upload, stored.bucket, outcome.job)


def _handle_refused(upload: jobs.Upload, bucket: str, current: jobs.Job | None) -> DispatchOutcome:
    if current is None or not current.owns(upload):
        logger.warning("skipping object that belongs to no job", extra={"key": upload.key})
        return DispatchOutcome.NOT_A_JOB
    fields = job_fields(upload.job_id, status=current.status, versionId=upload.version_id)
    if current.source_version == upload.version_id:
        if current.status is JobStatus.QUEUED:
            _send_job_message(upload, bucket)
            logger.info("job message sent again for a retried event", extra=fields)
            return DispatchOutcome.SENT_AGAIN
        logger.info("job already left QUEUED; upload event ignored", extra=fields)
        return DispatchOutcome.ALREADY_DISPATCHED
    if upload.version_id is None:
        logger.warning("another upload of a dispatched job ignored", extra=fields)
        return DispatchOutcome.REJECTED
    storage.delete_source(bucket, upload.key, upload.version_id)
    logger.warning("another upload of a dispatched job rejected and deleted", extra=fields)
    return DispatchOutcome.REJECTED


def _object(value: object) -> Mapping[str, object]:
    """`value` if it is a JSON object of the event, else an empty one."""
    return value if isinstance(value, dict) else {}


def _optional_str(fields: Mapping[str, object], name: str) -> str | None:
    value = fields.get(name)
    return value if isinstance(value, str) and value else None


def send_again(job: jobs.Job) -> None:
    """Send the message of a QUEUED job again, naming the version it pinned, as a retried
    event does when it finds the job QUEUED on its version (`_handle_refused`). The worker
    treats a message for a job that has moved on as the duplicate it is."""
    upload = jobs.Upload(job.job_id, job.tenant, job.source_key, job.source_version)
    _send_job_message(upload, settings().uploads_bucket)


def _send_job_message(upload: jobs.Upload, bucket: str) -> None:
    body = job_message.build(upload, bucket).to_body()
    queue_url = clients.queue_url(settings().jobs_queue)
    with clients.aws_errors("send job message"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=body)
