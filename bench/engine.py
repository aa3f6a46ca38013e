"""The engine against pyvips and a plain Pillow recipe, on one pinned core.

    python -m bench.engine [DIR] [--repeats N] [--quick] [--out FILE] [--engines A,B]
                           [--core N] [--presets-json FILE] [--save-outputs DIR]
                           [--no-rss] [--profile]

Every engine turns the bytes of a photo into the encoded outputs of every preset (the
default presets unless ``--presets-json`` says otherwise); what is timed is exactly that
call, bytes in, encoded bytes out. For each photo the engines run alternately (engine,
baseline, pyvips, engine, ...) ``--repeats`` times, and each engine's median per photo is
kept. Output quality is SSIM on luma (Gaussian window) against a reference rendered with
Lanczos from the full-resolution decode, per output. Peak RSS is measured in a fresh
subprocess per engine that renders every photo once.

Engines:

- ``engine``: ``chalicelib.imaging.render`` with the presets.
- ``pillow-baseline``: the plain recipe (open, ``ImageOps.exif_transpose``, then
  ``ImageOps.fit`` or ``thumbnail`` from the full decode for each preset, save with
  Pillow's default encoder settings at the preset's quality, no metadata).
- ``pyvips``: pyvips at its best: ``thumbnail_buffer`` once (shrink-on-load) for the
  largest preset, the smaller ones derived from it (``thumbnail_image``; for cover, a
  centred crop then ``resize``); sRGB; no metadata; the encoder settings mirror the
  engine's (``chalicelib.imaging.encode``).
- ``pyvips-defaults``: the same pipeline with libvips's default encoder settings.

The pyvips engines are skipped (and the output and JSON say why) when pyvips cannot be
imported. ``--quick`` renders two photos once and does not insist on pinning: it checks
that the benchmark works, it measures nothing worth keeping.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import hashlib
import importlib
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.output import add_output_arguments, machine, write_result
from chalicelib.presets import DEFAULT_PRESETS, Preset, load_presets, presets_to_json

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray
    from PIL import Image

    FloatArray = NDArray[np.float64]

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"
# Per sample, left out of the committed summary: every run's time, every output's figures.
RAW_PARTS = ("images.*.engines.*.runs_ms", "images.*.engines.*.outputs")
SCHEMA = "media-pipeline/bench-engine/1"

ENGINE = "engine"
BASELINE = "pillow-baseline"
PYVIPS = "pyvips"
PYVIPS_DEFAULTS = "pyvips-defaults"
ENGINE_ORDER = (ENGINE, BASELINE, PYVIPS, PYVIPS_DEFAULTS)
PYVIPS_ENGINES = frozenset({PYVIPS, PYVIPS_DEFAULTS})

# The goal of issue 5: the engine's images/s over these references' (pyvips: the faster of
# the two configurations), output quality at least theirs, output bytes within +5 %.
GOAL_SPEEDUP_VS_PYVIPS = 1.25
GOAL_SPEEDUP_VS_BASELINE = 2.5
GOAL_BYTES_MARGIN = 0.05

# Thread counts of every library, set before any of them is imported.
THREAD_ENVIRONMENT = {
    "VIPS_CONCURRENCY": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".heic", ".avif"})
MIB = 1024 * 1024
# Process CPU time over wall time below this, on a pinned core, means another process
# shared the core during the timing.
CONTENTION_THRESHOLD = 0.95

Renderer = Callable[[bytes], list[bytes]]


class EngineUnavailable(Exception):
    """An engine cannot run here (pyvips missing, an option it cannot mirror, ...)."""


@dataclass(frozen=True)
class EngineSpec:
    name: str
    description: str
    build: Callable[[Sequence[Preset]], Renderer]


# --- the engines ------------------------------------------------------------------------------


def _build_engine(presets: Sequence[Preset]) -> Renderer:
    from chalicelib.imaging import render

    def run(data: bytes) -> list[bytes]:
        return [output.data for output in render(data, presets).outputs]

    return run


def _build_baseline(presets: Sequence[Preset]) -> Renderer:
    from PIL import Image, ImageOps

    lanczos = Image.Resampling.LANCZOS

    def one(image: Image.Image, preset: Preset) -> bytes:
        size = (preset.width, preset.height)
        if preset.fit == "cover":
            output = ImageOps.fit(image, size, lanczos)
        else:
            output = image.copy()
            output.thumbnail(size, lanczos)
        if preset.format == "JPEG" and output.mode not in ("RGB", "L"):
            output = output.convert("RGB")
        output.info = {}  # no EXIF, ICC profile or comments in the output
        buffer = io.BytesIO()
        output.save(buffer, format=preset.format, quality=preset.quality)
        return buffer.getvalue()

    def run(data: bytes) -> list[bytes]:
        with Image.open(io.BytesIO(data)) as opened:
            upright = ImageOps.exif_transpose(opened)
            return [one(upright, preset) for preset in presets]

    return run


def engine_encoder_options() -> dict[str, dict[str, Any]]:
    """The engine's encoder settings as libvips save options, per output format."""
    from chalicelib.imaging import encode

    jpeg: dict[str, Any] = {}
    for key, value in encode.JPEG_OPTIONS.items():
        if key == "optimize":
            jpeg["optimize_coding"] = bool(value)
        elif key == "progressive":
            jpeg["interlace"] = bool(value)
        elif key == "subsampling" and value in ("4:2:0", 2):
            jpeg["subsample_mode"] = "on"
        elif key == "subsampling" and value in ("4:4:4", 0):
            jpeg["subsample_mode"] = "off"
        else:
            raise EngineUnavailable(f"cannot mirror the engine's JPEG option {key}={value!r}")
    webp: dict[str, Any] = {}
    for key, value in encode.WEBP_OPTIONS.items():
        if key != "method":
            raise EngineUnavailable(f"cannot mirror the engine's WebP option {key}={value!r}")
        webp["effort"] = int(value)
    return {"JPEG": jpeg, "WEBP": webp, "PNG": {}}


