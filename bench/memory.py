"""Peak memory of the engine on 50-megapixel images, in a fresh process per case.

    python -m bench.memory [--quick] [--unchecked] [--out FILE]

Each case is one generated image, rendered once with every default preset by
``chalicelib.imaging.render(data, DEFAULT_PRESETS, max_pixels=50_000_000)`` in a new
Python process (``python -c`` with the lines of ``CHILD_CODE``). That process reports its
RSS after importing the engine (``baseline``), after reading the file, and its peak RSS
after the render: VmHWM from /proc/self/status, which belongs to the child's own address
space (ru_maxrss would carry the parent's peak into a child started with vfork+exec; see
bench/engine.py). It then renders a second time, for a warm timing.

A second process per case (``TRACE_CODE``) finds where the peak comes from: it wraps
Pillow's image methods (load, convert, reduce, resize, getchannel, transpose, crop, copy,
paste, save) and, around each outermost call the engine makes, resets the high-water mark
(writing 5 to /proc/self/clear_refs) and reads it back: the peak RSS during that call.

For the PNGs, which the engine decodes band by band (chalicelib/imaging/png_bands.py),
two more kinds of process compare that with the plain full decode it replaced: the same
render with ``png_bands.open_bands`` answering None (``plain_path``), and the decode and
reduce alone, each way, ``DECODE_REPEATS`` times with wall and CPU time (``decode_reduce``;
CPU time is the steadier figure on a shared machine).

Images (generated once into a temporary directory, deleted afterwards; 8660x5773 =
49,994,180 pixels, or 2449x1633, ~4 MP, with ``--quick``):

- ``jpeg``: a smooth colour gradient, a coarse texture and per-pixel noise, so it
  compresses like a photo (~2.5 bits per pixel); baseline JPEG, quality 90, 4:2:0;
- ``jpeg-progressive``: the same pixels as a progressive JPEG (not in the issue's list;
  web-exported JPEGs often are);
- ``png-rgb`` and ``png-rgba``: the same kind of picture, with the texture and noise only
  in a band across the middle (the rest a smooth gradient) so that the 50 MP file stays
  under the default 25 MiB upload cap: a 50 MP photo as PNG is ~100 MB, which the worker
  refuses (``file_too_large``) before downloading it. The RGBA one has a horizontal alpha
  gradient (255 to 64), so its alpha is kept.

Issue 5's targets: peak RSS at most 150 MB (10^6 bytes) for the 50 MP JPEG, and at most
1.5 times the decoded size (width x height x bands bytes) for the 50 MP PNG.

Hostile files (issue 11): each of ``tests.hostile.METADATA_BOMBS`` (EXIF and TIFF
directories whose tags overlap, ~1 GB if Pillow read them) is rendered once in a fresh
process (``HOSTILE_CODE``), which reports the error code it ended with and its VmHWM;
every peak must stay under ``REFUSED_PEAK_RSS_BOUND_MIB`` (and so under
``PEAK_RSS_BOUND_MIB``, SECURITY.md's bound for any render). With ``--unchecked`` they
are rendered with ``metadata.check`` switched off instead, to show what it prevents
(gigabytes each: not run by default).
"""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.output import add_output_arguments, child_report, machine, write_result

if TYPE_CHECKING:
    from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = "media-pipeline/bench-memory/1"
MARKER = "BENCH-MEMORY "
MIB = 1024 * 1024
MB = 1000 * 1000

FULL_SIZE = (8660, 5773)  # 49,994,180 pixels: the largest 3:2 picture under 50 MP
QUICK_SIZE = (2449, 1633)  # ~4 MP, the same aspect ratio
MAX_PIXELS = 50_000_000
DEFAULT_MAX_UPLOAD_BYTES = 25 * MIB  # MAX_UPLOAD_BYTES's default (chalicelib/config.py)
JPEG_QUALITY = 90
PNG_TEXTURE_BAND = 0.2  # the share of rows with texture and noise in the PNG pictures
SEED = 5
DECODE_REPEATS = 3

