"""The engine against pyvips and a plain Pillow recipe, on one pinned core.

    python -m bench.engine [DIR] [--repeats N] [--quick] [--engines A,B]
                           [--save-outputs DIR] [--out FILE] [--summary FILE]

DIR defaults to ../shared/corpus/photos. What is timed, in wall-clock and CPU time, is one
call: a photo's bytes in, every default preset's encoded bytes out; per photo the engines
run alternately ``--repeats`` times (default 5) and each one's median is kept. Each output
is checked (format, no metadata) and compared with a Lanczos reference from the full decode
(SSIM on luma). ``--quick``: two photos, one run, pinning optional. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import hashlib
import importlib
import io
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageCms, ImageOps, features

from bench.output import add_output_arguments, compact, machine, write_result
from chalicelib.formats import OUTPUT_FORMATS
from chalicelib.imaging import encode, placeholder, render
from chalicelib.presets import DEFAULT_PRESETS, Preset

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".avif"})
PRESETS: tuple[Preset, ...] = tuple(DEFAULT_PRESETS)
SCHEMA = "media-pipeline/bench-engine/2"
# Per sample, left out of the committed summary: every run's time, every output's figures.
RAW_PARTS = tuple(f"images.*.engines.*.{key}" for key in ("runs_ms", "runs_cpu_ms", "outputs"))

# A responsive set, rendered by the engine alone after the comparison: its cost per output.
SET_PRESET = Preset(
    "hero",
    1600,
    1600,
    "contain",
    "JPEG",
    82,
    widths=(320, 640, 1024, 1600),
    formats=("AVIF", "WEBP", "JPEG"),
)
# The preset whose output is the size of the engine's smallest whole-picture intermediate,
# the image its placeholders are computed from.
PLACEHOLDER_SOURCE = "small"

ENGINE, BASELINE = "engine", "pillow-baseline"
PYVIPS, PYVIPS_DEFAULTS = "pyvips", "pyvips-defaults"
ENGINE_ORDER = (ENGINE, BASELINE, PYVIPS, PYVIPS_DEFAULTS)
PYVIPS_ENGINES = frozenset({PYVIPS, PYVIPS_DEFAULTS})
# The goal of issue 5: the engine's images/s over these references' (pyvips: the faster of
# the two), output quality at least theirs, output bytes within +5 % of pyvips's.
GOAL_SPEEDUP_VS_PYVIPS, GOAL_SPEEDUP_VS_BASELINE, GOAL_BYTES_MARGIN = 1.25, 2.5, 0.05

# Every library single-threaded: set before numpy or pyvips is imported (both late for this).
THREAD_ENVIRONMENT = dict.fromkeys(
    ("VIPS_CONCURRENCY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"
)
# The engine's encoder settings (chalicelib.imaging.encode) and the libvips save options
# that mirror them: the pyvips engine refuses to run once the engine's have changed.
ENGINE_ENCODERS = ({"optimize": False, "progressive": True, "subsampling": "4:2:0"}, {"method": 2})
MIRRORED: dict[str, dict[str, Any]] = {
    "JPEG": {"optimize_coding": False, "interlace": True, "subsample_mode": "on"},
    "WEBP": {"effort": 2},
}
# Pillow's names for the metadata an output must not carry (photoshop: IPTC).
METADATA = {"exif": "exif", "xmp": "xmp", "icc_profile": "icc", "photoshop": "iptc"}

Renderer = Callable[[bytes], list[bytes]]


class EngineUnavailable(Exception):
    """An engine cannot run here: pyvips missing, or the engine's encoders not mirrored."""


# --- the engines ------------------------------------------------------------------------------


def build(name: str) -> Renderer:
    """Engine `name`: a photo's bytes in, every preset's encoded bytes out."""
    if name == ENGINE:
        return lambda data: [output.data for output in render(data, PRESETS).outputs]
    if name == BASELINE:
        return _baseline
    if name == PYVIPS and (encode.JPEG_OPTIONS, encode.WEBP_OPTIONS) != ENGINE_ENCODERS:
        raise EngineUnavailable("the engine's encoder settings changed: update MIRRORED")
    return _pyvips(MIRRORED if name == PYVIPS else {key: {} for key in MIRRORED})


