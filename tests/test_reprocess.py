"""Reprocessing: POST /jobs/{jobId}/reprocess makes a completed job's outputs again from
its kept original, at the presets' current versions (chalicelib/reprocess.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import clients, jobs, rendering, reprocess, reprocess_message
from chalicelib.config import reset_settings, settings
from chalicelib.presets import load_presets, preset_version
from chalicelib.reprocess_message import ReprocessMessage
from devstack.lambda_events import SqsPoller
from tests.faults import aws_fault, body_contains
from tests.pipeline import Pipeline, bearer
from tests.samples import jpeg, sample_photo

THUMB = {"name": "thumb", "width": 64, "height": 64, "fit": "cover", "format": "JPEG"}
SMALL = {"name": "small", "width": 128, "height": 128, "fit": "contain", "format": "JPEG"}
TINY = {"name": "tiny", "width": 32, "height": 32, "fit": "cover", "format": "JPEG"}


def configure(monkeypatch: pytest.MonkeyPatch, *presets: dict[str, Any]) -> None:
    monkeypatch.setenv("PRESETS", json.dumps(list(presets)))
    reset_settings()


def ask(pipeline: Pipeline, job_id: str, body: Any, key: str | None = None) -> Any:
    return pipeline.client.http.post(
        f"/jobs/{job_id}/reprocess",
        headers=bearer(key or pipeline.api_key),
        body=json.dumps(body).encode(),
    )


def derived(pipeline: Pipeline, job_id: str) -> dict[str, bytes]:
    bucket = settings().derived_bucket
    listing = pipeline.s3.list_objects_v2(Bucket=bucket, Prefix=f"acme/{job_id}/")
    return {
        item["Key"].rsplit("/", 1)[1]: pipeline.s3.get_object(Bucket=bucket, Key=item["Key"])[
            "Body"
        ].read()
        for item in listing.get("Contents", [])
    }


def version(name: str) -> str:
    return preset_version(load_presets(settings().presets_json)[name])


@pytest.fixture
def completed(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> str:
    """A COMPLETED job of tenant acme made with `thumb` only (the stage has thumb, small)."""
    configure(monkeypatch, THUMB, SMALL)
    job = pipeline.process(jpeg(), presets=["thumb"])
    assert job["status"] == "COMPLETED"
    return str(job["jobId"])


def test_a_new_preset_is_added_and_the_others_kept(pipeline: Pipeline, completed: str) -> None:
    before = derived(pipeline, completed)
    answer = ask(pipeline, completed, {"presets": ["small"]})
    assert answer.status_code == 202, answer.body
    body = answer.json_body
    assert body["jobId"] == completed
    assert body["revision"] == 1
    assert body["presets"] == ["small"]
    assert body["requestId"].startswith("rpr_")
    assert pipeline.job(completed)["reprocessing"] is True
    pipeline.reprocessor().drain()
    job = pipeline.job(completed)
    assert (job["revision"], job["reprocessing"], job["reprocessError"]) == (1, False, None)
    assert job["presets"] == ["thumb", "small"]
    assert [(o["preset"], o["version"]) for o in job["outputs"]] == [
        ("thumb", version("thumb")),
        ("small", version("small")),
    ]
    small = next(o for o in job["outputs"] if o["preset"] == "small")
    assert (small["width"], small["height"]) == (128, 96)
    after = derived(pipeline, completed)
    assert after[f"thumb.{version('thumb')}.jpg"] == before[f"thumb.{version('thumb')}.jpg"]
    assert set(after) == {f"thumb.{version('thumb')}.jpg", f"small.{version('small')}.jpg"}
    assert "original" not in job


def test_a_changed_preset_gets_new_keys_and_the_old_file_goes_only_after_the_write(
    pipeline: Pipeline, completed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = f"thumb.{version('thumb')}.jpg"
    configure(monkeypatch, {**THUMB, "width": 32, "height": 32}, SMALL)
    new = f"thumb.{version('thumb')}.jpg"
    assert new != old
    assert ask(pipeline, completed, {"presets": ["thumb"]}).status_code == 202
    # The job's update fails once: the new file exists, the old one is still there.
    fault = body_contains("lastReprocessRequest")
    with aws_fault(clients.dynamodb(), "UpdateItem", code="InternalError", status=500, when=fault):
        pipeline.reprocessor().poll_once()
    assert set(derived(pipeline, completed)) == {old, new}
    assert pipeline.job(completed)["revision"] == 0
    pipeline.reprocessor().drain()
    assert set(derived(pipeline, completed)) == {new}
    job = pipeline.job(completed)
    (output,) = job["outputs"]
    assert (output["version"], output["width"], job["revision"]) == (version("thumb"), 32, 1)


def test_a_redelivered_message_does_not_bump_the_revision_twice(
    pipeline: Pipeline, completed: str
) -> None:
    message = ReprocessMessage(completed, "acme", ("small",), "rpr_redelivered")
    reprocess_message.send(message)
    reprocess_message.send(message)
    assert reprocess.reprocess(message) is reprocess.Outcome.REPROCESSED
    assert reprocess.reprocess(message) is reprocess.Outcome.ALREADY_CURRENT
    pipeline.reprocessor().drain()
    assert pipeline.job(completed)["revision"] == 1
    # A stale read (the revision it saw is gone) cannot write either.
    stale = jobs.get_job(completed)
    assert stale is not None
    assert jobs.record_reprocess(stale, request_id="rpr_other", outputs=[], presets=[]).moved
    again = jobs.record_reprocess(stale, request_id="rpr_third", outputs=[], presets=[])
    assert not again.moved
    assert again.job is not None
    assert again.job.revision == 2


def test_a_reprocess_cut_short_by_the_invocation_is_retried_not_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB, SMALL)
    job = pipeline.process(sample_photo("Kite.jpg"), presets=["thumb"])
    assert job["status"] == "COMPLETED", job["error"]
    assert ask(pipeline, job["jobId"], {"presets": ["small"]}).status_code == 202
    monkeypatch.setattr(rendering, "MIN_RENDER_SECONDS", 0.0)

    def nearly_timed_out(event: dict[str, Any]) -> None:
        # 1 ms of render time left: the photo cannot be rendered in it.
        reprocess.handle_reprocess_batch(
            event["Records"], lambda: int(rendering.FINISHING_SECONDS * 1000) + 1
        )

    queue = pipeline.sqs.get_queue_url(QueueName=settings().reprocess_queue)["QueueUrl"]
    hurried = SqsPoller(pipeline.sqs, queue, nearly_timed_out, expire_with=pipeline.sqs)
    result = hurried.poll_once()
    assert (result.received, result.failed) == (1, True)
    cut = pipeline.job(job["jobId"])
    assert (cut["revision"], cut["reprocessing"], cut["reprocessError"]) == (0, True, None)
    assert [o["preset"] for o in cut["outputs"]] == ["thumb"]

    pipeline.reprocessor().drain()
    done = pipeline.job(job["jobId"])
    assert (done["revision"], done["reprocessing"], done["reprocessError"]) == (1, False, None)
    assert [(o["preset"], o["version"]) for o in done["outputs"]] == [
        ("thumb", version("thumb")),
        ("small", version("small")),
    ]


def test_another_tenants_job_is_not_found(
    pipeline: Pipeline, completed: str, globex_key: str
) -> None:
    answer = ask(pipeline, completed, {"presets": ["small"]}, key=globex_key)
    assert answer.status_code == 404
    assert answer.json_body["error"]["code"] == "not_found"
    assert ask(pipeline, "not-a-job", {"presets": ["small"]}).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"presets": ["nope"]}, 400, "unknown_preset"),
        ({"presets": []}, 400, "invalid_request"),
        ({"presets": "small"}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"presets": ["small"], "extra": 1}, 400, "invalid_request"),
    ],
)
def test_malformed_requests_are_refused(
    pipeline: Pipeline, completed: str, body: Any, status: int, code: str
) -> None:
    answer = ask(pipeline, completed, body)
    assert (answer.status_code, answer.json_body["error"]["code"]) == (status, code)


def test_a_job_not_completed_is_a_conflict(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    answer = ask(pipeline, upload["jobId"], {"presets": ["thumb"]})
    assert (answer.status_code, answer.json_body["error"]["code"]) == (409, "job_not_completed")


def test_an_expired_original_is_a_conflict_and_an_outcome(
    pipeline: Pipeline, completed: str
) -> None:
    stored = jobs.get_job(completed)
    assert stored is not None
    assert stored.original is not None
    assert reprocess.original_available(stored)
    assert not reprocess.original_available(stored, now=float(str(stored.original["expiresAt"])))
    # S3 expired it (the record does not know yet): the reprocess finds it gone.
    pipeline.s3.delete_object(Bucket=settings().uploads_bucket, Key=str(stored.original["key"]))
    message = ReprocessMessage(completed, "acme", ("small",), "rpr_gone")
    assert reprocess.reprocess(message) is reprocess.Outcome.ORIGINAL_EXPIRED
    assert pipeline.job(completed)["reprocessError"]["code"] == "original_expired"
    # ... and once its record says so, the API refuses.
    pipeline.dynamodb.update_item(
        TableName=settings().jobs_table,
        Key={"jobId": {"S": completed}},
        UpdateExpression="SET original.expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    answer = ask(pipeline, completed, {"presets": ["small"]})
    assert (answer.status_code, answer.json_body["error"]["code"]) == (409, "original_expired")


def test_no_original_kept_is_a_conflict(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB, SMALL)
    monkeypatch.setenv("ORIGINALS_RETENTION_DAYS", "0")
    reset_settings()
    job = pipeline.process(jpeg(), presets=["thumb"])
    answer = ask(pipeline, job["jobId"], {"presets": ["small"]})
    assert (answer.status_code, answer.json_body["error"]["code"]) == (409, "original_expired")


def test_a_dead_lettered_reprocess_clears_reprocessing(pipeline: Pipeline, completed: str) -> None:
    assert ask(pipeline, completed, {"presets": ["small"]}).status_code == 202
    assert pipeline.job(completed)["reprocessing"] is True
    queue = pipeline.sqs.get_queue_url(QueueName=settings().reprocess_queue)["QueueUrl"]
    dlq = pipeline.sqs.get_queue_url(QueueName=settings().reprocess_dlq)["QueueUrl"]
    (received,) = pipeline.sqs.receive_message(QueueUrl=queue)["Messages"]
    pipeline.sqs.send_message(QueueUrl=dlq, MessageBody=received["Body"])
    pipeline.sqs.delete_message(QueueUrl=queue, ReceiptHandle=received["ReceiptHandle"])
    pipeline.reprocess_dead_letters().drain()
    job = pipeline.job(completed)
    assert job["reprocessing"] is False
    assert job["reprocessError"]["code"] == "processing_failed"
    assert job["revision"] == 0
    assert [o["preset"] for o in job["outputs"]] == ["thumb"]


def test_a_request_whose_message_cannot_be_sent_is_withdrawn(
    pipeline: Pipeline, completed: str
) -> None:
    with aws_fault(clients.sqs(), "SendMessage", code="InternalError", status=500):
        answer = ask(pipeline, completed, {"presets": ["small"]})
    assert answer.status_code == 503, answer.body
    job = pipeline.job(completed)
    assert (job["reprocessing"], job["reprocessError"], job["revision"]) == (False, None, 0)
    assert ask(pipeline, completed, {"presets": ["small"]}).status_code == 202
    pipeline.reprocessor().drain()
    job = pipeline.job(completed)
    assert (job["reprocessing"], job["revision"], job["presets"]) == (False, 1, ["thumb", "small"])


def test_a_request_made_while_another_is_pending_is_the_one_the_job_shows(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB, SMALL, TINY)
    job_id = str(pipeline.process(jpeg(), presets=["thumb"])["jobId"])
    first = ask(pipeline, job_id, {"presets": ["small"]}).json_body
    assert ask(pipeline, job_id, {"presets": ["tiny"]}).status_code == 202
    # The first request is carried out; the job still shows the second one pending.
    message = ReprocessMessage(job_id, "acme", ("small",), first["requestId"])
    assert reprocess.reprocess(message) is reprocess.Outcome.REPROCESSED
    job = pipeline.job(job_id)
    assert (job["revision"], job["reprocessing"]) == (1, True)
    pipeline.reprocessor().drain()
    job = pipeline.job(job_id)
    assert (job["revision"], job["reprocessing"], job["reprocessError"]) == (2, False, None)
    assert job["presets"] == ["thumb", "small", "tiny"]
    assert [o["version"] for o in job["outputs"]] == [version(n) for n in job["presets"]]


def test_a_reprocess_announces_a_completion_event_of_its_own(
    pipeline: Pipeline, completed: str
) -> None:
    first = jobs.get_job(completed)
    assert first is not None
    webhooks = pipeline.sqs.get_queue_url(QueueName=settings().webhooks_queue)["QueueUrl"]
    pipeline.sqs.purge_queue(QueueUrl=webhooks)
    assert ask(pipeline, completed, {"presets": ["small"]}).status_code == 202
    pipeline.reprocessor().drain()
    (sent,) = pipeline.sqs.receive_message(QueueUrl=webhooks, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(sent["Body"])
    after = jobs.get_job(completed)
    assert after is not None
    assert (event["type"], event["jobId"], event["eventId"]) == (
        "job.completed",
        completed,
        after.event_id,
    )
    assert after.event_id != first.event_id


def test_send_many_sends_every_message_in_batches_of_ten(pipeline: Pipeline) -> None:
    messages = [
        ReprocessMessage(f"job-{i}", "acme", ("thumb",), f"rpr_{i}", "bf_1") for i in range(23)
    ]
    reprocess_message.send_many(messages)
    queue = pipeline.sqs.get_queue_url(QueueName=settings().reprocess_queue)["QueueUrl"]
    bodies: list[ReprocessMessage | None] = []
    while batch := pipeline.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for received in batch:
            bodies.append(reprocess_message.parse(received["Body"]))
            pipeline.sqs.delete_message(QueueUrl=queue, ReceiptHandle=received["ReceiptHandle"])
    assert sorted(bodies, key=lambda m: m.request_id if m else "") == sorted(
        messages, key=lambda m: m.request_id
    )
