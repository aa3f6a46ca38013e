"""From uploaded bytes to encoded renditions: one decode feeds every preset.

The order is chosen for speed without visible loss:

1. Read the header; reject oversized images before any pixel is decoded.
2. Decode only as much as the largest rendition needs (JPEG DCT scaling via ``draft``).
3. Bring the pixels to 8 bits and shrink other formats by an integer factor (``reduce``).
4. Render presets from the largest output to the smallest, each resized with Lanczos from
   the smallest whole-picture image made so far that is still comfortably larger than
   it (a cascade), or else from the decoded image. Until then everything stays in the
   stored orientation and the file's colour space: rotating to the EXIF orientation and
   converting to sRGB happen last, on each output, the smallest images there are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageFile

from chalicelib.errors import UnsupportedFormat
from chalicelib.formats import OUTPUT_FORMATS, SOURCE_CONTENT_TYPES
from chalicelib.imaging import colour, placeholder, png_bands
from chalicelib.imaging.budget import Budget, deadline
from chalicelib.imaging.decode import DEFAULT_MAX_FRAMES, decoding, draft, exif_orientation
from chalicelib.imaging.encode import encode
from chalicelib.imaging.geometry import Placement, place, to_stored
from chalicelib.imaging.results import Placeholder, RenderResult, Rendition, SourceInfo
from chalicelib.imaging.watermark import apply_watermark
from chalicelib.presets import Preset

DEFAULT_MAX_PIXELS = 50_000_000

# How much larger than an output an image must be to be resized from (by `reduce`, or as
# a step of the cascade). Pillow's docs: from 2 the result is close to resizing from the
# full image, from 3 indistinguishable. Measured on the corpus against resizing each
# output from the full decode: 40-55 dB PSNR either way; 2 is the faster.
REDUCING_GAP = 2.0
# The same margin for JPEG's DCT scaling: 1 decodes at least the output size. A margin
# of 2 doubled the decode and resize time for no visible gain.
DRAFT_GAP = 1.0
RESAMPLE = Image.Resampling.LANCZOS
# Source rows reduced at a time for images with alpha (see reduce_in_strips).
STRIP_ROWS = 512

# EXIF orientation -> the transposition that shows the image upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class _Decoded:
    """What the renditions need to know of the source; its pixels travel separately, so
    the full decode can be let go as soon as the reduced copy exists."""

    stored_size: tuple[int, int]  # of the source, before any orientation or draft
    scale: tuple[float, float]  # decoded pixels per stored source pixel (x, y)
    orientation: int
    icc_profile: bytes | None
    plain_cmyk: bool  # a CMYK JPEG without Adobe's marker, so not inverted
    bands: png_bands.PngBands | None  # a PNG left undecoded: `_prepare` decodes it in bands


@dataclass(frozen=True)
class _Spec:
    """One output: a preset's box at one of its widths, in one of its formats."""

    preset: Preset
    placement: Placement  # in the stored pixels
    format: str
    in_set: bool


@dataclass(frozen=True)
class _Intermediate:
    """The whole picture, stored orientation, 8-bit, not yet sRGB."""

    image: Image.Image
    scale: tuple[float, float]  # pixels per stored source pixel (x, y)


def probe(
    data: bytes,
    *,
    max_pixels: int,
    max_frames: int = DEFAULT_MAX_FRAMES,
    time_budget: float | None = None,
) -> SourceInfo:
    """Format and displayed size of an image from its header, without decoding pixels."""
    with deadline(time_budget), decoding(data, max_pixels, max_frames) as image:
        orientation = exif_orientation(image, header_only=True)
        return _source_info(image, orientation)


def render(
    data: bytes,
    presets: Sequence[Preset],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    time_budget: float | None = None,
) -> RenderResult:
    """Decode ``data`` once and render every preset from it, in the presets' order.

    Past ``time_budget`` seconds (None: no limit) it gives up with ``ProcessingTimeout``.
    """
    with deadline(time_budget) as budget:
        return _render(data, presets, max_pixels, max_frames, budget)


