"""Originals are kept: before a job completes, the worker copies the pinned upload to the
job's original (ORIGINALS_RETENTION_DAYS; 0 keeps none), then deletes the upload."""

from __future__ import annotations

import time

import pytest

from chalicelib import jobs
from chalicelib.config import reset_settings, settings
from tests.pipeline import Pipeline
from tests.samples import jpeg, png


def originals(pipeline: Pipeline) -> list[str]:
    bucket = settings().uploads_bucket
    listing = pipeline.s3.list_objects_v2(Bucket=bucket, Prefix="originals/")
    return [item["Key"] for item in listing.get("Contents", [])]


def test_a_completed_job_keeps_its_original_byte_for_byte(pipeline: Pipeline) -> None:
    data = png()
    before = int(time.time())
    job = pipeline.process(data, contentType="image/png", filename="Kite photo.png")
    assert job["status"] == "COMPLETED"
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert stored.original is not None
    key = f"originals/acme/{job['jobId']}/Kite photo.png"
    assert stored.original["key"] == key
    assert stored.original["bytes"] == len(data)
    expires_at = stored.original["expiresAt"]
    assert isinstance(expires_at, int)
    days = settings().originals_retention_days
    assert days == settings().job_ttl_days
    assert before + days * 86400 <= expires_at <= int(time.time()) + days * 86400
    kept = pipeline.s3.get_object(Bucket=settings().uploads_bucket, Key=key)
    assert kept["Body"].read() == data
    # The upload itself is gone, as before; the original is never shown by the API.
    assert pipeline.versions(f"uploads/acme/{job['jobId']}/Kite photo.png") == []
    assert "original" not in job
    assert key not in str(job)


def test_zero_retention_keeps_no_original(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORIGINALS_RETENTION_DAYS", "0")
    reset_settings()
    job = pipeline.process(jpeg())
    assert job["status"] == "COMPLETED"
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert stored.original is None
    assert originals(pipeline) == []
    assert pipeline.versions(f"uploads/acme/{job['jobId']}/source") == []


def test_a_failed_job_keeps_no_original(pipeline: Pipeline) -> None:
    job = pipeline.process(b"not an image at all, just text\n" * 4)
    assert job["status"] == "FAILED"
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert stored.original is None
    assert originals(pipeline) == []
