"""Counting what a file holds before any pixel is decoded: frames, pages and JPEG scans.

Every count stops one past its limit and walks only the file's structure, never its pixel
data, so counting is bounded by the file's size and the limit and cannot itself be the
denial of service it guards against. Pillow's own ``n_frames`` is used only where it comes
from a header (APNG's acTL, WebP, AVIF, HEIF, MPO); for GIF and TIFF it walks the whole
file, frame by frame, at a Python-level cost per frame, so those two are walked here.
"""

from __future__ import annotations

import re
import struct

from PIL import Image

from chalicelib.imaging import tiffheader

_GIF_IMAGE, _GIF_EXTENSION, _GIF_TRAILER = 0x2C, 0x21, 0x3B
_GIF_HEADER_BYTES = 13  # signature, version and logical screen descriptor
_GIF_IMAGE_DESCRIPTOR_BYTES = 10

# JPEG markers that stand alone, without a length (TEM, RSTn, SOI, EOI).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8, 0xD9})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# The last FF of a run followed by a marker code. Starting with a single literal lets the
# regex engine skip to each FF at memchr speed (15x faster than ``\xff+`` on photos).
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def count_frames(image: Image.Image, data: bytes, limit: int) -> int:
    """Frames, pages or pictures in ``data`` (opened as ``image``), counted up to ``limit + 1``."""
    if image.format == "GIF":
        return gif_frames(data, limit)
    if image.format == "TIFF":
        return tiff_pages(data, limit)
    return int(getattr(image, "n_frames", 1))


def gif_frames(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF, up to ``limit + 1``; a truncated file counts what it has."""
    if len(data) < _GIF_HEADER_BYTES:
        return 0
    position = _GIF_HEADER_BYTES + _colour_table_bytes(data[10])
    frames = 0
    while position < len(data) and frames <= limit:
        block = data[position]
        if block == _GIF_IMAGE:
            frames += 1
            descriptor_end = position + _GIF_IMAGE_DESCRIPTOR_BYTES
            if descriptor_end >= len(data):
                break
            # The local colour table, then the LZW minimum code size byte, then the data.
            position = descriptor_end + _colour_table_bytes(data[descriptor_end - 1]) + 1
        elif block == _GIF_EXTENSION:
            position += 2  # introducer and label
        else:  # the trailer, or bytes no decoder reads past
            break
        position = _skip_sub_blocks(data, position)
    return frames


def _colour_table_bytes(packed_fields: int) -> int:
    if not packed_fields & 0x80:
        return 0
    return 3 << ((packed_fields & 0x07) + 1)


def _skip_sub_blocks(data: bytes, position: int) -> int:
    """The position after a chain of sub-blocks (each a length byte then that many bytes)."""
    end = len(data)
    while position < end:
        size = data[position]
        position += size + 1
        if size == 0:
            break
    return position


def tiff_pages(data: bytes, limit: int) -> int:
    """Image file directories on the main chain of a TIFF or BigTIFF, up to ``limit + 1``.

    The header is read as Pillow reads it (``tiffheader``). A chain that loops back on
    itself ends where it first repeats, as Pillow's does.
    """
    layout = tiffheader.layout(data)
    if layout is None:
        return 0
    count_bytes = struct.calcsize(layout.count_format)
    offset = _unpack(layout.offset_format, data, layout.first_offset_at)
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) <= limit:
        entries = _unpack(layout.count_format, data, offset)
        if entries is None:
            break
        seen.add(offset)
        next_at = offset + count_bytes + entries * layout.entry_bytes
        offset = _unpack(layout.offset_format, data, next_at)
    return len(seen)


def _unpack(layout: str, data: bytes, position: int) -> int | None:
    if position + struct.calcsize(layout) > len(data):
        return None
    value: int = struct.unpack_from(layout, data, position)[0]
    return value


def jpeg_scans(data: bytes, limit: int) -> int:
    """Start-of-scan markers in a JPEG (progressive files have several), up to ``limit + 1``.

    Walks marker segments by their lengths, and entropy-coded data by searching for the
    next marker, which is C speed (``bytes.find``) however large the scan.
    """
    position = 2  # after SOI
    scans = 0
    end = len(data)
    while position + 1 < end and scans <= limit:
        if data[position] != 0xFF or data[position + 1] in (0x00, 0xFF):
            # Garbage or fill bytes where a marker belongs: libjpeg warns and skips to the
            # next marker, and so must the count, or junk would hide the scans after it.
            position = next_marker(data, position)
            continue
        marker = data[position + 1]
        if marker == _JPEG_EOI:
            break
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        if position + 4 > end:
            break
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == _JPEG_SOS:
            scans += 1
            position = next_marker(data, position)
    return scans


def next_marker(data: bytes, position: int) -> int:
    """The position of the next marker at or after ``position``, skipping what entropy-coded
    data may hold: stuffed bytes (FF 00), restart markers (FF D0-D7) and fill bytes (FF FF)."""
    found = _MARKER.search(data, position)
    return len(data) if found is None else found.end() - 2
