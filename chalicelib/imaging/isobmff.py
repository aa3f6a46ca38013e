"""Just enough of the ISO base media file format (HEIF, AVIF) to vet an upload before libheif.

Two questions are answered from the box structure alone, without decoding anything:

- ``exif_payloads``: where the file's Exif items are, so their TIFF directories can be
  bounded before Pillow parses them eagerly (``chalicelib.imaging.metadata``);
- ``check_structure``: whether libheif would refuse the file for one of its own security
  limits (``heif_security_limits`` in libheif's ``security_limits.cc``, version 1.23 as
  bundled by pillow-heif). libheif reports those as decoder errors, which would end the
  job ``corrupt_image``; they are refused here as ``image_too_large`` instead.

Only the boxes libheif parses eagerly are walked (ISO/IEC 14496-12 and 23008-12): the
top level, ``meta`` and the containers inside it, ``iinf``/``infe``, ``iloc``, ``idat``,
``ipma``, ``iref``, ``ispe`` and entity groups; a ``moov`` (image sequences) is left to
libheif. Every loop is bounded by a box or entry cap and works on whole records with
``struct``, never byte by byte: a 25 MiB file costs a few dozen box headers.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from chalicelib.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from chalicelib.imaging import tiffheader

# libheif's default security limits (libheif/security_limits.cc) and constants
# (libheif/security_limits.h). A child past ``MAX_CHILDREN_PER_BOX`` is only refused once
# one more is read, so a container may hold one child more than the figure.
MAX_IMAGE_PIXELS = 32768 * 32768
MAX_IMAGE_SIDE = 2**31 - 1
MAX_ITEMS = 1000
MAX_ILOC_EXTENTS_PER_ITEM = 32
MAX_SIZE_ENTITY_GROUP = 64
MAX_CHILDREN_PER_BOX = 100
MAX_NUMBER_OF_FILE_BRANDS = 1000
MAX_BOX_NESTING_LEVEL = 20
MAX_LARGE_BOX_SIZE = 0x0FFFFFFFFFFFFFFF

# Our own caps, far above any camera's file (an iPhone HEIC with a 48-tile grid has about
# 150 boxes) yet low enough that a file of tiny boxes costs milliseconds to walk.
MAX_TOP_LEVEL_BOXES = 1000
MAX_BOXES = 5000

# Containers libheif reads every child of, each child counted against
# MAX_CHILDREN_PER_BOX, and the bytes of their own header (FullBox: version and flags).
_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"grpl": 0, b"dinf": 0}
_PARSED_TOP_LEVEL = frozenset({b"meta", b"moov"})
_ENTITY_GROUPS = frozenset({b"altr", b"ster", b"pymd"})
_DERIVED_IMAGES = frozenset({b"grid", b"iovl"})
_EXIF_PREFIX = b"Exif\x00\x00"


class _Box(NamedTuple):
    kind: bytes
    start: int  # the first byte after the box header
    end: int  # one past the box's last byte


class _Item(NamedTuple):
    """An iloc entry, its extents kept as read: most items' are never needed."""

    construction_method: int
    base_offset: int
    fields: tuple[int, ...]  # each extent's index, offset and length, those with a size
    width: int  # fields per extent
    offset_at: int | None  # where offset and length sit among an extent's fields
    length_at: int | None

    def extents(self) -> Iterator[tuple[int, int]]:
        """Each extent's offset (base included) and length; a field without a size is 0."""
        if self.length_at is None:
            return  # every extent is empty
        for at in range(0, len(self.fields), self.width):
            offset = 0 if self.offset_at is None else self.fields[at + self.offset_at]
            length = self.fields[at + self.length_at]
            yield self.base_offset + offset, length


@dataclass
class _Meta:
    """What one ``meta`` box says about its items, and the first limit it breaks."""

    item_types: dict[int, bytes] = field(default_factory=dict)
    locations: dict[int, _Item] = field(default_factory=dict)
    idat: _Box | None = None
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    over_limit: str | None = None

    def exceed(self, reason: str) -> None:
        if self.over_limit is None:
            self.over_limit = reason