def import_pyvips() -> Any:
    """pyvips, single-threaded and without its operation cache; EngineUnavailable if absent."""
    try:
        pyvips = importlib.import_module("pyvips")
    except (ImportError, OSError) as exc:  # OSError: pyvips without a loadable libvips
        raise EngineUnavailable(f"pyvips cannot be imported: {exc}") from exc
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.concurrency_set(1)
    return pyvips


def _build_pyvips(
    presets: Sequence[Preset], encoder_options: Mapping[str, Mapping[str, Any]]
) -> Renderer:
    pyvips = import_pyvips()
    strip: dict[str, Any] = {"keep": 0} if pyvips.at_least_libvips(8, 15) else {"strip": True}
    order = sorted(
        range(len(presets)), key=lambda i: presets[i].width * presets[i].height, reverse=True
    )
    largest = presets[order[0]]
    if largest.fit != "contain":
        raise EngineUnavailable("the largest preset must be 'contain' to derive the others")
    for preset in presets:
        if preset.format not in encoder_options:
            raise EngineUnavailable(f"no pyvips encoder for {preset.format}")

    def save(image: Any, preset: Preset) -> bytes:
        options = {**encoder_options[preset.format], **strip}
        if preset.format == "JPEG":
            if image.hasalpha():
                image = image.flatten(background=[255, 255, 255])
            return bytes(image.jpegsave_buffer(Q=preset.quality, **options))
        if preset.format == "WEBP":
            return bytes(image.webpsave_buffer(Q=preset.quality, **options))
        return bytes(image.pngsave_buffer(**options))

    def run(data: bytes) -> list[bytes]:
        # thumbnail_* keep an embedded profile's colours unless asked for sRGB, and asking
        # for it transforms untagged images too (4x slower): ask only when it matters.
        header = pyvips.Image.new_from_buffer(data, "")
        profile = None
        if header.get_typeof("icc-profile-data") != 0:
            profile = header.get("icc-profile-data")
        colour: dict[str, Any] = {}
        if profile is not None and not icc_is_srgb(bytes(profile)):
            colour["output_profile"] = "srgb"
        base = pyvips.Image.thumbnail_buffer(
            data, largest.width, height=largest.height, size="down", **colour
        )
        if len(presets) > 1:
            base = base.copy_memory()  # read once, used by every smaller preset
        outputs: dict[int, bytes] = {}
        for index in order:
            preset = presets[index]
            if index == order[0]:
                image = base
            elif preset.fit == "cover":
                image = cover(base, preset)
            else:
                image = base.thumbnail_image(
                    preset.width, height=preset.height, size="down", no_rotate=True
                )
            outputs[index] = save(image, preset)
        return [outputs[index] for index in range(len(presets))]

    return run


def cover(image: Any, preset: Preset) -> Any:
    """The centred region of the preset's aspect ratio, scaled to the preset's size.

    Not ``thumbnail_image(crop="centre")``: that crops after resizing, on whole output
    pixels, up to half an output pixel off centre, and SSIM punishes a shift of a fraction
    of a pixel on detailed pictures (0.86 instead of 0.99 on a forest). Cropping the larger
    image first keeps the error below half of its pixel.
    """
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
    """Whether an ICC profile's description names sRGB (the engine's own rule)."""
    description = _icc_description(profile)
    return description is not None and description.strip().startswith("sRGB")


def _icc_description(profile: bytes) -> str | None:
    if len(profile) < 132:
        return None
    count = int.from_bytes(profile[128:132], "big")
    for entry in range(132, min(132 + 12 * count, len(profile) - 11), 12):
        if profile[entry : entry + 4] != b"desc":
            continue
        offset = int.from_bytes(profile[entry + 4 : entry + 8], "big")
        tag = profile[offset:]
        if tag[:4] == b"desc":  # ICC v2: ASCII
            length = int.from_bytes(tag[8:12], "big")
            return tag[12 : 12 + length].split(b"\0", 1)[0].decode("latin-1")
        if tag[:4] == b"mluc" and len(tag) >= 28:  # ICC v4: the first UTF-16 record
            length = int.from_bytes(tag[20:24], "big")
            start = int.from_bytes(tag[24:28], "big")
            return tag[start : start + length].decode("utf-16-be", "replace")
        return None
    return None


