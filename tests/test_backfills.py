"""Backfills: POST /backfills gives every job of a range the presets named, at their current
version, from the originals; GET shows exact counts; DELETE cancels.

Jobs are made through the real pipeline (API, presigned POST, dispatcher, worker) from tiny
generated images; the backfill and reprocess functions are fed by Lambda's SQS event
source semantics (devstack.lambda_events.SqsPoller), with faults injected at botocore's
seam (tests/faults.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib import presets as preset_definitions
from chalicelib.config import reset_settings, settings
from chalicelib.presets import parse_preset
from devstack.lambda_events import SqsPoller
from tests.faults import Fault
from tests.harness import Harness
from tests.images import encode, noise
from tests.pipeline import Pipeline, bearer
from tests.resources import REGION

THUMB = {"name": "thumb", "width": 24, "height": 24, "fit": "cover", "format": "JPEG"}
WIDE = {"name": "wide", "width": 40, "height": 20, "fit": "contain", "format": "WEBP"}
BACKFILL_PAGES = "walk_backfill_pages"
REPROCESS = "reprocess_outputs"


def configure(monkeypatch: pytest.MonkeyPatch, *presets: dict[str, Any]) -> None:
    monkeypatch.setenv("PRESETS", json.dumps(list(presets)))
    reset_settings()


def version_of(preset: dict[str, Any]) -> str:
    return preset_definitions.preset_version(parse_preset(preset, "test"))


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_PAGE_SIZE", "30")
    reset_settings()


class Backfills:
    """The client's side (the API) and AWS's (the backfill and reprocess functions)."""

    def __init__(self, pipeline: Pipeline, harness: Harness) -> None:
        self.pipeline = pipeline
        self.client: Client = pipeline.client
        self.harness = harness
        sqs = boto3.client("sqs", region_name=REGION)
        self.pages_url = sqs.get_queue_url(QueueName=settings().backfill_queue)["QueueUrl"]
        self.reprocess_url = sqs.get_queue_url(QueueName=settings().reprocess_queue)["QueueUrl"]

    def start(self, key: str | None = None, **body: Any) -> Any:
        response = self.client.http.post(
            "/backfills",
            headers=bearer(key or self.pipeline.api_key),
            body=json.dumps(body).encode(),
        )
        assert response.status_code == 202, response.body
        assert response.headers["Location"] == f"/backfills/{response.json_body['backfillId']}"
        return response.json_body

    def get(self, backfill_id: str, key: str | None = None) -> Any:
        response = self.client.http.get(
            f"/backfills/{backfill_id}", headers=bearer(key or self.pipeline.api_key)
        )
        assert response.status_code == 200, response.body
        return response.json_body

    def pages(self) -> SqsPoller:
        return self.harness.poller(BACKFILL_PAGES, self.pages_url, batch_size=1)

    def reprocessing(self) -> SqsPoller:
        return self.harness.poller(REPROCESS, self.reprocess_url, batch_size=5)

    def run(self) -> None:
        """Feed both functions until neither queue has anything left."""
        for _ in range(1000):
            handled = self.pages().poll_once().received + self.reprocessing().poll_once().received
            if not handled:
                return
        raise AssertionError("the backfill never settled")

    def queued_reprocessing(self) -> int:
        sqs = boto3.client("sqs", region_name=REGION)
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.reprocess_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


@pytest.fixture
def backfills(pipeline: Pipeline) -> Backfills:
    return Backfills(pipeline, Harness())


def upload_many(pipeline: Pipeline, count: int, *, broken: int = 0) -> list[str]:
    """`count` jobs, processed by the worker; the last `broken` of them are not images and
    end FAILED."""
    job_ids = []
    for index in range(count):
        upload = pipeline.request_upload()
        data = b"not an image" if index >= count - broken else _image(index)
        pipeline.post_file(upload, data)
        pipeline.notify_upload(pipeline.source_key(upload))
        job_ids.append(upload["jobId"])
    pipeline.worker(batch_size=10).drain(max_batches=1000)
    pipeline.dead_letters().drain()
    return job_ids


def _image(seed: int) -> bytes:
    return encode(noise((48, 32), seed=seed), "JPEG", quality=80)


def outputs_of(job: Any, preset: str) -> list[Any]:
    return [output for output in job["outputs"] if output["preset"] == preset]


def derived_keys() -> set[str]:
    s3 = boto3.client("s3", region_name=REGION)
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings().derived_bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def expire_original(pipeline: Pipeline, job_id: str) -> None:
    """The job's original past its retention, as the record says (the lifecycle rule
    deletes it up to a day later)."""
    pipeline.dynamodb.update_item(
        TableName=settings().jobs_table,
        Key={"jobId": {"S": job_id}},
        UpdateExpression="SET original.expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )


def delete_original(pipeline: Pipeline, job_id: str) -> None:
    """The job's original gone from the bucket while its record still names it."""
    record = pipeline.dynamodb.get_item(
        TableName=settings().jobs_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
    )["Item"]
    key = record["original"]["M"]["key"]["S"]
    pipeline.s3.delete_object(Bucket=settings().uploads_bucket, Key=key)


