"""Bounding EXIF and TIFF directories before Pillow reads them, and reading orientation.

Pillow's ``ImageFileDirectory_v2.load`` copies every tag's out-of-line data eagerly, one
copy per entry, and lets entries overlap: one image file directory (IFD) of a couple of
thousand tags all pointing at the same megabyte makes gigabytes. It runs on untrusted
bytes at ``Image.open`` (a TIFF's first IFD, a JPEG's Exif and MPF segments, an AVIF's
Exif item) and in ``getexif`` (PNG, WebP, HEIF). ``check`` walks every such directory a
file carries first, without copying anything, and refuses what would cost too much:

- more entries in one IFD, IFDs or entries in the file than ``MAX_ENTRIES_PER_IFD``,
  ``MAX_IFDS`` or ``MAX_ENTRIES``;
- out-of-line tag data (count x type size, clamped to the block as Pillow's read is) of
  one member of the IFD chain (an IFD with its sub-IFDs: a TIFF page, an EXIF's IFD0 or
  IFD1; Pillow loads one at a time) summing past the block's size by more than
  ``OVERLAP_ALLOWANCE``: data that does not overlap can never sum past its block, so only
  overlapping entries get there;
- more numeric values out of line in the file than ``MAX_NUMERIC_VALUES``, or rationals in
  one member of the chain than ``MAX_RATIONAL_VALUES``: Pillow turns each into a Python
  object when the tag is read (~36 bytes an integer, ~210 a rational, ~360 where its AVIF
  plugin writes the EXIF again).

The walk covers IFD0, the sub-IFDs (Exif, GPS, Interop, TIFF SubIFDs) and the chain of
next IFDs (a thumbnail's IFD1, later TIFF pages), each structure's header read by Pillow's
rule (``tiffheader``); it is loop-safe, and its cost is bounded by the caps. A TIFF file
whose first IFD lies outside it or is cut short is corrupt; elsewhere a malformed block is
left to Pillow, which reads what it can.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import CorruptImage, ImageTooLarge
from chalicelib.imaging import isobmff, tiffheader
from chalicelib.imaging.tiffheader import Layout

# Real files hold a few dozen entries per IFD, well under 200 (a camera's Exif IFD ~70);
# the TIFF, Exif and DNG specifications together name fewer than 400 tags.
MAX_ENTRIES_PER_IFD = 1024
# A TIFF's pages (at most MAX_FRAMES, 1,000 by default, are accepted) with an Exif and
# a GPS IFD each, and room to spare.
MAX_IFDS = 4096
# What a file may hold in all: 1,000 pages of 60 entries. Walking this many costs ~20 ms.
MAX_ENTRIES = 65536
# Overlap tolerated beyond the block's size: writers that share a value between two tags
# or botch a maker note's offsets overlap by bytes, not by their block many times over.
# 64 KiB is the size of a JPEG's whole Exif segment.
OVERLAP_ALLOWANCE = 64 << 10
# Strip or tile offsets and byte counts of a 65,535-row image stored a row per strip,
# planar with 4 samples: 2 x 4 x 65,535 values. Past that, ~36 bytes a value once Pillow
# reads the tag. Rationals (RATIONAL, SRATIONAL) are not counted here.
MAX_NUMERIC_VALUES = 1 << 19
# Rationals in one member of an IFD chain (see _check_member): ~210 bytes each once Pillow
# reads the tag (an IFDRational and its Fraction), ~360 where Pillow's AVIF plugin writes
# the EXIF again (Exif.tobytes). Real files hold tens: resolutions, exposure, GPS
# coordinates, a DNG's colour matrices a few dozen more.
MAX_RATIONAL_VALUES = 4096
# EXIF blocks in a file (JPEG segments, PNG or WebP chunks, HEIF items): one is the rule,
# two are seen (an editor's beside the camera's); each costs a walk.
MAX_BLOCKS = 64
# Pillow inflates a PNG text chunk to at most this much, and refuses a file whose text
# chunks hold more in all than MAX_TEXT_MEMORY (PngImagePlugin's limits).
MAX_TEXT_CHUNK = 1 << 20
MAX_TEXT_MEMORY = 64 * MAX_TEXT_CHUNK

_EXIF_PREFIX = b"Exif\x00\x00"
# TIFF field type -> bytes per value, for the types Pillow loads (others it skips).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_TYPE_SIZES |= {13: 4, 16: 8}
_BYTE_TYPES = frozenset({1, 2, 7})  # BYTE, ASCII, UNDEFINED: read as one bytes or str
_INTEGER_TYPES = frozenset({3, 4, 6, 8, 9, 13, 16})
_RATIONAL_TYPES = frozenset({5, 10})
# Exif, GPS, Interop and SubIFDs: tags whose values are offsets of further IFDs.
_SUB_IFD_TAGS = frozenset({0x8769, 0x8825, 0xA005, 0x014A})
_ORIENTATION = 0x0112
_RAW_PROFILE_KEY = b"Raw profile type exif"
_XMP_ORIENTATION = r'tiff:Orientation(="|>)([0-9])'


class UnreadableExif(ValueError):
    """An EXIF block without a TIFF header: Pillow's ``getexif`` raises on it."""