def engine_specs(encoder_options: Mapping[str, Mapping[str, Any]]) -> dict[str, EngineSpec]:
    return {
        ENGINE: EngineSpec(ENGINE, "chalicelib.imaging.render", _build_engine),
        BASELINE: EngineSpec(
            BASELINE,
            "plain Pillow: open, exif_transpose, ImageOps.fit / thumbnail (Lanczos) per preset"
            " from the full decode, save with Pillow's default encoder settings",
            _build_baseline,
        ),
        PYVIPS: EngineSpec(
            PYVIPS,
            "pyvips thumbnail_buffer (shrink-on-load) for the largest preset, thumbnail_image"
            f" for the others; encoder options mirror the engine's: {dict(encoder_options)}",
            lambda presets: _build_pyvips(presets, encoder_options),
        ),
        PYVIPS_DEFAULTS: EngineSpec(
            PYVIPS_DEFAULTS,
            "the same pyvips pipeline with libvips's default encoder settings",
            lambda presets: _build_pyvips(presets, {"JPEG": {}, "WEBP": {}, "PNG": {}}),
        ),
    }


# --- quality ----------------------------------------------------------------------------------


def gaussian_window(size: int = 11, sigma: float = 1.5) -> FloatArray:
    import numpy as np

    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window: FloatArray = np.exp(-(offsets**2) / (2 * sigma**2))
    normalised: FloatArray = window / window.sum()
    return normalised


def _filter(plane: FloatArray, window: FloatArray) -> FloatArray:
    """Separable 'valid' convolution of a 2-D plane with a symmetric 1-D window."""
    import numpy as np

    taps = len(window)
    height, width = plane.shape
    rows = np.zeros((height, width - taps + 1))
    for k in range(taps):
        rows += window[k] * plane[:, k : k + width - taps + 1]
    result = np.zeros((height - taps + 1, width - taps + 1))
    for k in range(taps):
        result += window[k] * rows[k : k + height - taps + 1, :]
    return result


def ssim(first: FloatArray, second: FloatArray, data_range: float = 255.0) -> float:
    """Mean SSIM of two luma planes (Wang et al. 2004: 11x11 Gaussian, sigma 1.5)."""
    if first.shape != second.shape:
        raise ValueError(f"shapes differ: {first.shape} and {second.shape}")
    if min(first.shape) < 11:
        raise ValueError(f"planes must be at least 11x11, not {first.shape}")
    window = gaussian_window()
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu1 = _filter(first, window)
    mu2 = _filter(second, window)
    var1 = _filter(first * first, window) - mu1 * mu1
    var2 = _filter(second * second, window) - mu2 * mu2
    covariance = _filter(first * second, window) - mu1 * mu2
    numerator = (2 * mu1 * mu2 + c1) * (2 * covariance + c2)
    denominator = (mu1 * mu1 + mu2 * mu2 + c1) * (var1 + var2 + c2)
    return float((numerator / denominator).mean())


def psnr(first: FloatArray, second: FloatArray, data_range: float = 255.0) -> float:
    import numpy as np

    mse = float(np.mean((first - second) ** 2))
    return float("inf") if mse == 0 else 10 * float(np.log10(data_range**2 / mse))


class Reference:
    """High-quality references of one photo: Lanczos from the full decode, in float luma.

    The photo is decoded at full resolution, turned upright, converted to sRGB through an
    embedded non-sRGB profile, reduced to luma (ITU-R 601) in 32-bit float and resized
    with Lanczos straight to each output's size over the preset's region (the whole picture
    for ``contain``, the centred region of the box's aspect ratio for ``cover``).
    """

    def __init__(self, data: bytes) -> None:
        from PIL import Image, ImageCms, ImageOps

        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened)
            profile = opened.info.get("icc_profile")
        if profile and not icc_is_srgb(profile):
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            image = converted if converted is not None else image
        self.luma = image.convert("RGB").convert("F")
        self._cache: dict[tuple[str, float, int, int], FloatArray] = {}

    def plane(self, preset: Preset, size: tuple[int, int]) -> FloatArray:
        import numpy as np
        from PIL import Image

        width, height = self.luma.size
        box: tuple[float, float, float, float] = (0, 0, width, height)
        aspect = preset.width / preset.height
        if preset.fit == "cover":
            if width > height * aspect:
                region = height * aspect
                box = ((width - region) / 2, 0, (width + region) / 2, height)
            else:
                region = width / aspect
                box = (0, (height - region) / 2, width, (height + region) / 2)
        key = (preset.fit, aspect, *size)
        if key not in self._cache:
            resized = self.luma.resize(size, Image.Resampling.LANCZOS, box=box)
            self._cache[key] = np.clip(np.asarray(resized, dtype=np.float64), 0, 255)
        return self._cache[key]


def luma_plane(encoded: bytes) -> FloatArray:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return np.asarray(image.convert("RGB").convert("F"), dtype=np.float64)


# --- checks of the outputs ----------------------------------------------------------------------


def describe_output(encoded: bytes, preset: Preset) -> dict[str, Any]:
    """Size, format and any metadata an output carries (there should be none)."""
    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        width, height = image.size
        output_format = "JPEG" if image.format == "MPO" else str(image.format)
    return {
        "preset": preset.name,
        "width": width,
        "height": height,
        "format": output_format,
        "format_ok": output_format == preset.format,
        "bytes": len(encoded),
        "metadata": metadata_in(encoded),
    }