# Issue 5.
GOAL_JPEG_PEAK_BYTES = 150 * MB
GOAL_PNG_PEAK_OVER_DECODED = 1.5
# The peak RSS of one render SECURITY.md states. The highest measured for a legitimate
# upload is a 50 MP lossy WebP's, ~800 MiB (libwebp's RGBA buffer, Pillow's copy of it and
# the conversion to RGB); AVIF 470, HEIF 390, progressive JPEG 187. The worker has 1769 MB.
PEAK_RSS_BOUND_MIB = 1024
# What a file refused from its structure, before decoding, may cost: importing the engine
# (~27 MiB), the file and the walk of its metadata. The hostile files measure 27-45 MiB.
REFUSED_PEAK_RSS_BOUND_MIB = 64
# Pillow keeps RGB (and RGBA) pixels in 4 bytes each, whatever the file's bands.
PILLOW_BYTES_PER_PIXEL = {"RGB": 4, "RGBA": 4, "L": 1}


@dataclass(frozen=True)
class Case:
    name: str
    format: str  # "JPEG" or "PNG"
    mode: str  # "RGB" or "RGBA"
    description: str
    progressive: bool = False
    goal: str | None = None  # "jpeg" or "png": which issue-5 target applies


CASES = (
    Case("jpeg", "JPEG", "RGB", "baseline JPEG, quality 90, 4:2:0, photo-like", goal="jpeg"),
    Case(
        "jpeg-progressive",
        "JPEG",
        "RGB",
        "the same pixels as a progressive JPEG (beyond the issue's cases)",
        progressive=True,
    ),
    Case("png-rgb", "PNG", "RGB", "PNG, 8-bit RGB, textured band", goal="png"),
    Case("png-rgba", "PNG", "RGBA", "PNG, 8-bit RGBA, textured band, alpha 255 to 64", goal="png"),
)

# --- the children --------------------------------------------------------------------------------

_STATUS = """\
import sys, time


def status():
    values = {}
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])  # KiB
    return values

"""

CHILD_CODE = (
    _STATUS
    + """\
import hashlib
from chalicelib.imaging import render
from chalicelib.presets import DEFAULT_PRESETS

report = {"after_import_kib": status()}
with open(sys.argv[1], "rb") as file:
    data = file.read()
report["after_read_kib"] = status()
started, cpu = time.perf_counter(), time.process_time()
result = render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
report["render_ms"] = (time.perf_counter() - started) * 1000
report["render_cpu_ms"] = (time.process_time() - cpu) * 1000
report["after_render_kib"] = status()
report["source"] = [result.source.format, result.source.width, result.source.height]
report["outputs"] = [
    [output.preset, output.format, output.width, output.height, len(output.data),
     hashlib.sha256(output.data).hexdigest()[:16]]
    for output in result.outputs
]
del result
started, cpu = time.perf_counter(), time.process_time()
render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
report["second_render_ms"] = (time.perf_counter() - started) * 1000
report["second_render_cpu_ms"] = (time.process_time() - cpu) * 1000
report["after_second_render_kib"] = status()
import json
print("__MARKER__" + json.dumps(report), flush=True)
"""
).replace('"__MARKER__"', repr(MARKER))

# The render with the full decode every PNG had before the band path (and still has when
# it is interlaced, 16-bit or not reduced): the band path's entry point answers "no".
PLAIN_PATH_CODE = CHILD_CODE.replace(
    "from chalicelib.imaging import render\n",
    "from chalicelib.imaging import png_bands, render\npng_bands.open_bands = lambda data: None\n",
)
assert PLAIN_PATH_CODE != CHILD_CODE