@dataclass
class _Tally:
    """What the directories of one file have cost so far."""

    blocks: int = 0
    ifds: int = 0
    entries: int = 0
    numeric_values: int = 0
    text_bytes: int = 0


@dataclass
class _Member:
    """What one member of an IFD chain (an IFD with its sub-IFDs) has cost so far."""

    data_bytes: int = 0
    rational_values: int = 0


# --- the check ---------------------------------------------------------------------------


def check(data: bytes, format_name: str) -> None:
    """Refuse ``data`` (sniffed as ``format_name``) if a directory in it is past the caps.

    Raises ImageTooLarge past a cap, CorruptImage for a TIFF whose first IFD is unreadable.
    """
    tally = _Tally()
    if format_name == "TIFF":
        _check_block(memoryview(data), tally, strict=True)
        return
    for block in _embedded_blocks(data, format_name, tally):
        tally.blocks += 1
        if tally.blocks > MAX_BLOCKS:
            raise ImageTooLarge(
                f"The image has more than {MAX_BLOCKS} EXIF blocks.",
                detail=f"exif blocks: {MAX_BLOCKS}",
            )
        _check_block(_strip_exif_prefix(block), tally, strict=False)


def _embedded_blocks(data: bytes, format_name: str, tally: _Tally) -> Iterator[bytes | memoryview]:
    if format_name == "JPEG":
        return _jpeg_blocks(data)
    if format_name == "PNG":
        return _png_blocks(data, tally)
    if format_name == "WEBP":
        return _webp_blocks(data)
    if format_name in ("AVIF", "HEIF"):
        return iter(_isobmff_blocks(data, format_name))
    return iter(())


def _strip_exif_prefix(block: bytes | memoryview) -> memoryview:
    view = memoryview(block)
    while bytes(view[:6]) == _EXIF_PREFIX:  # as Pillow's Exif.load does, however many
        view = view[6:]
    return view


def _check_block(view: memoryview, tally: _Tally, *, strict: bool) -> None:
    layout = tiffheader.layout(view)
    if layout is None:
        if strict:
            raise CorruptImage("The TIFF file has no valid header.")
        return  # Pillow refuses it as well, and reads no directory from it
    first = struct.unpack_from(layout.offset_format, view, layout.first_offset_at)[0]
    if strict and not first:
        raise CorruptImage("The TIFF file has no first directory.")
    seen: set[int] = set()
    head = first
    while head and head not in seen:
        head = _check_member(view, layout, head, seen, tally, strict=strict and head == first)


def _check_member(
    view: memoryview, layout: Layout, head: int, seen: set[int], tally: _Tally, *, strict: bool
) -> int:
    """Walk one member of the IFD chain, the IFD at ``head`` and its sub-IFDs, skipping IFDs
    in ``seen`` (each is walked once per block); the next member's offset, 0 if none.

    Pillow loads one member at a time (a TIFF page, an EXIF's IFD0 or its thumbnail's IFD1,
    each with its sub-IFDs), so that is what the overlap and rational caps bound.
    """
    member = _Member()
    pending = [head]
    following = 0
    while pending:
        offset = pending.pop()
        if offset in seen:
            continue
        seen.add(offset)
        tally.ifds += 1
        if tally.ifds > MAX_IFDS:
            raise _too_many_directories()
        entries = _entries(view, layout, offset, strict=strict and offset == head)
        if entries is None:
            continue
        _check_entries(view, layout, entries, tally, member, pending)
        _check_totals(tally, member, len(view))
        if offset == head:
            next_at = offset + struct.calcsize(layout.count_format) + len(entries)
            following = _unpack(layout.offset_format, view, next_at) or 0
    return following