def _baseline(data: bytes) -> list[bytes]:
    """The plain recipe: fit or thumbnail each preset from the full decode (Lanczos), save
    with Pillow's default encoder settings, no metadata."""
    outputs = []
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened)
        for preset in PRESETS:
            size = (preset.width, preset.height)
            if preset.fit == "cover":
                output = ImageOps.fit(upright, size, Image.Resampling.LANCZOS)
            else:
                output = upright.copy()
                output.thumbnail(size, Image.Resampling.LANCZOS)
            if preset.format == "JPEG" and output.mode not in ("RGB", "L"):
                output = output.convert("RGB")
            output.info = {}
            buffer = io.BytesIO()
            output.save(buffer, format=preset.format, quality=preset.quality)
            outputs.append(buffer.getvalue())
    return outputs


def _pyvips(encoders: Mapping[str, Mapping[str, Any]]) -> Renderer:
    """thumbnail_buffer (shrink-on-load) once for the largest preset, the others from it."""
    try:
        pyvips = importlib.import_module("pyvips")
    except (ImportError, OSError) as exc:  # OSError: pyvips without a loadable libvips
        raise EngineUnavailable(f"pyvips cannot be imported: {exc}") from exc
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    largest = max(PRESETS, key=lambda preset: preset.width * preset.height)
    if largest.fit != "contain" or any(preset.format not in encoders for preset in PRESETS):
        raise EngineUnavailable("pyvips needs JPEG or WebP presets, the largest 'contain'")

    def save(image: Any, preset: Preset) -> bytes:
        if preset.format == "WEBP":
            return bytes(image.webpsave_buffer(Q=preset.quality, keep=0, **encoders["WEBP"]))
        if image.hasalpha():
            image = image.flatten(background=[255, 255, 255])
        return bytes(image.jpegsave_buffer(Q=preset.quality, keep=0, **encoders["JPEG"]))

    def run(data: bytes) -> list[bytes]:
        # thumbnail_* keep an embedded profile's colours unless asked for sRGB, and asking
        # for it transforms untagged images too (4x slower): ask only when it matters.
        header = pyvips.Image.new_from_buffer(data, "")
        colour: dict[str, Any] = {}
        tagged = header.get_typeof("icc-profile-data") != 0
        if tagged and not icc_is_srgb(bytes(header.get("icc-profile-data"))):
            colour["output_profile"] = "srgb"
        base = pyvips.Image.thumbnail_buffer(
            data, largest.width, height=largest.height, size="down", **colour
        )
        base = base.copy_memory()  # thumbnail_buffer reads once: materialise it for the others
        return [save(base if p is largest else smaller(base, p), p) for p in PRESETS]

    return run


def smaller(image: Any, preset: Preset) -> Any:
    """A smaller preset from pyvips's largest output. For cover, the centred region of the
    preset's aspect ratio, scaled: not ``thumbnail_image(crop="centre")``, which crops on
    whole output pixels, and SSIM punishes that fraction of a pixel off centre (0.86
    instead of 0.99 on a forest)."""
    if preset.fit == "contain":
        return image.thumbnail_image(
            preset.width, height=preset.height, size="down", no_rotate=True
        )
    width, height = image.width, image.height
    aspect = preset.width / preset.height
    if width > height * aspect:
        region_width, region_height = max(1, round(height * aspect)), height
    else:
        region_width, region_height = width, max(1, round(width / aspect))
    left, top = round((width - region_width) / 2), round((height - region_height) / 2)
    region = image.crop(left, top, region_width, region_height)
    if region_width <= preset.width:  # never upscaled: the region as it is
        return region
    return region.resize(preset.width / region_width, vscale=preset.height / region_height)


