"""Peak memory of the engine on 50-megapixel images, in a fresh process per case.

    python -m bench.memory [--quick] [--out FILE] [--summary FILE]

Each case is one generated image, rendered with every default preset in a new process
(``CHILD_CODE``) that reports its RSS after importing the engine (the baseline) and its
peak after the render: VmHWM, the child's own (ru_maxrss would carry the parent's peak
into a child started with vfork+exec; see bench/README.md); a second render gives a warm
time. Each of ``tests.hostile.METADATA_BOMBS`` is rendered once the same way
(``HOSTILE_CODE``) and must stay under ``REFUSED_PEAK_RSS_BOUND_MIB``. The cases, issue
5's targets and the results are in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.output import add_output_arguments, machine, write_result
from bench.procs import PRINT_REPORT, run_python

if TYPE_CHECKING:
    from PIL import Image

SCHEMA = "media-pipeline/bench-memory/2"
MIB = 1024 * 1024
MB = 1000 * 1000

FULL_SIZE = (8660, 5773)  # 49,994,180 pixels: the largest 3:2 picture under 50 MP
QUICK_SIZE = (2449, 1633)  # ~4 MP, the same aspect ratio
MAX_PIXELS = 50_000_000
DEFAULT_MAX_UPLOAD_BYTES = 25 * MIB  # MAX_UPLOAD_BYTES's default (chalicelib/config.py)
JPEG_QUALITY = 90
PNG_TEXTURE_BAND = 0.2  # the share of rows with texture and noise in the PNG pictures
SEED = 5

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


@dataclass(frozen=True)
class Case:
    name: str
    format: str  # "JPEG" or "PNG"
    mode: str  # "RGB" or "RGBA"
    progressive: bool = False
    goal: str | None = None  # "jpeg" or "png": which issue-5 target applies


CASES = (
    Case("jpeg", "JPEG", "RGB", goal="jpeg"),
    Case("jpeg-progressive", "JPEG", "RGB", progressive=True),
    Case("png-rgb", "PNG", "RGB", goal="png"),
    Case("png-rgba", "PNG", "RGBA", goal="png"),
)

# --- the children: argv[1] the file, argv[2] the pixel cap ---------------------------------------

_READ = """\
import sys, time
from chalicelib.imaging import render
from chalicelib.presets import DEFAULT_PRESETS


def status():
    with open("/proc/self/status") as lines:
        fields = dict(line.split(":", 1) for line in lines)
    return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}  # KiB


report = {"after_import_kib": status()}
with open(sys.argv[1], "rb") as file:
    data = file.read()
"""

CHILD_CODE = (
    _READ
    + """\