# --- a backfill over 200 jobs ------------------------------------------------------------


def test_backfill_over_200_jobs_gives_every_job_the_new_preset_with_exact_counts(
    pipeline: Pipeline,
    backfills: Backfills,
    monkeypatch: pytest.MonkeyPatch,
    small_pages: None,
) -> None:
    configure(monkeypatch, THUMB)
    job_ids = upload_many(pipeline, 200, broken=5)
    configure(monkeypatch, THUMB, WIDE)
    completed = job_ids[:195]
    current = completed[:10]  # reprocessed with `wide` one by one before the backfill
    for job_id in current:
        response = pipeline.client.http.post(
            f"/jobs/{job_id}/reprocess",
            headers=bearer(pipeline.api_key),
            body=json.dumps({"presets": ["wide"]}).encode(),
        )
        assert response.status_code == 202, response.body
    backfills.run()
    expired = completed[10:13]  # the record says the original is past its retention
    for job_id in expired:
        expire_original(pipeline, job_id)
    vanished = completed[13:15]  # the record names it, the bucket no longer has it
    for job_id in vanished:
        delete_original(pipeline, job_id)

    started = backfills.start(presets=["wide"])
    assert started["status"] == "running"
    backfills.run()

    finished = backfills.get(started["backfillId"])
    assert finished["status"] == "completed"
    assert finished["allPagesRead"] is True
    assert finished["pagesRead"] == 7  # 200 jobs, 30 a page
    assert finished["counts"] == {
        "matched": 200,
        "toReprocess": 182,
        "done": 180,
        "failed": 0,
        "alreadyCurrent": 10,
        "originalExpired": 5,
        "notCompleted": 5,
        "cancelled": 0,
        "pending": 0,
    }
    wide = version_of(WIDE)
    for job_id in completed:
        job = pipeline.job(job_id)
        made = outputs_of(job, "wide")
        if job_id in expired or job_id in vanished:
            assert made == []
            continue
        assert [output["version"] for output in made] == [wide], job_id
        assert [(output["width"], output["height"]) for output in made] == [(30, 20)]
        assert len(outputs_of(job, "thumb")) == 1  # the others are kept
        assert job["revision"] == 1, job_id  # reprocessed once, never twice