def metadata_in(encoded: bytes) -> list[str]:
    """Metadata blocks in a JPEG or WebP file: EXIF, XMP, ICC, IPTC, comments."""
    if encoded.startswith(b"\xff\xd8"):
        return _jpeg_metadata(encoded)
    if encoded.startswith(b"RIFF") and encoded[8:12] == b"WEBP":
        return _webp_metadata(encoded)
    return []


def _jpeg_metadata(encoded: bytes) -> list[str]:
    found: list[str] = []
    position = 2
    while position + 4 <= len(encoded) and encoded[position] == 0xFF:
        marker = encoded[position + 1]
        if marker == 0xDA:  # start of scan: no metadata after this point matters
            break
        length = int.from_bytes(encoded[position + 2 : position + 4], "big")
        payload = encoded[position + 4 : position + 2 + length]
        if marker == 0xE1 and payload.startswith(b"Exif"):
            found.append("exif")
        elif marker == 0xE1:
            found.append("xmp")
        elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE"):
            found.append("icc")
        elif marker == 0xED:
            found.append("iptc")
        elif marker == 0xFE:
            found.append("comment")
        position += 2 + length
    return found


def _webp_metadata(encoded: bytes) -> list[str]:
    names = {b"EXIF": "exif", b"XMP ": "xmp", b"ICCP": "icc"}
    found: list[str] = []
    position = 12
    while position + 8 <= len(encoded):
        chunk = encoded[position : position + 4]
        size = int.from_bytes(encoded[position + 4 : position + 8], "little")
        if chunk in names:
            found.append(names[chunk])
        position += 8 + size + (size & 1)
    return found


# --- the machine and its settings ---------------------------------------------------------------


def apply_thread_environment() -> None:
    for variable, value in THREAD_ENVIRONMENT.items():
        os.environ[variable] = value


