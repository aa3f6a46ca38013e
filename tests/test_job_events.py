"""A job never ends without its event: recorded in the write that ends it, handed to the
webhooks queue right after, and by the sweeper when that hand-over fails."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import clients, job_events, jobs, sweeper
from chalicelib.config import settings
from tests.faults import aws_fault
from tests.images import encode, solid
from tests.pipeline import Pipeline, new_job
from tests.resources import Queues


def webhook_messages() -> list[dict[str, Any]]:
    """Every message on the webhooks queue, taken off it."""
    sqs = clients.sqs()
    url = clients.queue_url(settings().webhooks_queue)
    taken: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return taken
        for message in batch:
            taken.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def in_event_shard(job_id: str) -> bool:
    item = clients.dynamodb().get_item(
        TableName=settings().jobs_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
    )["Item"]
    return item.get(jobs.OPEN_SHARD, {}).get("S", "").startswith(f"{jobs.EVENT_SHARD}#")


def test_a_completed_job_hands_over_one_event(pipeline: Pipeline) -> None:
    job = pipeline.process(encode(solid((200, 40, 40), (40, 30)), "JPEG"))
    assert job["status"] == "COMPLETED"
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert stored.event_id is not None
    assert webhook_messages() == [
        {
            "kind": "job.event",
            "jobId": job["jobId"],
            "tenant": "acme",
            "eventId": stored.event_id,
            "type": "job.completed",
        }
    ]
    assert not in_event_shard(job["jobId"])


def test_a_failed_job_hands_over_one_event(pipeline: Pipeline) -> None:
    job = pipeline.process(b"not an image at all")
    assert job["status"] == "FAILED"
    (message,) = webhook_messages()
    assert (message["jobId"], message["type"]) == (job["jobId"], "job.failed")


def test_a_lost_hand_over_is_made_by_the_sweeper(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, encode(solid((200, 40, 40), (40, 30)), "JPEG"))
    pipeline.notify_upload(pipeline.source_key(upload))
    with aws_fault(
        clients.sqs(),
        "SendMessage",
        code="ServiceUnavailable",
        status=503,
        when=lambda params: "job.event" in str(params.get("body", "")),
    ) as fault:
        pipeline.worker().drain()
    assert fault.failed >= 1
    job_id = upload["jobId"]
    assert pipeline.job(job_id)["status"] == "COMPLETED"
    assert webhook_messages() == []
    assert in_event_shard(job_id)

    # Within the grace the sweeper leaves it to the hand-over; after it, sends the event.
    assert sweeper.sweep().counts[sweeper.ANNOUNCED] == 0
    later = datetime.now(UTC) + timedelta(seconds=settings().sweep_announce_grace_seconds + 1)
    assert sweeper.sweep(now=later).counts[sweeper.ANNOUNCED] == 1
    (message,) = webhook_messages()
    assert message["jobId"] == job_id
    assert message["eventId"] == jobs.get_job(job_id).event_id  # type: ignore[union-attr]
    assert not in_event_shard(job_id)
    assert sweeper.sweep(now=later).counts[sweeper.ANNOUNCED] == 0


def test_a_job_the_sweeper_ends_hands_over_its_event(aws: Queues) -> None:
    job = new_job()
    config = settings()
    expired = datetime.now(UTC) + timedelta(
        seconds=config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds + 1
    )
    assert sweeper.sweep(now=expired).counts[sweeper.UPLOAD_EXPIRED] == 1
    (message,) = webhook_messages()
    assert (message["jobId"], message["type"]) == (job.job_id, "job.failed")


def test_an_event_id_stays_the_one_the_end_wrote(aws: Queues) -> None:
    job = new_job()
    first = jobs.fail(job.job_id, code="corrupt_image", message="broken")
    again = jobs.fail(job.job_id, code="corrupt_image", message="broken")
    assert first.moved
    assert not again.moved
    assert again.job is not None
    assert first.job is not None
    assert again.job.event_id == first.job.event_id


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"kind": "job.event", "jobId": "j", "tenant": "t", "eventId": "e"},
        {"kind": "job.event", "jobId": "j", "tenant": "t", "eventId": "e", "type": "job.begun"},
        {"kind": "delivery", "jobId": "j", "tenant": "t", "eventId": "e", "type": "job.failed"},
        {"kind": "job.event", "jobId": "", "tenant": "t", "eventId": "e", "type": "job.failed"},
        {"kind": "job.event", "jobId": 1, "tenant": "t", "eventId": "e", "type": "job.failed"},
    ],
)
def test_a_malformed_event_message_is_refused(payload: dict[str, object]) -> None:
    assert job_events.parse(payload) is None


def test_an_event_message_reads_back() -> None:
    event = job_events.JobEvent("j", "t", "evt_1", "job.completed")
    assert job_events.parse(json.loads(event.to_body())) == event