def test_a_second_backfill_costs_nothing(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    job_ids = upload_many(pipeline, 12)
    configure(monkeypatch, THUMB, WIDE)
    first = backfills.start(presets=["wide"])
    backfills.run()
    assert backfills.get(first["backfillId"])["counts"]["done"] == 12
    keys_before = derived_keys()
    revisions = {job_id: pipeline.job(job_id)["revision"] for job_id in job_ids}

    second = backfills.start(presets=["wide", "thumb"])
    handled = backfills.pages().drain()
    assert handled == 1  # one page, and nothing sent to be reprocessed
    assert backfills.queued_reprocessing() == 0
    shown = backfills.get(second["backfillId"])
    assert shown["status"] == "completed"
    assert shown["counts"]["alreadyCurrent"] == 12
    assert shown["counts"]["toReprocess"] == 0
    assert derived_keys() == keys_before
    assert {job_id: pipeline.job(job_id)["revision"] for job_id in job_ids} == revisions


# --- faults --------------------------------------------------------------------------------


def test_a_backfill_resumes_after_a_fault_midway_and_does_nothing_twice(
    pipeline: Pipeline,
    backfills: Backfills,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKFILL_PAGE_SIZE", "20")
    configure(monkeypatch, THUMB)
    job_ids = upload_many(pipeline, 60)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(presets=["wide"])
    # Page 2's second batch of reprocess messages is refused: ten of its jobs were sent.
    refused = Fault("SendMessageBatch", skip=3, times=1, code="InternalError", status=500)
    # Page 3 is counted, and the invocation dies before the last page's message is sent.
    lost = Fault("SendMessage", skip=2, times=1, applied=True)
    with backfills.harness.faulty(refused, lost):
        backfills.run()
    assert (refused.failed, lost.failed) == (1, 1)

    finished = backfills.get(started["backfillId"])
    assert finished["status"] == "completed"
    assert finished["counts"]["matched"] == 60
    assert finished["counts"]["toReprocess"] == 60
    assert finished["counts"]["done"] == 60
    assert finished["counts"]["pending"] == 0
    versions = Counter[str]()
    for job_id in job_ids:
        job = pipeline.job(job_id)
        assert job["revision"] == 1, job_id
        versions.update(output["version"] for output in outputs_of(job, "wide"))
    assert versions == {version_of(WIDE): 60}
    wide_files = [key for key in derived_keys() if ".wide." in key or "/wide." in key]
    assert len(wide_files) == 60


def test_jobs_that_end_before_their_page_is_counted_are_never_shown_pending_below_zero(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    job_ids = upload_many(pipeline, 3)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(presets=["wide"])
    # The page is planned and its jobs sent; the write that counts the page is refused.
    uncounted = Fault("UpdateItem", skip=1, times=1, code="InternalServerError", status=500)
    with backfills.harness.faulty(uncounted):
        assert backfills.pages().poll_once().failed
    assert uncounted.failed == 1
    backfills.reprocessing().drain()

    meanwhile = backfills.get(started["backfillId"])
    assert meanwhile["status"] == "running"
    assert meanwhile["counts"]["done"] == 3
    assert (meanwhile["counts"]["toReprocess"], meanwhile["counts"]["pending"]) == (0, 0)

    backfills.run()  # the page comes back: the same jobs, sent again, counted once
    finished = backfills.get(started["backfillId"])
    assert finished["status"] == "completed"
    counts = finished["counts"]
    assert (counts["matched"], counts["toReprocess"], counts["done"]) == (3, 3, 3), counts
    assert (counts["alreadyCurrent"], counts["pending"]) == (0, 0), counts
    assert [pipeline.job(job_id)["revision"] for job_id in job_ids] == [1, 1, 1]


def test_a_last_page_counted_before_a_fault_still_completes_its_backfill(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    upload_many(pipeline, 3)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(presets=["wide"], dryRun=True)
    # The only page is planned and counted; the write that completes the backfill is refused.
    refused = Fault("UpdateItem", skip=2, times=1, code="InternalServerError", status=500)
    with backfills.harness.faulty(refused):
        assert backfills.pages().poll_once().failed
        assert backfills.pages().poll_once().received == 1  # the page's message, again
    assert refused.failed == 1
    shown = backfills.get(started["backfillId"])
    assert (shown["status"], shown["pagesRead"]) == ("completed", 1)
    assert (shown["counts"]["matched"], shown["counts"]["toReprocess"]) == (3, 3)


def test_a_page_that_keeps_failing_ends_the_backfill_failed(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    upload_many(pipeline, 3)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(presets=["wide"])
    with backfills.harness.faulty(Fault("Query", code="InternalServerError", status=500)):
        for _ in range(5):  # the queue's maxReceiveCount
            assert backfills.pages().poll_once().failed
    assert backfills.pages().poll_once().received == 0  # moved to the dead-letter queue
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.get_queue_url(QueueName=settings().backfill_queue + "-dlq")["QueueUrl"]
    backfills.harness.poller("fail_backfill_dead_letters", dlq_url).drain()
    shown = backfills.get(started["backfillId"])
    assert shown["status"] == "failed"
    assert shown["error"]["code"] == "page_failed"


# --- dry runs, ranges, cancelling --------------------------------------------------------


def test_a_dry_run_counts_and_changes_nothing(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    job_ids = upload_many(pipeline, 8, broken=1)
    expire_original(pipeline, job_ids[0])
    configure(monkeypatch, THUMB, WIDE)
    keys_before = derived_keys()
    started = backfills.start(presets=["wide"], dryRun=True)
    assert started["dryRun"] is True
    backfills.pages().drain()
    assert backfills.queued_reprocessing() == 0
    shown = backfills.get(started["backfillId"])
    assert shown["status"] == "completed"
    assert shown["counts"] == {
        "matched": 8,
        "toReprocess": 6,
        "done": 0,
        "failed": 0,
        "alreadyCurrent": 0,
        "originalExpired": 1,
        "notCompleted": 1,
        "cancelled": 0,
        "pending": 0,
    }
    assert derived_keys() == keys_before
    assert all(pipeline.job(job_id).get("revision", 0) == 0 for job_id in job_ids)


def test_a_backfill_covers_only_its_range_of_creation_times(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    older = upload_many(pipeline, 3)
    middle = upload_many(pipeline, 4)
    newer = upload_many(pipeline, 2)
    configure(monkeypatch, THUMB, WIDE)
    after = pipeline.job(middle[0])["createdAt"]
    before = pipeline.job(middle[-1])["createdAt"]
    started = backfills.start(presets=["wide"], createdAfter=after, createdBefore=before)
    backfills.run()
    assert backfills.get(started["backfillId"])["counts"]["done"] == 4
    for job_id in middle:
        assert len(outputs_of(pipeline.job(job_id), "wide")) == 1
    for job_id in older + newer:
        assert outputs_of(pipeline.job(job_id), "wide") == []


def test_a_cancelled_backfill_reads_no_more_pages_and_leaves_sent_jobs_alone(
    pipeline: Pipeline,
    backfills: Backfills,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BACKFILL_PAGE_SIZE", "4")
    configure(monkeypatch, THUMB)
    upload_many(pipeline, 10)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(presets=["wide"])
    assert backfills.pages().poll_once().received == 1  # the first page: 4 jobs sent
    response = pipeline.client.http.delete(
        f"/backfills/{started['backfillId']}", headers=bearer(pipeline.api_key)
    )
    assert response.status_code == 200, response.body
    assert response.json_body["status"] == "cancelled"
    backfills.run()
    shown = backfills.get(started["backfillId"])
    assert shown["status"] == "cancelled"
    assert shown["pagesRead"] == 1
    assert shown["counts"]["matched"] == 4
    assert shown["counts"]["cancelled"] == 4
    assert shown["counts"]["done"] == 0
    assert not [key for key in derived_keys() if f".{version_of(WIDE)}." in key]
    again = pipeline.client.http.delete(
        f"/backfills/{started['backfillId']}", headers=bearer(pipeline.api_key)
    )
    assert again.status_code == 200
    assert again.json_body["status"] == "cancelled"


def test_cancelling_a_completed_backfill_answers_409(
    pipeline: Pipeline, backfills: Backfills, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, THUMB)
    upload_many(pipeline, 1)
    started = backfills.start(presets=["thumb"])
    backfills.run()
    response = pipeline.client.http.delete(
        f"/backfills/{started['backfillId']}", headers=bearer(pipeline.api_key)
    )
    assert response.status_code == 409
    assert response.json_body["error"]["code"] == "backfill_finished"


# --- tenants and bad requests ------------------------------------------------------------


def test_a_backfill_is_its_tenants_alone(
    pipeline: Pipeline,
    backfills: Backfills,
    globex_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, THUMB)
    acme_jobs = upload_many(pipeline, 2)
    globex = Pipeline(pipeline.client, pipeline.queues, globex_key)
    globex_jobs = upload_many(globex, 3)
    configure(monkeypatch, THUMB, WIDE)
    started = backfills.start(globex_key, presets=["wide"])
    backfills.run()
    assert backfills.get(started["backfillId"], globex_key)["counts"]["done"] == 3
    for job_id in acme_jobs:
        assert outputs_of(pipeline.job(job_id), "wide") == []
    for job_id in globex_jobs:
        assert len(outputs_of(globex.job(job_id, globex_key), "wide")) == 1
    for method in ("get", "delete"):
        response = getattr(pipeline.client.http, method)(
            f"/backfills/{started['backfillId']}", headers=bearer(pipeline.api_key)
        )
        assert response.status_code == 404, method
        assert response.json_body["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"presets": ["nope"]}, 400, "unknown_preset"),
        ({"presets": []}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"presets": ["thumb"], "dryRun": "yes"}, 400, "invalid_request"),
        ({"presets": ["thumb"], "createdAfter": "yesterday"}, 400, "invalid_request"),
        ({"presets": ["thumb"], "createdAfter": "2026-01-01T00:00:00"}, 400, "invalid_request"),
        (
            {
                "presets": ["thumb"],
                "createdAfter": "2026-02-01T00:00:00Z",
                "createdBefore": "2026-01-01T00:00:00Z",
            },
            400,
            "invalid_request",
        ),
        ({"presets": ["thumb"], "limit": 3}, 400, "invalid_request"),
    ],
)
def test_a_bad_backfill_request_is_refused_with_its_code(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    configure(monkeypatch, THUMB)
    response = pipeline.client.http.post(
        "/backfills", headers=bearer(pipeline.api_key), body=json.dumps(body).encode()
    )
    assert response.status_code == status, response.body
    assert response.json_body["error"]["code"] == code


@pytest.mark.parametrize("backfill_id", ["bf_nope", "bf_" + "0" * 24, "bf_" + "Z" * 24])
def test_an_unknown_backfill_answers_404(pipeline: Pipeline, backfill_id: str) -> None:
    response = pipeline.client.http.get(
        f"/backfills/{backfill_id}", headers=bearer(pipeline.api_key)
    )
    assert response.status_code == 404


@pytest.fixture(autouse=True)
def _no_presets_leak(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
    monkeypatch.delenv("PRESETS", raising=False)
    reset_settings()
