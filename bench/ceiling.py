"""How far ahead of pyvips any engine built on Pillow's codecs can get: the codec floor.

Issue 5 asks for the engine at 1.25x pyvips with output quality at least pyvips's. Every
engine must decode the photo and encode its outputs; this measures those two steps alone,
with the resizing, orientation, colour and checks made free (done untimed beforehand):

- ``floor-equal-quality``: the JPEG decoded at libvips's own shrink-on-load rule (DCT
  scaling only where it leaves at least 2x to resize: the engine with ``DRAFT_GAP = 2``),
  then the outputs that decode makes, already resized, encoded with the engine's settings.
  Its outputs are the engine's at ``DRAFT_GAP = 2``, which match pyvips's quality.
- ``floor-engine-quality``: the same at the engine's own scaling (``DRAFT_GAP = 1``): the
  fastest the engine could be at the quality it has today.

They run alternately with the engine and pyvips (encoders mirrored), pinned to one core,
median of the repeats per photo, as ``bench.engine`` does. pyvips's images/s over a
floor's is the most any such engine can be ahead of pyvips: a resampler that cost nothing
would get there, and no closer.

    python -m bench.ceiling                 # the corpus, 5 repeats -> bench/results/ceiling.json
    python -m bench.ceiling --quick         # 2 photos, 1 repeat, nothing written: a smoke run
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import engine as bench
from bench.output import write_result
from chalicelib.presets import DEFAULT_PRESETS, Preset

DEFAULT_OUT = bench.PROJECT / "bench" / "results" / "ceiling.json"
SCHEMA = "media-pipeline/bench-ceiling/1"
EQUAL_QUALITY = "floor-equal-quality"
ENGINE_QUALITY = "floor-engine-quality"
# The engine's DCT-scaling margin for each floor: libvips's rule, and the engine's own.
DRAFT_GAPS = {EQUAL_QUALITY: 2.0, ENGINE_QUALITY: 1.0}


@dataclass(frozen=True)
class Encoding:
    """One output as the engine hands it to the encoder."""

    pixels: Any  # PIL.Image.Image
    output_format: str
    quality: int
    encoded: bytes


@dataclass
class Prepared:
    """What the untimed engine run left for the timed floor: its decode scale and outputs."""

    data: bytes
    draft_scale: float = 1.0
    encodings: list[Encoding] = field(default_factory=list)


@contextmanager
def engine_capture(draft_gap: float) -> Iterator[Prepared]:
    """Run the engine with ``draft_gap``, recording the scale it decodes at and the images it
    encodes (the module attributes are restored on exit)."""
    from chalicelib.imaging import pipeline

    prepared = Prepared(b"")
    # The pipeline's own names for them (it imports both by name).
    names = ("DRAFT_GAP", "draft", "encode")
    original = {name: getattr(pipeline, name) for name in names}

    def recording_draft(image: Any, scale: float) -> tuple[float, float]:
        prepared.draft_scale = scale
        result: tuple[float, float] = original["draft"](image, scale)
        return result

    def recording_encode(image: Any, output_format: str, quality: int) -> bytes:
        pixels = image.copy()
        encoded: bytes = original["encode"](image, output_format, quality)
        prepared.encodings.append(Encoding(pixels, output_format, quality, encoded))
        return encoded

    replacements = {"DRAFT_GAP": draft_gap, "draft": recording_draft, "encode": recording_encode}
    for name, value in replacements.items():
        setattr(pipeline, name, value)
    try:
        yield prepared
    finally:
        for name, value in original.items():
            setattr(pipeline, name, value)


class Floor:
    """Decode at the engine's scale for ``draft_gap``, then encode the prepared outputs."""

    def __init__(self, presets: Sequence[Preset], draft_gap: float) -> None:
        self.presets = list(presets)
        self.draft_gap = draft_gap
        self.prepared = Prepared(b"")

    def prepare(self, data: bytes) -> None:
        from chalicelib.imaging import render

        with engine_capture(self.draft_gap) as prepared:
            outputs = render(data, self.presets).outputs
        # The engine encodes the largest output first; the floor returns them in preset order.
        by_bytes = {encoding.encoded: encoding for encoding in prepared.encodings}
        prepared.encodings = [by_bytes[output.data] for output in outputs]
        prepared.data = data
        self.prepared = prepared

    def __call__(self, data: bytes) -> list[bytes]:
        from PIL import Image

        from chalicelib.imaging.decode import draft
        from chalicelib.imaging.encode import encode

        if data is not self.prepared.data:
            raise RuntimeError("Floor called with a photo it was not prepared for")
        with Image.open(io.BytesIO(data)) as image:
            draft(image, self.prepared.draft_scale)
            image.load()
        return [encode(e.pixels, e.output_format, e.quality) for e in self.prepared.encodings]