# The decode and reduce alone: argv[3] is "bands" or "plain", argv[4] the reduce factor,
# argv[5] the number of runs.
DECODE_CODE = (
    _STATUS
    + """\
import io, json
from PIL import Image
from chalicelib.imaging import colour, pipeline, png_bands

way, factor = sys.argv[3], int(sys.argv[4])
with open(sys.argv[1], "rb") as file:
    data = file.read()


def plain():
    image = Image.open(io.BytesIO(data))
    image.load()
    image = colour.to_8bit(image)
    if "A" in image.getbands():
        return pipeline.reduce_in_strips(image, factor)
    return image.reduce(factor)


def bands():
    return pipeline.reduce_bands(png_bands.open_bands(data), factor)


decode = bands if way == "bands" else plain
runs = []
for _ in range(int(sys.argv[5])):
    started, cpu = time.perf_counter(), time.process_time()
    reduced = decode()
    runs.append([(time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000])
    del reduced
report = {"runs_ms": runs, "peak_kib": status()["VmHWM"]}
print("__MARKER__" + json.dumps(report), flush=True)
"""
).replace('"__MARKER__"', repr(MARKER))

# One render of a hostile file; argv[3] "unchecked" switches metadata.check off.
HOSTILE_CODE = (
    _STATUS
    + """\
import json
from chalicelib.errors import SourceError
from chalicelib.imaging import metadata, render
from chalicelib.presets import DEFAULT_PRESETS

if sys.argv[3] == "unchecked":
    metadata.check = lambda data, format_name: None
report = {"after_import_kib": status()}
with open(sys.argv[1], "rb") as file:
    data = file.read()
started = time.perf_counter()
try:
    render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
    report["code"] = None
except SourceError as exc:
    report["code"] = exc.code
report["render_ms"] = (time.perf_counter() - started) * 1000
report["end_kib"] = status()
print("__MARKER__" + json.dumps(report), flush=True)
"""
).replace('"__MARKER__"', repr(MARKER))

TRACE_CODE = (
    _STATUS
    + """\
import functools
from PIL import Image, ImageFile
from chalicelib.imaging import render
from chalicelib.presets import DEFAULT_PRESETS

events = []
depth = [0]


def describe(value):
    if isinstance(value, Image.Image):
        return [value.mode, value.width, value.height]
    return None


def traced(owner, name):
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(self, *args, **kwargs):
        if depth[0]:
            return original(self, *args, **kwargs)
        before = status()["VmRSS"]
        given = describe(self)
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset VmHWM to the current RSS
        depth[0] += 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            depth[0] -= 1
        after = status()
        events.append({
            "call": name,
            "input": given,
            "output": describe(result) or describe(self),
            "rss_before_kib": before,
            "peak_kib": after["VmHWM"],
            "rss_after_kib": after["VmRSS"],
        })
        return result

    setattr(owner, name, wrapper)


traced(ImageFile.ImageFile, "load")
for name in ("convert", "reduce", "resize", "getchannel", "transpose", "crop", "copy", "paste",
             "save"):
    traced(Image.Image, name)
with open(sys.argv[1], "rb") as file:
    data = file.read()
render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
import json
print("__MARKER__" + json.dumps({"events": events}), flush=True)
"""
).replace('"__MARKER__"', repr(MARKER))


# --- the pictures -------------------------------------------------------------------------------