@dataclass
class _Walk:
    """A budget of boxes shared by one walk over a file."""

    boxes: int = 0

    def count(self) -> None:
        self.boxes += 1
        if self.boxes > MAX_BOXES:
            raise ImageTooLarge(f"The HEIF/AVIF file has more than {MAX_BOXES} boxes.")


def exif_payloads(data: bytes, format_name: str = "HEIF") -> list[bytes | memoryview]:
    """Each Exif item's TIFF data, from the header Pillow reads in what the reader of
    ``format_name`` hands it (libavif for "AVIF", pillow-heif for "HEIF"), to the item's end.

    Extents outside the file are clamped. An item in one extent is returned as a view of
    ``data``; several extents are joined, never more bytes in all than the file holds.
    Raises only ``CorruptImage``: for box framing libheif itself refuses, and for Exif
    items that together claim more bytes than the file has. Meant for files that passed
    ``check_structure``, which refuses those whose Exif this cannot see ('mini').
    """
    payloads: list[bytes | memoryview] = []
    budget = len(data)
    try:
        metas = list(_metas(data))
    except ImageTooLarge as exc:
        # Only our box caps raise it here; decoding() has refused such files already.
        raise CorruptImage("The HEIF/AVIF file has more boxes than any image needs.") from exc
    for meta in metas:
        for item_id, item_type in meta.item_types.items():
            location = meta.locations.get(item_id)
            if item_type != b"Exif" or location is None:
                continue
            ranges = _item_ranges(data, meta, location)
            budget -= sum(end - start for start, end in ranges)
            if budget < 0:
                raise CorruptImage("The HEIF/AVIF Exif items claim more bytes than the file has.")
            buffer, start, end = _item_bytes(data, ranges)
            tiff = _tiff_header(buffer, start, end, avif=format_name == "AVIF")
            if tiff is not None:
                payloads.append(memoryview(buffer)[tiff:end])
    return payloads


def check_structure(data: bytes) -> None:
    """Refuse, before libheif parses it, a file past one of libheif's security limits.

    Raises ``ImageTooLarge`` for those limits (and for more boxes than any image needs),
    ``CorruptImage`` only for box framing libheif always refuses; anything else is left
    for libheif to judge. A low-overhead ``mini`` box, which libheif reads in place of
    ``meta``, is ``UnsupportedFormat``: its Exif is not an item ``exif_payloads`` finds,
    and its real files (brand ``mif3`` alone) are not accepted by the signature check.
    """
    _check_brands(data)
    if any(box.kind == b"mini" for box in _top_level(data)):
        raise UnsupportedFormat("Low-overhead HEIF files ('mini' box) are not accepted.")
    for meta in _metas(data):
        if meta.over_limit is not None:
            raise ImageTooLarge(
                f"The HEIF/AVIF structure is past libheif's limits: {meta.over_limit}."
            )
        for width, height in meta.image_sizes + _derived_sizes(data, meta):
            _check_image_size(width, height)


# --- boxes ----------------------------------------------------------------------------------


def _header(data: bytes, position: int, end: int) -> tuple[bytes, int, int] | None:
    """A box's type, size (0: to the end) and header length at ``position``, if it fits."""
    if position + 8 > end:
        return None
    size, kind = struct.unpack_from(">I4s", data, position)
    if size != 1:
        return kind, size, 8
    if position + 16 > end:
        return None
    (size,) = struct.unpack_from(">Q", data, position + 8)
    if size > MAX_LARGE_BOX_SIZE:
        raise CorruptImage("A HEIF/AVIF box claims more bytes than any file has.")
    return kind, size, 16


def _top_level(data: bytes) -> Iterator[_Box]:
    """The file's boxes, stepped through as libheif does: by each header's size, to the end."""
    position, total = 0, len(data)
    for _ in range(MAX_TOP_LEVEL_BOXES):
        header = _header(data, position, total)
        if header is None:
            return
        kind, size, header_size = header
        if kind in _PARSED_TOP_LEVEL and size and not header_size <= size <= total - position:
            raise CorruptImage(f"The HEIF/AVIF '{kind.decode('latin-1')}' box is cut off.")
        end = total if size == 0 else min(position + size, total)
        yield _Box(kind, min(position + header_size, end), end)
        if size == 0:
            return
        position += size
    raise ImageTooLarge(f"The HEIF/AVIF file has more than {MAX_TOP_LEVEL_BOXES} top-level boxes.")


