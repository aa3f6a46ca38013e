"""The worker hands the engine its limits: the frame cap and a time budget that never runs
past the invocation's own clock."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import rendering, worker
from devstack.lambda_events import SqsPoller
from tests.hostile import gif_frames
from tests.pipeline import Pipeline
from tests.samples import sample_photo


def test_the_budget_is_the_configured_one_without_a_clock() -> None:
    assert rendering.render_budget(25, None) == (25, False)


def test_the_budget_is_the_configured_one_when_the_invocation_has_time() -> None:
    assert rendering.render_budget(25, lambda: 55_000) == (25, False)


def test_the_budget_is_cut_to_what_the_invocation_has_left() -> None:
    budget, cut_short = rendering.render_budget(25, lambda: 12_000)
    assert cut_short
    assert budget == pytest.approx(12 - rendering.FINISHING_SECONDS)


def test_a_nearly_spent_clock_is_not_honoured() -> None:
    # Chalice's local and test contexts give every invocation 3 s: the render keeps its
    # own budget rather than none at all.
    assert rendering.render_budget(25, lambda: 3_000) == (25, False)


def test_a_context_without_a_clock_gives_none() -> None:
    assert rendering.remaining_time({"not": "a context"}) is None


def test_a_render_cut_short_by_the_invocation_is_retried_not_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload = pipeline.request_upload()
    pipeline.post_file(upload, sample_photo("Kite.jpg"))
    pipeline.notify_upload(pipeline.source_key(upload))
    monkeypatch.setattr(rendering, "MIN_RENDER_SECONDS", 0.0)

    def nearly_timed_out(event: dict[str, Any]) -> None:
        # 1 ms of render time left: the photo cannot be rendered in it.
        worker.handle_jobs_batch(
            event["Records"], lambda: int(rendering.FINISHING_SECONDS * 1000) + 1
        )

    hurried = SqsPoller(
        pipeline.sqs, pipeline.queues.jobs_url, nearly_timed_out, expire_with=pipeline.sqs
    )
    result = hurried.poll_once()
    assert (result.received, result.failed) == (1, True)
    assert pipeline.job(upload["jobId"])["status"] == "PROCESSING"

    pipeline.worker().drain()
    job = pipeline.job(upload["jobId"])
    assert job["status"] == "COMPLETED", job["error"]
    assert len(job["outputs"]) == 3


def test_the_frame_cap_reaches_the_engine(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_FRAMES", "2")
    from chalicelib.config import reset_settings

    reset_settings()
    three_frames = pipeline.process(gif_frames(3), contentType="image/gif")
    two_frames = pipeline.process(gif_frames(2), contentType="image/gif")
    assert three_frames["status"] == "FAILED"
    assert three_frames["error"]["code"] == "image_too_large"
    assert two_frames["status"] == "COMPLETED", two_frames["error"]