def pin(core: int | None, *, required: bool) -> dict[str, Any]:
    """Pin this process (and its future children) to one core: ``core``, or the idlest."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        idle = idle_share(allowed)
        chosen = core if core is not None else max(allowed, key=lambda cpu: idle.get(cpu, 0))
        os.sched_setaffinity(0, {chosen})
    except (AttributeError, OSError, ValueError, IndexError) as exc:
        if required:
            raise SystemExit(
                f"cannot pin to one core ({exc}); use --quick to run unpinned"
            ) from exc
        return {"pinned": False, "core": None, "reason": str(exc)}
    return {"pinned": True, "core": chosen, "allowed_before": allowed, "idle_share": idle}


def idle_share(cpus: Sequence[int], seconds: float = 0.5) -> dict[int, float]:
    """The share of ``seconds`` each CPU spent idle (from /proc/stat); empty if unknown."""

    def idle_and_total() -> dict[int, tuple[int, int]]:
        counters: dict[int, tuple[int, int]] = {}
        for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(field) for field in fields]
                counters[int(name[3:])] = (values[3] + values[4], sum(values))  # idle + iowait
        return counters

    try:
        before = idle_and_total()
        time.sleep(seconds)
        after = idle_and_total()
    except (OSError, ValueError, IndexError):
        return {}
    shares: dict[int, float] = {}
    for cpu in cpus:
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            shares[cpu] = round((after[cpu][0] - before[cpu][0]) / total, 2) if total else 0.0
    return shares


def versions(pyvips: Any | None) -> dict[str, Any]:
    import PIL
    from PIL import features

    found: dict[str, Any] = {
        "Pillow": PIL.__version__,
        "libjpeg-turbo (Pillow)": features.version("libjpeg_turbo"),
        "libwebp (Pillow)": features.version("webp"),
        "littlecms (Pillow)": features.version("littlecms2"),
        "numpy": _distribution_version("numpy"),
        "pyvips": None,
        "libvips": None,
        "pyvips-binary": _distribution_version("pyvips-binary"),
    }
    if pyvips is not None:
        found["pyvips"] = pyvips.__version__
        found["libvips"] = ".".join(str(pyvips.version(part)) for part in range(3))
    return found


def _distribution_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_head() -> str | None:
    """The commit checked out, read from .git without running git."""
    git = PROJECT / ".git"
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        loose = git / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        for line in (git / "packed-refs").read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def engine_source_digest() -> str:
    """SHA-256 over the engine's source: which engine code was measured, committed or not."""
    digest = hashlib.sha256()
    paths = sorted((PROJECT / "chalicelib" / "imaging").glob("*.py"))
    paths += [PROJECT / "chalicelib" / "presets.py", PROJECT / "chalicelib" / "formats.py"]
    for path in paths:
        digest.update(path.relative_to(PROJECT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, or else ru_maxrss.

    ru_maxrss is not used where VmHWM exists: Linux carries the parent's peak into a child
    started with vfork+exec (as subprocess does), so every child would report the
    benchmark's own ~300 MiB. VmHWM belongs to the child's own address space.
    """
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    # ru_maxrss is in KiB on Linux.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- running ------------------------------------------------------------------------------------


def find_photos(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise SystemExit(f"no such directory: {directory}")
    photos = sorted(path for path in directory.iterdir() if path.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos in {directory}")
    return photos


def quick_selection(photos: Sequence[Path]) -> list[Path]:
    """The first and the last photo by name (in the corpus: a plain one and a phone photo)."""
    return list(photos) if len(photos) <= 2 else [photos[0], photos[-1]]


@dataclass
class Timings:
    wall_ms: list[float]
    cpu_ms: list[float]
    outputs: list[bytes]


def time_engines(
    renderers: Mapping[str, Renderer], data: bytes, repeats: int
) -> dict[str, Timings]:
    """Run the engines alternately on one photo; keep every run's time and the first outputs."""
    timings: dict[str, Timings] = {}
    for _ in range(repeats):
        for name, render in renderers.items():
            cpu_started = time.process_time()
            started = time.perf_counter()
            outputs = render(data)
            wall = (time.perf_counter() - started) * 1000
            cpu = (time.process_time() - cpu_started) * 1000
            if name not in timings:
                timings[name] = Timings([], [], outputs)
            timings[name].wall_ms.append(wall)
            timings[name].cpu_ms.append(cpu)
    return timings


@dataclass
class PhotoRun:
    images: list[dict[str, Any]]  # image_entry of each photo
    wall_ms: dict[str, float]  # per engine, every run of every photo
    cpu_ms: dict[str, float]


def time_photos(
    renderers: Mapping[str, Renderer],
    photos: Sequence[Path],
    presets: Sequence[Preset],
    repeats: int,
    *,
    before: Callable[[bytes], None] | None = None,
    after: Callable[[Path, dict[str, Any], Mapping[str, Timings]], None] | None = None,
) -> PhotoRun:
    """Warm every engine up on the first photo (imports, lazily built tables and code paths,
    untimed), then time them alternately on each photo. ``before`` sees each photo's bytes
    before its timing, ``after`` its entry and timings."""
    first = photos[0].read_bytes()
    if before is not None:
        before(first)
    for render in renderers.values():
        render(first)
    run = PhotoRun([], dict.fromkeys(renderers, 0.0), dict.fromkeys(renderers, 0.0))
    for photo in photos:
        data = photo.read_bytes()
        if before is not None:
            before(data)
        gc.collect()
        timings = time_engines(renderers, data, repeats)
        entry = image_entry(photo, data, presets, timings)
        run.images.append(entry)
        for name, timing in timings.items():
            run.wall_ms[name] += sum(timing.wall_ms)
            run.cpu_ms[name] += sum(timing.cpu_ms)
        if after is not None:
            after(photo, entry, timings)
        print(progress_line(entry), file=sys.stderr, flush=True)
    return run


def measure_rss(
    engine: str, photos: Sequence[Path], presets_json: str, encoder_options: Mapping[str, Any]
) -> dict[str, Any]:
    """Peak RSS of a fresh process that renders every photo once with ``engine``."""
    command = [
        sys.executable,
        "-m",
        "bench.engine",
        "--rss-child",
        engine,
        "--presets-json-text",
        presets_json,
        "--encoder-options",
        json.dumps(encoder_options),
        "--rss-photos",
        json.dumps([str(photo) for photo in photos]),
    ]
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, cwd=PROJECT, capture_output=True, text=True, check=False, timeout=600
    )
    if completed.returncode != 0:
        return {"error": completed.stderr.strip()[-2000:]}
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return report


def rss_child(
    engine: str, photos: Sequence[str], presets: Sequence[Preset], encoder_options: Any
) -> int:
    spec = engine_specs(encoder_options)[engine]
    try:
        render = spec.build(presets)
    except EngineUnavailable as exc:
        print(json.dumps({"error": str(exc)}))
        return 0
    before = peak_rss_mib()
    for photo in photos:
        render(Path(photo).read_bytes())
    print(json.dumps({"rss_before_render_mib": before, "peak_rss_mib": peak_rss_mib()}))
    return 0


def run_benchmark(arguments: argparse.Namespace) -> dict[str, Any]:
    try:
        importlib.import_module("numpy")
    except ImportError as exc:  # fail now, not after minutes of timing
        raise SystemExit(f"the quality figures need numpy: {exc}") from exc
    apply_thread_environment()
    pinning = pin(arguments.core, required=not arguments.quick)
    machine_info = machine()
    presets = _presets(arguments.presets_json)
    if any(preset.watermark is not None for preset in presets):
        raise SystemExit("the benchmark's other engines draw no watermarks: use presets without")
    presets_json = presets_to_json(presets)
    photos = find_photos(arguments.directory)
    if arguments.quick:
        photos = quick_selection(photos)
    repeats = arguments.repeats if arguments.repeats is not None else (1 if arguments.quick else 5)

    try:
        mirrored: dict[str, dict[str, Any]] | None = engine_encoder_options()
        mirror_error = None
    except EngineUnavailable as exc:
        mirrored, mirror_error = None, str(exc)
    specs = engine_specs(mirrored or {})
    selected = [name for name in ENGINE_ORDER if name in arguments.engines]

    renderers: dict[str, Renderer] = {}
    unavailable: dict[str, str] = {}
    for name in selected:
        if name == PYVIPS and mirror_error is not None:
            unavailable[name] = mirror_error
            continue
        try:
            renderers[name] = specs[name].build(presets)
        except EngineUnavailable as exc:
            unavailable[name] = str(exc)
    for name, reason in unavailable.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    pyvips = _imported_pyvips()

    def save(photo: Path, _: dict[str, Any], timings: Mapping[str, Timings]) -> None:
        if arguments.save_outputs is not None:
            _save_outputs(arguments.save_outputs, photo, presets, timings)

    run = time_photos(renderers, photos, presets, repeats, after=save)
    images = run.images
    threads_after = thread_count()
    load_after = [round(value, 2) for value in os.getloadavg()]

    rss = {
        name: measure_rss(name, photos, presets_json, mirrored or {})
        for name in renderers
        if not arguments.no_rss
    }

    engines: dict[str, Any] = {}
    for name in selected:
        if name in unavailable:
            engines[name] = {
                "available": False,
                "reason": unavailable[name],
                "description": specs[name].description,
            }
            continue
        engines[name] = engine_summary(
            name, specs[name], images, run.cpu_ms[name], run.wall_ms[name], rss.get(name)
        )

    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_info, "load_average_at_end": load_after},
        "versions": versions(pyvips),
        "settings": {
            "corpus": os.path.relpath(arguments.directory.resolve(), PROJECT),
            "photos": [photo.name for photo in photos],
            "quick": arguments.quick,
            "repeats": repeats,
            "statistic": "median of the repeats per photo; ms/image is the mean of those"
            " medians, images/s is photos / sum of medians",
            "timer": "time.perf_counter around one call: photo bytes in, every preset's"
            " encoded bytes out (decode, resize, colour, encode)",
            "order": "engines alternate within each repeat: " + ", ".join(renderers),
            "warmup": f"one untimed render of {photos[0].name} per engine",
            "pinning": pinning,
            "threads": {
                **THREAD_ENVIRONMENT,
                "pyvips.concurrency_get()": None if pyvips is None else pyvips.concurrency_get(),
                "pyvips operation cache": None if pyvips is None else pyvips.cache_get_max(),
                "Pillow": "single-threaded (no option)",
                "threads in the process after timing": threads_after,
            },
            "presets": json.loads(presets_json),
            "pyvips_encoder_options": {
                PYVIPS: mirrored if mirrored is not None else mirror_error,
                PYVIPS_DEFAULTS: "libvips defaults",
            },
            "quality": "SSIM (11x11 Gaussian, sigma 1.5, K1 0.01, K2 0.03) and PSNR on luma"
            " (ITU-R 601) vs Lanczos from the full decode in float, per output",
            "peak_rss": "VmHWM of a fresh process per engine after rendering every photo"
            " once (rss_before_render: after its imports)",
            "engine_source_sha256": engine_source_digest(),
            "git_head": git_head(),
        },
        "engines": engines,
        "images": images,
    }
    result["comparison"] = compare(engines)
    result["warnings"] = warnings(result)
    return result