def _too_many_directories() -> ImageTooLarge:
    return ImageTooLarge(
        f"The image's metadata has more than {MAX_IFDS} directories.",
        detail=f"metadata directories: {MAX_IFDS}",
    )


def _entries(view: memoryview, layout: Layout, offset: int, *, strict: bool) -> memoryview | None:
    """The entries of the IFD at ``offset``, as many as the block holds (Pillow reads those).

    With ``strict`` (a TIFF file's first IFD), an IFD outside the block or cut short is corrupt.
    """
    count = _unpack(layout.count_format, view, offset)
    if count is None:
        if strict:
            raise CorruptImage("The TIFF file's first directory lies outside the file.")
        return None
    start = offset + struct.calcsize(layout.count_format)
    present = min(count, (len(view) - start) // layout.entry_bytes)
    if strict and present < count:
        raise CorruptImage("The TIFF file's first directory is cut short.")
    if present > MAX_ENTRIES_PER_IFD:
        raise ImageTooLarge(
            f"A directory of the image's metadata has more than {MAX_ENTRIES_PER_IFD} entries.",
            detail=f"metadata entries per directory: {MAX_ENTRIES_PER_IFD}",
        )
    return view[start : start + present * layout.entry_bytes]


def _check_entries(
    view: memoryview,
    layout: Layout,
    entries: memoryview,
    tally: _Tally,
    member: _Member,
    pending: list[int],
) -> None:
    """Adds up the out-of-line bytes of ``entries`` Pillow would copy and their numeric
    values, counts the entries and queues the sub-IFDs they point at."""
    tally.entries += len(entries) // layout.entry_bytes
    if tally.entries > MAX_ENTRIES:
        raise ImageTooLarge(
            f"The image's metadata has more than {MAX_ENTRIES} entries.",
            detail=f"metadata entries: {MAX_ENTRIES}",
        )
    block_size = len(view)
    for tag, kind, count, value in struct.iter_unpack(layout.entry_format, entries):
        unit = _TYPE_SIZES.get(kind)
        if unit is None or not count:
            continue
        size = count * unit
        if tag in _SUB_IFD_TAGS:
            pending.extend(_sub_ifds(view, layout, kind, count, value))
            # Each queued offset is a directory to walk (repeats are skipped only then):
            # past the cap, refuse now rather than queue millions first.
            if tally.ifds + len(pending) > MAX_IFDS:
                raise _too_many_directories()
        if size <= layout.inline_bytes:
            continue
        inside = min(size, block_size - value) if value < block_size else 0
        member.data_bytes += inside
        if inside == size and kind in _RATIONAL_TYPES:
            member.rational_values += count
        elif inside == size and kind not in _BYTE_TYPES:
            tally.numeric_values += count


def _sub_ifds(view: memoryview, layout: Layout, kind: int, count: int, value: int) -> list[int]:
    """The offsets a sub-IFD entry names: inline, or an array of at most MAX_IFDS."""
    if kind not in (4, 13, 16):
        return []
    offset_format = layout.endian + ("Q" if kind == 16 else "I")
    unit = struct.calcsize(offset_format)
    if count * unit <= layout.inline_bytes:
        inline = layout.inline(value)[: count * unit]
        return [offset for (offset,) in struct.iter_unpack(offset_format, inline)]
    if value >= len(view):
        return []
    wanted = min(count, MAX_IFDS + 1, (len(view) - value) // unit)
    array = view[value : value + wanted * unit]
    return [offset for (offset,) in struct.iter_unpack(offset_format, array)]


def _check_totals(tally: _Tally, member: _Member, block_size: int) -> None:
    if member.data_bytes > block_size + OVERLAP_ALLOWANCE:
        raise ImageTooLarge(
            f"The image's metadata entries overlap: {member.data_bytes} bytes of tag data"
            f" in a block of {block_size}.",
            detail="metadata: overlapping tags",
        )
    if tally.numeric_values > MAX_NUMERIC_VALUES:
        raise ImageTooLarge(
            f"The image's metadata holds more than {MAX_NUMERIC_VALUES} numeric values.",
            detail=f"metadata numeric values: {MAX_NUMERIC_VALUES}",
        )
    if member.rational_values > MAX_RATIONAL_VALUES:
        raise ImageTooLarge(
            f"The image's metadata holds more than {MAX_RATIONAL_VALUES} rational values.",
            detail=f"metadata rational values: {MAX_RATIONAL_VALUES}",
        )


def _unpack(layout: str, view: memoryview, position: int) -> int | None:
    if position + struct.calcsize(layout) > len(view):
        return None
    value: int = struct.unpack_from(layout, view, position)[0]
    return value


# --- where each container keeps its directories ----------------------------------------------

_JPEG_SOS = 0xDA
_JPEG_APP1, _JPEG_APP2 = 0xE1, 0xE2
# Markers Pillow's JpegImagePlugin knows without a handler: nothing follows them to skip.
# EOI is one, so Pillow reads on past it, as it does past any of these.
_JPEG_BARE = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})