def _render(
    data: bytes, presets: Sequence[Preset], max_pixels: int, max_frames: int, budget: Budget
) -> RenderResult:
    with decoding(data, max_pixels, max_frames) as image:
        png = png_bands.open_bands(data) if image.format == "PNG" else None
        orientation = _orientation(image, png)
        source = _source_info(image, orientation)
        displayed = (source.width, source.height)
        specs = _specs(presets, orientation, displayed)
        placements = [spec.placement for spec in specs]
        needed = max((max(placement.scale) for placement in placements), default=0.0)
        decoded = _load(image, orientation, needed, png)
        pixels: Image.Image = image
    del image  # from here on, only `pixels` holds the full decode
    budget.check()  # between stages, for when no alarm could be set (see budget.py)
    if not presets:
        return RenderResult(source, ())
    try:
        base = _prepare(pixels, decoded, needed)
        del pixels  # the largest thing in memory, no longer needed once reduced
        budget.check()
        outputs, smallest = _render_all(base, decoded, specs)
        hints = _placeholder(smallest, decoded, displayed)
    except (OSError, ValueError) as exc:
        # Decoding succeeded, so these are pixels Pillow cannot convert or encode.
        raise UnsupportedFormat(f"The image cannot be processed: {exc}") from exc
    return RenderResult(source, outputs, hints)


def _specs(presets: Sequence[Preset], orientation: int, displayed: tuple[int, int]) -> list[_Spec]:
    """Every output of ``presets``, preset by preset, width by width (smallest first),
    format by format. Widths that would exceed the source give the same output; it is
    made once, at the source's size."""
    specs = []
    for preset in presets:
        sizes: set[tuple[int, int]] = set()
        for width in preset.set_widths:
            placement = place(preset.fit, *preset.box_at(width), *displayed)
            if (placement.width, placement.height) in sizes:
                continue
            sizes.add((placement.width, placement.height))
            stored = to_stored(placement, orientation, displayed)
            specs += [
                _Spec(preset, stored, output_format, preset.is_set)
                for output_format in preset.set_formats
            ]
    return specs


def _source_info(image: ImageFile.ImageFile, orientation: int) -> SourceInfo:
    format_name = "JPEG" if image.format == "MPO" else str(image.format)
    width, height = image.size
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return SourceInfo(format_name, SOURCE_CONTENT_TYPES[format_name], width, height)


def _orientation(image: ImageFile.ImageFile, png: png_bands.PngBands | None) -> int:
    """The EXIF orientation. Pillow decodes a whole PNG to look for an eXIf chunk after the
    pixels; for one that may be decoded in bands, the chunks are read without the pixels."""
    return exif_orientation(image if png is None else png.metadata, header_only=False)


def _load(
    image: ImageFile.ImageFile,
    orientation: int,
    needed: float,
    png: png_bands.PngBands | None = None,
) -> _Decoded:
    """Decode the pixels, at no less than ``needed`` times the source size.

    A PNG that ``png_bands`` can decode (``png``) and that will be reduced is left
    undecoded: `_prepare` decodes it band by band, never holding the full image.
    """
    stored_size = image.size
    scale = draft(image, needed * DRAFT_GAP)
    bands = png if png is not None and _reduce_factor(scale, needed) >= 2 else None
    loaded = image if bands is None else bands.metadata  # the PNG's chunks, no pixels
    loaded.load()
    return _Decoded(
        stored_size=stored_size,
        scale=scale,
        orientation=orientation,
        icc_profile=loaded.info.get("icc_profile") or None,
        plain_cmyk=image.format in ("JPEG", "MPO")
        and image.mode == "CMYK"
        and "adobe" not in image.info,
        bands=bands,
    )


def _prepare(pixels: Image.Image, decoded: _Decoded, needed: float) -> _Intermediate:
    """The decoded pixels in 8 bits, shrunk to what the largest output needs plus a margin."""
    scale_x, scale_y = decoded.scale
    factor = _reduce_factor(decoded.scale, needed)
    if decoded.bands is not None:  # left undecoded by `_load`, for a factor of 2 or more
        image = reduce_bands(decoded.bands, factor)
    else:
        image = colour.to_8bit(pixels)
        if factor >= 2 and "A" in image.getbands():
            image = reduce_in_strips(image, factor)
        elif factor >= 2:
            image = image.reduce(factor)
    if factor >= 2:
        scale_x, scale_y = scale_x / factor, scale_y / factor
    image = colour.drop_opaque_alpha(image)
    image.info = {}  # outputs carry no metadata from the source
    return _Intermediate(image, (scale_x, scale_y))


def _reduce_factor(scale: tuple[float, float], needed: float) -> int:
    """The integer factor the decoded pixels are reduced by; below 2, they are not."""
    if needed <= 0:
        return 1  # no outputs
    return math.floor(min(scale) / (needed * REDUCING_GAP))