def _children(data: bytes, start: int, end: int, walk: _Walk) -> Iterator[_Box]:
    """The boxes between ``start`` and ``end``, framed as strictly as libheif frames them."""
    position = start
    while position < end:
        walk.count()
        header = _header(data, position, end)
        if header is None:
            raise CorruptImage("A HEIF/AVIF box header is cut off.")
        kind, size, header_size = header
        if kind == b"uuid":
            header_size += 16
        if size == 0:
            size = end - position
        if size < header_size or size > end - position:
            raise CorruptImage(
                f"The HEIF/AVIF '{kind.decode('latin-1')}' box does not fit its container."
            )
        yield _Box(kind, position + header_size, position + size)
        position += size


def _metas(data: bytes) -> Iterator[_Meta]:
    """What every top-level ``meta`` box holds (libheif parses them all, keeps the last)."""
    walk = _Walk()
    for box in _top_level(data):
        if box.kind == b"meta":
            meta = _Meta()
            _read_container(data, box, meta, walk, depth=0)
            yield meta


def _read_container(data: bytes, box: _Box, meta: _Meta, walk: _Walk, depth: int) -> None:
    """The children of a box libheif reads all children of, and theirs, down the tree."""
    for index, child in enumerate(
        _children(data, box.start + _CONTAINERS[box.kind], box.end, walk)
    ):
        if depth + 1 > MAX_BOX_NESTING_LEVEL:
            meta.exceed(f"boxes nested more than {MAX_BOX_NESTING_LEVEL} deep")
            return
        if index == MAX_CHILDREN_PER_BOX + 1:
            meta.exceed(f"more than {MAX_CHILDREN_PER_BOX} boxes in one box")
        _read_box(data, child, meta, walk, depth + 1)


def _read_box(data: bytes, box: _Box, meta: _Meta, walk: _Walk, depth: int) -> None:
    kind = box.kind
    if kind in _CONTAINERS:
        _read_container(data, box, meta, walk, depth)
    elif kind == b"iinf":
        _read_iinf(data, box, meta, walk)
    elif kind == b"iloc":
        _read_iloc(data, box, meta)
    elif kind == b"idat":
        meta.idat = box
    elif kind == b"ipma":
        _read_ipma(data, box, meta)
    elif kind == b"iref":
        _read_iref(data, box, meta, walk)
    elif kind == b"ispe":
        _read_ispe(data, box, meta)
    elif kind in _ENTITY_GROUPS:
        _read_entity_group(data, box, meta)


# --- the boxes that matter -------------------------------------------------------------------


def _read_iinf(data: bytes, box: _Box, meta: _Meta, walk: _Walk) -> None:
    """``iinf``: an entry count (16 bits in version 0, else 32) and that many ``infe``."""
    layout = struct.Struct(">H" if _version(data, box) == 0 else ">I")
    if box.end - box.start < 4 + layout.size:
        return
    (count,) = layout.unpack_from(data, box.start + 4)
    if count > MAX_ITEMS:
        meta.exceed(f"more than {MAX_ITEMS} items")
        return
    # libheif reads exactly ``count`` entries and ignores what follows them
    entries = _children(data, box.start + 4 + layout.size, box.end, walk)
    for entry in itertools.islice(entries, count):
        if entry.kind == b"infe":
            _read_infe(data, entry, meta)


_INFE_LAYOUTS = {2: struct.Struct(">HH4s"), 3: struct.Struct(">IH4s")}


def _read_infe(data: bytes, box: _Box, meta: _Meta) -> None:
    """``infe`` versions 2 and 3: item ID (16 or 32 bits), protection index, item type."""
    layout = _INFE_LAYOUTS.get(_version(data, box))
    if layout is None or box.end - box.start < 4 + layout.size:
        return  # versions 0 and 1 carry no item type
    item_id, _protection, item_type = layout.unpack_from(data, box.start + 4)
    meta.item_types[item_id] = item_type