def warnings(result: Mapping[str, Any]) -> list[str]:
    """What makes these figures less trustworthy than they look."""
    found = []
    pinning = result["settings"]["pinning"]
    if not pinning["pinned"]:
        found.append(f"not pinned to one core: {pinning['reason']}")
    for name, engine in result["engines"].items():
        share = engine.get("cpu_over_wall")
        if share is not None and share < CONTENTION_THRESHOLD:
            found.append(
                f"{name}: its CPU time was {share:.0%} of the wall time: something else ran"
                " on the core, so its wall-clock figures are inflated (see cpu_ms_per_image)"
            )
        elif share is not None and share > 2 - CONTENTION_THRESHOLD:
            found.append(f"{name}: its CPU time was {share:.0%} of the wall time: not one core")
    return found


def _imported_pyvips() -> Any | None:
    return sys.modules.get("pyvips")


def image_entry(
    photo: Path, data: bytes, presets: Sequence[Preset], timings: Mapping[str, Timings]
) -> dict[str, Any]:
    reference = Reference(data)
    entry: dict[str, Any] = {
        "name": photo.name,
        "bytes": len(data),
        "size": list(reference.luma.size),
        "engines": {},
    }
    for name, timing in timings.items():
        outputs = []
        for preset, encoded in zip(presets, timing.outputs, strict=True):
            described = describe_output(encoded, preset)
            plane = luma_plane(encoded)
            expected = reference.plane(preset, (described["width"], described["height"]))
            described["ssim"] = round(ssim(plane, expected), 5)
            described["psnr_db"] = round(psnr(plane, expected), 2)
            outputs.append(described)
        entry["engines"][name] = {
            "median_ms": round(statistics.median(timing.wall_ms), 2),
            "median_cpu_ms": round(statistics.median(timing.cpu_ms), 2),
            "runs_ms": [round(value, 2) for value in timing.wall_ms],
            "outputs": outputs,
        }
    return entry


