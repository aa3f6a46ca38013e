"""The job store's guarantees: status only moves forward, under conditional writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import clients, jobs, storage, sweeper
from chalicelib.config import reset_settings, settings
from chalicelib.errors import InvalidRequest
from chalicelib.jobs import JobStatus
from infra import migrate_status_index
from tests.pipeline import bearer, claim_job, new_job, queue_job
from tests.resources import Queues


def test_the_happy_path_moves_forward(aws: Queues) -> None:
    job = new_job()
    queued = moved(queue_job(job.job_id, size=10))
    assert queued.status is JobStatus.QUEUED
    claimed = moved(claim_job(job.job_id))
    assert (claimed.status, claimed.attempts) == (JobStatus.PROCESSING, 1)
    retried = moved(claim_job(job.job_id))
    assert (retried.status, retried.attempts) == (JobStatus.PROCESSING, 2)
    done = moved(jobs.complete(job.job_id, source={"bytes": 10}, outputs=[{"preset": "thumb"}]))
    assert done.status is JobStatus.COMPLETED
    assert done.outputs == [{"preset": "thumb"}]


def moved(transition: jobs.Transition) -> jobs.Job:
    """The job a move left, asserting it moved."""
    assert transition.moved
    assert transition.job is not None
    return transition.job


@pytest.mark.parametrize("terminal", [JobStatus.COMPLETED, JobStatus.FAILED])
def test_nothing_leaves_a_terminal_state(aws: Queues, terminal: str) -> None:
    job = new_job()
    claim_job(job.job_id)
    if terminal == JobStatus.COMPLETED:
        jobs.complete(job.job_id, source={}, outputs=[])
    else:
        jobs.fail(job.job_id, code="corrupt_image", message="broken")
    moves: list[Callable[[], jobs.Transition]] = [
        lambda: queue_job(job.job_id, size=1),
        lambda: claim_job(job.job_id),
        lambda: jobs.complete(job.job_id, source={}, outputs=[]),
        lambda: jobs.fail(job.job_id, code="processing_failed", message="late"),
    ]
    for move in moves:
        refused = move()
        assert not refused.moved
        assert refused.job is not None
        assert refused.job.status == terminal
    final = jobs.get_job(job.job_id)
    assert final is not None
    assert final.status == terminal


def test_no_step_backwards(aws: Queues) -> None:
    job = new_job()
    claim_job(job.job_id)
    assert not queue_job(job.job_id, size=1).moved
    assert not jobs.complete(new_job().job_id, source={}, outputs=[]).moved  # PENDING cannot


def test_missing_jobs_cannot_be_moved(aws: Queues) -> None:
    refused = jobs.fail(jobs.new_job_id(), code="processing_failed", message="x")
    assert refused == jobs.Transition(moved=False, job=None)
    assert jobs.get_job(jobs.new_job_id()) is None


def upload_of(job: jobs.Job, version_id: str | None = "v1") -> jobs.Upload:
    return jobs.Upload(job.job_id, job.tenant, job.source_key, version_id)


def test_queueing_pins_the_uploaded_version_in_one_write(aws: Queues) -> None:
    job = new_job()
    queued = jobs.queue_upload(upload_of(job), size=1234, etag="abc")
    assert queued.moved
    stored = jobs.get_job(job.job_id)
    assert stored is not None
    assert stored == queued.job
    assert (stored.status, stored.source_version, stored.source_etag) == (
        JobStatus.QUEUED,
        "v1",
        "abc",
    )
    assert stored.source == {"bytes": 1234}


def test_a_refused_queueing_reports_the_job_as_it_stands(aws: Queues) -> None:
    job = new_job()
    jobs.queue_upload(upload_of(job, "v1"), size=1, etag="a")
    before = jobs.get_job(job.job_id)
    again = jobs.queue_upload(upload_of(job, "v2"), size=2, etag="b")
    assert not again.moved
    assert again.job == before  # as it stood, and unchanged: v1 stays pinned
    assert jobs.get_job(job.job_id) == before


@pytest.mark.parametrize("mismatch", ["tenant", "key"])
def test_only_the_job_that_owns_the_key_is_queued(aws: Queues, mismatch: str) -> None:
    job = new_job()
    upload = upload_of(job)
    if mismatch == "tenant":
        upload = jobs.Upload(job.job_id, "globex", job.source_key, "v1")
    else:
        upload = jobs.Upload(job.job_id, job.tenant, job.source_key + "-other", "v1")
    refused = jobs.queue_upload(upload, size=1, etag="a")
    assert not refused.moved
    assert refused.job == job  # the caller sees it is not the upload's owner
    stored = jobs.get_job(job.job_id)
    assert stored is not None
    assert (stored.status, stored.source_version) == (JobStatus.PENDING, None)


def test_queueing_a_missing_job_reports_none(aws: Queues) -> None:
    ghost = jobs.Upload(jobs.new_job_id(), "acme", "uploads/acme/x/source", "v1")
    assert jobs.queue_upload(ghost, size=1, etag=None) == jobs.Transition(moved=False, job=None)


def test_a_claim_names_the_pinned_version_and_returns_the_job(aws: Queues) -> None:
    job = new_job()
    jobs.queue_upload(upload_of(job, "v1"), size=1, etag="a")
    refused = jobs.claim(upload_of(job, "v2"))
    assert (refused.moved, refused.job and refused.job.status) == (False, JobStatus.QUEUED)
    assert refused.job is not None
    assert refused.job.attempts == 0
    claimed = jobs.claim(upload_of(job, "v1"))
    assert claimed.moved
    assert claimed.job is not None
    assert (claimed.job.status, claimed.job.attempts) == (JobStatus.PROCESSING, 1)
    assert (claimed.job.content_type, claimed.job.presets) == ("image/jpeg", ["thumb"])
    jobs.complete(job.job_id, source={}, outputs=[])
    late = jobs.claim(upload_of(job, "v1"))
    assert not late.moved
    assert late.job is not None
    assert (late.job.status, late.job.attempts) == (JobStatus.COMPLETED, 1)


def test_an_unversioned_upload_is_claimed_only_without_a_version(aws: Queues) -> None:
    job = new_job()
    jobs.queue_upload(upload_of(job, None), size=1, etag=None)
    assert not jobs.claim(upload_of(job, "v1")).moved
    claimed = jobs.claim(upload_of(job, None))
    assert claimed.moved
    assert claimed.job is not None
    assert claimed.job.source_version is None


def test_jobs_expire_by_ttl(aws: Queues) -> None:
    import boto3

    from chalicelib.config import settings

    job = new_job()
    item = boto3.client("dynamodb").get_item(
        TableName=settings().jobs_table, Key={"jobId": {"S": job.job_id}}
    )["Item"]
    assert int(item["expiresAt"]["N"]) > 0


@pytest.mark.parametrize(
    ("filename", "safe"),
    [
        (None, "source"),
        ("beach.jpg", "beach.jpg"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.png", "photo.png"),
        ("Ça  va?.jpg", "Ca va_.jpg"),
        (".hidden", "hidden"),
        ("////", "source"),
        ("日本.jpg", "jpg"),
    ],
)
def test_safe_filenames(filename: str | None, safe: str) -> None:
    assert storage.safe_filename(filename) == safe


def test_source_keys_round_trip() -> None:
    job_id = jobs.new_job_id()
    key = storage.source_key("acme", job_id, "my photo.jpg")
    parsed = storage.parse_source_key(key)
    assert parsed == storage.SourceKey(tenant="acme", job_id=job_id)
    assert storage.parse_source_key(key.replace("uploads/", "derived/")) is None
    assert storage.parse_source_key(f"uploads/acme/{job_id}/../x") is None


# --- listings: every page but the last holds jobs --------------------------------------------


def finished(status: str, tenant: str = "acme") -> str:
    job = new_job(tenant)
    claim_job(job.job_id)
    if status == JobStatus.COMPLETED:
        jobs.complete(job.job_id, source={}, outputs=[])
    else:
        jobs.fail(job.job_id, code="corrupt_image", message="broken")
    return job.job_id


def every_page(status: JobStatus | None, limit: int) -> list[list[str]]:
    """The ids on each page of the listing, following its cursors to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        found, cursor = jobs.list_jobs("acme", status=status, limit=limit, cursor=cursor)
        pages.append([job.job_id for job in found])
        if cursor is None:
            return pages
        assert len(pages) < 50, "the cursors never end"


