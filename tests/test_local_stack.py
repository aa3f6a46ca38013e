"""The local stack (`make run`) used as a user would: plain HTTP and the AWS CLI, no AWS.

One `make run` (the `stack` fixture of conftest) serves this module and the other
`make run` tests, on free ports, in its own session. It must answer
`/health` only once ready, run every job through the emulator, the dispatcher and the
workers, and on SIGTERM stop every process it started, cleanly (the stack exits 0; make
itself then re-raises the signal, as GNU make does for any recipe). Latencies and
throughput are printed and attached to the tests (`record_property`).
"""

from __future__ import annotations

import io
import math
import re
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from PIL import Image, ImageChops, ImageOps, ImageStat
from standardwebhooks import Webhook

from devstack.webhooks import Receiver, receiver
from media_pipeline.client import ApiError, Client, Upload
from tests.job_errors import assert_fixed_message
from tests.local_stack import EXPECTED_OUTPUTS, HTTP_TIMEOUT, LocalStack, output_key_name
from tests.samples import SAMPLES, corpus_photos, phone_name, phone_photo, sample_photo

BATCH_TIMEOUT = 120.0
BATCH_SIZE = 20
PHONE_SOURCES = ("BytheWater.jpg", "Kite.jpg")  # phone photos made from these samples
BATCH_POLL = 0.05  # the batch, one listing per poll