def icc_is_srgb(profile: bytes) -> bool:
    """Whether an ICC profile's description starts with sRGB: the engine's own rule."""
    try:
        parsed = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    except (OSError, ImageCms.PyCMSError):
        return False
    return ImageCms.getProfileDescription(parsed).strip().startswith("sRGB")


# --- quality and checks of the outputs ----------------------------------------------------------


def ssim(first: FloatArray, second: FloatArray, data_range: float = 255.0) -> float:
    """Mean SSIM of two luma planes (Wang et al. 2004: 11x11 Gaussian, sigma 1.5)."""
    import numpy as np

    if first.shape != second.shape or min(first.shape) < 11:
        raise ValueError(f"shapes differ or are under 11x11: {first.shape}, {second.shape}")
    window = np.exp(-((np.arange(11, dtype=np.float64) - 5) ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def blur(plane: FloatArray) -> FloatArray:  # separable, 'valid' borders
        rows: FloatArray = np.zeros((plane.shape[0], plane.shape[1] - 10))
        for k, weight in enumerate(window):
            rows += weight * plane[:, k : k + rows.shape[1]]
        result: FloatArray = np.zeros((rows.shape[0] - 10, rows.shape[1]))
        for k, weight in enumerate(window):
            result += weight * rows[k : k + result.shape[0], :]
        return result

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu1, mu2 = blur(first), blur(second)
    var1, var2 = blur(first * first) - mu1 * mu1, blur(second * second) - mu2 * mu2
    covariance = blur(first * second) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + c1) * (2 * covariance + c2)
    return float((numerator / ((mu1 * mu1 + mu2 * mu2 + c1) * (var1 + var2 + c2))).mean())


def luma(image: Image.Image) -> FloatArray:
    """ITU-R 601 luma in float64, clipped to 0..255 (a Lanczos resize overshoots)."""
    import numpy as np

    plane = image if image.mode == "F" else image.convert("RGB").convert("F")
    return np.clip(np.asarray(plane, dtype=np.float64), 0, 255)


class Reference:
    """What an output is compared with: the full-resolution decode, upright, in sRGB, as luma
    in 32-bit float, resized with Lanczos straight to each output's size over the preset's
    region (the whole picture for ``contain``, the centred region of its aspect for ``cover``)."""

    def __init__(self, data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            profile = opened.info.get("icc_profile")
        if profile and not icc_is_srgb(profile):
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            image = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB") or image
        self.luma = image.convert("RGB").convert("F")
        self._planes: dict[tuple[str, float, int, int], FloatArray] = {}

    def plane(self, preset: Preset, size: tuple[int, int]) -> FloatArray:
        width, height = self.luma.size
        aspect = preset.width / preset.height
        box: tuple[float, float, float, float] = (0, 0, width, height)
        if preset.fit == "cover" and width > height * aspect:
            box = ((width - height * aspect) / 2, 0, (width + height * aspect) / 2, height)
        elif preset.fit == "cover":
            box = (0, (height - width / aspect) / 2, width, (height + width / aspect) / 2)
        key = (preset.fit, aspect, *size)
        if key not in self._planes:
            self._planes[key] = luma(self.luma.resize(size, Image.Resampling.LANCZOS, box=box))
        return self._planes[key]


def metadata_in(encoded: bytes) -> list[str]:
    """The metadata an output carries: EXIF, XMP, ICC, IPTC, comments (there should be none)."""
    with Image.open(io.BytesIO(encoded)) as image:
        found = [name for key, name in METADATA.items() if image.info.get(key)]
        return sorted(found + (["comment"] if image.info.get("comment") else []))


def check_output(encoded: bytes, preset: Preset, reference: Reference) -> dict[str, Any]:
    """An output's size, format, metadata, digest and SSIM against the reference."""
    with Image.open(io.BytesIO(encoded)) as image:
        output_format = "JPEG" if image.format == "MPO" else str(image.format)
        plane, (width, height) = luma(image), image.size
    return {
        "preset": preset.name,
        "width": width,
        "height": height,
        "format": output_format,
        "format_ok": output_format == preset.format,
        "bytes": len(encoded),
        "sha256": hashlib.sha256(encoded).hexdigest(),
        "metadata": metadata_in(encoded),
        "ssim": round(ssim(plane, reference.plane(preset, (width, height))), 5),
    }


# --- running ------------------------------------------------------------------------------------


def pin(*, required: bool) -> int | None:
    """Pin this process to the last core it may run on: that core, or None if it cannot."""
    try:
        core = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError) as exc:
        if required:
            raise SystemExit(f"cannot pin to a core ({exc}): --quick runs unpinned") from exc
        return None
    return core


def find_photos(directory: Path, *, quick: bool) -> list[Path]:
    """The photos in `directory`; with `quick`, the first and the last by name."""
    photos = sorted(path for path in directory.glob("*") if path.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos in {directory}")
    return [photos[0], photos[-1]] if quick and len(photos) > 2 else photos


def time_photo(
    photo: Path, renderers: Mapping[str, Renderer], repeats: int, save_to: Path | None
) -> dict[str, Any]:
    """The engines alternately on one photo, `repeats` times: the photo's entry."""
    data = photo.read_bytes()
    gc.collect()
    runs: dict[str, tuple[list[float], list[float], list[bytes]]] = {}
    for _ in range(repeats):
        for name, renderer in renderers.items():
            cpu_started = time.process_time()
            started = time.perf_counter()
            outputs = renderer(data)
            wall_ms = (time.perf_counter() - started) * 1000
            cpu_ms = (time.process_time() - cpu_started) * 1000
            wall, cpu, _ = runs.setdefault(name, ([], [], outputs))
            wall.append(wall_ms)
            cpu.append(cpu_ms)
    reference, engines = Reference(data), {}
    for name, (wall, cpu, outputs) in runs.items():
        engines[name] = {
            "median_ms": round(statistics.median(wall), 2),
            "median_cpu_ms": round(statistics.median(cpu), 2),
            "runs_ms": [round(value, 2) for value in wall],
            "runs_cpu_ms": [round(value, 2) for value in cpu],
            "outputs": [
                check_output(encoded, preset, reference)
                for preset, encoded in zip(PRESETS, outputs, strict=True)
            ],
        }
        for preset, encoded in zip(PRESETS, outputs, strict=True):
            if save_to is not None:
                extension = OUTPUT_FORMATS[preset.format].extension
                (save_to / f"{photo.stem}.{preset.name}.{name}.{extension}").write_bytes(encoded)
    timings = ", ".join(f"{name} {run['median_ms']:.1f} ms" for name, run in engines.items())
    print(f"{photo.name}: {timings}", file=sys.stderr, flush=True)
    entry: dict[str, Any] = {"name": photo.name, "bytes": len(data), "engines": engines}
    if ENGINE in runs:
        small = runs[ENGINE][2][[p.name for p in PRESETS].index(PLACEHOLDER_SOURCE)]
        placeholder_ms = time_placeholder(small, repeats)
        entry["placeholder"] = {
            "median_ms": round(placeholder_ms, 3),
            "share_of_engine": round(placeholder_ms / statistics.median(runs[ENGINE][0]), 4),
        }
        entry["responsive_set"] = time_set(data, repeats)
    return entry


def time_placeholder(small_output: bytes, repeats: int) -> float:
    """Median ms of the engine's placeholder work (shrink to 32 pixels, BlurHash, ThumbHash,
    dominant colour) on an image the size of the one it uses, the small preset's."""
    with Image.open(io.BytesIO(small_output)) as opened:
        image = opened.convert("RGB")
    runs = []
    for _ in range(max(repeats, 5)):
        started = time.perf_counter()
        placeholder.placeholder(placeholder.tiny(image), image.size)
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def time_set(data: bytes, repeats: int) -> dict[str, Any]:
    """The engine rendering SET_PRESET alone: median ms, and its outputs."""
    wall, cpu = [], []
    outputs: tuple[Any, ...] = ()
    for _ in range(repeats):
        cpu_started, started = time.process_time(), time.perf_counter()
        outputs = render(data, [SET_PRESET]).outputs
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return {
        "median_ms": round(statistics.median(wall), 2),
        "median_cpu_ms": round(statistics.median(cpu), 2),
        "outputs": [[o.format, o.width, o.height, len(o.data)] for o in outputs],
    }


def engine_summary(name: str, images: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """An engine's figures over every photo: images/s from the sum of the per-photo medians
    (so a big photo weighs in as much as it costs), quality, bytes and checks."""
    runs = [image["engines"][name] for image in images]
    wall, cpu = [run["median_ms"] for run in runs], [run["median_cpu_ms"] for run in runs]
    outputs = [output for run in runs for output in run["outputs"]]
    ssims = {
        preset.name: [o["ssim"] for o in outputs if o["preset"] == preset.name]
        for preset in PRESETS
    }
    all_ssims = [value for values in ssims.values() for value in values]
    cpu_over_wall = sum(sum(run["runs_cpu_ms"]) for run in runs) / sum(
        sum(run["runs_ms"]) for run in runs
    )
    return {
        "available": True,
        "ms_per_image": round(statistics.fmean(wall), 2),
        "images_per_second": round(len(wall) / (sum(wall) / 1000), 3),
        "cpu_ms_per_image": round(statistics.fmean(cpu), 2),
        "cpu_images_per_second": round(len(cpu) / (sum(cpu) / 1000), 3),
        "cpu_over_wall": round(cpu_over_wall, 3),
        "total_bytes": sum(output["bytes"] for output in outputs),
        "outputs_sha256": hashlib.sha256(
            "".join(o["sha256"] for o in outputs).encode()
        ).hexdigest(),
        "ssim": {
            "mean": round(statistics.fmean(all_ssims), 5),
            "min": round(min(all_ssims), 5),
            "by_preset_mean": {key: round(statistics.fmean(v), 5) for key, v in ssims.items()},
        },
        "outputs_ok": all(output["format_ok"] for output in outputs),
        "metadata_found": sorted({block for output in outputs for block in output["metadata"]}),
    }


def placeholder_summary(images: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The placeholders' cost against the engine's time per image (goal: at most 3 %)."""
    measured = [image["placeholder"] for image in images if "placeholder" in image]
    if not measured:
        return {}
    shares = [entry["share_of_engine"] for entry in measured]
    return {
        "ms_per_image": round(statistics.fmean(e["median_ms"] for e in measured), 3),
        "share_of_engine_mean": round(statistics.fmean(shares), 4),
        "share_of_engine_max": round(max(shares), 4),
        "goal_at_most": 0.03,
    }


def set_summary(images: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The responsive set's cost per image and per output, and its bytes per format."""
    measured = [image["responsive_set"] for image in images if "responsive_set" in image]
    if not measured:
        return {}
    outputs = [output for entry in measured for output in entry["outputs"]]
    total_ms = sum(entry["median_ms"] for entry in measured)
    total_cpu_ms = sum(entry["median_cpu_ms"] for entry in measured)
    formats = SET_PRESET.set_formats
    return {
        "preset": {"widths": list(SET_PRESET.widths), "formats": list(formats)},
        "ms_per_image": round(total_ms / len(measured), 2),
        "outputs_per_image": round(len(outputs) / len(measured), 2),
        "ms_per_output": round(total_ms / len(outputs), 2),
        "cpu_ms_per_output": round(total_cpu_ms / len(outputs), 2),
        "bytes_per_output_by_format": {
            name: round(statistics.fmean(o[3] for o in outputs if o[0] == name)) for name in formats
        },
    }


def compare(engines: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The engine against each other engine, and whether it meets the goal of issue 5."""
    ours = engines.get(ENGINE, {})
    if not ours.get("available"):
        return {}
    ratios = {
        name: {
            "speedup": round(ours["images_per_second"] / other["images_per_second"], 3),
            "speedup_cpu_time": round(
                ours["cpu_images_per_second"] / other["cpu_images_per_second"], 3
            ),
            "bytes_ratio": round(ours["total_bytes"] / other["total_bytes"], 4),
            "ssim_mean_delta": round(ours["ssim"]["mean"] - other["ssim"]["mean"], 5),
        }
        for name, other in engines.items()
        if name != ENGINE and other["available"]
    }
    vips = [ratios[name] for name in PYVIPS_ENGINES if name in ratios]
    goal = {"quality": all(ratio["ssim_mean_delta"] >= 0 for ratio in ratios.values())}
    if vips:  # against the faster pyvips
        goal["speed_vs_pyvips"] = min(r["speedup"] for r in vips) >= GOAL_SPEEDUP_VS_PYVIPS
        goal["bytes_vs_pyvips"] = all(r["bytes_ratio"] <= 1 + GOAL_BYTES_MARGIN for r in vips)
    if BASELINE in ratios:
        goal["speed_vs_baseline"] = ratios[BASELINE]["speedup"] >= GOAL_SPEEDUP_VS_BASELINE
    return {"engine_vs": ratios, "goal": goal}


def run_benchmark(arguments: argparse.Namespace) -> dict[str, Any]:
    importlib.import_module("numpy")  # the quality figures need it: fail now, not after timing
    core = pin(required=not arguments.quick)
    photos = find_photos(arguments.directory, quick=arguments.quick)
    repeats = arguments.repeats or (1 if arguments.quick else 5)
    renderers: dict[str, Renderer] = {}
    engines: dict[str, dict[str, Any]] = {}
    for name in (name for name in ENGINE_ORDER if name in arguments.engines):
        try:
            renderers[name] = build(name)
        except EngineUnavailable as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            engines[name] = {"available": False, "reason": str(exc)}
    for renderer in renderers.values():  # warm-up: imports, lazily built tables, untimed
        renderer(photos[0].read_bytes())
    if arguments.save_outputs is not None:
        arguments.save_outputs.mkdir(parents=True, exist_ok=True)
    images = [time_photo(photo, renderers, repeats, arguments.save_outputs) for photo in photos]
    threads = len(os.listdir("/proc/self/task"))
    engines |= {name: engine_summary(name, images) for name in renderers}
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "settings": {
            "corpus": os.path.relpath(arguments.directory.resolve(), PROJECT),
            "photos": [photo.name for photo in photos],
            "quick": arguments.quick,
            "repeats": repeats,
            "pinned_to_core": core,
            "threads": {**THREAD_ENVIRONMENT, "in the process after timing": threads},
        },
        "engines": {name: engines[name] for name in ENGINE_ORDER if name in engines},
        "images": images,
        "comparison": compare(engines),
        "placeholder": placeholder_summary(images),
        "responsive_set": set_summary(images),
    }


def versions() -> dict[str, str | None]:
    pyvips = sys.modules.get("pyvips")
    found = {name: features.version(name) for name in ("libjpeg_turbo", "webp", "littlecms2")}
    for name in ("Pillow", "numpy", "pyvips", "pyvips-binary"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    libvips = None if pyvips is None else ".".join(str(pyvips.version(i)) for i in range(3))
    return found | {"libvips": libvips}


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.update(THREAD_ENVIRONMENT)  # before anything imports numpy or pyvips
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__)
    parser.add_argument("directory", nargs="?", type=Path, default=CORPUS, metavar="DIR")
    parser.add_argument("--repeats", type=int, help="runs per photo and engine (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 photos, 1 run, maybe unpinned")
    parser.add_argument("--engines", type=lambda text: text.split(","), default=ENGINE_ORDER)
    parser.add_argument("--save-outputs", type=Path, help="write every engine's outputs here")
    add_output_arguments(parser, "engine")
    arguments = parser.parse_args(argv)
    if not set(arguments.engines) <= set(ENGINE_ORDER):
        parser.error(f"--engines: a subset of {','.join(ENGINE_ORDER)}")
    result = run_benchmark(arguments)
    shown = ("settings", "engines", "comparison", "placeholder", "responsive_set")
    print(compact({key: result[key] for key in shown}))
    write_result("engine", result, arguments, trial=arguments.quick, raw=RAW_PARTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
