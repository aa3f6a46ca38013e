"""The job message on the wire: what the dispatcher writes, the worker reads and the
dead-letter handler sends back."""

from __future__ import annotations

import json

from chalicelib import job_message
from chalicelib.jobs import Upload

UPLOAD = Upload("j", "acme", "uploads/acme/j/a.jpg", "v1")


def test_a_first_message_names_the_pinned_version_and_no_redrives() -> None:
    body = job_message.build(UPLOAD, "uploads-bucket").to_body()
    assert json.loads(body) == {
        "jobId": "j",
        "tenant": "acme",
        "bucket": "uploads-bucket",
        "key": "uploads/acme/j/a.jpg",
        "versionId": "v1",
    }
    parsed = job_message.parse(body)
    assert parsed is not None
    assert (parsed.upload, parsed.redrives) == (UPLOAD, 0)


def test_a_redriven_message_is_the_same_with_one_more_redrive() -> None:
    first = job_message.build(Upload("j", "acme", "uploads/acme/j/a.jpg", None), "b")
    again = job_message.parse(first.redriven().to_body())
    assert again is not None
    assert json.loads(again.redriven().to_body()) == {
        **json.loads(first.to_body()),
        "redrives": 2,
    }
    assert again.version_id is None
