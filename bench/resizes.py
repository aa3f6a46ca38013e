"""The floors' resizes, timed with whichever Pillow this interpreter imports.

`bench.ceiling` leaves every resize out of its floors. This times them: for each photo of
a ceiling result, the decode at each floor's DCT scaling, then the floor's three Lanczos
resizes as the engine chains them (decode -> large, large -> small, large -> the centred
square of the thumb), median CPU time of the runs, pinned to one core. Run it with Pillow
and with a Pillow built with SIMD resampling (Pillow-SIMD, in a venv of its own; it needs
nothing but Pillow) to see what a SIMD resampler would give back:

    python -m bench.resizes                                     # this venv's Pillow
    python -m bench.resizes --ceiling R.json --photos DIR       # another result's photos
    /path/to/simd-venv/bin/python -m bench.resizes --out /tmp/resizes-simd.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import ceiling
from bench import engine as bench
from bench.output import write_result

SCHEMA = "media-pipeline/bench-resizes/1"


def stored(size: tuple[int, int], landscape: bool) -> tuple[int, int]:
    width, height = size
    return (width, height) if (width >= height) == landscape else (height, width)


def dct_scale(source: tuple[int, int], target: tuple[int, int], gap: float) -> int:
    """The JPEG DCT scaling denominator the engine picks for `gap` (as `decode.draft`)."""
    needed = max(target[0] / source[0], target[1] / source[1]) * gap
    return next((scale for scale in (8, 4, 2) if 1 / scale >= needed), 1)


def resize_ms(photo: Path, outputs: dict[str, tuple[int, int]], gap: float, runs: int) -> float:
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    with Image.open(photo) as opened:
        width, height = opened.size
        landscape = width >= height
        large = stored(outputs["large"], landscape)
        scale = dct_scale((width, height), large, gap)
        if scale > 1:
            opened.draft("RGB", (-(-width // scale), -(-height // scale)))
        decoded = opened.convert("RGB")
    small = stored(outputs["small"], landscape)
    times = []
    for _ in range(runs):
        started = time.process_time()
        resized = decoded.resize(large, lanczos)
        resized.resize(small, lanczos)
        side = min(resized.size)
        left, top = (resized.width - side) / 2, (resized.height - side) / 2
        resized.resize(outputs["thumb"], lanczos, box=(left, top, left + side, top + side))
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


def run(
    result_path: Path, runs: int, quick: bool, core: int | None, photos: Path = bench.CORPUS
) -> dict[str, Any]:
    import PIL

    pinning = bench.pin(core, required=not quick)
    source = json.loads(result_path.read_text(encoding="utf-8"))
    images = source["images"][:2] if quick else source["images"]
    per_floor: dict[str, dict[str, float]] = {}
    for name, gap in ceiling.DRAFT_GAPS.items():
        per_floor[name] = {}
        for image in images:
            outputs = {
                output["preset"]: (output["width"], output["height"])
                for output in image["engines"][name]["outputs"]
            }
            photo = photos / image["name"]
            per_floor[name][image["name"]] = round(resize_ms(photo, outputs, gap, runs), 2)
    floors = {
        name: {
            "resize_ms_per_image": round(statistics.fmean(times.values()), 2),
            "per_image": times,
        }
        for name, times in per_floor.items()
    }
    for name, floor in floors.items():
        engines = source["engines"]
        if quick or not engines.get(bench.PYVIPS, {}).get("available"):
            continue
        paid = engines[name]["ms_per_image"] + floor["resize_ms_per_image"]
        floor["speedup_vs_pyvips_with_these_resizes"] = round(
            engines[bench.PYVIPS]["ms_per_image"] / paid, 3
        )
    return {
        "schema": SCHEMA,
        "pillow": PIL.__version__,
        "ceiling_result": str(result_path),
        "runs": runs,
        "pinning": pinning,
        "floors": floors,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resizes", description=__doc__)
    parser.add_argument("--ceiling", type=Path, default=ceiling.DEFAULT_OUT)
    parser.add_argument(
        "--photos", type=Path, default=bench.CORPUS, help="where the result's photos are"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="two photos, nothing written")
    parser.add_argument("--core", type=int)
    parser.add_argument("--out", type=Path)
    arguments = parser.parse_args(argv)
    result = run(
        arguments.ceiling, arguments.runs, arguments.quick, arguments.core, arguments.photos
    )
    for name, floor in result["floors"].items():
        line = f"{name}: resizes {floor['resize_ms_per_image']} ms per image"
        line += f" (Pillow {result['pillow']})"
        speedup = floor.get("speedup_vs_pyvips_with_these_resizes")
        if speedup is not None:
            line += f"; floor + these resizes: {speedup}x pyvips"
        print(line)
    write_result(result, arguments.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