def _jpeg_blocks(data: bytes) -> Iterator[bytes | memoryview]:
    """The EXIF block and the MPF segments Pillow's ``JpegImageFile._open`` collects.

    Markers are walked as Pillow walks them, up to the first scan (SOS), the only place it
    stops without failing: byte by byte over junk, past fill bytes, stuffed zeros and the
    markers without a segment, EOI included. Every APP1 Exif segment is joined into one
    block as Pillow joins them (the first whole, the others without their "Exif\\0\\0"),
    so an IFD in one segment may point into the next ones. Where Pillow would fail (a marker
    it does not know, the end of the file), what was collected is still checked.
    """
    view = memoryview(data)
    exif: list[memoryview] = []
    position, end = 2, len(data)
    while position + 2 <= end:
        if data[position] != 0xFF:
            position = data.find(b"\xff", position + 1)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte: the next FF starts the marker
            position += 1
            continue
        if marker == 0x00 or marker in _JPEG_BARE:
            position += 2
            continue
        if marker < 0xC0 or position + 4 > end:
            break  # Pillow finds no marker there, or runs out of file: it opens nothing
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        payload = view[position + 4 : position + 2 + max(length, 2)]
        if marker == _JPEG_SOS:
            break
        if marker == _JPEG_APP1 and bytes(payload[:6]) == _EXIF_PREFIX:
            exif.append(payload[6:] if exif else payload)
        elif marker == _JPEG_APP2 and bytes(payload[:4]) == b"MPF\x00":
            yield payload[4:]
        position += 2 + max(length, 2)
    if len(exif) == 1:
        yield exif[0]
    elif exif:
        yield b"".join(exif)  # at most the file's size


# Chunks walked one by one in a PNG or WebP (~0.4 us each in Python): a 25 MiB PNG in
# libpng's 8 KiB chunks has 3,200. Past that (only a hostile file has so many), the rest
# is searched at C speed for the chunks that can hold EXIF; a match inside other data is
# looked at too, which can only make the check stricter, and past MAX_BLOCKS matches the
# file is refused.
MAX_WALKED_CHUNKS = 4096
_TIFF_AHEAD = rb"(?:Exif\x00\x00)*(?:" + b"|".join(map(re.escape, tiffheader.PREFIXES)) + rb")"
_PNG_EXIF_CHUNK = re.compile(rb"eXIf(?=" + _TIFF_AHEAD + rb")")
_PNG_EXIF_TEXT = re.compile(rb"tEXt(?=exif\x00)")
_PNG_RAW_PROFILE = re.compile(re.escape(_RAW_PROFILE_KEY + b"\x00"))
_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_PNG_EXIF_CHUNKS = _PNG_TEXT_CHUNKS | {b"eXIf"}
_WEBP_EXIF_CHUNK = re.compile(rb"EXIF(?=....(?:" + _TIFF_AHEAD + rb"))", re.DOTALL)


def _png_blocks(data: bytes, tally: _Tally) -> Iterator[bytes | memoryview]:
    """eXIf chunks, tEXt chunks keyed ``exif`` (Pillow takes those as EXIF too) and raw EXIF
    profiles in text chunks, wherever they are in the file."""
    position, end = 8, len(data)
    for _ in range(MAX_WALKED_CHUNKS):
        if position + 8 > end:
            return
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind in _PNG_EXIF_CHUNKS:
            yield from _png_chunk_blocks(data, position + 4, tally)
        elif kind == b"IEND":
            return
        position += 12 + length
    for found in _searched(data, position, _PNG_EXIF_CHUNK, _PNG_EXIF_TEXT):
        yield from _png_chunk_blocks(data, found, tally)
    for found in _searched(data, position, _PNG_RAW_PROFILE):
        yield from _png_chunk_blocks(data, found - 4, tally)