def reduce_bands(png: png_bands.PngBands, factor: int) -> Image.Image:
    """``reduce_in_strips(colour.to_8bit(<the full decode>), factor)``, from a PNG decoded
    band by band: its full image never exists, only one band of rows at a time.

    Bands are a multiple of ``factor`` rows, so they reduce to exactly the same pixels.
    """
    width, height = png.size
    bands = png.bands(png.band_rows(factor))
    strips = ((top, colour.to_8bit(band).reduce(factor)) for top, band in bands)
    _, first = next(strips)  # a PNG has at least one row
    reduced = Image.new(first.mode, (-(-width // factor), -(-height // factor)))
    reduced.paste(first, (0, 0))
    for top, strip in strips:
        reduced.paste(strip, (0, top // factor))
    return reduced


def reduce_in_strips(image: Image.Image, factor: int) -> Image.Image:
    """``image.reduce(factor)``, strip by strip, with the same pixels.

    Pillow premultiplies a whole image with alpha before reducing it, a second full-size
    copy (about 200 MiB at 50 megapixels); strips whose height is a multiple of the factor
    keep that copy strip-sized, and average exactly the same blocks.
    """
    width, height = image.size
    reduced = Image.new(image.mode, (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, STRIP_ROWS // factor)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).reduce(factor)
        reduced.paste(strip, (0, top // factor))
    return reduced


def _render_all(
    base: _Intermediate, decoded: _Decoded, specs: Sequence[_Spec]
) -> tuple[tuple[Rendition, ...], _Intermediate]:
    """The renditions in the specs' order, and the smallest whole-picture intermediate.

    Outputs of one placement (a set's formats) share its resize and colour conversion."""
    largest_first = sorted(
        range(len(specs)),
        key=lambda index: specs[index].placement.width * specs[index].placement.height,
        reverse=True,
    )
    intermediates = [base]
    renditions: dict[int, Rendition] = {}
    shown: tuple[Placement, Image.Image] | None = None
    for index in largest_first:
        placement = specs[index].placement
        if shown is None or shown[0] != placement:
            resized = _resize(_closest_larger(intermediates, placement), placement)
            if placement.covers_whole(*decoded.stored_size):
                intermediates.append(_Intermediate(resized, placement.scale))
            shown = placement, _upright_srgb(resized, decoded)
        renditions[index] = _finish(shown[1], specs[index])
    smallest = min(intermediates, key=lambda candidate: candidate.image.width)
    return tuple(renditions[index] for index in range(len(specs))), smallest


def _placeholder(
    smallest: _Intermediate, decoded: _Decoded, displayed: tuple[int, int]
) -> Placeholder:
    """Placeholders from the smallest whole picture already made: shrunk first, then made
    upright and sRGB as the outputs are, so they cost a tiny image's worth of work."""
    tiny = _upright_srgb(placeholder.tiny(smallest.image), decoded)
    return placeholder.placeholder(tiny, displayed)


def _closest_larger(intermediates: Sequence[_Intermediate], placement: Placement) -> _Intermediate:
    """The smallest intermediate at least REDUCING_GAP times the placement's size."""
    needed_x, needed_y = placement.scale
    roomy = [
        candidate
        for candidate in intermediates
        if candidate.scale[0] >= needed_x * REDUCING_GAP
        and candidate.scale[1] >= needed_y * REDUCING_GAP
    ]
    return min(roomy, key=lambda candidate: candidate.scale[0], default=intermediates[0])


def _resize(source: _Intermediate, placement: Placement) -> Image.Image:
    scale_x, scale_y = source.scale
    left, top, right, bottom = placement.box
    left, top, right, bottom = left * scale_x, top * scale_y, right * scale_x, bottom * scale_y
    size = (placement.width, placement.height)
    aligned = all(float(edge).is_integer() for edge in (left, top, right, bottom))
    if aligned and (right - left, bottom - top) == size:  # nothing to resample
        if (left, top, right, bottom) == (0, 0, *source.image.size):
            return source.image
        return source.image.crop((int(left), int(top), int(right), int(bottom)))
    return source.image.resize(size, RESAMPLE, box=(left, top, right, bottom))


def _upright_srgb(image: Image.Image, decoded: _Decoded) -> Image.Image:
    if decoded.orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[decoded.orientation])
    if decoded.plain_cmyk:
        image = colour.invert_cmyk(image)
    return colour.to_srgb(image, decoded.icc_profile)


def _finish(image: Image.Image, spec: _Spec) -> Rendition:
    """Flattened for JPEG, watermarked and encoded."""
    preset = spec.preset
    if spec.format == "JPEG":
        image = colour.flatten(image)
    if preset.watermark is not None:
        image = apply_watermark(image, preset.watermark)
    output = OUTPUT_FORMATS[spec.format]
    return Rendition(
        preset=preset.name,
        width=image.width,
        height=image.height,
        format=spec.format,
        content_type=output.content_type,
        extension=output.extension,
        data=encode(image, spec.format, preset.quality_of(spec.format)),
        in_set=spec.in_set,
    )