def timed_render():
    started, cpu = time.perf_counter(), time.process_time()
    result = render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
    return result, (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000


result, report["render_ms"], report["render_cpu_ms"] = timed_render()
report["after_render_kib"] = status()
report["source"] = [result.source.format, result.source.width, result.source.height]
report["outputs"] = [
    [output.preset, output.format, output.width, output.height, len(output.data)]
    for output in result.outputs
]
del result
_, report["second_render_ms"], report["second_render_cpu_ms"] = timed_render()
"""
    + PRINT_REPORT
)

# One render of a hostile file: the error code it ends with (None: it rendered).
HOSTILE_CODE = (
    _READ
    + """\
from chalicelib.errors import SourceError

started = time.perf_counter()
try:
    render(data, DEFAULT_PRESETS, max_pixels=int(sys.argv[2]))
    report["code"] = None
except SourceError as exc:
    report["code"] = exc.code
report["render_ms"] = (time.perf_counter() - started) * 1000
report["end_kib"] = status()
"""
    + PRINT_REPORT
)

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


def run_child(code: str, path: Path) -> dict[str, Any]:
    return run_python(path.name, code, [str(path), str(MAX_PIXELS)])[0]


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def measure_hostile(path: Path) -> dict[str, Any]:
    """The code one render of ``path`` ends with (None: it rendered), its peak RSS and time."""
    report = run_child(HOSTILE_CODE, path)
    return {
        "file_bytes": path.stat().st_size,
        "code": report["code"],
        "baseline_rss_mib": mib(report["after_import_kib"]["VmRSS"]),
        "peak_rss_mib": mib(report["end_kib"]["VmHWM"]),
        "render_ms": round(report["render_ms"], 1),
    }


def measure_hostile_cases(directory: Path) -> dict[str, Any]:
    from tests.hostile import METADATA_BOMBS

    cases: dict[str, Any] = {}
    for name, build in METADATA_BOMBS.items():
        path = directory / f"hostile-{name}"
        path.write_bytes(build())
        case = cases[name] = measure_hostile(path)
        case["within_bound"] = case["peak_rss_mib"] < REFUSED_PEAK_RSS_BOUND_MIB
        print(f"{name}: {case['code']}, peak {case['peak_rss_mib']} MiB", file=sys.stderr)
    return cases


def measure(case: Case, path: Path, size: tuple[int, int]) -> dict[str, Any]:
    report = run_child(CHILD_CODE, path)
    width, height = size
    decoded = width * height * len(case.mode)
    peak_kib = report["after_render_kib"]["VmHWM"]
    timings = ("render_ms", "second_render_ms", "render_cpu_ms", "second_render_cpu_ms")
    result: dict[str, Any] = {
        "pixels": width * height,
        "file_bytes": path.stat().st_size,
        "within_upload_cap": path.stat().st_size <= DEFAULT_MAX_UPLOAD_BYTES,
        "decoded_bytes": decoded,
        "baseline_rss_mib": mib(report["after_import_kib"]["VmRSS"]),
        "peak_rss_mib": mib(peak_kib),
        "peak_over_decoded": round(peak_kib * 1024 / decoded, 3),
        **{timing: round(report[timing], 1) for timing in timings},
        "source": report["source"],
        "outputs": report["outputs"],
    }
    result["goal"] = goal(case, peak_kib * 1024, decoded)
    return result


def goal(case: Case, peak_bytes: int, decoded: int) -> dict[str, Any] | None:
    """Issue 5's target for ``case``, if one applies, and whether its peak meets it."""
    if case.goal == "jpeg":
        target = f"peak RSS <= {GOAL_JPEG_PEAK_BYTES // MB} MB"
        return {"target": target, "met": peak_bytes <= GOAL_JPEG_PEAK_BYTES}
    if case.goal == "png":
        bound = GOAL_PNG_PEAK_OVER_DECODED * decoded
        target = f"peak RSS <= {GOAL_PNG_PEAK_OVER_DECODED} x decoded size ({bound / MIB:.1f} MiB)"
        return {"target": target, "met": peak_bytes <= bound}
    return None


def run_benchmark(quick: bool) -> dict[str, Any]:
    size = QUICK_SIZE if quick else FULL_SIZE
    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as directory:
        hostile = measure_hostile_cases(Path(directory))
        for case in CASES:
            cases[case.name] = measure(case, generate(case, size, Path(directory)), size)
            print(f"{case.name}: peak {cases[case.name]['peak_rss_mib']} MiB", file=sys.stderr)
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": _versions(),
        "settings": {
            "quick": quick,
            "size": list(size),
            "max_pixels": MAX_PIXELS,
            "jpeg_quality": JPEG_QUALITY,
            "png_texture_band": PNG_TEXTURE_BAND,
            "peak_rss_bound_mib": PEAK_RSS_BOUND_MIB,
            "refused_peak_rss_bound_mib": REFUSED_PEAK_RSS_BOUND_MIB,
            "child_code": CHILD_CODE,
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


def format_tables(result: Mapping[str, Any]) -> str:
    lines = [
        "| case | file MB | decoded MiB | baseline MiB | peak MiB | peak / decoded"
        " | render ms (first / warm) | target |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, case in result["cases"].items():
        goal = case["goal"]
        target = "" if goal is None else f"{goal['target']}: {'met' if goal['met'] else 'NOT met'}"
        lines.append(
            f"| {name} | {case['file_bytes'] / MB:.1f} | {case['decoded_bytes'] / MIB:.1f}"
            f" | {case['baseline_rss_mib']:.1f} | {case['peak_rss_mib']:.1f}"
            f" | {case['peak_over_decoded']:.2f}"
            f" | {case['render_ms']:.0f} / {case['second_render_ms']:.0f} | {target} |"
        )
    hostile = result["hostile"].values()
    lines += [
        "",
        f"{len(hostile)} hostile files: codes {sorted({str(case['code']) for case in hostile})},"
        f" highest peak {max(case['peak_rss_mib'] for case in hostile)} MiB"
        f" (bound {REFUSED_PEAK_RSS_BOUND_MIB} MiB)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description="Peak RSS of the engine on 50 MP images, one fresh process per case.",
    )
    parser.add_argument("--quick", action="store_true", help="~4 MP images: a smoke test")
    add_output_arguments(parser, "memory")
    arguments = parser.parse_args(argv)
    result = run_benchmark(arguments.quick)
    print(format_tables(result))
    write_result("memory", result, arguments, trial=arguments.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