def _png_chunk_blocks(data: bytes, kind_at: int, tally: _Tally) -> Iterator[bytes | memoryview]:
    """The EXIF in the chunk whose name is at ``kind_at``, if it holds any."""
    kind = data[kind_at : kind_at + 4]
    start = kind_at + 4
    end = min(start + int.from_bytes(data[kind_at - 4 : kind_at], "big"), len(data))
    if kind == b"eXIf":
        yield memoryview(data)[start:end]
    elif kind not in _PNG_TEXT_CHUNKS:
        return
    elif kind == b"tEXt" and data.startswith(b"exif\x00", start):
        yield memoryview(data)[start + 5 : end]
    elif data.startswith(_RAW_PROFILE_KEY + b"\x00", start):
        raw = _raw_profile(data, kind, start + len(_RAW_PROFILE_KEY) + 1, end, tally)
        if raw is not None:
            yield raw


def _searched(data: bytes, position: int, *patterns: re.Pattern[bytes]) -> Iterator[int]:
    """Where ``patterns`` match from ``position`` on; past MAX_BLOCKS matches, ImageTooLarge."""
    found = 0
    for pattern in patterns:
        for match in pattern.finditer(data, position):
            found += 1
            if found > MAX_BLOCKS:
                raise ImageTooLarge(
                    f"The image has more than {MAX_BLOCKS} EXIF blocks.",
                    detail=f"exif blocks: {MAX_BLOCKS}",
                )
            yield match.start()


def _raw_profile(data: bytes, kind: bytes, start: int, end: int, tally: _Tally) -> bytes | None:
    """The EXIF of a raw profile whose text chunk continues (after the key) at ``start``.

    Pillow refuses a file whose text chunks hold more than MAX_TEXT_MEMORY in all, before
    any EXIF is read from them; past that, none is looked at here either.
    """
    located = _text_start(data, kind, start, end)
    if located is None:
        return None
    text_start, compressed = located
    if compressed:
        text = _inflate_text(data, text_start, end)
    elif tally.text_bytes + end - text_start > MAX_TEXT_MEMORY:
        return None
    else:
        text = data[text_start:end]
    tally.text_bytes += len(text)
    if tally.text_bytes > MAX_TEXT_MEMORY:
        return None
    return raw_profile_exif(text)


def _text_start(data: bytes, kind: bytes, start: int, end: int) -> tuple[int, bool] | None:
    """Where the text of a chunk starts and whether it is compressed; None where Pillow
    keeps no text (an unknown compression method)."""
    if kind == b"tEXt":
        return start, False
    if kind == b"zTXt":  # the compression method, then the text
        return (start + 1, True) if data[start : start + 1] == b"\x00" else None
    # iTXt: compression flag and method, language and translated key, then the text.
    if end - start < 2:
        return None
    language_end = data.find(b"\x00", start + 2, end)
    key_end = data.find(b"\x00", language_end + 1, end) if language_end >= 0 else -1
    if key_end < 0:
        return None
    flag, method = data[start : start + 2]
    if not flag:
        return key_end + 1, False
    return (key_end + 1, True) if method == 0 else None


def _inflate_text(data: bytes, start: int, end: int) -> bytes:
    """At most MAX_TEXT_CHUNK inflated bytes; nothing if the chunk inflates further (Pillow
    refuses such a file) or is broken (Pillow ignores its text)."""
    stream = zlib.decompressobj()
    try:
        text = stream.decompress(memoryview(data)[start:end], MAX_TEXT_CHUNK)
    except zlib.error:
        return b""
    return b"" if stream.unconsumed_tail else text