def engine_summary(
    name: str,
    spec: EngineSpec,
    images: Sequence[Mapping[str, Any]],
    cpu_ms: float,
    wall_ms: float,
    rss: Mapping[str, Any] | None,
) -> dict[str, Any]:
    medians = [image["engines"][name]["median_ms"] for image in images]
    cpu_medians = [image["engines"][name]["median_cpu_ms"] for image in images]
    outputs = [output for image in images for output in image["engines"][name]["outputs"]]
    ssims = [output["ssim"] for output in outputs]
    psnrs = [output["psnr_db"] for output in outputs]
    by_preset: dict[str, list[float]] = {}
    for output in outputs:
        by_preset.setdefault(output["preset"], []).append(output["ssim"])
    summary: dict[str, Any] = {
        "available": True,
        "description": spec.description,
        "ms_per_image": round(sum(medians) / len(medians), 2),
        "median_ms_per_image": round(statistics.median(medians), 2),
        "images_per_second": round(len(medians) / (sum(medians) / 1000), 3),
        "cpu_ms_per_image": round(sum(cpu_medians) / len(cpu_medians), 2),
        "cpu_images_per_second": round(len(cpu_medians) / (sum(cpu_medians) / 1000), 3),
        "total_bytes": sum(output["bytes"] for output in outputs),
        "ssim": {
            "mean": round(statistics.fmean(ssims), 5),
            "min": round(min(ssims), 5),
            "by_preset_mean": {
                preset: round(statistics.fmean(values), 5) for preset, values in by_preset.items()
            },
        },
        "psnr_db": {"mean": round(statistics.fmean(psnrs), 2), "min": round(min(psnrs), 2)},
        "cpu_over_wall": round(cpu_ms / wall_ms, 3) if wall_ms else None,
        "outputs_ok": all(output["format_ok"] for output in outputs),
        "metadata_found": sorted({block for output in outputs for block in output["metadata"]}),
    }
    if rss is not None:
        summary["peak_rss_mib"] = rss.get("peak_rss_mib")
        summary["rss_before_render_mib"] = rss.get("rss_before_render_mib")
        if "error" in rss:
            summary["rss_error"] = rss["error"]
    return summary


