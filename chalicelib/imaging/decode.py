"""Opening untrusted bytes: a format allow-list, a pixel limit, and decoder errors translated.

Only the accepted formats ever reach a Pillow decoder: the format is recognised from the
file's signature first, and ``Image.open`` is restricted to exactly that format, so EPS,
PSD, PDF and Pillow's other plugins can never be reached with uploaded data.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from PIL import (
    AvifImagePlugin,
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from chalicelib.errors import CorruptImage, ImageTooLarge, TooManyFrames, UnsupportedFormat
from chalicelib.imaging import frames, metadata

# Importing a plugin registers it; Image.open would otherwise import every plugin Pillow has.
_PLUGINS = (
    AvifImagePlugin,
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

# The longest side accepted (JPEG's own limit). Within the pixel cap, a 1 x 50,000,000
# image would otherwise be resized along its long side at full length: Pillow's Lanczos
# coefficients take ~48 bytes per source pixel of that side (2.4 GB) and seconds to compute.
MAX_SIDE = 65535
DEFAULT_MAX_FRAMES = 1000
# The cap on frames x pixels of the first frame, as a multiple of the pixel cap: with the
# defaults, 1000 frames of 1 megapixel, or 20 of 50.
TOTAL_PIXELS_FACTOR = 20
# libtiff refuses JPEG strips with more than 100 scans for the same reason (its
# LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER); libjpeg's own progressive script writes 10.
MAX_JPEG_SCANS = 100

# What Pillow's decoders raise on broken input (SyntaxError is its "not a valid file").
DECODER_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    ZeroDivisionError,
    RuntimeError,  # libheif through pillow-heif
)

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_ACCEPTED_DESCRIPTION = "JPEG, PNG, WebP, GIF, TIFF, BMP, AVIF or HEIC/HEIF"


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name an upload's signature claims, or None if it is none we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[4:8] == b"ftyp":
        return _isobmff_format(data)
    return None


def _isobmff_format(data: bytes) -> str | None:
    # The ftyp box lists a major brand, a minor version and then compatible brands.
    box_size = int.from_bytes(data[:4], "big")
    brands = {data[8:12]}
    brands.update(data[offset : offset + 4] for offset in range(16, min(box_size, 256), 4))
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


@contextmanager
def decoding(
    data: bytes, max_pixels: int, max_frames: int = DEFAULT_MAX_FRAMES
) -> Iterator[ImageFile.ImageFile]:
    """Open ``data`` lazily; decoder failures in the ``with`` body become SourceErrors.

    Before ``Image.open``, every EXIF or TIFF directory in the file is checked against its
    caps (see ``metadata.check``). Before the body runs, the header's size, the number of
    frames or pages and, for JPEG, the number of scans are checked against their caps (see
    ``_check_structure``).

    Keep the body to decoding work (header reads, ``draft``, ``load``): anything it raises
    that a decoder could raise is reported as a corrupt image.
    """
    format_name = sniff_format(data)
    if format_name is None:
        raise UnsupportedFormat(f"The file is not a {_ACCEPTED_DESCRIPTION} image.")
    if format_name == "HEIF":
        _register_heif_opener()
    try:
        with _pixel_limit(max_pixels):
            metadata.check(data, format_name)
            image = Image.open(io.BytesIO(data), formats=[format_name])
            _check_pixels(image.size, max_pixels)
            _check_structure(image, data, max_pixels, max_frames)
            yield image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(
            f"The image has more than {max_pixels} pixels.", detail=f"limit: {max_pixels} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptImage(f"The file looks like {format_name} but cannot be read.") from exc
    except DECODER_ERRORS as exc:
        raise CorruptImage(f"The {format_name} data is corrupt or truncated: {exc}") from exc


@contextmanager
def _pixel_limit(max_pixels: int) -> Iterator[None]:
    """Make Pillow's own decompression-bomb checks use ``max_pixels`` and always raise.

    Pillow checks sizes in places we cannot (animation frames, TIFF tiles, the WebP canvas
    before it is allocated), so its limit must match ours. Like ``warnings.catch_warnings``
    this swaps process-wide state for the duration, so it is not for concurrent threads.
    """
    previous = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} ({width * height} pixels); the limit is {max_pixels}.",
            detail=f"limit: {max_pixels} pixels",
        )
    if width < 1 or height < 1:
        raise CorruptImage(f"The image claims to be {width}x{height}.")
    if max(width, height) > MAX_SIDE:
        raise ImageTooLarge(
            f"The image is {width}x{height}; no side may be longer than {MAX_SIDE} pixels.",
            detail=f"longest side: {MAX_SIDE} pixels",
        )


def _check_structure(
    image: ImageFile.ImageFile, data: bytes, max_pixels: int, max_frames: int
) -> None:
    """Refuse files whose structure alone would cost too much, before decoding.

    Only the first frame of an animation or multi-page file is ever decoded, so frames
    cost nothing but their counting; the caps keep even that bounded and refuse files
    that are almost certainly abuse. A JPEG's scans are another matter: libjpeg decodes
    every scan of a progressive JPEG over the whole image, and a few bytes can repeat a
    scan thousands of times, each repeat costing ~20 ms at 50 megapixels inside one
    uninterruptible C call.
    """
    if image.format in ("JPEG", "MPO"):
        scans = frames.jpeg_scans(data, MAX_JPEG_SCANS)
        if scans > MAX_JPEG_SCANS:
            raise CorruptImage(
                f"The JPEG has more than {MAX_JPEG_SCANS} scans; encoders write a few dozen."
            )
    count = frames.count_frames(image, data, max_frames)
    if count > max_frames:
        raise TooManyFrames(
            f"The image has more than {max_frames} frames or pages.",
            detail=f"limit: {max_frames} frames",
        )
    width, height = image.size
    total_limit = max_pixels * TOTAL_PIXELS_FACTOR
    if count * width * height > total_limit:
        raise TooManyFrames(
            f"The image has {count} frames of {width}x{height}; "
            f"frames x pixels may be at most {total_limit}.",
            detail=f"pixels in all frames: {total_limit}",
        )


@cache
def _register_heif_opener() -> None:
    # Deferred: pillow-heif loads libheif and codecs, which only HEIC/HEIF uploads need.
    import pillow_heif

    pillow_heif.register_heif_opener()


def exif_orientation(image: Image.Image, *, header_only: bool) -> int:
    """The EXIF orientation (1-8) of ``image``; 1 when absent or unreadable.

    With ``header_only``, never decode pixels to find it (Pillow would, for a PNG whose eXIf
    chunk follows the image data). Read from ``image.info`` as ``getexif()`` would, but
    without its loader, which copies every tag of the directory.
    """
    if image.format == "TIFF":
        return 1  # Pillow's TIFF decoder applies it and reports the displayed size
    if image.format == "PNG" and "exif" not in image.info:
        if header_only:
            return 1
        # Pillow decodes the pixels to look for an eXIf chunk after them; a failure there
        # is the image's, not a broken EXIF block, and must not be swallowed below (the
        # half-decoded pixels would then render as if nothing happened).
        image.load()
    try:
        value = metadata.orientation(image.info)
    except metadata.UnreadableExif:
        return 1  # a broken EXIF block should not cost the picture
    return value if value is not None and 1 <= value <= 8 else 1


def draft(image: ImageFile.ImageFile, scale: float) -> tuple[float, float]:
    """Let decoders that can decode smaller do so, keeping at least ``scale`` of the source.

    JPEG scales in the DCT domain (1/2, 1/4, 1/8); pillow-heif picks an embedded thumbnail.
    Returns the decoded size relative to the source, horizontally and vertically.
    """
    if scale >= 1 or image.format not in ("JPEG", "MPO", "HEIF"):
        return 1.0, 1.0
    width, height = image.size
    wanted = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
    configured = image.draft(image.mode, wanted)
    if configured is None:
        return 1.0, 1.0
    _, (left, top, right, bottom) = configured
    return (right - left) / width, (bottom - top) / height