def raw_profile_exif(text: bytes | str) -> bytes | None:
    """The EXIF bytes of ImageMagick's "Raw profile type exif" text, decoded as Pillow's
    ``getexif`` does (hex digits after three lines of header); None if not hexadecimal."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    try:
        return bytes.fromhex("".join(text.split("\n")[3:]))
    except ValueError:
        return None


def _webp_blocks(data: bytes) -> Iterator[memoryview]:
    """Every EXIF chunk of a WebP (Pillow gets the first from libwebp's demuxer)."""
    view = memoryview(data)
    position, end = 12, len(data)
    for _ in range(MAX_WALKED_CHUNKS):
        if position + 8 > end:
            return
        length = int.from_bytes(data[position + 4 : position + 8], "little")
        if data[position : position + 4] == b"EXIF":
            yield view[position + 8 : position + 8 + length]
        position += 8 + length + (length & 1)
    for found in _searched(data, position, _WEBP_EXIF_CHUNK):
        length = int.from_bytes(data[found + 4 : found + 8], "little")
        yield view[found + 8 : found + 8 + length]


def _isobmff_blocks(data: bytes, format_name: str) -> list[bytes | memoryview]:
    """The Exif items of a HEIF or AVIF file, once its boxes are within libheif's limits."""
    isobmff.check_structure(data)
    return isobmff.exif_payloads(data, format_name)


# --- orientation ------------------------------------------------------------------------------


def orientation(info: Mapping[Any, object]) -> int | None:
    """The orientation tag of the EXIF Pillow keeps in an image's ``info``, else its XMP's.

    What ``Image.getexif()`` would answer for tag 0x0112, without loading any other tag:
    from ``info["exif"]``, else ImageMagick's raw profile in a PNG's text, else the
    ``tiff:Orientation`` of the XMP packet. None when there is none; UnreadableExif where
    ``getexif`` would raise.
    """
    exif = info.get("exif")
    if exif is None and _RAW_PROFILE_KEY.decode() in info:
        raw = info[_RAW_PROFILE_KEY.decode()]
        exif = raw_profile_exif(raw) if isinstance(raw, str) else None
        if exif is None:
            raise UnreadableExif("The raw EXIF profile is not hexadecimal.")
    if exif is not None:
        if not isinstance(exif, bytes):
            raise UnreadableExif("The EXIF is not bytes.")
        value = _ifd0_orientation(_strip_exif_prefix(exif))
        if value is not None:
            return value
    return _xmp_orientation(info)


def _ifd0_orientation(view: memoryview) -> int | None:
    if not view:
        return None
    layout = tiffheader.layout(view)
    if layout is None or layout.big:  # Pillow's Exif reads 8 bytes of header, too few for BigTIFF
        raise UnreadableExif("The EXIF has no TIFF header.")
    first = struct.unpack_from(layout.offset_format, view, layout.first_offset_at)[0]
    count = _unpack(layout.count_format, view, first)
    if count is None:
        return None
    start = first + struct.calcsize(layout.count_format)
    present = min(count, (len(view) - start) // layout.entry_bytes)
    entries = view[start : start + present * layout.entry_bytes]
    # As Pillow 13 loads an IFD: the first entry of a tag it reads wins (later ones are
    # skipped unread); an entry of an unknown type, an empty one, or one whose data is not
    # all there is skipped; and once the out-of-line data of the entries read so far passes
    # the block's size, every further out-of-line entry is skipped.
    read_tags: set[int] = set()
    out_of_line = 0
    for tag, kind, number, value in struct.iter_unpack(layout.entry_format, entries):
        if tag in read_tags or kind not in _TYPE_SIZES:
            continue
        size = number * _TYPE_SIZES[kind]
        if size > layout.inline_bytes:
            out_of_line += size
            if out_of_line > len(view) or value + size > len(view):
                continue
        if not size:
            continue
        if tag == _ORIENTATION:
            read = _first_value(view, layout, kind, size, value)
            return read if isinstance(read, int) else -1
        read_tags.add(tag)
    return None


def _first_value(view: memoryview, layout: Layout, kind: int, size: int, value: int) -> int | None:
    """The first value of an entry whose data is all there, as Pillow loads it: an int for
    the integer types, None (never an orientation) for the rest."""
    if kind not in _INTEGER_TYPES:
        return None
    letter = {3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q"}[kind]
    fmt = layout.endian + letter
    source, at = (view, value) if size > layout.inline_bytes else (layout.inline(value), 0)
    first: int = struct.unpack_from(fmt, source, at)[0]
    return first


def _xmp_orientation(info: Mapping[Any, object]) -> int | None:
    xmp = info.get("XML:com.adobe.xmp")
    if not xmp:
        xmp = info.get("xmp")
    if isinstance(xmp, str):
        match_str = re.search(_XMP_ORIENTATION, xmp)
        return int(match_str[2]) if match_str else None
    if isinstance(xmp, bytes):
        match_bytes = re.search(_XMP_ORIENTATION.encode(), xmp)
        return int(match_bytes[2]) if match_bytes else None
    return None
