"""The job store's guarantees: status only moves forward, under conditional writes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chalicelib import jobs, storage
from chalicelib.errors import StaleTransition
from tests.resources import Queues


def new_job(tenant: str = "acme") -> jobs.Job:
    job_id = jobs.new_job_id()
    return jobs.create_job(
        job_id=job_id,
        tenant=tenant,
        source_key=storage.source_key(tenant, job_id, "a.jpg"),
        content_type="image/jpeg",
        filename="a.jpg",
        presets=["thumb"],
    )


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
