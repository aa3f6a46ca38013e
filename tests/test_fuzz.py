"""Property-based and mutation fuzzing of the imaging engine (hypothesis).

Two properties:

- any valid image (every accepted format, its modes, 1-300 px, EXIF orientations, alpha)
  renders every preset at the preset's geometry, in the preset's format, with no metadata;
- any mutation of a small valid file (bit flips, byte writes, truncations, deletions,
  splices of its own or another format's bytes) either renders or raises a SourceError,
  nothing else.

CI runs a small, derandomised number of examples. For a longer, random run:

    FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_fuzz.py -q -p no:cacheprovider

``FUZZ_EXAMPLES`` sets the examples per property and makes the run random; a failure
prints the minimal example and the hypothesis seed to reproduce it.
"""

from __future__ import annotations

import importlib.util
import io
import os
import platform
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from chalicelib.errors import SourceError
from chalicelib.imaging import render
from chalicelib.presets import Fit, Preset
from tests.images import STORED_FOR_ORIENTATION, encode, noise

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 60,
    derandomize=not EXAMPLES,  # CI: the same examples on every run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MUTATION_FUZZ = settings(FUZZ, max_examples=EXAMPLES or 1000)

# Pillow modes each format writes, and whether EXIF orientation can be stored with it.
MODES = {
    "JPEG": ["L", "RGB", "CMYK"],
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "GIF": ["P", "L"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["RGB", "RGBA"],
    "AVIF": ["RGB", "RGBA"],
    "HEIF": ["RGB", "RGBA"],
}
WITH_EXIF = frozenset({"JPEG", "PNG", "WEBP"})
OUTPUT_FORMATS = ["JPEG", "PNG", "WEBP", "AVIF"]
METADATA_KEYS = ("exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "comment", "dpi")


@st.composite
def presets(draw: st.DrawFn) -> list[Preset]:
    count = draw(st.integers(1, 3))
    return [
        Preset(
            f"p{index}",
            draw(st.integers(1, 600)),
            draw(st.integers(1, 600)),
            cast(Fit, draw(st.sampled_from(["cover", "contain"]))),
            draw(st.sampled_from(OUTPUT_FORMATS)),
            draw(st.integers(30, 95)),
        )
        for index in range(count)
    ]


@st.composite
def valid_images(draw: st.DrawFn) -> tuple[bytes, str, tuple[int, int]]:
    """An encoded image, its format and its displayed size."""
    image_format = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[image_format]))
    size = (draw(st.integers(1, 300)), draw(st.integers(1, 300)))
    orientation = draw(st.integers(1, 8)) if image_format in WITH_EXIF else 1
    picture = noise(size, draw(st.integers(0, 2**16)))
    if mode in ("RGBA", "LA"):
        picture.putalpha(noise(size, 7).convert("L"))
    stored = picture.convert(mode)
    method = STORED_FOR_ORIENTATION[orientation]
    if method is not None:
        stored = stored.transpose(method)
    options: dict[str, Any] = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    # Stored turned as a camera would; displayed upright, at ``size``.
    return _encode(stored, image_format, options), image_format, size


def _encode(image: Image.Image, image_format: str, options: dict[str, Any]) -> bytes:
    if image_format == "HEIF":
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(image).save(buffer, quality=80)
        return buffer.getvalue()
    return encode(image, image_format, **options)


def expected_size(preset: Preset, source: tuple[int, int]) -> tuple[int, int] | None:
    """The exact output size when the geometry leaves no rounding choice, else None."""
    width, height = source
    if preset.fit == "contain" and width <= preset.width and height <= preset.height:
        return source
    if preset.fit == "cover" and width >= preset.width and height >= preset.height:
        return preset.width, preset.height
    return None