def simd_resize_ms(floor: Floor, pyvips: Any, repeats: int) -> float:
    """CPU ms libvips's SIMD Lanczos-3 takes for the floor's resizes: its decode to the
    largest output, then that to each smaller one (whole picture, stored orientation: the
    cover crop is left out, which only makes the small resizes cheaper). Median of runs."""
    from PIL import Image

    from chalicelib.imaging.decode import draft

    with Image.open(io.BytesIO(floor.prepared.data)) as image:
        draft(image, floor.prepared.draft_scale)
        decoded = image.convert("RGB")
    source = pyvips.Image.new_from_memory(
        decoded.tobytes(), decoded.width, decoded.height, 3, "uchar"
    )
    landscape = decoded.width >= decoded.height
    sizes = sorted(
        (_stored(e.pixels.size, landscape) for e in floor.prepared.encodings),
        key=lambda size: size[0] * size[1],
        reverse=True,
    )

    def resized(image: Any, size: tuple[int, int]) -> bytes:
        scaled = image.resize(size[0] / image.width, vscale=size[1] / image.height)
        return bytes(scaled.write_to_memory())

    runs = []
    for _ in range(repeats):
        started = time.process_time()
        largest = pyvips.Image.new_from_memory(resized(source, sizes[0]), *sizes[0], 3, "uchar")
        for size in sizes[1:]:
            resized(largest, size)
        runs.append((time.process_time() - started) * 1000)
    return statistics.median(runs)


def _stored(size: tuple[int, int], landscape: bool) -> tuple[int, int]:
    width, height = size
    return (width, height) if (width >= height) == landscape else (height, width)


def floors(presets: Sequence[Preset]) -> dict[str, Floor]:
    return {name: Floor(presets, gap) for name, gap in DRAFT_GAPS.items()}


def describe(name: str) -> str:
    gap = DRAFT_GAPS[name]
    return (
        f"JPEG decode with DCT scaling leaving >= {gap:g}x to resize, then encoding the"
        " outputs that decode makes (prepared untimed): no resize, colour or checks"
    )


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    bench.apply_thread_environment()
    pinning = bench.pin(arguments.core, required=not arguments.quick)
    presets = list(DEFAULT_PRESETS)
    photos = bench.find_photos(arguments.directory)
    if arguments.quick:
        photos = bench.quick_selection(photos)
    repeats = arguments.repeats or (1 if arguments.quick else 5)
    mirrored = bench.engine_encoder_options()
    specs = bench.engine_specs(mirrored)
    prepared_floors = floors(presets)
    renderers: dict[str, Callable[[bytes], list[bytes]]] = {
        bench.ENGINE: specs[bench.ENGINE].build(presets),
        **prepared_floors,
    }
    unavailable: dict[str, str] = {}
    try:
        renderers[bench.PYVIPS] = specs[bench.PYVIPS].build(presets)
    except bench.EngineUnavailable as exc:
        unavailable[bench.PYVIPS] = str(exc)

    pyvips = sys.modules.get("pyvips")

    def prepare(data: bytes) -> None:
        for floor in prepared_floors.values():
            floor.prepare(data)

    def time_resizes(_: Path, entry: dict[str, Any], __: Mapping[str, bench.Timings]) -> None:
        if pyvips is not None:
            entry["libvips_resize_ms"] = {
                name: round(simd_resize_ms(floor, pyvips, repeats), 2)
                for name, floor in prepared_floors.items()
            }

    run = bench.time_photos(renderers, photos, presets, repeats, before=prepare, after=time_resizes)
    images, wall, cpu = run.images, run.wall_ms, run.cpu_ms

    descriptions = {name: describe(name) for name in DRAFT_GAPS}
    descriptions[bench.ENGINE] = specs[bench.ENGINE].description
    descriptions[bench.PYVIPS] = specs[bench.PYVIPS].description
    engines: dict[str, Any] = {}
    for name in renderers:
        spec = bench.EngineSpec(name, descriptions[name], specs[bench.ENGINE].build)
        engines[name] = bench.engine_summary(name, spec, images, cpu[name], wall[name], None)
    for name, reason in unavailable.items():
        engines[name] = {"available": False, "reason": reason}
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": bench.machine(),
        "versions": bench.versions(sys.modules.get("pyvips")),
        "settings": {
            "photos": [photo.name for photo in photos],
            "quick": arguments.quick,
            "repeats": repeats,
            "pinning": pinning,
            "order": "alternating within each repeat: " + ", ".join(renderers),
            "statistic": "median of the repeats per photo; images/s is photos / sum of medians",
            "draft_gaps": DRAFT_GAPS,
            "pyvips_encoder_options": mirrored,
            "engine_source_sha256": bench.engine_source_digest(),
            "git_head": bench.git_head(),
        },
        "engines": engines,
        "images": images,
    }
    result["ceiling"] = ceiling(engines, images)
    result["warnings"] = bench.warnings(result)
    return result