def compare(engines: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The engine against each other engine, and the goal of issue 5."""
    ours = engines.get(ENGINE)
    if ours is None or not ours.get("available"):
        return {}
    ratios: dict[str, Any] = {}
    for name, other in engines.items():
        if name == ENGINE or not other.get("available"):
            continue
        ratios[name] = {
            "speedup": round(ours["images_per_second"] / other["images_per_second"], 3),
            "speedup_cpu_time": round(
                ours["cpu_images_per_second"] / other["cpu_images_per_second"], 3
            ),
            "bytes_ratio": round(ours["total_bytes"] / other["total_bytes"], 4),
            "ssim_mean_delta": round(ours["ssim"]["mean"] - other["ssim"]["mean"], 5),
            "ssim_min_delta": round(ours["ssim"]["min"] - other["ssim"]["min"], 5),
        }
    goal: dict[str, Any] = {}
    vips = [name for name in (PYVIPS, PYVIPS_DEFAULTS) if name in ratios]
    if vips:
        fastest = max(vips, key=lambda name: engines[name]["images_per_second"])
        goal["speed_vs_pyvips"] = _criterion(
            ratios[fastest]["speedup"], GOAL_SPEEDUP_VS_PYVIPS, against=fastest
        )
        for name in vips:
            goal[f"bytes_vs_{name}"] = {
                "target": f"<= {1 + GOAL_BYTES_MARGIN:.2f}",
                "measured": ratios[name]["bytes_ratio"],
                "met": ratios[name]["bytes_ratio"] <= 1 + GOAL_BYTES_MARGIN,
            }
            goal[f"quality_vs_{name}"] = _quality(ratios[name])
    if BASELINE in ratios:
        goal["speed_vs_baseline"] = _criterion(
            ratios[BASELINE]["speedup"], GOAL_SPEEDUP_VS_BASELINE, against=BASELINE
        )
        goal[f"quality_vs_{BASELINE}"] = _quality(ratios[BASELINE])
    return {"engine_vs": ratios, "goal": goal}


def _criterion(measured: float, target: float, *, against: str) -> dict[str, Any]:
    return {
        "against": against,
        "target": f">= {target}",
        "measured": measured,
        "met": measured >= target,
    }


def _quality(ratio: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target": "engine's mean SSIM >= theirs",
        "ssim_mean_delta": ratio["ssim_mean_delta"],
        "met": ratio["ssim_mean_delta"] >= 0,
    }


def _save_outputs(
    directory: Path, photo: Path, presets: Sequence[Preset], timings: Mapping[str, Timings]
) -> None:
    from chalicelib.formats import OUTPUT_FORMATS

    directory.mkdir(parents=True, exist_ok=True)
    for name, timing in timings.items():
        for preset, encoded in zip(presets, timing.outputs, strict=True):
            extension = OUTPUT_FORMATS[preset.format].extension
            (directory / f"{photo.stem}.{preset.name}.{name}.{extension}").write_bytes(encoded)


def progress_line(entry: Mapping[str, Any]) -> str:
    timings = ", ".join(
        f"{name} {engine['median_ms']:.1f} ms" for name, engine in entry["engines"].items()
    )
    return f"{entry['name']}: {timings}"


def _presets(path: Path | None) -> list[Preset]:
    if path is None:
        return list(DEFAULT_PRESETS)
    return list(load_presets(path.read_text(encoding="utf-8")).values())


# --- reporting ----------------------------------------------------------------------------------


def format_table(result: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (readable as plain text too)."""
    engines = result["engines"]
    ratios = result.get("comparison", {}).get("engine_vs", {})
    header = (
        "| engine | ms/image | images/s | engine speed-up | total bytes | engine bytes ratio"
        " | SSIM mean | SSIM min | PSNR mean (dB) | peak RSS (MiB) |"
    )
    lines = [header, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for name, engine in engines.items():
        if not engine["available"]:
            lines.append(f"| {name} | skipped: {engine['reason']} |||||||||")
            continue
        ratio = ratios.get(name)
        speedup = "—" if ratio is None else f"{ratio['speedup']:.2f}x"
        bytes_ratio = "—" if ratio is None else f"{ratio['bytes_ratio']:.3f}"
        rss = engine.get("peak_rss_mib")
        lines.append(
            f"| {name} | {engine['ms_per_image']:.1f} | {engine['images_per_second']:.2f}"
            f" | {speedup} | {engine['total_bytes']:,} | {bytes_ratio}"
            f" | {engine['ssim']['mean']:.4f} | {engine['ssim']['min']:.4f}"
            f" | {engine['psnr_db']['mean']:.2f} | {'—' if rss is None else f'{rss:.0f}'} |"
        )
    return "\n".join(lines)


def format_per_image(result: Mapping[str, Any]) -> str:
    names = list(result["engines"])
    available = [name for name in names if result["engines"][name]["available"]]
    lines = [
        "| photo | " + " | ".join(f"{name} ms" for name in available) + " |",
        "|---|" + "--:|" * len(available),
    ]
    for image in result["images"]:
        cells = [f"{image['engines'][name]['median_ms']:.1f}" for name in available]
        lines.append(f"| {image['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_goal(result: Mapping[str, Any]) -> str:
    goal = result.get("comparison", {}).get("goal", {})
    lines = []
    for key, criterion in goal.items():
        measured = criterion.get("measured", criterion.get("ssim_mean_delta"))
        against = f" (against {criterion['against']})" if "against" in criterion else ""
        verdict = "met" if criterion["met"] else "NOT met"
        lines.append(f"- {key}{against}: {measured} (target {criterion['target']}): {verdict}")
    return "\n".join(lines)


def format_settings(result: Mapping[str, Any]) -> str:
    settings = result["settings"]
    pinning = settings["pinning"]
    where = f"core {pinning['core']}" if pinning["pinned"] else f"NOT pinned ({pinning['reason']})"
    versions_text = ", ".join(
        f"{key} {value}" for key, value in result["versions"].items() if value
    )
    return (
        f"{result['date']} · {result['machine']['cpu_model']} ·"
        f" {result['machine']['logical_cpus']} logical CPUs · {where} ·"
        f" {len(settings['photos'])} photos x {settings['repeats']} repeats\n{versions_text}"
    )


# --- profiling ----------------------------------------------------------------------------------


def profile_engine(photos: Sequence[Path], presets: Sequence[Preset], repeats: int) -> str:
    """cProfile of the engine over the photos, by time spent in each function itself."""
    render = _build_engine(presets)
    datas = [photo.read_bytes() for photo in photos]
    for data in datas:
        render(data)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        for data in datas:
            render(data)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(15)
    return stream.getvalue()


# --- the command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description="Benchmark the imaging engine against pyvips and plain Pillow.",
    )
    parser.add_argument("directory", nargs="?", type=Path, default=CORPUS, metavar="DIR")
    parser.add_argument("--repeats", type=_positive, help="runs per photo and engine (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="two photos, one run, pinning optional: a smoke test"
    )
    add_output_arguments(parser, "engine")
    parser.add_argument(
        "--engines",
        type=_engine_list,
        default=ENGINE_ORDER,
        help=f"comma-separated subset of {','.join(ENGINE_ORDER)}",
    )
    parser.add_argument("--core", type=int, help="the core to pin to (default: the last allowed)")
    parser.add_argument("--presets-json", type=Path, help="a JSON preset list (default: built-in)")
    parser.add_argument("--save-outputs", type=Path, help="write every engine's outputs here")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak RSS subprocesses")
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the engine instead"
    )
    # Internal: the peak RSS subprocess.
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--presets-json-text", help=argparse.SUPPRESS)
    parser.add_argument("--encoder-options", help=argparse.SUPPRESS)
    parser.add_argument("--rss-photos", help=argparse.SUPPRESS)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _engine_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ENGINE_ORDER]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"engines are {', '.join(ENGINE_ORDER)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    apply_thread_environment()  # before anything imports pyvips
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.rss_child is not None:
        return rss_child(
            arguments.rss_child,
            json.loads(arguments.rss_photos),
            list(load_presets(arguments.presets_json_text).values()),
            json.loads(arguments.encoder_options),
        )
    if arguments.profile:
        pin(arguments.core, required=False)
        photos = find_photos(arguments.directory)
        photos = quick_selection(photos) if arguments.quick else photos
        print(profile_engine(photos, _presets(arguments.presets_json), arguments.repeats or 3))
        return 0
    result = run_benchmark(arguments)
    print(format_settings(result))
    print()
    print(format_table(result))
    print()
    print(format_per_image(result))
    print()
    print(format_goal(result))
    for warning in result["warnings"]:
        print(f"WARNING: {warning}")
    write_result("engine", result, arguments, trial=arguments.quick, raw=RAW_PARTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