def test_a_filtered_listing_has_no_empty_page_before_its_end(aws: Queues) -> None:
    # More jobs of other statuses between two PENDING ones than a page's queries read.
    older = new_job().job_id
    for _ in range(jobs.MAX_LIST_QUERIES + 2):
        finished(JobStatus.COMPLETED)
    newer = new_job().job_id
    finished(JobStatus.FAILED)
    finished(JobStatus.FAILED)
    new_job("globex")

    assert every_page(JobStatus.PENDING, limit=1) == [[newer], [older]]
    completed = every_page(JobStatus.COMPLETED, limit=5)
    assert [len(page) for page in completed] == [5, 5, 2]
    assert [len(page) for page in every_page(JobStatus.FAILED, limit=1)] == [1, 1]


def test_a_listing_that_ends_on_a_full_page_says_so(aws: Queues) -> None:
    created = [new_job().job_id for _ in range(4)]
    assert every_page(None, limit=2) == [created[:1:-1], created[1::-1]]
    assert every_page(JobStatus.PENDING, limit=4) == [created[::-1]]


def test_a_filtered_listing_is_newest_first_by_when_jobs_got_there(aws: Queues) -> None:
    first, second = new_job().job_id, new_job().job_id
    claim_job(second)
    claim_job(first)
    assert every_page(JobStatus.PROCESSING, limit=10) == [[first, second]]
    assert every_page(JobStatus.PENDING, limit=10) == [[]]


