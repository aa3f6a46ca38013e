"""The whole flow under moto: upload -> S3 event -> dispatcher -> SQS -> worker -> job."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import threading
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from chalicelib import clients, dead_letters, job_message, jobs
from chalicelib.config import reset_settings, settings
from chalicelib.dead_letters import GIVEN_UP
from chalicelib.presets import load_presets, preset_version
from devstack import runner
from devstack.lambda_events import s3_object_created_event
from infra import policies
from tests.faults import aws_calls, aws_fault, body_contains, url_contains
from tests.job_errors import assert_fixed_message
from tests.pipeline import Pipeline, claim_job
from tests.samples import jpeg, phone_photo, png


def derived_keys(pipeline: Pipeline) -> list[str]:
    listing = pipeline.s3.list_objects_v2(Bucket=settings().derived_bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def queue_depth(pipeline: Pipeline, url: str) -> int:
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


class WatchedBody:
    """A GetObject body that counts what is read from it."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.bytes_read = 0
        self.closed = False

    def read(self, amount: int | None = None) -> bytes:
        data: bytes = self._body.read(amount)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self.closed = True
        self._body.close()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid PNG header claiming 900 megapixels, a few hundred bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_a_phone_photo_comes_back_upright_and_clean(pipeline: Pipeline) -> None:
    job = pipeline.process(phone_photo(), filename="IMG 0001.jpg", contentType="image/jpeg")
    assert job["status"] == "COMPLETED", job["error"]
    assert job["error"] is None
    assert job["source"] == {
        "contentType": "image/jpeg",
        "bytes": len(phone_photo()),
        "width": 4032,
        "height": 3024,
        "format": "JPEG",
    }
    placeholder = job["placeholder"]
    assert (placeholder["width"], placeholder["height"]) == (4032, 3024)
    assert re.fullmatch(r"#[0-9a-f]{6}", placeholder["dominantColor"])
    assert len(placeholder["blurhash"]) == 28  # 4x3 components: the upright landscape
    assert base64.b64decode(placeholder["thumbhash"])[4] & 0x80  # ThumbHash: landscape
    outputs = {output["preset"]: output for output in job["outputs"]}
    assert set(outputs) == {"thumb", "small", "large"}
    expected = {
        "thumb": (256, 256, "JPEG", "image/jpeg"),
        "small": (512, 384, "JPEG", "image/jpeg"),
        "large": (1024, 768, "WEBP", "image/webp"),
    }
    for preset, (width, height, fmt, content_type) in expected.items():
        output = outputs[preset]
        assert (output["width"], output["height"]) == (width, height)
        assert (output["format"], output["contentType"]) == (fmt, content_type)
        downloaded = pipeline.download(output["url"])
        assert downloaded.headers["Content-Type"] == content_type
        assert len(downloaded.content) == output["bytes"]
        image = Image.open(io.BytesIO(downloaded.content))
        assert image.format == fmt
        assert image.size == (width, height)
        exif = image.getexif()
        assert not exif, f"{preset} kept metadata: {dict(exif)}"
        assert b"GPS" not in downloaded.content


def test_outputs_go_to_the_derived_bucket_with_cache_headers(pipeline: Pipeline) -> None:
    job = pipeline.process(jpeg(800, 600))
    assert job["status"] == "COMPLETED"
    keys = derived_keys(pipeline)
    presets = load_presets(None)
    assert keys == sorted(
        f"acme/{job['jobId']}/{name}.{preset_version(presets[name])}.{extension}"
        for name, extension in (("thumb", "jpg"), ("small", "jpg"), ("large", "webp"))
    )
    assert {output["version"] for output in job["outputs"]} == {
        preset_version(preset) for preset in presets.values()
    }
    for key in keys:
        head = pipeline.s3.head_object(Bucket=settings().derived_bucket, Key=key)
        assert head["CacheControl"] == "public, max-age=31536000, immutable"
    # The source is deleted once the job is done: no version of it, and no delete marker.
    # (Its original, a copy under originals/, is kept: tests/test_originals.py.)
    uploads = pipeline.s3.list_object_versions(Bucket=settings().uploads_bucket, Prefix="uploads/")
    assert uploads.get("Versions", []) == []
    assert uploads.get("DeleteMarkers", []) == []


def test_small_sources_are_never_upscaled(pipeline: Pipeline) -> None:
    job = pipeline.process(png(300, 200), contentType="image/png", presets=["small", "large"])
    sizes = {output["preset"]: (output["width"], output["height"]) for output in job["outputs"]}
    assert sizes == {"small": (300, 200), "large": (300, 200)}