@FUZZ
@given(valid_images(), presets())
def test_valid_images_render_to_the_preset_geometry(
    image: tuple[bytes, str, tuple[int, int]], wanted: list[Preset]
) -> None:
    data, image_format, (width, height) = image

    result = render(data, wanted)

    assert result.source.format == image_format
    assert (result.source.width, result.source.height) == (width, height)
    assert [output.preset for output in result.outputs] == [preset.name for preset in wanted]
    for preset, output in zip(wanted, result.outputs, strict=True):
        decoded = Image.open(io.BytesIO(output.data))
        assert decoded.format == preset.format
        assert decoded.size == (output.width, output.height)
        assert 1 <= output.width <= min(preset.width, width)
        assert 1 <= output.height <= min(preset.height, height)
        exact = expected_size(preset, (width, height))
        if exact is not None:
            assert (output.width, output.height) == exact
        elif preset.fit == "contain":  # the source's aspect ratio, within rounding
            assert abs(output.width * height - output.height * width) <= max(width, height)
        else:  # the box's aspect ratio, within rounding
            box = preset.width, preset.height
            assert abs(output.width * box[1] - output.height * box[0]) <= max(box)
        assert not any(key in decoded.info for key in METADATA_KEYS)
        assert not decoded.getexif()


@cache
def seeds() -> tuple[bytes, ...]:
    """Small valid files of every accepted format and their main variants."""
    picture = noise((24, 16), 3)
    alpha = picture.copy()
    alpha.putalpha(noise((24, 16), 4).convert("L"))
    files = [
        encode(picture, "JPEG", quality=80),
        encode(picture, "JPEG", progressive=True),
        encode(picture.convert("CMYK"), "JPEG"),
        encode(alpha, "PNG"),
        encode(picture.convert("P"), "PNG"),
        encode(picture.convert("I;16"), "PNG"),
        encode(picture, "PNG", interlace=1),
        encode(picture.convert("P"), "GIF", save_all=True, append_images=[alpha.convert("P")]),
        encode(picture, "BMP"),
        encode(picture.convert("P"), "BMP"),
        encode(picture, "TIFF", compression="tiff_lzw"),
        encode(picture.convert("CMYK"), "TIFF", compression="tiff_adobe_deflate"),
        encode(picture, "TIFF", compression="jpeg"),
        encode(alpha, "WEBP"),
        encode(picture, "WEBP", lossless=True),
        encode(picture, "AVIF"),
        _encode(picture, "HEIF", {}),
    ]
    exif = Image.Exif()
    exif[0x0112] = 6
    files.append(encode(picture, "JPEG", exif=exif.tobytes()))
    return tuple(files)


@st.composite
def mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "byte", "truncate", "delete", "splice", "repeat"]))
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif kind == "truncate":
            del data[position:]
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:
            donor = data if kind == "repeat" else draw(st.sampled_from(seeds()))
            start = draw(st.integers(0, len(donor) - 1))
            piece = bytes(donor[start : start + draw(st.integers(1, 256))])
            data[position:position] = piece * (draw(st.integers(1, 50)) if kind == "repeat" else 1)
    return bytes(data)


SMALL_PRESETS = [
    Preset("cover", 16, 16, "cover", "JPEG", 80),
    Preset("contain", 20, 12, "contain", "WEBP", 80),
]


@MUTATION_FUZZ
@given(mutants())
def test_mutated_files_render_or_raise_a_source_error(data: bytes) -> None:
    try:
        result = render(data, SMALL_PRESETS, max_pixels=1_000_000)
    except SourceError:
        return
    for preset, output in zip(SMALL_PRESETS, result.outputs, strict=True):
        assert 1 <= output.width <= preset.width
        assert 1 <= output.height <= preset.height
        assert Image.open(io.BytesIO(output.data)).size == (output.width, output.height)


# --- the atheris harness (fuzz/engine.py) ------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_the_atheris_harness_runs() -> None:
    if importlib.util.find_spec("atheris") is None:
        assert platform.machine() != "x86_64", "atheris is a dev dependency on x86_64"
        pytest.skip("atheris publishes wheels for x86_64 only")

    completed = subprocess.run(
        [sys.executable, "-m", "fuzz.engine", "-atheris_runs=300", "-seed=1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    assert re.search(r"Done 300 (runs )?in", completed.stderr), completed.stderr[-3000:]
    assert "INITED" in completed.stderr  # it ran from the generated seeds


def test_the_fuzz_seeds_are_valid_images_of_every_format() -> None:
    from fuzz.seeds import seed_files

    files = seed_files()
    formats = {render(data, SMALL_PRESETS).source.format for data in files.values()}

    assert formats == {"JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "HEIF"}