@pytest.mark.parametrize(
    ("issued_for", "used_for"),
    [
        (None, JobStatus.PENDING),
        (JobStatus.PENDING, None),
        (JobStatus.PENDING, JobStatus.COMPLETED),
    ],
)
def test_a_cursor_is_good_only_for_the_listing_that_issued_it(
    aws: Queues, issued_for: JobStatus | None, used_for: JobStatus | None
) -> None:
    for _ in range(2):
        new_job()
        finished(JobStatus.COMPLETED)
    _, cursor = jobs.list_jobs("acme", status=issued_for, limit=1, cursor=None)
    assert cursor is not None
    with pytest.raises(InvalidRequest):
        jobs.list_jobs("acme", status=used_for, limit=1, cursor=cursor)
    with pytest.raises(InvalidRequest):
        jobs.list_jobs("globex", status=issued_for, limit=1, cursor=cursor)


def test_jobs_written_before_the_status_index_are_filled_in_once(aws: Queues) -> None:
    done, waiting = finished(JobStatus.COMPLETED), new_job().job_id
    for job_id in (done, waiting):  # as every job was before the index
        clients.dynamodb().update_item(
            TableName=settings().jobs_table,
            Key={"jobId": {"S": job_id}},
            UpdateExpression=f"REMOVE {jobs.STATUS_SINCE}",
        )
    assert every_page(JobStatus.COMPLETED, limit=10) == [[]]

    assert migrate_status_index.migrate() == 2
    assert every_page(JobStatus.COMPLETED, limit=10) == [[done]]
    assert every_page(JobStatus.PENDING, limit=10) == [[waiting]]
    assert jobs.count_pending("acme", up_to=10) == 1
    assert migrate_status_index.migrate() == 0


# --- the bound on a tenant's uploads waiting for their file ----------------------------------


def create_upload(client: Client, key: str) -> Any:
    body = json.dumps({"contentType": "image/jpeg"}).encode()
    return client.http.post("/uploads", headers=bearer(key), body=body)


@pytest.fixture
def bound_of_three(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("MAX_PENDING_UPLOADS", "3")
    reset_settings()
    return 3


def test_pending_jobs_are_counted_up_to_the_bound_only(aws: Queues) -> None:
    for _ in range(5):
        new_job()
    new_job("globex")
    assert jobs.count_pending("acme", up_to=3) == 3
    assert jobs.count_pending("acme", up_to=10) == 5
    assert jobs.count_pending("globex", up_to=10) == 1
    assert jobs.count_pending("initech", up_to=10) == 0


def test_past_the_bound_post_uploads_answers_429_for_that_tenant_only(
    client: Client, acme_key: str, globex_key: str, bound_of_three: int
) -> None:
    created = [create_upload(client, acme_key) for _ in range(bound_of_three)]
    assert [response.status_code for response in created] == [201] * bound_of_three

    refused = create_upload(client, acme_key)
    assert refused.status_code == 429, refused.body
    error = refused.json_body["error"]
    assert error["code"] == "too_many_pending_uploads"
    assert str(bound_of_three) in error["message"]
    assert jobs.count_pending("acme", up_to=10) == bound_of_three  # no job was created
    assert create_upload(client, globex_key).status_code == 201


def test_the_bound_frees_up_as_jobs_leave_pending(
    client: Client, acme_key: str, bound_of_three: int
) -> None:
    ids = [create_upload(client, acme_key).json_body["jobId"] for _ in range(bound_of_three)]
    assert create_upload(client, acme_key).status_code == 429

    job = jobs.get_job(ids[0])
    assert job is not None
    jobs.queue_upload(jobs.Upload(job.job_id, "acme", job.source_key, "v1"), size=1, etag="e")
    assert create_upload(client, acme_key).status_code == 201  # dispatched: one place
    assert create_upload(client, acme_key).status_code == 429

    config = settings()
    overdue = config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds + 60
    swept = sweeper.sweep(now=datetime.now(UTC) + timedelta(seconds=overdue))
    assert swept.counts[sweeper.UPLOAD_EXPIRED] == bound_of_three  # ended: every place
    assert [create_upload(client, acme_key).status_code for _ in range(4)] == [201] * 3 + [429]