def test_only_the_requested_presets_are_made(pipeline: Pipeline) -> None:
    job = pipeline.process(jpeg(), presets=["thumb"])
    assert [output["preset"] for output in job["outputs"]] == ["thumb"]
    assert len(derived_keys(pipeline)) == 1


def test_status_moves_through_every_state(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    job_id = upload["jobId"]
    assert pipeline.job(job_id)["status"] == "PENDING"
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    queued = pipeline.job(job_id)
    assert queued["status"] == "QUEUED"
    assert queued["source"]["bytes"] == len(jpeg())
    pipeline.worker().drain()
    done = pipeline.job(job_id)
    assert done["status"] == "COMPLETED"
    assert done["createdAt"] <= queued["updatedAt"] <= done["updatedAt"]


# --- bad sources end FAILED with their code, at once, without retries --------------------


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        (b"this is a text file, not an image\n" * 10, "image/png", "unsupported_format"),
        (
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
            "image/jpeg",
            "unsupported_format",
        ),
        (jpeg(1200, 900)[:3000], "image/jpeg", "corrupt_image"),
        (bomb_png(), "image/png", "image_too_large"),
    ],
    ids=["text", "pdf", "truncated", "decompression-bomb"],
)
def test_bad_sources_fail_with_their_code(
    pipeline: Pipeline, data: bytes, content_type: str, code: str
) -> None:
    job = pipeline.process(data, contentType=content_type)
    assert job["status"] == "FAILED"
    assert_fixed_message(job["error"], code)
    assert job["outputs"] == []
    assert derived_keys(pipeline) == []
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0
    assert queue_depth(pipeline, pipeline.queues.dlq_url) == 0
    assert jobs.get_job(job["jobId"]).attempts <= 1  # type: ignore[union-attr]
    assert pipeline.versions(f"uploads/acme/{job['jobId']}/source") == [], "source kept"


