"""The job event message: a job ended, its event goes to the webhooks queue.

The write that ends a job records its event id and leaves the job in an event shard of
the open-jobs index (chalicelib/jobs.py). `announce` then sends this message and takes
the job out of the shard; a job whose hand-over failed stays there, and the sweeper
announces it again. The deliveries function turns the message into one delivery per
subscribed endpoint. This module is the message's only writer and reader::

    {"kind": "job.event", "jobId": str, "tenant": str, "eventId": str, "type": str}
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from chalicelib import clients, jobs
from chalicelib.config import settings
from chalicelib.errors import TransientError, UnexpectedAwsError
from chalicelib.jobs import JobStatus
from chalicelib.observability import job_fields, logger

KIND = "job.event"
EVENT_TYPES = {JobStatus.COMPLETED: "job.completed", JobStatus.FAILED: "job.failed"}


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    tenant: str
    event_id: str
    type: str

    def to_body(self) -> str:
        return json.dumps(
            {
                "kind": KIND,
                "jobId": self.job_id,
                "tenant": self.tenant,
                "eventId": self.event_id,
                "type": self.type,
            }
        )


def of(job: jobs.Job) -> JobEvent | None:
    """The event of an ended job; None for an open job (or one ended before events)."""
    if job.event_id is None or job.status not in EVENT_TYPES:
        return None
    return JobEvent(job.job_id, job.tenant, job.event_id, EVENT_TYPES[job.status])


def parse(payload: dict[str, object]) -> JobEvent | None:
    """The event in a decoded message body, or None if it is not a well-formed one."""
    fields = [payload.get(name) for name in ("jobId", "tenant", "eventId", "type")]
    if payload.get("kind") != KIND or not all(isinstance(f, str) and f for f in fields):
        return None
    job_id, tenant, event_id, event_type = (str(f) for f in fields)
    if event_type not in EVENT_TYPES.values():
        return None
    return JobEvent(job_id, tenant, event_id, event_type)


def announce(job: jobs.Job | None) -> bool:
    """Hand the ended `job`'s event to the webhooks queue, then take the job out of the
    event shards. A failure is logged and left to the sweeper (nothing is lost: the job
    stays in its shard); the job's end itself stands. True if the event was sent."""
    event = None if job is None else of(job)
    if event is None:
        return False
    try:
        send(event)
        jobs.mark_announced(event.job_id, event.event_id)
    except (TransientError, UnexpectedAwsError):
        logger.warning(
            "job event not handed over; the sweeper will",
            extra=job_fields(event.job_id, eventId=event.event_id),
            exc_info=True,
        )
        return False
    return True


def send(event: JobEvent) -> None:
    queue_url = clients.queue_url(settings().webhooks_queue)
    with clients.aws_errors(f"send the event of job {event.job_id}"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=event.to_body())