_FIELD_CODES = {0: "", 4: "I", 8: "Q"}


def _read_iloc(data: bytes, box: _Box, meta: _Meta) -> None:
    """``iloc`` versions 0-2: per item its construction method, base offset and extents."""
    version = _version(data, box)
    if version > 2 or box.end - box.start < 8:
        return  # libheif refuses other versions: nothing to locate
    (sizes,) = struct.unpack_from(">H", data, box.start + 4)
    # libheif reads a field of any other size as absent, and index_size only from version 1
    offset, length, base, index = (
        _FIELD_CODES.get(sizes >> shift & 0xF, "") for shift in (12, 8, 4, 0)
    )
    if version == 0:
        index = ""
    item_id = "I" if version == 2 else "H"
    method = "" if version == 0 else "H"
    count_layout = struct.Struct(">" + item_id)
    item_layout = struct.Struct(f">{item_id}{method}H{base}H")
    position = box.start + 6 + count_layout.size
    if position > box.end:
        return
    (count,) = count_layout.unpack_from(data, position - count_layout.size)
    if count > MAX_ITEMS:
        meta.exceed(f"more than {MAX_ITEMS} items")
        return
    extent = index + offset + length
    offset_at = len(index) if offset else None
    length_at = len(index + offset) if length else None
    for _ in range(count):
        if position + item_layout.size > box.end:
            return
        fields = item_layout.unpack_from(data, position)
        position += item_layout.size
        extent_count = fields[-1]
        if extent_count > MAX_ILOC_EXTENTS_PER_ITEM:
            meta.exceed(f"more than {MAX_ILOC_EXTENTS_PER_ITEM} extents in one item")
            return
        extents_layout = _layout(extent * extent_count)
        if position + extents_layout.size > box.end:
            return
        meta.locations[fields[0]] = _Item(
            construction_method=fields[1] & 0xF if method else 0,
            base_offset=fields[-2] if base else 0,
            fields=extents_layout.unpack_from(data, position),
            width=len(extent),
            offset_at=offset_at,
            length_at=length_at,
        )
        position += extents_layout.size


@functools.cache
def _layout(codes: str) -> struct.Struct:
    return struct.Struct(">" + codes)


def _read_ipma(data: bytes, box: _Box, meta: _Meta) -> None:
    if box.end - box.start >= 8:
        (count,) = struct.unpack_from(">I", data, box.start + 4)
        if count > MAX_ITEMS:
            meta.exceed(f"properties for more than {MAX_ITEMS} items")


def _read_iref(data: bytes, box: _Box, meta: _Meta, walk: _Walk) -> None:
    """``iref``: references, each a box header, from_item_ID, a count and to_item_IDs.

    libheif reads them one after another by their contents, not by their box sizes.
    """
    id_size = 4 if _version(data, box) == 1 else 2
    position = box.start + 4
    while position < box.end:
        walk.count()
        header = _header(data, position, box.end)
        if header is None:
            return
        position += header[2] + id_size
        if position + 2 > box.end:
            return
        (references,) = struct.unpack_from(">H", data, position)
        if references > MAX_ITEMS:
            meta.exceed(f"more than {MAX_ITEMS} references from one item")
            return
        position += 2 + references * id_size


def _read_ispe(data: bytes, box: _Box, meta: _Meta) -> None:
    if box.end - box.start >= 12:
        width, height = struct.unpack_from(">II", data, box.start + 4)
        meta.image_sizes.append((width, height))


def _read_entity_group(data: bytes, box: _Box, meta: _Meta) -> None:
    if box.end - box.start >= 12:
        (entities,) = struct.unpack_from(">I", data, box.start + 8)
        if entities <= (box.end - box.start - 12) // 4 and entities > MAX_SIZE_ENTITY_GROUP:
            meta.exceed(f"more than {MAX_SIZE_ENTITY_GROUP} entities in one group")