def test_pixel_cap_is_configurable(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_PIXELS", str(100 * 100))
    reset_settings()
    job = pipeline.process(jpeg(101, 100))
    assert job["error"]["code"] == "image_too_large"
    assert pipeline.process(jpeg(100, 100))["status"] == "COMPLETED"


def test_oversized_files_fail_unread(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    upload = pipeline.request_upload()
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    reset_settings()
    version = pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    bodies: list[WatchedBody] = []

    def watch_body(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Body"] = WatchedBody(parsed["Body"])
        bodies.append(parsed["Body"])

    clients.s3().meta.events.register("after-call.s3.GetObject", watch_body)
    pipeline.worker().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "FAILED"
    detail = assert_fixed_message(job["error"], "file_too_large")
    assert detail == f" (size: {len(jpeg())} bytes; limit: 1000 bytes)"
    # Sized from GetObject's own answer, and its body closed without a byte read.
    (body,) = bodies
    assert (body.bytes_read, body.closed) == (0, True), "read an object over the byte cap"
    assert version not in pipeline.versions(pipeline.source_key(upload))


# --- delivery semantics --------------------------------------------------------------------


def test_duplicate_deliveries_change_nothing(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    event = pipeline.upload_event(pipeline.source_key(upload))
    pipeline.client.lambda_.invoke("dispatch_upload", event)
    pipeline.client.lambda_.invoke("dispatch_upload", event)  # S3 delivers at least once too
    message = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.jobs_url)["Messages"][0]
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queues.jobs_url,
        ReceiptHandle=message["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    for _ in range(2):
        pipeline.sqs.send_message(QueueUrl=pipeline.queues.jobs_url, MessageBody=message["Body"])
    pipeline.worker(batch_size=1).drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "COMPLETED"
    assert len(job["outputs"]) == 3
    assert len(derived_keys(pipeline)) == 3
    stored = jobs.get_job(upload["jobId"])
    assert stored is not None
    assert stored.attempts == 1, "a duplicate was processed again"
    # A late event for the finished job sends nothing and moves nothing back.
    pipeline.client.lambda_.invoke("dispatch_upload", event)
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0
    assert pipeline.job(upload["jobId"])["updatedAt"] == job["updatedAt"]


def test_a_second_upload_after_processing_changes_nothing(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg(640, 480))
    pipeline.notify_upload(pipeline.source_key(upload))
    pipeline.worker().drain()
    before = pipeline.job(upload["jobId"])
    pipeline.post_file(upload, jpeg(1600, 1200))
    pipeline.notify_upload(pipeline.source_key(upload))
    pipeline.worker().drain()
    after = pipeline.job(upload["jobId"])
    assert after["status"] == "COMPLETED"
    assert after["source"] == before["source"]
    assert after["updatedAt"] == before["updatedAt"]


def test_keys_are_url_decoded(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload(filename="my summer (1) photo.jpg")
    key = pipeline.source_key(upload)
    assert " " in key
    pipeline.post_file(upload, jpeg())
    event = s3_object_created_event(settings().uploads_bucket, key, len(jpeg()))
    assert "+" in event["Records"][0]["s3"]["object"]["key"]
    pipeline.client.lambda_.invoke("dispatch_upload", event)
    pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


def test_every_record_of_an_s3_event_is_dispatched(pipeline: Pipeline) -> None:
    uploads = [pipeline.request_upload() for _ in range(3)]
    records = []
    for upload in uploads:
        pipeline.post_file(upload, jpeg())
        key = pipeline.source_key(upload)
        records += s3_object_created_event(settings().uploads_bucket, key, len(jpeg()))["Records"]
    pipeline.client.lambda_.invoke("dispatch_upload", {"Records": records})
    assert {pipeline.job(u["jobId"])["status"] for u in uploads} == {"QUEUED"}


def test_test_events_and_unknown_keys_are_skipped(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = settings().uploads_bucket
    pipeline.client.lambda_.invoke(
        "dispatch_upload",
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket, "RequestId": "r"},
    )
    upload = pipeline.request_upload()
    real_key = pipeline.source_key(upload)
    other_tenant = real_key.replace("uploads/acme/", "uploads/globex/")
    unknown = [
        "uploads/acme/not-a-job/source",
        "uploads/acme/00000000-0000-4000-8000-000000000000/source",
        other_tenant,
        real_key + "-sibling",
        "elsewhere/file.jpg",
    ]
    for key in unknown:
        pipeline.client.lambda_.invoke("dispatch_upload", s3_object_created_event(bucket, key, 10))
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0
    assert pipeline.job(upload["jobId"])["status"] == "PENDING"


def test_a_failing_message_does_not_replay_its_batch(pipeline: Pipeline) -> None:
    uploads = [pipeline.request_upload() for _ in range(4)]
    for upload in uploads:
        pipeline.post_file(upload, jpeg())
        pipeline.notify_upload(pipeline.source_key(upload))
    unlucky = uploads[2]["jobId"]
    worker = pipeline.worker(batch_size=4)
    with aws_fault(clients.s3(), "GetObject", times=1, when=url_contains(unlucky)) as faults:
        first = worker.poll_once()
    assert (first.received, first.failed) == (4, True)
    assert faults.failed == 1
    statuses = {u["jobId"]: pipeline.job(u["jobId"])["status"] for u in uploads}
    assert statuses[unlucky] == "PROCESSING"
    assert [s for j, s in statuses.items() if j != unlucky] == ["COMPLETED"] * 3
    # Only the failed message comes back; the three that finished were deleted.
    second = worker.poll_once()
    assert (second.received, second.failed) == (1, False)
    assert pipeline.job(unlucky)["status"] == "COMPLETED"
    for upload in uploads:
        stored = jobs.get_job(upload["jobId"])
        assert stored is not None
        assert stored.attempts == (2 if upload["jobId"] == unlucky else 1)
    assert len(derived_keys(pipeline)) == 12


def test_transient_errors_retry_then_dead_letter_to_failed(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    worker = pipeline.worker()
    with aws_fault(clients.s3(), "GetObject", code="InternalError", status=500) as faults:
        attempts = worker.drain()
    assert attempts == 3
    assert faults.failed == 3
    assert pipeline.job(upload["jobId"])["status"] == "PROCESSING"
    assert queue_depth(pipeline, pipeline.queues.dlq_url) == 1
    pipeline.dead_letters().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "FAILED"
    assert job["error"] == {"code": "processing_failed", "message": GIVEN_UP}
    assert_fixed_message(job["error"])
    assert queue_depth(pipeline, pipeline.queues.dlq_url) == 0


def test_a_transient_error_then_success_completes(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    with aws_fault(
        clients.dynamodb(),
        "UpdateItem",
        code="ProvisionedThroughputExceededException",
        status=400,
        times=1,
    ):
        pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


def test_dispatch_retries_when_the_queue_is_unavailable(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    key = pipeline.source_key(upload)
    with (
        aws_fault(clients.sqs(), "SendMessage", code="ServiceUnavailable", times=1),
        pytest.raises(Exception, match="could not be dispatched"),
    ):
        pipeline.notify_upload(key)
    assert pipeline.job(upload["jobId"])["status"] == "QUEUED"
    pipeline.notify_upload(key)  # Lambda retries the failed async invocation
    pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


def test_dead_letters_never_reopen_a_finished_job(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.jobs_url, MessageBody=body)
    pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"
    # The stored record, not the API's view: its download links are signed anew each time.
    finished = jobs.get_job(upload["jobId"])
    for redrives in (0, dead_letters.MAX_REDRIVES):
        dead_letter(pipeline, body, redrives=redrives)
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.dlq_url, MessageBody="garbage")
    pipeline.dead_letters().drain()
    assert jobs.get_job(upload["jobId"]) == finished
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0


def take_job_message(pipeline: Pipeline) -> str:
    """The one message on the jobs queue, taken off it (the worker never sees it)."""
    (message,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.jobs_url)["Messages"]
    pipeline.sqs.delete_message(
        QueueUrl=pipeline.queues.jobs_url, ReceiptHandle=message["ReceiptHandle"]
    )
    return str(message["Body"])


def dead_letter(pipeline: Pipeline, body: str, **fields: Any) -> None:
    """Put a job message, with `fields` added, on the dead-letter queue."""
    payload = {**json.loads(body), **fields}
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.dlq_url, MessageBody=json.dumps(payload))


def test_the_dead_letter_handler_knows_the_queues_max_receive_count(pipeline: Pipeline) -> None:
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.jobs_url, AttributeNames=["RedrivePolicy"]
    )["Attributes"]
    policy = json.loads(attributes["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == dead_letters.MAX_RECEIVE_COUNT


def test_a_job_dead_lettered_before_it_was_tried_is_sent_back_and_completes(
    pipeline: Pipeline,
) -> None:
    """Its message failed every receive, but the job was never claimed: whatever failed,
    it was not this job. It goes back to the jobs queue, not to FAILED."""
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    job_id = upload["jobId"]
    with aws_fault(
        clients.dynamodb(),
        "UpdateItem",
        code="ProvisionedThroughputExceededException",
        status=400,
        when=body_contains(job_id),
    ) as claims:
        assert pipeline.worker().drain() == dead_letters.MAX_RECEIVE_COUNT
    assert claims.failed == dead_letters.MAX_RECEIVE_COUNT
    (letter,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.dlq_url)["Messages"]
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queues.dlq_url, ReceiptHandle=letter["ReceiptHandle"], VisibilityTimeout=0
    )
    pipeline.dead_letters().drain()
    assert queue_depth(pipeline, pipeline.queues.dlq_url) == 0
    stored = jobs.get_job(job_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("QUEUED", 0)
    # The same message, its redrives counted.
    (sent_back,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.jobs_url)["Messages"]
    assert json.loads(sent_back["Body"]) == {**json.loads(letter["Body"]), "redrives": 1}
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queues.jobs_url,
        ReceiptHandle=sent_back["ReceiptHandle"],
        VisibilityTimeout=0,
    )
    pipeline.worker().drain()
    stored = jobs.get_job(job_id)
    assert stored is not None
    assert (stored.status, stored.attempts) == ("COMPLETED", 1)
    assert len(stored.outputs) == 3


@pytest.mark.parametrize("redrives", range(dead_letters.MAX_REDRIVES + 1))
def test_a_job_sent_back_from_the_dead_letters_is_given_up_after_the_bound(
    pipeline: Pipeline, redrives: int
) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    dead_letter(pipeline, body, redrives=redrives)
    pipeline.dead_letters().drain()
    job = pipeline.job(upload["jobId"])
    if redrives < dead_letters.MAX_REDRIVES:
        assert job["status"] == "QUEUED"
        assert json.loads(take_job_message(pipeline))["redrives"] == redrives + 1
    else:
        assert job["status"] == "FAILED"
        assert_fixed_message(job["error"], "processing_failed")
        assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0


@pytest.mark.parametrize("attempts", [0, dead_letters.MAX_RECEIVE_COUNT])
def test_a_dead_letter_costs_one_conditional_write(pipeline: Pipeline, attempts: int) -> None:
    """A job claimed maxReceiveCount times is failed, one never claimed sent back: either
    way, one conditional write decides, with no read before it."""
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    for _ in range(attempts):
        claim_job(upload["jobId"])
    dead_letter(pipeline, body)
    with aws_calls() as calls:
        pipeline.dead_letters().drain()
    if attempts:
        # The deciding write; then the ended job's event is handed over.
        handed_over = ["DynamoDB.UpdateItem", "SQS.SendMessage", "DynamoDB.UpdateItem"]
        assert [call for call in calls if call != "SQS.GetQueueUrl"] == handed_over
        assert pipeline.job(upload["jobId"])["status"] == "FAILED"
    else:
        assert calls == ["DynamoDB.UpdateItem", "SQS.SendMessage"]
        assert pipeline.job(upload["jobId"])["status"] == "QUEUED"


def test_the_local_dead_letter_source_outlives_a_failed_receive(pipeline: Pipeline) -> None:
    """`make run`'s event source keeps polling when its own SQS call fails (here: its queue
    vanished for a while), as Lambda's pollers do, and handles what comes after."""
    queue = pipeline.queues.dlq_url.rsplit("/", 1)[1]
    trigger = runner.SqsTrigger(policies.DEAD_LETTERS, queue, batch_size=10, batching_window=0)
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    for _ in range(dead_letters.MAX_RECEIVE_COUNT):
        claim_job(upload["jobId"])
    stop, polling = threading.Event(), threading.Event()
    source = threading.Thread(target=runner.consume, args=(trigger, stop, polling.set), daemon=True)
    source.start()
    assert polling.wait(30)
    try:
        pipeline.sqs.delete_queue(QueueUrl=pipeline.queues.dlq_url)
        time.sleep(2 * runner.LONG_POLL_SECONDS + runner.POLL_RETRY_SECONDS)
        pipeline.sqs.create_queue(QueueName=queue)
        dead_letter(pipeline, body)
        deadline = time.monotonic() + 30
        while pipeline.job(upload["jobId"])["status"] != "FAILED" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert source.is_alive()
    finally:
        stop.set()
        source.join(timeout=10)
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "FAILED"
    assert_fixed_message(job["error"], "processing_failed")


def test_a_redriven_message_is_processed_like_the_first(pipeline: Pipeline) -> None:
    first = pipeline.process(jpeg(640, 480))
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg(640, 480))
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    dead_letter(pipeline, body, redrives=1)
    pipeline.dead_letters().drain()
    pipeline.worker().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "COMPLETED"
    assert [(o["preset"], o["width"], o["height"], o["bytes"]) for o in job["outputs"]] == [
        (o["preset"], o["width"], o["height"], o["bytes"]) for o in first["outputs"]
    ]
    for mine, clean in zip(job["outputs"], first["outputs"], strict=True):
        assert pipeline.download(mine["url"]).content == pipeline.download(clean["url"]).content


def test_a_dead_letter_naming_another_tenants_key_changes_nothing(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    body = take_job_message(pipeline)
    before = pipeline.job(upload["jobId"])
    dead_letter(pipeline, body, tenant="globex", key=f"uploads/globex/{upload['jobId']}/a.jpg")
    pipeline.dead_letters().drain()
    assert pipeline.job(upload["jobId"]) == before
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0


@pytest.mark.parametrize(
    ("extra", "redrives"),
    [({}, 0), ({"redrives": 0}, 0), ({"redrives": 2}, 2), ({"redrives": None}, None)]
    + [({"redrives": bad}, None) for bad in (-1, True, "1", 1.5)],
)
def test_job_messages_carry_their_redrives(extra: dict[str, Any], redrives: int | None) -> None:
    body = {"jobId": "j", "tenant": "acme", "bucket": "b", "key": "uploads/acme/j/a.jpg"}
    message = job_message.parse(json.dumps({**body, **extra}))
    assert (message.redrives if message else None) == redrives


def test_a_non_transient_aws_error_fails_the_record_loudly_with_its_code(
    pipeline: Pipeline,
) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    from chalicelib.observability import logger

    handler: Any = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        with aws_fault(clients.s3(), "GetObject", code="AccessDenied", status=403) as denied:
            attempts = pipeline.worker().drain()
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert attempts == dead_letters.MAX_RECEIVE_COUNT == denied.failed
    failures = [line for line in lines if line["message"].startswith("job message failed")]
    assert len(failures) == dead_letters.MAX_RECEIVE_COUNT
    assert all(line["level"] == "ERROR" for line in failures)
    assert {(line["jobId"], line["awsErrorCode"]) for line in failures} == {
        (upload["jobId"], "AccessDenied")
    }
    retried = [line for line in lines if line["message"] == "record failed; it will be retried"]
    assert [line["awsErrorCode"] for line in retried] == ["AccessDenied"] * len(failures)
    # As any record that keeps failing: dead-lettered, then the job ends FAILED.
    pipeline.dead_letters().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "FAILED"
    assert job["error"] == {"code": "processing_failed", "message": GIVEN_UP}


def test_malformed_messages_are_dropped_not_retried(pipeline: Pipeline) -> None:
    for body in ("not json", "[]", json.dumps({"jobId": "x"})):
        pipeline.sqs.send_message(QueueUrl=pipeline.queues.jobs_url, MessageBody=body)
    pipeline.worker().drain()
    assert queue_depth(pipeline, pipeline.queues.jobs_url) == 0
    assert queue_depth(pipeline, pipeline.queues.dlq_url) == 0


# --- observability --------------------------------------------------------------------------


def test_logs_are_json_with_the_job_id_and_metrics_are_embedded(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.observability import logger

    handler: Any = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        job = pipeline.process(jpeg())
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    completed = [line for line in lines if line["message"] == "job completed"]
    assert completed
    assert completed[0]["jobId"] == job["jobId"]
    assert completed[0]["level"] == "INFO"
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    names = {m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] for m in metrics}
    assert {"UploadsCreated", "JobsQueued", "JobsCompleted", "JobDuration"} <= names


def test_a_responsive_set_is_stored_and_listed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    preset = (
        '{"name": "hero", "width": 640, "height": 640, "fit": "contain", "format": "JPEG",'
        ' "widths": [160, 320, 480, 640], "formats": ["AVIF", "WEBP", "JPEG"]}'
    )
    thumb = '{"name": "thumb", "width": 64, "height": 64, "fit": "cover", "format": "JPEG"}'
    monkeypatch.setenv("PRESETS", f"[{thumb}, {preset}]")
    reset_settings()
    job = pipeline.process(phone_photo(), filename="IMG 0002.jpg", contentType="image/jpeg")
    assert job["status"] == "COMPLETED", job["error"]
    widths = (160, 320, 480, 640)
    extensions = {"AVIF": "avif", "WEBP": "webp", "JPEG": "jpg"}
    configured = load_presets(f"[{thumb}, {preset}]")
    versions = {name: preset_version(found) for name, found in configured.items()}
    expected = {f"acme/{job['jobId']}/thumb.{versions['thumb']}.jpg"} | {
        f"acme/{job['jobId']}/hero-{width}w.{versions['hero']}.{extension}"
        for width in widths
        for extension in extensions.values()
    }
    assert set(derived_keys(pipeline)) == expected
    by_url = {output["url"]: output for output in job["outputs"]}
    [entry] = job["responsive"]
    assert entry["preset"] == "hero"
    for output_format, srcset in entry["srcset"].items():
        entries = [item.rsplit(" ", 1) for item in srcset.split(", ")]
        assert [int(descriptor[:-1]) for _, descriptor in entries] == list(widths)
        for url, descriptor in entries:
            output = by_url[url]
            assert output["format"] == output_format
            image = Image.open(io.BytesIO(pipeline.download(url).content))
            assert image.format == output_format
            assert image.size == (int(descriptor[:-1]), output["height"])
            assert image.width > image.height  # upright


def test_an_outputs_key_names_its_presets_version(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def thumb_key(width: int) -> str:
        fields = {"name": "thumb", "width": width, "height": 64, "fit": "cover", "format": "JPEG"}
        preset = json.dumps([fields])
        monkeypatch.setenv("PRESETS", preset)
        reset_settings()
        job = pipeline.process(jpeg(), presets=["thumb"])
        (output,) = job["outputs"]
        assert output["version"] == preset_version(load_presets(preset)["thumb"])
        (key,) = [key for key in derived_keys(pipeline) if key.startswith(f"acme/{job['jobId']}/")]
        assert key == f"acme/{job['jobId']}/thumb.{output['version']}.jpg"
        return key.split("/", 2)[2]

    first, same, changed = thumb_key(64), thumb_key(64), thumb_key(65)
    assert first == same
    assert changed != first
    assert changed.startswith("thumb.")