def picture(size: tuple[int, int], mode: str, texture_band: float) -> Image.Image:
    """A photo-like picture: a colour gradient plus a coarse texture and fine noise.

    ``texture_band`` is the share of rows (centred) that carry the texture and noise; the
    other rows are the gradient alone. Deterministic (seeded), built in bands of rows.
    """
    import numpy as np
    from PIL import Image

    width, height = size
    rng = np.random.default_rng(SEED)
    coarse_size = (max(1, width // 16), max(1, height // 16))
    coarse_noise = rng.normal(0, 30, (coarse_size[1], coarse_size[0], 3))
    coarse = Image.fromarray(np.clip(coarse_noise + 128, 0, 255).astype(np.uint8), "RGB")
    texture = np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.int16) - 128
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    first = round(height * (1 - texture_band) / 2)
    last = height - first
    pixels = np.empty((height, width, 4 if mode == "RGBA" else 3), np.uint8)
    step = 256
    for top in range(0, height, step):
        count = min(step, height - top)
        y = np.linspace(top / height, (top + count) / height, count, dtype=np.float32)[:, None]
        gradient = np.stack(
            [
                60 + 150 * x + 20 * y,
                40 + 100 * y + 60 * x * y,
                200 - 150 * y + 0 * x,
            ],
            axis=-1,
        )
        rows = slice(top, top + count)
        numbers = np.arange(top, top + count)
        mask = (numbers >= first) & (numbers < last)
        noise = rng.normal(0, 6, gradient.shape).astype(np.float32) + texture[rows]
        band = gradient + noise * mask[:, None, None]
        pixels[rows, :, :3] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        if mode == "RGBA":
            pixels[rows, :, 3] = np.round(255 - 191 * x).astype(np.uint8)
    return Image.fromarray(pixels, mode)


def generate(case: Case, size: tuple[int, int], directory: Path) -> Path:
    path = directory / f"{case.name}.{case.format.lower()}"
    if case.format == "JPEG":
        image = picture(size, case.mode, texture_band=1.0)
        image.save(path, "JPEG", quality=JPEG_QUALITY, progressive=case.progressive)
    else:
        image = picture(size, case.mode, texture_band=PNG_TEXTURE_BAND)
        image.save(path, "PNG")  # Pillow's default compress_level, 6
    return path


# --- measuring -----------------------------------------------------------------------------------


def run_child(code: str, path: Path, *arguments: str) -> dict[str, Any]:
    completed = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code, str(path), str(MAX_PIXELS), *arguments],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    return child_report(path.name, completed, MARKER)


def measure_hostile(path: Path, *, checked: bool = True) -> dict[str, Any]:
    """The code one render of ``path`` ends with (None: it rendered), its peak RSS and time."""
    report = run_child(HOSTILE_CODE, path, "checked" if checked else "unchecked")
    return {
        "file_bytes": path.stat().st_size,
        "code": report["code"],
        "baseline_rss_mib": mib(report["after_import_kib"]["VmRSS"]),
        "peak_rss_mib": mib(report["end_kib"]["VmHWM"]),
        "render_ms": round(report["render_ms"], 1),
    }


def measure_hostile_cases(directory: Path, *, checked: bool = True) -> dict[str, Any]:
    from tests.hostile import METADATA_BOMBS

    cases: dict[str, Any] = {}
    for name, build in METADATA_BOMBS.items():
        path = directory / f"hostile-{name}"
        path.write_bytes(build())
        cases[name] = measure_hostile(path, checked=checked)
        cases[name]["within_bound"] = cases[name]["peak_rss_mib"] < REFUSED_PEAK_RSS_BOUND_MIB
        print(
            f"{name}: {cases[name]['code']}, peak {cases[name]['peak_rss_mib']} MiB",
            file=sys.stderr,
            flush=True,
        )
    return cases


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def measure(case: Case, path: Path, size: tuple[int, int]) -> dict[str, Any]:
    report = run_child(CHILD_CODE, path)
    trace = run_child(TRACE_CODE, path)["events"]
    width, height = size
    bands = len(case.mode)
    decoded = width * height * bands
    peak_bytes = report["after_render_kib"]["VmHWM"] * 1024
    baseline_kib = report["after_import_kib"]["VmRSS"]
    result: dict[str, Any] = {
        "description": case.description,
        "format": case.format,
        "mode": case.mode,
        "progressive": case.progressive,
        "width": width,
        "height": height,
        "pixels": width * height,
        "file_bytes": path.stat().st_size,
        "within_upload_cap": path.stat().st_size <= DEFAULT_MAX_UPLOAD_BYTES,
        "decoded_bytes": decoded,
        "pillow_image_bytes": width * height * PILLOW_BYTES_PER_PIXEL[case.mode],
        "baseline_rss_mib": mib(baseline_kib),
        "rss_after_read_mib": mib(report["after_read_kib"]["VmRSS"]),
        "peak_rss_mib": mib(report["after_render_kib"]["VmHWM"]),
        "peak_rss_bytes": peak_bytes,
        "peak_above_baseline_mib": mib(report["after_render_kib"]["VmHWM"] - baseline_kib),
        "peak_over_decoded": round(peak_bytes / decoded, 3),
        "rss_after_render_mib": mib(report["after_render_kib"]["VmRSS"]),
        "peak_rss_after_second_render_mib": mib(report["after_second_render_kib"]["VmHWM"]),
        "render_ms": round(report["render_ms"], 1),
        "second_render_ms": round(report["second_render_ms"], 1),
        "render_cpu_ms": round(report["render_cpu_ms"], 1),
        "second_render_cpu_ms": round(report["second_render_cpu_ms"], 1),
        "source": report["source"],
        "outputs": report["outputs"],
        "stages": _merge_repeats([_stage(event) for event in trace]),
    }
    result["goal"] = _goal(case, result)
    if case.format == "PNG":
        result["plain_path"] = _plain_path(path, decoded)
        result["plain_path"]["same_outputs"] = result["plain_path"]["outputs"] == report["outputs"]
        result["decode_reduce"] = _decode_reduce(path, size)
    return result