def batch_photos() -> dict[str, bytes]:
    """The sample photos and phone photos made from two of them, widened by the shared
    corpus's photos where it lies beside the clone."""
    photos = {path.name: path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg"))}
    photos |= {phone_name(source): phone_photo(source) for source in PHONE_SOURCES}
    photos |= {path.name: path.read_bytes() for path in corpus_photos()}
    return dict(sorted(photos.items()))


# --- one photo, end to end -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    upload: Upload
    job: Any
    latency_ms: float


@pytest.fixture(scope="module")
def phone_job(stack: LocalStack) -> Finished:
    upload = stack.upload(
        "acme", phone_photo(), filename="phone photo.jpg", content_type="image/jpeg"
    )
    job, seen = stack.wait("acme", upload.job_id)
    return Finished(upload=upload, job=job, latency_ms=(seen - upload.sent_at) * 1000)


def upright_reference() -> Image.Image:
    """The phone photo as it should look: EXIF orientation applied, decoded at 1/8."""
    source = Image.open(io.BytesIO(phone_photo()))
    source.draft("RGB", (source.width // 8, source.height // 8))
    return ImageOps.exif_transpose(source).convert("RGB")


def difference(reference: Image.Image, output: Image.Image) -> float:
    """Mean absolute difference (0-255) of the two, the reference cropped like the output."""
    size = (32, max(1, round(32 * output.height / output.width)))
    expected = ImageOps.fit(reference, output.size).resize(size, Image.Resampling.BOX)
    actual = output.convert("RGB").resize(size, Image.Resampling.BOX)
    return sum(ImageStat.Stat(ImageChops.difference(expected, actual)).mean) / 3


def test_a_phone_photo_comes_back_upright_and_clean(
    stack: LocalStack, phone_job: Finished, record_property: Any
) -> None:
    form_url = urlsplit(phone_job.upload.form["url"])
    assert (form_url.scheme, form_url.netloc) == ("http", f"127.0.0.1:{stack.emulator_port}")
    assert "-uploads-" in form_url.path.split("/")[1], f"not path style: {form_url.geturl()}"

    job = phone_job.job
    assert job["status"] == "COMPLETED", f"{job}\n{stack.log_tail()}"
    assert job["error"] is None
    assert job["filename"] == "phone photo.jpg"
    assert job["source"] == {
        "contentType": "image/jpeg",
        "bytes": len(phone_photo()),
        "width": 4032,
        "height": 3024,
        "format": "JPEG",
    }
    outputs = {output["preset"]: output for output in job["outputs"]}
    assert sorted(outputs) == sorted(EXPECTED_OUTPUTS)
    reference = upright_reference()
    for preset, (width, height, fmt, content_type, _) in EXPECTED_OUTPUTS.items():
        output = outputs[preset]
        name = output_key_name(preset)
        assert (output["width"], output["height"]) == (width, height), output
        assert (output["format"], output["contentType"]) == (fmt, content_type), output
        url = urlsplit(output["url"])
        assert (url.scheme, url.netloc) == ("http", f"127.0.0.1:{stack.emulator_port}")
        bucket, *key = unquote(url.path).lstrip("/").split("/")
        assert "-derived-" in bucket, f"not path style: {output['url']}"
        assert key == ["acme", job["jobId"], name], output["url"]

        downloaded = requests.get(output["url"], timeout=HTTP_TIMEOUT)
        assert downloaded.status_code == 200, f"{output['url']}: {downloaded.text[:500]}"
        assert downloaded.headers["Content-Type"] == content_type
        assert len(downloaded.content) == output["bytes"]
        image = Image.open(io.BytesIO(downloaded.content))
        assert image.format == fmt
        assert image.size == (width, height)
        assert width >= height, "a landscape photo came back portrait"
        assert not image.getexif(), f"{preset} kept metadata: {dict(image.getexif())}"
        assert "exif" not in image.info
        assert b"Exif\x00\x00" not in downloaded.content
        # The pixels are turned, not just the size: the upright photo matches, the
        # photo turned the other way (or mirrored) does not.
        right = difference(reference, image)
        wrong = min(
            difference(reference.transpose(Image.Transpose.ROTATE_180), image),
            difference(reference.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image),
        )
        assert right < 6 < wrong, f"{preset}: differs {right:.1f} from upright, {wrong:.1f}"

    print(f"\nlocal job latency: upload->COMPLETED {phone_job.latency_ms:.0f} ms")
    record_property("local_job_latency_ms", round(phone_job.latency_ms))


def test_the_aws_cli_sees_the_outputs(stack: LocalStack, phone_job: Finished) -> None:
    buckets = [line.split()[-1] for line in stack.aws("s3", "ls").splitlines() if line.strip()]
    derived = [name for name in buckets if re.fullmatch(r"media-pipeline-local-derived-.+", name)]
    assert len(derived) == 1, f"buckets: {buckets}"
    assert re.fullmatch(r"media-pipeline-local-derived-\d{12}-us-east-1", derived[0]), derived

    job_id = phone_job.job["jobId"]
    listing = stack.aws("s3", "ls", f"s3://{derived[0]}/acme/{job_id}/")
    # `2026-11-22 10:00:01      18211 thumb.8a2f0c11d4.jpg`
    listed = {line.split()[-1]: int(line.split()[-2]) for line in listing.splitlines() if line}
    sizes = {
        output_key_name(output["preset"]): output["bytes"] for output in phone_job.job["outputs"]
    }
    assert listed == sizes, listing


# --- failures --------------------------------------------------------------------------------


def test_bad_sources_fail_with_their_code(stack: LocalStack) -> None:
    cases = {
        "corrupt_image": stack.upload(
            "acme",
            sample_photo("BytheWater.jpg")[:3000],
            filename="cut.jpg",
            content_type="image/jpeg",
        ),
        "unsupported_format": stack.upload(
            "acme",
            b"this is a text file, not an image\n" * 10,
            filename="notes.png",
            content_type="image/png",
        ),
    }
    for code, upload in cases.items():
        job, _ = stack.wait("acme", upload.job_id)
        assert job["status"] == "FAILED", f"expected {code}: {job}\n{stack.log_tail()}"
        assert_fixed_message(job["error"], code)
        assert job["outputs"] == []


# --- a batch ---------------------------------------------------------------------------------


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def test_a_batch_of_photos_all_complete(stack: LocalStack, record_property: Any) -> None:
    photos = list(batch_photos().items())
    assert len(photos) >= 5, [name for name, _ in photos]
    work = [photos[i % len(photos)] for i in range(BATCH_SIZE)]

    uploaded: dict[str, float] = {}  # job id -> when its file's POST returned
    completed: dict[str, float] = {}  # job id -> when a listing first showed it COMPLETED
    lock = threading.Lock()

    def send(name: str, data: bytes) -> None:
        upload = stack.upload("acme", data, filename=name, content_type="image/jpeg")
        with lock:
            uploaded[upload.job_id] = upload.sent_at

    started = time.time()  # the clock of the uploads' `sent_at`
    deadline = started + BATCH_TIMEOUT
    with ThreadPoolExecutor(max_workers=4) as pool:
        sends: list[Future[None]] = [pool.submit(send, name, data) for name, data in work]
        while len(completed) < BATCH_SIZE:
            for sent in sends:
                if sent.done():
                    sent.result()  # an upload that failed fails the test here
            with lock:
                waiting = set(uploaded) - set(completed)
            if waiting:
                jobs = stack.jobs("acme")
                seen = time.time()
                for job_id in waiting:
                    job = jobs.get(job_id)
                    assert job is not None, f"GET /jobs does not list {job_id}"
                    assert job["status"] != "FAILED", f"{job}\n{stack.log_tail()}"
                    if job["status"] == "COMPLETED":
                        assert len(job["outputs"]) == len(EXPECTED_OUTPUTS), job
                        completed[job_id] = seen
            if time.time() > deadline:
                pytest.fail(
                    f"{len(completed)} of {BATCH_SIZE} jobs COMPLETED "
                    f"({len(uploaded)} uploaded) after {BATCH_TIMEOUT:.0f} s\n{stack.log_tail()}"
                )
            if len(completed) < BATCH_SIZE:
                time.sleep(BATCH_POLL)

    elapsed = max(completed.values()) - started
    latencies = [(completed[job_id] - uploaded[job_id]) * 1000 for job_id in completed]
    throughput = BATCH_SIZE / elapsed
    p50, p95 = nearest_rank(latencies, 0.50), nearest_rank(latencies, 0.95)
    print(
        f"\nlocal batch: {BATCH_SIZE} jobs in {elapsed:.2f} s = {throughput:.2f} jobs/s; "
        f"upload->COMPLETED p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    )
    record_property("batch_jobs_per_second", round(throughput, 2))
    record_property("batch_latency_p50_ms", round(p50))
    record_property("batch_latency_p95_ms", round(p95))


# --- tenants ---------------------------------------------------------------------------------


def test_tenants_are_isolated_and_keys_checked(stack: LocalStack) -> None:
    job_id = stack.client("acme").create_upload("private.jpg", "image/jpeg").job_id
    assert stack.job("acme", job_id)["jobId"] == job_id

    with pytest.raises(ApiError) as hidden:
        stack.job("globex", job_id)
    assert (hidden.value.status, hidden.value.code) == (404, "not_found"), hidden.value
    assert job_id not in stack.jobs("globex")

    wrong = Client(stack.api, secrets.token_urlsafe(30))
    body = {"filename": "private.jpg", "contentType": "image/jpeg"}
    for method, path, request_body in (
        ("GET", f"/jobs/{job_id}", None),
        ("GET", "/jobs", None),
        ("POST", "/uploads", body),
    ):
        with pytest.raises(ApiError) as refused:
            wrong.request(method, path, request_body)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized"), refused.value


# --- webhooks ---------------------------------------------------------------------------------

DELIVERY_TIMEOUT = 60.0


def test_a_local_receiver_gets_a_verified_event_for_each_job(stack: LocalStack) -> None:
    client = stack.client("acme")
    with receiver([200]) as listening:
        endpoint = client.add_webhook(listening.url)
        try:
            photos = {path.name: path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg"))}
            uploads = {
                stack.upload("acme", data, filename=name, content_type="image/jpeg").job_id: name
                for name, data in photos.items()
            }
            corrupt = stack.upload(
                "acme", b"not an image" * 50, filename="corrupt.jpg", content_type="image/jpeg"
            ).job_id
            expected = {job_id: "job.completed" for job_id in uploads} | {corrupt: "job.failed"}
            events = _verified_events(listening, endpoint["secret"], set(expected))
        finally:
            client.remove_webhook(endpoint["id"])
    assert {job_id: event["type"] for job_id, event in events.items()} == expected
    for job_id, event in events.items():
        job = client.job(job_id)
        assert event["data"]["status"] == job["status"]
        assert [a["status"] for a in client.deliveries(job_id)] == [200]
    assert events[corrupt]["data"]["error"]["code"] == "unsupported_format"


def _verified_events(
    listening: Receiver, secret: str, job_ids: set[str]
) -> dict[str, dict[str, Any]]:
    """The events received for `job_ids`, each verified with `standardwebhooks`."""
    verifier = Webhook(secret)
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    events: dict[str, dict[str, Any]] = {}
    while set(events) != job_ids and time.monotonic() < deadline:
        for received in list(listening.received):
            event = verifier.verify(received.body, received.headers)
            if event["data"].get("jobId") in job_ids:
                events[event["data"]["jobId"]] = event
        time.sleep(0.1)
    return events
