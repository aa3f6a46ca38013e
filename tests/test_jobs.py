"""The job store's guarantees: status only moves forward, under conditional writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chalicelib import jobs, storage
from chalicelib.errors import StaleTransition
from tests.pipeline import new_job
from tests.resources import Queues


def test_the_happy_path_moves_forward(aws: Queues) -> None:
    job = new_job()
    assert jobs.mark_queued(job.job_id, source_bytes=10).status == jobs.QUEUED
    claimed = jobs.start_processing(job.job_id)
    assert (claimed.status, claimed.attempts) == (jobs.PROCESSING, 1)
    retried = jobs.start_processing(job.job_id)
    assert (retried.status, retried.attempts) == (jobs.PROCESSING, 2)
    done = jobs.complete(job.job_id, source={"bytes": 10}, outputs=[{"preset": "thumb"}])
    assert done.status == jobs.COMPLETED
    assert done.outputs == [{"preset": "thumb"}]


@pytest.mark.parametrize("terminal", [jobs.COMPLETED, jobs.FAILED])
def test_nothing_leaves_a_terminal_state(aws: Queues, terminal: str) -> None:
    job = new_job()
    jobs.start_processing(job.job_id)
    if terminal == jobs.COMPLETED:
        jobs.complete(job.job_id, source={}, outputs=[])
    else:
        jobs.fail(job.job_id, code="corrupt_image", message="broken")
    moves: list[Callable[[], object]] = [
        lambda: jobs.mark_queued(job.job_id, source_bytes=1),
        lambda: jobs.start_processing(job.job_id),
        lambda: jobs.complete(job.job_id, source={}, outputs=[]),
        lambda: jobs.fail(job.job_id, code="processing_failed", message="late"),
    ]
    for move in moves:
        with pytest.raises(StaleTransition):
            move()
    final = jobs.get_job(job.job_id)
    assert final is not None
    assert final.status == terminal


def test_no_step_backwards(aws: Queues) -> None:
    job = new_job()
    jobs.start_processing(job.job_id)
    with pytest.raises(StaleTransition):
        jobs.mark_queued(job.job_id, source_bytes=1)
    with pytest.raises(StaleTransition):
        jobs.complete(new_job().job_id, source={}, outputs=[])  # PENDING cannot complete


def test_missing_jobs_cannot_be_moved(aws: Queues) -> None:
    with pytest.raises(StaleTransition):
        jobs.fail(jobs.new_job_id(), code="processing_failed", message="x")
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
    assert (stored.status, stored.source_version, stored.source_etag) == (jobs.QUEUED, "v1", "abc")
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
    assert (stored.status, stored.source_version) == (jobs.PENDING, None)


def test_queueing_a_missing_job_reports_none(aws: Queues) -> None:
    ghost = jobs.Upload(jobs.new_job_id(), "acme", "uploads/acme/x/source", "v1")
    assert jobs.queue_upload(ghost, size=1, etag=None) == jobs.Transition(moved=False, job=None)


def test_a_claim_names_the_pinned_version_and_returns_the_job(aws: Queues) -> None:
    job = new_job()
    jobs.queue_upload(upload_of(job, "v1"), size=1, etag="a")
    refused = jobs.claim(upload_of(job, "v2"))
    assert (refused.moved, refused.job and refused.job.status) == (False, jobs.QUEUED)
    assert refused.job is not None
    assert refused.job.attempts == 0
    claimed = jobs.claim(upload_of(job, "v1"))
    assert claimed.moved
    assert claimed.job is not None
    assert (claimed.job.status, claimed.job.attempts) == (jobs.PROCESSING, 1)
    assert (claimed.job.content_type, claimed.job.presets) == ("image/jpeg", ["thumb"])
    jobs.complete(job.job_id, source={}, outputs=[])
    late = jobs.claim(upload_of(job, "v1"))
    assert not late.moved
    assert late.job is not None
    assert (late.job.status, late.job.attempts) == (jobs.COMPLETED, 1)


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