def _plain_path(path: Path, decoded: int) -> dict[str, Any]:
    """The render with the full decode the engine made before decoding PNGs in bands."""
    report = run_child(PLAIN_PATH_CODE, path)
    peak_kib = report["after_render_kib"]["VmHWM"]
    return {
        "peak_rss_mib": mib(peak_kib),
        "peak_over_decoded": round(peak_kib * 1024 / decoded, 3),
        "render_ms": round(report["render_ms"], 1),
        "second_render_ms": round(report["second_render_ms"], 1),
        "render_cpu_ms": round(report["render_cpu_ms"], 1),
        "second_render_cpu_ms": round(report["second_render_cpu_ms"], 1),
        "outputs": report["outputs"],
    }


def _decode_reduce(path: Path, size: tuple[int, int]) -> dict[str, Any]:
    """Decode and reduce alone, band by band and whole: time and peak of each."""
    factor = reduce_factor(size)
    ways: dict[str, Any] = {}
    for way in ("plain", "bands"):
        report = run_child(DECODE_CODE, path, way, str(factor), str(DECODE_REPEATS))
        wall = [run[0] for run in report["runs_ms"]]
        cpu = [run[1] for run in report["runs_ms"]]
        ways[way] = {
            "wall_ms": [round(value, 1) for value in wall],
            "cpu_ms": [round(value, 1) for value in cpu],
            "best_wall_ms": round(min(wall), 1),
            "best_cpu_ms": round(min(cpu), 1),
            "peak_rss_mib": mib(report["peak_kib"]),
        }
    plain, bands = ways["plain"], ways["bands"]
    return {
        "factor": factor,
        **ways,
        "bands_over_plain_wall": round(bands["best_wall_ms"] / plain["best_wall_ms"], 3),
        "bands_over_plain_cpu": round(bands["best_cpu_ms"] / plain["best_cpu_ms"], 3),
    }


def reduce_factor(size: tuple[int, int]) -> int:
    """The engine's reduce factor for DEFAULT_PRESETS on a 3:2 picture of ``size`` (its
    largest output, 1024 wide, sets it), and at least 2: the band path's minimum."""
    from chalicelib.imaging.pipeline import REDUCING_GAP
    from chalicelib.presets import DEFAULT_PRESETS

    largest = max(preset.width for preset in DEFAULT_PRESETS)
    return max(2, math.floor(max(size) / (largest * REDUCING_GAP)))


def _stage(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "call": event["call"],
        "input": event["input"],
        "output": event["output"],
        "rss_before_mib": mib(event["rss_before_kib"]),
        "peak_mib": mib(event["peak_kib"]),
        "peak_above_before_mib": mib(event["peak_kib"] - event["rss_before_kib"]),
        "rss_after_mib": mib(event["rss_after_kib"]),
    }


