"""A FAILED job's `error.message` is its code's fixed text, with at most a safe detail
built from our own numbers and names: no decoder's wording, no newline, whatever the file.
The decoder's words go to the log line of the failure, with the job id."""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chalicelib import models
from chalicelib.errors import (
    JOB_FAILURE_MESSAGES,
    CorruptImage,
    job_error_message,
    public_message,
)
from tests import hostile
from tests.images import encode, noise
from tests.job_errors import assert_fixed_message
from tests.pipeline import Pipeline
from tests.samples import jpeg, png

# Words of the libraries' own messages that reached clients before.
LIBRARY_WORDS = ("Pillow", "PIL", "Plugin", "MAX_TEXT_CHUNK", "libheif", "Palette", "truncated (")


def bmp_with_palette_size(colours: int) -> bytes:
    """A 4x4 8-bit BMP whose header claims `colours` palette entries."""
    info = struct.pack("<IiiHHIIiiII", 40, 4, 4, 1, 8, 0, 16, 2835, 2835, colours, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + 16, 0, 0, offset) + info + bytes(16)


def heic(size: tuple[int, int] = (64, 48)) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(noise(size)).save(buffer)
    return buffer.getvalue()


# (the file, its declared content type, the code it ends with)
BAD_INPUTS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "png-text-bomb": (lambda: hostile.png_text_bomb(8 << 20), "image/png", "corrupt_image"),
    "bmp-palette-4294967295": (
        lambda: bmp_with_palette_size(0xFFFFFFFF),
        "image/bmp",
        "corrupt_image",
    ),
    "truncated-jpeg": (lambda: jpeg(1200, 900)[:3000], "image/jpeg", "corrupt_image"),
    "truncated-heic": (lambda: heic()[:400], "image/heic", "corrupt_image"),
    "avif-as-jpeg": (lambda: encode(noise((16, 16)), "AVIF"), "image/jpeg", "content_mismatch"),
    "png-as-webp": (lambda: png(), "image/webp", "content_mismatch"),
    "text": (lambda: b"plain text, not an image\n" * 8, "image/png", "unsupported_format"),
    "pixel-bomb": (lambda: hostile.png_header_only(60000, 60000), "image/png", "image_too_large"),
}


@contextmanager
def json_log() -> Iterator[list[dict[str, Any]]]:
    """The JSON log lines written inside the block, once it has ended."""
    from chalicelib.observability import logger

    handler: Any = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        handler.setStream(previous)
    lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_a_failed_jobs_message_is_its_codes_fixed_text(pipeline: Pipeline, name: str) -> None:
    make, declared, code = BAD_INPUTS[name]
    job = pipeline.process(make(), contentType=declared)
    assert job["status"] == "FAILED"
    assert_fixed_message(job["error"], code)
    message = job["error"]["message"]
    assert "\n" not in message
    for word in LIBRARY_WORDS:
        assert word not in message


def test_a_content_mismatch_names_both_formats(pipeline: Pipeline) -> None:
    job = pipeline.process(encode(noise((16, 16)), "AVIF"), contentType="image/jpeg")
    detail = assert_fixed_message(job["error"], "content_mismatch")
    assert detail == " (declared: image/jpeg; found: AVIF)"


@pytest.mark.parametrize(
    ("make", "detail"),
    [
        (lambda: hostile.png_header_only(60000, 60000), " (limit: 50000000 pixels)"),
        (lambda: hostile.png_header_only(70000, 10), " (longest side: 65535 pixels)"),
        (lambda: hostile.gif_frames(1001), " (limit: 1000 frames)"),
        (hostile.METADATA_BOMBS["tiff-ifd0"], " (metadata: overlapping tags)"),
    ],
    ids=["pixels", "side", "frames", "metadata"],
)
def test_a_limit_hit_is_named_in_the_message(
    pipeline: Pipeline, make: Callable[[], bytes], detail: str
) -> None:
    data = make()
    declared = {b"\x89P": "image/png", b"GI": "image/gif"}.get(data[:2], "image/tiff")
    job = pipeline.process(data, contentType=declared)
    assert assert_fixed_message(job["error"], "image_too_large") == detail


def test_the_decoders_words_go_to_the_log_with_the_job_id(pipeline: Pipeline) -> None:
    with json_log() as lines:
        job = pipeline.process(bmp_with_palette_size(0xFFFFFFFF), contentType="image/bmp")
    assert job["error"]["message"] == JOB_FAILURE_MESSAGES["corrupt_image"]
    (failed,) = [line for line in lines if line["message"] == "job failed"]
    assert failed["jobId"] == job["jobId"]
    assert failed["code"] == "corrupt_image"
    assert "Unsupported BMP Palette size (4294967295)" in failed["reason"]
    assert failed["cause"].startswith("OSError: ")


def test_every_failure_code_has_a_fixed_text() -> None:
    assert sorted(JOB_FAILURE_MESSAGES) == models.JOB_FAILURE_CODES
    for text in JOB_FAILURE_MESSAGES.values():
        assert text.endswith(".")
        assert "\n" not in text


@pytest.mark.parametrize(
    "detail",
    [
        "Unsupported BMP Palette size (4294967295)",
        "limit: 50000000 pixels\n",
        "limit: 5 pixels; Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK",
        "found: a AVIF file",
        "reason: Security limit exceeded: Ispe box too large",
        "",
    ],
)
def test_a_detail_not_in_the_safe_form_is_left_out(detail: str) -> None:
    error = CorruptImage("whatever the library said", detail=detail)
    assert public_message(error) == JOB_FAILURE_MESSAGES["corrupt_image"]


def test_a_safe_detail_follows_the_text() -> None:
    message = job_error_message("image_too_large", "limit: 50000000 pixels")
    assert message == f"{JOB_FAILURE_MESSAGES['image_too_large']} (limit: 50000000 pixels)"
    assert assert_fixed_message({"code": "image_too_large", "message": message})


def test_the_readme_quotes_every_fixed_text() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| ([^|]+?) \| [^|]+ \|$", readme, re.MULTILINE)
    assert dict(rows) == JOB_FAILURE_MESSAGES


def test_the_openapi_document_holds_each_code_to_its_text() -> None:
    import jsonschema_rs

    validator = jsonschema_rs.Draft202012Validator(models.JOB["properties"]["error"])
    for code, text in JOB_FAILURE_MESSAGES.items():
        assert validator.is_valid({"code": code, "message": text})
        detailed = job_error_message(code, "size: 30 bytes; limit: 20 bytes")
        assert validator.is_valid({"code": code, "message": detailed})
        for other in set(JOB_FAILURE_MESSAGES.values()) - {text}:
            assert not validator.is_valid({"code": code, "message": other})
        assert not validator.is_valid({"code": code, "message": f"{text}\n"})
    leaked = "The PNG data is corrupt or truncated: Decompressed data too large for PngImagePlugin"
    assert not validator.is_valid({"code": "corrupt_image", "message": leaked})