def ceiling(
    engines: Mapping[str, Mapping[str, Any]], images: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """pyvips's time over each floor's (the best speed-up possible), and each floor's quality
    against pyvips's; the engine's time over each floor's; and the speed-up left once the
    floor's resizes are paid at libvips's SIMD speed."""
    found: dict[str, Any] = {}
    vips = engines.get(bench.PYVIPS, {})
    ours = engines[bench.ENGINE]
    for name in DRAFT_GAPS:
        floor = engines[name]
        entry = {
            "engine_time_over_floor": round(
                floor["images_per_second"] / ours["images_per_second"], 3
            ),
        }
        if vips.get("available"):
            speedup = floor["images_per_second"] / vips["images_per_second"]
            entry["max_speedup_vs_pyvips"] = round(speedup, 3)
            entry["max_speedup_vs_pyvips_cpu_time"] = round(
                floor["cpu_images_per_second"] / vips["cpu_images_per_second"], 3
            )
            entry["free_resize_reaches_goal"] = speedup >= bench.GOAL_SPEEDUP_VS_PYVIPS
            # What an engine on this floor may spend per image on everything else (resizing,
            # orientation, colour, checks) and still be 1.25x pyvips.
            entry["ms_left_per_image_at_goal"] = round(
                vips["ms_per_image"] / bench.GOAL_SPEEDUP_VS_PYVIPS - floor["ms_per_image"], 2
            )
            entry["ssim_mean_minus_pyvips"] = round(floor["ssim"]["mean"] - vips["ssim"]["mean"], 5)
            entry["bytes_over_pyvips"] = round(floor["total_bytes"] / vips["total_bytes"], 4)
            resizes = [image["libvips_resize_ms"][name] for image in images]
            resize_ms = statistics.fmean(resizes)
            entry["libvips_resize_ms_per_image"] = round(resize_ms, 2)
            entry["speedup_vs_pyvips_with_libvips_resize"] = round(
                vips["ms_per_image"] / (floor["ms_per_image"] + resize_ms), 3
            )
        found[name] = entry
    return found


def format_result(result: Mapping[str, Any]) -> str:
    lines = [
        "| engine | ms/image | images/s | SSIM mean | SSIM large | bytes |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, engine in result["engines"].items():
        if not engine.get("available"):
            lines.append(f"| {name} | skipped: {engine['reason']} | | | | |")
            continue
        large = engine["ssim"]["by_preset_mean"].get("large", float("nan"))
        lines.append(
            f"| {name} | {engine['ms_per_image']:.1f} | {engine['images_per_second']:.2f}"
            f" | {engine['ssim']['mean']:.4f} | {large:.4f} | {engine['total_bytes']:,} |"
        )
    lines.append("")
    for name, entry in result["ceiling"].items():
        said = f"{name}: the engine takes {entry['engine_time_over_floor']:.2f}x its time"
        if "max_speedup_vs_pyvips" in entry:
            said += (
                f"; at most {entry['max_speedup_vs_pyvips']:.3f}x pyvips"
                f" (CPU time {entry['max_speedup_vs_pyvips_cpu_time']:.3f}x), SSIM"
                f" {entry['ssim_mean_minus_pyvips']:+.4f} vs pyvips; at 1.25x pyvips,"
                f" {entry['ms_left_per_image_at_goal']:.1f} ms per image left for resizing"
                " and the rest; with libvips's SIMD resizes"
                f" ({entry['libvips_resize_ms_per_image']:.1f} ms) at most"
                f" {entry['speedup_vs_pyvips_with_libvips_resize']:.3f}x"
            )
        lines.append(said)
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=bench.CORPUS, metavar="DIR")
    parser.add_argument("--repeats", type=int, help="runs per photo and engine (default 5)")
    parser.add_argument("--quick", action="store_true", help="two photos, one run: a smoke run")
    parser.add_argument("--out", type=Path, help="JSON result (none with --quick)")
    parser.add_argument("--core", type=int, help="the core to pin to (default: the idlest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    bench.apply_thread_environment()  # before anything imports pyvips
    arguments = _parser().parse_args(argv)
    result = run(arguments)
    print(format_result(result))
    for warning in result["warnings"]:
        print(f"WARNING: {warning}")
    out = arguments.out if arguments.out is not None else None if arguments.quick else DEFAULT_OUT
    write_result(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