def _merge_repeats(stages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per kind of call (call, input and output shapes), in first-seen order, with
    how often it ran and its highest figures: a band-by-band decode makes hundreds."""
    merged: dict[str, dict[str, Any]] = {}
    for stage in stages:
        key = repr((stage["call"], stage["input"], stage["output"]))
        if key not in merged:
            merged[key] = {**stage, "calls": 1}
            continue
        entry = merged[key]
        entry["calls"] += 1
        for figure in ("peak_mib", "peak_above_before_mib", "rss_before_mib", "rss_after_mib"):
            entry[figure] = max(entry[figure], stage[figure])
    return list(merged.values())


def _goal(case: Case, result: Mapping[str, Any]) -> dict[str, Any] | None:
    if case.goal == "jpeg":
        return {
            "target": f"peak RSS <= {GOAL_JPEG_PEAK_BYTES // MB} MB"
            f" ({GOAL_JPEG_PEAK_BYTES / MIB:.1f} MiB)",
            "measured_mb": round(result["peak_rss_bytes"] / MB, 1),
            "met": result["peak_rss_bytes"] <= GOAL_JPEG_PEAK_BYTES,
        }
    if case.goal == "png":
        return {
            "target": f"peak RSS <= {GOAL_PNG_PEAK_OVER_DECODED} x decoded size"
            f" ({GOAL_PNG_PEAK_OVER_DECODED * result['decoded_bytes'] / MIB:.1f} MiB)",
            "measured": result["peak_over_decoded"],
            "met": result["peak_over_decoded"] <= GOAL_PNG_PEAK_OVER_DECODED,
        }
    return None


def run_benchmark(quick: bool, *, checked: bool = True) -> dict[str, Any]:
    size = QUICK_SIZE if quick else FULL_SIZE
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as directory:
        hostile = measure_hostile_cases(Path(directory), checked=checked)
        for case in CASES if checked else ():
            path = generate(case, size, Path(directory))
            cases[case.name] = measure(case, path, size)
            summary = cases[case.name]
            print(
                f"{case.name}: {summary['file_bytes'] / MB:.1f} MB file, peak"
                f" {summary['peak_rss_mib']} MiB, render {summary['render_ms']} ms",
                file=sys.stderr,
                flush=True,
            )
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": _versions(),
        "settings": {
            "quick": quick,
            "size": list(size),
            "max_pixels": MAX_PIXELS,
            "presets": "DEFAULT_PRESETS",
            "peak_rss": "VmHWM of a fresh process after one render (baseline: VmRSS after"
            " importing the engine, before reading the file)",
            "render_ms": "time.perf_counter around the first render in that process;"
            " second_render_ms: a second render of the same bytes, warm; *_cpu_ms: the"
            " same with time.process_time (user + system CPU: steadier on a shared machine)",
            "stages": "a second process per case: peak RSS during each outermost Pillow call"
            " of the render (VmHWM reset through /proc/self/clear_refs before each); calls"
            " with the same shapes merged (`calls`: how many, figures: the highest)",
            "jpeg_quality": JPEG_QUALITY,
            "png_texture_band": PNG_TEXTURE_BAND,
            "child_code": CHILD_CODE,
            "peak_rss_bound_mib": PEAK_RSS_BOUND_MIB,
            "refused_peak_rss_bound_mib": REFUSED_PEAK_RSS_BOUND_MIB,
            "hostile_checked": checked,
            "hostile_code": HOSTILE_CODE,
        },
        "cases": cases,
        "hostile": hostile,
    }


def _versions() -> dict[str, str | None]:
    import PIL
    from PIL import features

    return {
        "Pillow": PIL.__version__,
        "libjpeg-turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
        "libwebp": features.version("webp"),
    }


# --- reporting ------------------------------------------------------------------------------------


def format_table(result: Mapping[str, Any]) -> str:
    lines = [
        "| case | file MB | decoded MiB | baseline MiB | peak MiB | peak / decoded"
        " | render ms (first / warm) | target |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, case in result["cases"].items():
        goal = case["goal"]
        verdict = "—" if goal is None else ("met" if goal["met"] else "**NOT met**")
        target = "" if goal is None else f"{goal['target']}: {verdict}"
        lines.append(
            f"| {name} | {case['file_bytes'] / MB:.1f} | {case['decoded_bytes'] / MIB:.1f}"
            f" | {case['baseline_rss_mib']:.1f} | {case['peak_rss_mib']:.1f}"
            f" | {case['peak_over_decoded']:.2f}"
            f" | {case['render_ms']:.0f} / {case['second_render_ms']:.0f} | {target} |"
        )
    return "\n".join(lines)


def format_hostile(result: Mapping[str, Any]) -> str:
    checked = result["settings"]["hostile_checked"]
    lines = [
        f"Hostile files ({'checked' if checked else 'metadata.check switched off'}), bound"
        f" {result['settings']['refused_peak_rss_bound_mib']} MiB:",
        "",
        "| case | file MB | code | peak MiB | render ms |",
        "|---|--:|---|--:|--:|",
    ]
    for name, case in result["hostile"].items():
        lines.append(
            f"| {name} | {case['file_bytes'] / MB:.2f} | {case['code']}"
            f" | {case['peak_rss_mib']:.1f} | {case['render_ms']:.0f} |"
        )
    return "\n".join(lines)


def format_stages(result: Mapping[str, Any], top: int = 3) -> str:
    lines = []
    for name, case in result["cases"].items():
        stages = sorted(case["stages"], key=lambda stage: stage["peak_mib"], reverse=True)[:top]
        described = "; ".join(
            f"{stage['call']} {_shape(stage['input'])} -> {_shape(stage['output'])}:"
            f" peak {stage['peak_mib']} MiB (+{stage['peak_above_before_mib']})"
            for stage in stages
        )
        lines.append(f"- {name}: {described}")
    return "\n".join(lines)


def format_paths(result: Mapping[str, Any]) -> str:
    """The band path against the plain full decode, for the PNGs."""
    lines = []
    for name, case in result["cases"].items():
        if "plain_path" not in case:
            continue
        plain, decode = case["plain_path"], case["decode_reduce"]
        lines.append(
            f"- {name}: peak {case['peak_rss_mib']} MiB as is, {plain['peak_rss_mib']} MiB"
            f" plain; render ms (first / warm) {case['render_ms']:.0f} /"
            f" {case['second_render_ms']:.0f} as is, {plain['render_ms']:.0f} /"
            f" {plain['second_render_ms']:.0f} plain; CPU ms {case['render_cpu_ms']:.0f} /"
            f" {case['second_render_cpu_ms']:.0f} as is, {plain['render_cpu_ms']:.0f} /"
            f" {plain['second_render_cpu_ms']:.0f} plain; decode+reduce({decode['factor']}) best"
            f" CPU {decode['bands']['best_cpu_ms']:.0f} ms in bands,"
            f" {decode['plain']['best_cpu_ms']:.0f} ms whole (x{decode['bands_over_plain_cpu']})"
        )
    return "\n".join(lines)


def _shape(described: Sequence[Any] | None) -> str:
    return "?" if not described else f"{described[0]} {described[1]}x{described[2]}"


# --- the command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="Peak RSS of the engine on 50 MP images, one fresh process per case.",
    )
    parser.add_argument("--quick", action="store_true", help="~4 MP images: a smoke test")
    parser.add_argument(
        "--unchecked",
        action="store_true",
        help="only the hostile files, with metadata.check off (gigabytes each; no JSON"
        " unless --out or --summary)",
    )
    add_output_arguments(parser, "memory")
    arguments = parser.parse_args(argv)
    result = run_benchmark(arguments.quick, checked=not arguments.unchecked)
    only_a_trial = arguments.quick or arguments.unchecked
    print(format_hostile(result))
    print()
    print(format_table(result))
    print()
    print(format_stages(result))
    print()
    print(format_paths(result))
    write_result("memory", result, arguments, trial=only_a_trial, raw=("cases.*.stages",))
    return 0


if __name__ == "__main__":
    sys.exit(main())
