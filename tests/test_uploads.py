"""Uploads are pinned: the job processes exactly the object version its dispatcher saw
first, re-checked before decoding; any other upload to the same key changes nothing and
is deleted; presigned forms pin everything they can; and a job costs a fixed, small
number of AWS calls."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from moto import mock_aws
from moto.s3 import notifications

from chalicelib import clients, jobs, storage
from chalicelib.config import settings
from chalicelib.formats import ACCEPTED_CONTENT_TYPES, DECLARED_FORMATS
from chalicelib.presets import load_presets, preset_version
from devstack import emulator
from tests.faults import aws_calls, aws_fault
from tests.job_errors import assert_fixed_message
from tests.pipeline import Pipeline
from tests.resources import REGION
from tests.samples import jpeg, png


def heic(width: int = 64, height: int = 48) -> bytes:
    import pillow_heif
    from PIL import Image

    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (width, height), (10, 200, 10))).save(buffer)
    return buffer.getvalue()


def outputs_bytes(pipeline: Pipeline) -> dict[str, bytes]:
    bucket = settings().derived_bucket
    listing = pipeline.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: pipeline.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing
    }


def queued_messages(pipeline: Pipeline) -> int:
    attributes = pipeline.sqs.get_queue_attributes(
        QueueUrl=pipeline.queues.jobs_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(count) for count in attributes.values())


# --- a second upload changes nothing ----------------------------------------------------


def to_queued(pipeline: Pipeline, upload: dict[str, Any]) -> None:
    pipeline.notify_upload(pipeline.source_key(upload))


def to_processing(pipeline: Pipeline, upload: dict[str, Any]) -> None:
    # Claimed, then a transient failure: the job stays PROCESSING, its message comes back.
    pipeline.notify_upload(pipeline.source_key(upload))
    with aws_fault(clients.s3(), "GetObject", code="InternalError", status=500, times=1):
        assert pipeline.worker().poll_once().failed


def to_finished(pipeline: Pipeline, upload: dict[str, Any]) -> None:
    pipeline.notify_upload(pipeline.source_key(upload))
    pipeline.worker().drain()


FIRST = {"QUEUED": jpeg(640, 480), "PROCESSING": jpeg(640, 480)}
FIRST.update(COMPLETED=jpeg(640, 480), FAILED=jpeg(640, 480)[:2000])
TO_STATE: dict[str, Callable[[Pipeline, dict[str, Any]], None]] = {
    "QUEUED": to_queued,
    "PROCESSING": to_processing,
    "COMPLETED": to_finished,
    "FAILED": to_finished,
}


@pytest.mark.parametrize("state", list(TO_STATE))
def test_a_second_upload_changes_nothing(pipeline: Pipeline, state: str) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    first = pipeline.post_file(upload, FIRST[state])
    TO_STATE[state](pipeline, upload)
    before = jobs.get_job(upload["jobId"])
    assert before is not None
    assert (before.status, before.source_version) == (state, first)
    outputs_before = outputs_bytes(pipeline)
    messages_before = queued_messages(pipeline)

    second = pipeline.post_file(upload, jpeg(1600, 1200, color=(0, 0, 255)))
    event = pipeline.upload_event(key, second)
    for _ in range(2):  # S3 may deliver the event twice: the second finds nothing to delete
        pipeline.client.lambda_.invoke("dispatch_upload", event)

    assert jobs.get_job(upload["jobId"]) == before
    assert second not in pipeline.versions(key), "the rejected upload was kept"
    assert queued_messages(pipeline) == messages_before, "the rejected upload was queued"
    pipeline.worker().drain()
    after = jobs.get_job(upload["jobId"])
    assert after is not None
    if state in ("COMPLETED", "FAILED"):
        assert after == before
        assert outputs_bytes(pipeline) == outputs_before
    else:
        # Processed from the pinned upload, never from the second one.
        assert after.status == "COMPLETED"
        assert after.source is not None
        assert (after.source["width"], after.source["height"]) == (640, 480)
    assert pipeline.versions(key) == [], "a finished job's source was kept"


def test_the_worker_reads_the_pinned_version_not_the_latest(pipeline: Pipeline) -> None:
    # The second upload is the current object until its own event is dispatched.
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    first = pipeline.post_file(upload, jpeg(640, 480))
    pipeline.notify_upload(key, first)
    second = pipeline.post_file(upload, jpeg(320, 240))
    pipeline.worker().drain()
    job = jobs.get_job(upload["jobId"])
    assert job is not None
    assert job.status == "COMPLETED"
    assert job.source is not None
    assert (job.source["width"], job.source["height"]) == (640, 480)
    assert pipeline.versions(key) == [second]
    pipeline.notify_upload(key, second)
    assert pipeline.versions(key) == []
    assert jobs.get_job(upload["jobId"]) == job


def test_the_first_event_to_arrive_pins_its_version(pipeline: Pipeline) -> None:
    # S3 does not promise event order: the later upload's event may come first.
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    first = pipeline.post_file(upload, jpeg(640, 480))
    second = pipeline.post_file(upload, jpeg(320, 240))
    pipeline.notify_upload(key, second)
    pipeline.notify_upload(key, first)
    assert pipeline.versions(key) == [second]
    pipeline.worker().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "COMPLETED"
    assert (job["source"]["width"], job["source"]["height"]) == (320, 240)


def test_a_retried_event_of_the_pinned_version_is_sent_again(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    version = pipeline.post_file(upload, jpeg())
    event = pipeline.upload_event(key, version)
    with (
        aws_fault(clients.sqs(), "SendMessage", code="ServiceUnavailable", times=1),
        pytest.raises(Exception, match="could not be dispatched"),
    ):
        pipeline.client.lambda_.invoke("dispatch_upload", event)
    assert queued_messages(pipeline) == 0
    pipeline.client.lambda_.invoke("dispatch_upload", event)  # Lambda's retry
    assert queued_messages(pipeline) == 1
    assert pipeline.versions(key) == [version]


def test_the_job_records_what_it_pinned(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    version = pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(key)
    job = jobs.get_job(upload["jobId"])
    assert job is not None
    head = pipeline.s3.head_object(Bucket=settings().uploads_bucket, Key=key, VersionId=version)
    assert (job.source_version, job.source_etag) == (version, head["ETag"].strip('"'))
    assert job.source == {"bytes": len(jpeg())}
    (message,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.jobs_url)["Messages"]
    assert json.loads(message["Body"])["versionId"] == version


def test_a_message_for_another_version_is_dropped(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(key)
    (message,) = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.jobs_url)["Messages"]
    pipeline.sqs.delete_message(
        QueueUrl=pipeline.queues.jobs_url, ReceiptHandle=message["ReceiptHandle"]
    )
    forged = {**json.loads(message["Body"]), "versionId": "another-version"}
    pipeline.sqs.send_message(QueueUrl=pipeline.queues.jobs_url, MessageBody=json.dumps(forged))
    pipeline.worker().drain()
    job = jobs.get_job(upload["jobId"])
    assert job is not None
    assert (job.status, job.attempts) == ("QUEUED", 0)
    assert queued_messages(pipeline) == 0


# --- the real object is re-checked before decoding -----------------------------------------


def test_every_accepted_content_type_names_the_formats_that_honour_it() -> None:
    assert set(DECLARED_FORMATS) == ACCEPTED_CONTENT_TYPES


@pytest.mark.parametrize(
    ("data", "declared", "status", "code"),
    [
        (png(), "image/jpeg", "FAILED", "content_mismatch"),
        (jpeg(), "image/png", "FAILED", "content_mismatch"),
        (heic(), "image/webp", "FAILED", "content_mismatch"),
        (heic(), "image/heic", "COMPLETED", None),
        (heic(), "image/heif", "COMPLETED", None),
        (
            b"plain text, no image signature at all\n" * 4,
            "image/jpeg",
            "FAILED",
            "unsupported_format",
        ),
    ],
    ids=["png-as-jpeg", "jpeg-as-png", "heic-as-webp", "heic", "heic-as-heif", "text"],
)
def test_the_file_must_be_what_its_content_type_declared(
    pipeline: Pipeline, data: bytes, declared: str, status: str, code: str | None
) -> None:
    job = pipeline.process(data, contentType=declared)
    assert job["status"] == status
    assert (job["error"] or {}).get("code") == code
    if status == "FAILED":
        assert job["outputs"] == []
        assert outputs_bytes(pipeline) == {}
    if code is not None:
        assert_fixed_message(job["error"], code)
    if code == "content_mismatch":
        assert f"declared: {declared}; found: " in job["error"]["message"]
    assert pipeline.versions(f"uploads/acme/{job['jobId']}/source") == []


def test_a_source_whose_delete_fails_is_left_to_the_lifecycle(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    version = pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(pipeline.source_key(upload))
    with aws_fault(clients.s3(), "DeleteObject", code="InternalError", status=500) as fault:
        pipeline.worker().drain()
    assert fault.failed == 1
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"
    assert queued_messages(pipeline) == 0
    assert pipeline.versions(pipeline.source_key(upload)) == [version]


def expected_output_names() -> list[str]:
    presets = load_presets(None)
    extensions = {"large": "webp", "small": "jpg", "thumb": "jpg"}
    return sorted(
        f"{name}.{preset_version(presets[name])}.{extension}"
        for name, extension in extensions.items()
    )


def test_a_jobs_outputs_are_written_at_once(pipeline: Pipeline) -> None:
    """Each PutObject waits at a barrier that opens only when all three outputs' writes
    have reached it: written one after another, the first would wait in vain."""
    arrived = threading.Barrier(3, timeout=10)
    threads: set[str] = set()

    def meet(**_: Any) -> None:
        threads.add(threading.current_thread().name)
        arrived.wait()

    events = clients.s3().meta.events
    events.register("before-call.s3.PutObject", meet)
    try:
        job = pipeline.process(jpeg())
    finally:
        events.unregister("before-call.s3.PutObject", meet)
    assert job["status"] == "COMPLETED"
    assert not arrived.broken
    assert len(threads) == 3
    assert [output["preset"] for output in job["outputs"]] == ["thumb", "small", "large"]
    written = outputs_bytes(pipeline)
    assert sorted(written) == [f"acme/{job['jobId']}/{name}" for name in expected_output_names()]
    assert all(written.values())


# --- AWS calls per job -----------------------------------------------------------------------


def test_the_aws_calls_of_a_job_are_few_and_fixed(
    pipeline: Pipeline,
) -> None:
    pipeline.process(jpeg())  # the queue's URL is looked up once per process, then cached
    upload = pipeline.request_upload()
    pipeline.post_file(upload, jpeg())
    with aws_calls() as dispatcher:
        pipeline.notify_upload(pipeline.source_key(upload))
    assert dispatcher == ["DynamoDB.UpdateItem", "SQS.SendMessage"]
    with aws_calls() as worker:
        pipeline.worker().drain()
    assert worker == [
        "DynamoDB.UpdateItem",  # claim, returning the job
        "S3.GetObject",  # the pinned version, sized before its body is read
        *["S3.PutObject"] * 3,  # one per preset
        "S3.CopyObject",  # the pinned version kept as the job's original
        "DynamoDB.UpdateItem",  # COMPLETED, with its event's id
        "SQS.SendMessage",  # the event, to the webhooks queue
        "DynamoDB.UpdateItem",  # handed over: out of the event shard
        "S3.DeleteObject",  # the source version
    ]
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


def test_rejections_cost_as_little(pipeline: Pipeline) -> None:
    pipeline.process(jpeg())
    bad = pipeline.request_upload(contentType="image/png")
    pipeline.post_file(bad, jpeg())
    pipeline.notify_upload(pipeline.source_key(bad))
    with aws_calls() as worker:
        pipeline.worker().drain()
    assert worker == [
        "DynamoDB.UpdateItem",
        "S3.GetObject",
        "DynamoDB.UpdateItem",  # FAILED content_mismatch
        "SQS.SendMessage",
        "DynamoDB.UpdateItem",
        "S3.DeleteObject",
    ]
    again = pipeline.post_file(bad, png())
    with aws_calls() as dispatcher:
        pipeline.notify_upload(pipeline.source_key(bad), again)
    assert dispatcher == ["DynamoDB.UpdateItem", "S3.DeleteObject"]


# --- presigned URLs ------------------------------------------------------------------------


def post_policy(fields: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


def test_the_post_policy_pins_every_field_and_the_size(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload(contentType="image/png", filename="a b.png")
    form = upload["upload"]
    fields = form["fields"]
    policy = post_policy(fields)
    exact: dict[str, str] = {}
    ranges = []
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            exact[name.lower()] = value
        else:
            assert condition[0] == "content-length-range", f"not an exact pin: {condition}"
            ranges.append(condition[1:])
    assert exact["bucket"] == settings().uploads_bucket
    assert exact["key"] == f"uploads/acme/{upload['jobId']}/a b.png"
    assert exact["content-type"] == "image/png"
    assert ranges == [[1, settings().max_upload_bytes]]
    assert form["maxBytes"] == settings().max_upload_bytes
    # Every field the form carries is pinned to its value (x-amz-algorithm, -credential,
    # -date, -security-token included); only the policy and its signature are not.
    for name, value in fields.items():
        if name.lower() in ("policy", "x-amz-signature"):
            continue
        assert exact.get(name.lower()) == value, name
    assert {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-security-token"} <= set(
        exact
    )
    # The policy expires the configured TTL after it was signed, when the API says it does.
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    signed = datetime.strptime(exact["x-amz-date"], "%Y%m%dT%H%M%S%z")
    announced = datetime.fromisoformat(form["expiresAt"].replace("Z", "+00:00"))
    ttl = settings().upload_url_ttl_seconds
    assert abs((expires - signed).total_seconds() - ttl) <= 1
    assert abs((expires - announced).total_seconds()) <= 1


def test_output_links_live_as_long_as_configured(pipeline: Pipeline) -> None:
    job = pipeline.process(jpeg(), presets=["thumb"])
    (output,) = job["outputs"]
    query = parse_qs(urlparse(output["url"]).query)
    assert query["X-Amz-Expires"] == [str(settings().download_url_ttl_seconds)]
    thumb = load_presets(None)["thumb"]
    key = storage.output_key("acme", job["jobId"], "thumb", preset_version(thumb), "jpg")
    assert key in output["url"]


# --- the emulator's S3 events carry the version, as S3's do ---------------------------------


def notification_records(*, versioned: bool) -> list[dict[str, Any]]:
    """The object records of the notifications moto sends for one PutObject, and the
    version PutObject answered."""
    s3 = boto3.client("s3", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="s3-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.create_bucket(Bucket="notified-uploads")
    if versioned:
        s3.put_bucket_versioning(
            Bucket="notified-uploads", VersioningConfiguration={"Status": "Enabled"}
        )
    s3.put_bucket_notification_configuration(
        Bucket="notified-uploads",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    stored = s3.put_object(Bucket="notified-uploads", Key="uploads/a", Body=b"x")
    records = []
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]:
        body = json.loads(message["Body"])
        records += [record["s3"]["object"] for record in body.get("Records", [])]
    (record,) = records
    record["putVersionId"] = stored.get("VersionId")
    return [record]


def test_moto_s3_events_still_leave_the_version_out() -> None:
    with mock_aws():
        (record,) = notification_records(versioned=True)
    assert record["putVersionId"]
    assert "versionId" not in record, "moto now names versions: drop the emulator's patch"


def test_the_emulators_s3_events_name_the_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notifications, "_get_s3_event", notifications._get_s3_event)
    emulator.add_version_ids_to_s3_events()
    with mock_aws():
        (versioned,) = notification_records(versioned=True)
    with mock_aws():
        (unversioned,) = notification_records(versioned=False)
    assert versioned["versionId"] == versioned["putVersionId"]
    assert "versionId" not in unversioned