def _version(data: bytes, box: _Box) -> int:
    """A FullBox's version (its first byte)."""
    return data[box.start] if box.start < box.end else 0


def _check_brands(data: bytes) -> None:
    """``ftyp``: a major brand, a minor version and then compatible brands to its end."""
    size = int.from_bytes(data[:4], "big")
    if 16 <= size <= len(data) and (size - 16) // 4 > MAX_NUMBER_OF_FILE_BRANDS:
        raise ImageTooLarge(
            f"The HEIF/AVIF file lists more than {MAX_NUMBER_OF_FILE_BRANDS} brands."
        )


# --- item data ----------------------------------------------------------------------------


def _item_ranges(data: bytes, meta: _Meta, item: _Item) -> list[tuple[int, int]]:
    """Where the item's extents lie in ``data``, clamped to the file (or to ``idat``)."""
    if item.construction_method == 0:
        base, limit = 0, len(data)
    elif item.construction_method == 1 and meta.idat is not None:
        base, limit = meta.idat.start, meta.idat.end
    else:
        return []  # construction method 2 (item offsets) is not read by libheif either
    ranges = []
    for offset, length in item.extents():
        start = min(base + offset, limit)
        end = min(start + length, limit)
        if end > start:
            ranges.append((start, end))
    return ranges


def _item_bytes(data: bytes, ranges: list[tuple[int, int]]) -> tuple[bytes, int, int]:
    """A buffer holding the item and the item's bounds in it: ``data`` itself if it can."""
    if len(ranges) == 1:
        return data, *ranges[0]
    view = memoryview(data)
    joined = b"".join(view[start:end] for start, end in ranges)
    return joined, 0, len(joined)


def _tiff_header(buffer: bytes, start: int, end: int, *, avif: bool) -> int | None:
    """Where Pillow's ``Exif.load`` finds a TIFF header in the Exif item ``buffer[start:end]``.

    What it is handed: for AVIF, every byte after the item's 4-byte offset field (libavif
    checks only that the offset leads to the first standard TIFF header, and hands on all,
    whatever lies before that header); for HEIF, what pillow-heif keeps: past the field and
    the offset it holds, backing up over an "Exif\\0\\0" the offset skipped, or past just the
    field when the offset leaves 4 bytes or fewer. ``Exif.load`` skips any "Exif\\0\\0" there
    and reads the header by ``tiffheader``'s rule; None where it would read no TIFF.
    """
    if end - start < 8:
        return None
    skip = start + 4
    if not avif:
        skip += int.from_bytes(buffer[start : start + 4], "big")
        if end - skip <= 4:
            skip = start + 4
        elif skip - start >= 6 and buffer[skip - 6 : skip] == _EXIF_PREFIX:
            skip -= 6
    while buffer.startswith(_EXIF_PREFIX, skip):
        skip += len(_EXIF_PREFIX)
    return skip if tiffheader.layout(memoryview(buffer)[skip:end]) is not None else None


def _derived_sizes(data: bytes, meta: _Meta) -> list[tuple[int, int]]:
    """The output size each grid and overlay item declares in its data."""
    sizes = []
    for item_id, item_type in meta.item_types.items():
        location = meta.locations.get(item_id)
        if item_type not in _DERIVED_IMAGES or location is None:
            continue
        head = _head(data, _item_ranges(data, meta, location), 32)
        wide = len(head) > 1 and head[1] & 1
        # grid: version, flags, rows - 1, columns - 1; iovl: version, flags, 4 fill values
        at = 4 if item_type == b"grid" else 10
        layout = struct.Struct(">II" if wide else ">HH")
        if len(head) >= at + layout.size:
            sizes.append(layout.unpack_from(head, at))
    return sizes


def _head(data: bytes, ranges: list[tuple[int, int]], count: int) -> bytes:
    head = b""
    for start, end in ranges:
        head += data[start : min(end, start + count - len(head))]
        if len(head) >= count:
            break
    return head


def _check_image_size(width: int, height: int) -> None:
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLarge(
            f"The HEIF/AVIF image claims {width}x{height} pixels, past libheif's limit of "
            f"{MAX_IMAGE_PIXELS}."
        )
