"""HEIF/AVIF box structure: Exif items found as readers find them, libheif's limits refused.

Files are built box by box in memory around the coded pixels of a tiny image that
pillow-heif encodes, or saved whole by pillow-heif and Pillow. Each limit is checked at
libheif's figure (the file opens) and one past it (``image_too_large``, where libheif
alone would end it ``corrupt_image``).
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from chalicelib.errors import CorruptImage, ImageTooLarge, UnsupportedFormat
from chalicelib.imaging import isobmff, render
from chalicelib.imaging.decode import decoding, sniff_format
from chalicelib.presets import DEFAULT_PRESETS
from tests.images import encode, noise

MAX_PIXELS = 50_000_000

# --- building files --------------------------------------------------------------------------


def box(kind: bytes, *parts: bytes, large: bool = False) -> bytes:
    payload = b"".join(parts)
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full_box(kind: bytes, version: int, *parts: bytes, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big"), *parts)


def _payload_of(data: bytes, kind: bytes) -> bytes:
    """The payload of the first box of ``kind`` in a file pillow-heif wrote (8-byte headers)."""
    at = data.index(kind)
    size = int.from_bytes(data[at - 4 : at], "big")
    return data[at + 4 : at - 4 + size]


@cache
def hevc() -> tuple[bytes, bytes]:
    """The hvcC configuration and coded data of a 64x64 image, as pillow-heif writes them."""
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(noise((64, 64))).save(buffer, quality=50)
    data = buffer.getvalue()
    return _payload_of(data, b"hvcC"), _payload_of(data, b"mdat")


def exif_block(orientation: int | None = 6) -> bytes:
    """TIFF data with IFD0 holding a make and an orientation (no "Exif\\0\\0")."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x010F] = "Maker"
    data = exif.tobytes()
    return data.removeprefix(b"Exif\x00\x00")


def exif_item(tiff: bytes, *, offset: int = 6, prefix: bytes = b"Exif\x00\x00") -> bytes:
    """An Exif item: exif_tiff_header_offset, then (by default) "Exif\\0\\0", then TIFF."""
    return struct.pack(">I", offset) + prefix + tiff


@dataclass(frozen=True)
class Item:
    item_id: int
    item_type: bytes
    data: bytes
    in_idat: bool = False  # construction method 1
    extents: int = 1  # pieces the data is split into, stored in reverse order
    hidden: bool = False


def image_item() -> Item:
    return Item(1, b"hvc1", hevc()[1])


def heif(
    items: Sequence[Item] = (),
    *,
    primary: int = 1,
    properties: Sequence[bytes] = (),
    associations: Sequence[bytes] = (),
    references: bytes = b"",
    meta_extra: bytes = b"",
    brands: Sequence[bytes] = (b"mif1", b"heic"),
    mdat_first: bool = False,
    large: bool = False,
    iloc_version: int = 1,
    infe_version: int = 2,
) -> bytes:
    """A HEIF file: the 64x64 image as item 1 (and its properties) plus ``items``.

    ``large`` writes 64-bit box sizes for the top-level boxes and 8-byte iloc fields.
    """
    items = [image_item(), *items]
    ftyp = box(b"ftyp", b"heic", bytes(4), *brands)
    mdat_payload, idat_payload = bytearray(), bytearray()
    placed: dict[int, list[tuple[int, int]]] = {}
    for item in items:
        store = idat_payload if item.in_idat else mdat_payload
        placed[item.item_id] = _place(store, item)

    def meta(mdat_start: int) -> bytes:
        idat = box(b"idat", bytes(idat_payload)) if idat_payload else b""
        return full_box(
            b"meta",
            0,
            full_box(b"hdlr", 0, bytes(4), b"pict", bytes(13)),
            full_box(b"pitm", 0, struct.pack(">H", primary)),
            _iloc(items, placed, mdat_start, iloc_version, large),
            _iinf(items, infe_version),
            _iprp(properties, associations),
            references,
            idat,
            meta_extra,
        )

    mdat_header = 16 if large else 8
    mdat = box(b"mdat", bytes(mdat_payload), large=large)
    if mdat_first:
        body = mdat + _large(meta(len(ftyp) + mdat_header), large)
    else:
        meta_size = len(_large(meta(0), large))
        body = _large(meta(len(ftyp) + meta_size + mdat_header), large) + mdat
    return ftyp + body


def _large(small: bytes, large: bool) -> bytes:
    return box(small[4:8], small[8:], large=True) if large else small


def _place(store: bytearray, item: Item) -> list[tuple[int, int]]:
    """Append the item's data in ``item.extents`` pieces, last piece first; their ranges."""
    cuts = [round(i * len(item.data) / item.extents) for i in range(item.extents + 1)]
    pieces = [(cuts[i], cuts[i + 1]) for i in range(item.extents)]
    ranges: dict[int, tuple[int, int]] = {}
    for index in reversed(range(item.extents)):
        start, end = pieces[index]
        ranges[index] = (len(store), end - start)
        store += item.data[start:end]
    return [ranges[index] for index in range(item.extents)]


def _iloc(
    items: Sequence[Item],
    placed: dict[int, list[tuple[int, int]]],
    mdat_start: int,
    version: int,
    large: bool,
) -> bytes:
    field = "Q" if large else "I"
    sizes = 0x8800 if large else 0x4400
    item_id = "I" if version == 2 else "H"
    entries = b""
    for item in items:
        base = 0 if item.in_idat else mdat_start
        header = struct.pack(f">{item_id}", item.item_id)
        if version > 0:
            header += struct.pack(">H", 1 if item.in_idat else 0)
        extents = placed[item.item_id]
        header += struct.pack(">HH", 0, len(extents))
        entries += header + b"".join(
            struct.pack(f">{field}{field}", base + offset, length) for offset, length in extents
        )
    count = struct.pack(f">{item_id}", len(items))
    return full_box(b"iloc", version, struct.pack(">H", sizes), count, entries)


def _iinf(items: Sequence[Item], infe_version: int) -> bytes:
    item_id = "I" if infe_version == 3 else "H"
    entries = b"".join(
        full_box(
            b"infe",
            infe_version,
            struct.pack(f">{item_id}H4s", item.item_id, 0, item.item_type),
            b"\x00",
            flags=1 if item.hidden else 0,
        )
        for item in items
    )
    version = 1 if len(items) > 0xFFFF else 0
    count = struct.pack(">I" if version else ">H", len(items))
    return full_box(b"iinf", version, count, entries)


def _iprp(properties: Sequence[bytes], associations: Sequence[bytes]) -> bytes:
    """Properties 1 and 2 are item 1's hvcC and ispe; ``properties`` follow from 3."""
    hvcc, _ = hevc()
    ispe = full_box(b"ispe", 0, struct.pack(">II", 64, 64))
    ipco = box(b"ipco", box(b"hvcC", hvcc), ispe, *properties)
    entries = associations or [association(1, [(1, True), (2, False)])]
    ipma = full_box(b"ipma", 0, struct.pack(">I", len(entries)), *entries)
    return box(b"iprp", ipco, ipma)


def association(item_id: int, indices: Sequence[tuple[int, bool]]) -> bytes:
    """One ipma entry (version 0, 7-bit indices): the item's properties, essential or not."""
    marks = bytes((0x80 if essential else 0) | index for index, essential in indices)
    return struct.pack(">HB", item_id, len(indices)) + marks


def references(kind: bytes, from_id: int, to_ids: Sequence[int]) -> bytes:
    refs = struct.pack(f">HH{len(to_ids)}H", from_id, len(to_ids), *to_ids)
    return full_box(b"iref", 0, box(kind, refs))


def grid(rows: int, columns: int, size: tuple[int, int], ispe: tuple[int, int]) -> bytes:
    """A grid item (50, primary, in idat) of ``rows`` x ``columns`` copies of item 1."""
    data = bytes([0, 1, rows - 1, columns - 1]) + struct.pack(">II", *size)
    ispe_box = full_box(b"ispe", 0, struct.pack(">II", *ispe))
    return heif(
        [Item(50, b"grid", data, in_idat=True)],
        primary=50,
        properties=[ispe_box],
        associations=[association(1, [(1, True), (2, False)]), association(50, [(3, False)])],
        references=references(b"dimg", 50, [1] * (rows * columns)),
    )


def overlay(size: tuple[int, int], ispe: tuple[int, int]) -> bytes:
    """An overlay item (60, primary, in idat) placing item 1 on a ``size`` canvas."""
    data = bytes([0, 1]) + bytes(8) + struct.pack(">IIii", *size, 0, 0)
    ispe_box = full_box(b"ispe", 0, struct.pack(">II", *ispe))
    return heif(
        [Item(60, b"iovl", data, in_idat=True)],
        primary=60,
        properties=[ispe_box],
        associations=[association(1, [(1, True), (2, False)]), association(60, [(3, False)])],
        references=references(b"dimg", 60, [1]),
    )


def nested(depth: int) -> bytes:
    inner = box(b"free")
    for _ in range(depth):
        inner = box(b"ipco", inner)
    return inner


def with_exif(
    item: Item,
    *,
    mdat_first: bool = False,
    large: bool = False,
    iloc_version: int = 1,
    infe_version: int = 2,
) -> bytes:
    """A HEIF whose item 1 is described by the Exif ``item``."""
    return heif(
        [item],
        references=references(b"cdsc", item.item_id, [1]),
        mdat_first=mdat_first,
        large=large,
        iloc_version=iloc_version,
        infe_version=infe_version,
    )


def pillow_heif_exif(data: bytes) -> bytes:
    """The EXIF Pillow's HEIF plugin hands on (pillow-heif's reading, "Exif\\0\\0" dropped)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    with Image.open(io.BytesIO(data), formats=["HEIF"]) as image:
        exif = image.info.get("exif", b"")
    assert isinstance(exif, bytes)
    return exif.removeprefix(b"Exif\x00\x00")


# --- Exif items --------------------------------------------------------------------------------


def test_a_heif_saved_by_pillow_heif_gives_the_exif_written() -> None:
    import pillow_heif

    tiff = exif_block()
    buffer = io.BytesIO()
    pillow_heif.from_pillow(noise((32, 32))).save(buffer, quality=50, exif=tiff)

    payloads = isobmff.exif_payloads(buffer.getvalue())

    assert [bytes(payload) for payload in payloads] == [tiff]


def test_an_avif_saved_by_pillow_gives_the_exif_written() -> None:
    tiff = exif_block(orientation=None)  # Pillow moves an orientation to irot/imir boxes

    payloads = isobmff.exif_payloads(encode(noise((32, 32)), "AVIF", exif=tiff), "AVIF")

    assert [bytes(payload) for payload in payloads] == [tiff]


def test_an_avif_exif_is_read_from_right_after_the_offset_field() -> None:
    """libavif checks that the offset leads to the first standard TIFF header, then hands
    Pillow every byte after the offset field: Pillow reads a header with a swapped magic
    number before it, where pillow-heif would skip to the offset."""
    swapped = b"II\x00*" + struct.pack("<IH", 8, 0) + bytes(4)
    tiff = exif_block(orientation=None)
    data = with_exif(Item(2, b"Exif", exif_item(tiff, offset=len(swapped), prefix=swapped)))

    assert [bytes(payload) for payload in isobmff.exif_payloads(data, "AVIF")] == [swapped + tiff]
    assert [bytes(payload) for payload in isobmff.exif_payloads(data, "HEIF")] == [tiff]


def test_a_file_without_exif_has_none() -> None:
    assert isobmff.exif_payloads(heif()) == []
    assert isobmff.exif_payloads(encode(noise((32, 32)), "AVIF")) == []


EXIF_LAYOUTS: dict[str, Callable[[bytes], bytes]] = {
    "mdat, meta first": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff))),
    "mdat, mdat first": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff)), mdat_first=True),
    "idat": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff), in_idat=True)),
    "idat, mdat first": lambda tiff: with_exif(
        Item(2, b"Exif", exif_item(tiff), in_idat=True), mdat_first=True
    ),
    "64-bit sizes": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff)), large=True),
    "iloc v2, infe v3": lambda tiff: with_exif(
        Item(2, b"Exif", exif_item(tiff)), iloc_version=2, infe_version=3
    ),
    "iloc v0": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff)), iloc_version=0),
    "3 extents": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff), extents=3)),
    "3 extents in idat": lambda tiff: with_exif(
        Item(2, b"Exif", exif_item(tiff), in_idat=True, extents=3)
    ),
    "no prefix": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff, offset=0, prefix=b""))),
    "zero offset, prefix": lambda tiff: with_exif(Item(2, b"Exif", exif_item(tiff, offset=0))),
    "offset past the item": lambda tiff: with_exif(
        Item(2, b"Exif", exif_item(tiff, offset=0xFFFFFFF0))
    ),
    "junk before prefix": lambda tiff: with_exif(
        Item(2, b"Exif", exif_item(tiff, offset=10, prefix=b"junk" + b"Exif\x00\x00"))
    ),
}


@pytest.mark.parametrize("layout", EXIF_LAYOUTS)
def test_exif_is_found_where_pillow_heif_finds_it(layout: str) -> None:
    tiff = exif_block(orientation=None)  # pillow-heif hands on an orientation reset to 1
    data = EXIF_LAYOUTS[layout](tiff)

    payloads = isobmff.exif_payloads(data)

    assert [bytes(payload) for payload in payloads] == [tiff]
    assert pillow_heif_exif(data) == tiff


def test_one_extent_is_a_view_of_the_file_not_a_copy() -> None:
    data = with_exif(Item(2, b"Exif", exif_item(exif_block())))

    (payload,) = isobmff.exif_payloads(data)

    assert isinstance(payload, memoryview)
    assert payload.obj is data


def test_every_exif_item_is_returned() -> None:
    first, second = exif_block(3), exif_block(8)
    data = heif([Item(2, b"Exif", exif_item(first)), Item(3, b"Exif", exif_item(second))])

    assert [bytes(payload) for payload in isobmff.exif_payloads(data)] == [first, second]


def test_exif_items_of_every_meta_box_are_returned() -> None:
    tiff = exif_block()
    data = with_exif(Item(2, b"Exif", exif_item(tiff), in_idat=True))
    meta = data[data.index(b"meta") - 4 :]
    meta = meta[: int.from_bytes(meta[:4], "big")]

    assert len(isobmff.exif_payloads(data + meta)) == 2


def test_an_extent_past_the_end_of_the_file_is_clamped() -> None:
    tiff = exif_block()
    data = with_exif(Item(2, b"Exif", exif_item(tiff)), mdat_first=False)
    cut = data[: len(data) - 4]  # the Exif item is the last data in mdat

    (payload,) = isobmff.exif_payloads(cut)

    assert bytes(payload) == tiff[:-4]


def test_data_that_is_not_tiff_is_no_payload() -> None:
    data = with_exif(Item(2, b"Exif", exif_item(b"not a TIFF header at all")))

    assert isobmff.exif_payloads(data) == []


def test_exif_items_claiming_more_than_the_file_are_corrupt() -> None:
    """Many extents over the same bytes would otherwise be joined into one huge copy."""
    item = exif_item(exif_block())
    data = heif([Item(2 + index, b"Exif", item) for index in range(40)])
    patched = data
    at = data.find(item)
    while at >= 0:  # point every Exif item's extent at the whole file
        whole = struct.pack(">II", 0, len(data))
        patched = patched.replace(struct.pack(">II", at, len(item)), whole)
        at = data.find(item, at + 1)
    assert patched.count(struct.pack(">II", 0, len(data))) == 40

    with pytest.raises(CorruptImage):
        isobmff.exif_payloads(patched)
    isobmff.check_structure(patched)  # libheif has no limit on it: left to the decoder


# --- libheif's limits --------------------------------------------------------------------------


def hidden_items(count: int) -> list[Item]:
    return [Item(100 + index, b"hvc1", hevc()[1], hidden=True) for index in range(count)]


def free_boxes(count: int) -> list[bytes]:
    return [box(b"free")] * count


def entity_group(entities: int) -> bytes:
    group = full_box(b"altr", 0, struct.pack(f">II{entities}I", 9, entities, *[1] * entities))
    return box(b"grpl", group)


def ipma_entries(count: int) -> list[bytes]:
    return [association(1, [(1, True), (2, False)])] * count


def ispe(width: int, height: int) -> bytes:
    return heif(
        properties=[full_box(b"ispe", 0, struct.pack(">II", width, height))],
        associations=[association(1, [(1, True), (3, False)])],
    )


# name: (a file at libheif's limit, a file one past it)
LIMITS: dict[str, tuple[Callable[[], bytes], Callable[[], bytes]]] = {
    "items (max_items)": (lambda: heif(hidden_items(999)), lambda: heif(hidden_items(1000))),
    "extents of one item (max_iloc_extents_per_item)": (
        lambda: heif([Item(2, b"abcd", b"x" * 64, extents=32)]),
        lambda: heif([Item(2, b"abcd", b"x" * 64, extents=33)]),
    ),
    "properties (max_children_per_box)": (
        lambda: heif(properties=free_boxes(99)),
        lambda: heif(properties=free_boxes(100)),
    ),
    "meta children (max_children_per_box)": (
        lambda: heif(meta_extra=b"".join(free_boxes(96))),
        lambda: heif(meta_extra=b"".join(free_boxes(97))),
    ),
    "ipma entries (max_items)": (
        lambda: heif(associations=ipma_entries(1000)),
        lambda: heif(associations=ipma_entries(1001)),
    ),
    "references (max_items)": (
        lambda: heif(references=references(b"abcd", 1, [1] * 1000)),
        lambda: heif(references=references(b"abcd", 1, [1] * 1001)),
    ),
    "grid tiles, as references (max_items)": (
        lambda: grid(25, 40, (40 * 64, 25 * 64), (40 * 64, 25 * 64)),
        lambda: grid(7, 143, (143 * 64, 7 * 64), (143 * 64, 7 * 64)),
    ),
    "entity group (max_size_entity_group)": (
        lambda: heif(meta_extra=entity_group(64)),
        lambda: heif(meta_extra=entity_group(65)),
    ),
    "box nesting (MAX_BOX_NESTING_LEVEL)": (
        lambda: heif(meta_extra=nested(19)),
        lambda: heif(meta_extra=nested(20)),
    ),
    "brands (max_number_of_file_brands)": (
        lambda: heif(brands=[b"mif1", b"heic", *[b"abcd"] * 998]),
        lambda: heif(brands=[b"mif1", b"heic", *[b"abcd"] * 999]),
    ),
}

# Past libheif's pixel limit (max_image_size_pixels, and no side past INT_MAX); there is no
# "at the limit" file that renders, since the service's own pixel cap is far lower.
PAST_PIXEL_LIMIT: dict[str, Callable[[], bytes]] = {
    "ispe wider than INT_MAX": lambda: ispe(2**31, 1),
    "grid output past the pixels": lambda: grid(2, 2, (40000, 40000), (128, 128)),
    "grid output wider than INT_MAX": lambda: grid(2, 2, (2**31, 1), (128, 128)),
    "overlay canvas past the pixels": lambda: overlay((40000, 40000), (128, 128)),
}


@pytest.mark.parametrize("name", LIMITS)
def test_at_libheifs_limit_the_file_opens(name: str) -> None:
    data = LIMITS[name][0]()

    isobmff.check_structure(data)
    with decoding(data, MAX_PIXELS) as image:
        assert image.size[0] >= 64


PAST_LIMITS = {name: past for name, (_, past) in LIMITS.items()} | PAST_PIXEL_LIMIT


@pytest.mark.parametrize("name", PAST_LIMITS)
def test_past_libheifs_limit_the_render_ends_image_too_large(name: str) -> None:
    data = PAST_LIMITS[name]()

    with pytest.raises(ImageTooLarge):
        isobmff.check_structure(data)
    with pytest.raises(ImageTooLarge):
        render(data, DEFAULT_PRESETS)


@pytest.mark.parametrize("name", PAST_LIMITS)
def test_without_the_check_libheif_ends_them_corrupt(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the check fixes: libheif's own refusal reads as a corrupt file."""
    monkeypatch.setattr(isobmff, "check_structure", lambda data: None)

    with pytest.raises(CorruptImage):
        render(PAST_LIMITS[name](), DEFAULT_PRESETS)


@pytest.mark.parametrize(
    "make",
    [
        lambda: heif(),
        lambda: encode(noise((48, 32)), "AVIF", exif=exif_block()),
        lambda: grid(2, 2, (128, 128), (128, 128)),
        lambda: overlay((96, 80), (96, 80)),
    ],
    ids=["heif", "avif", "grid", "overlay"],
)
def test_ordinary_files_pass_and_render(make: Callable[[], bytes]) -> None:
    data = make()

    isobmff.check_structure(data)
    assert render(data, DEFAULT_PRESETS).outputs


def test_files_pillow_heif_writes_with_tiles_and_several_images_pass() -> None:
    import pillow_heif

    heif_file = pillow_heif.from_pillow(noise((300, 200)))
    heif_file.add_from_pillow(noise((64, 64), 2))
    buffer = io.BytesIO()
    heif_file.save(buffer, quality=50, tile_size=128, exif=exif_block())
    data = buffer.getvalue()
    assert b"grid" in data

    isobmff.check_structure(data)
    assert [bytes(payload) for payload in isobmff.exif_payloads(data)][:1] == [exif_block()]


def test_a_low_overhead_mini_box_is_unsupported() -> None:
    """libheif reads a 'mini' box instead of 'meta', and its Exif with it."""
    data = box(b"ftyp", b"mif3", b"heic", b"mif1", b"heic") + box(b"mini", bytes(64)) + heif()[24:]
    assert sniff_format(data) == "HEIF"

    with pytest.raises(UnsupportedFormat):
        isobmff.check_structure(data)
    with pytest.raises(UnsupportedFormat):
        render(data, DEFAULT_PRESETS)


# --- malformed structure ---------------------------------------------------------------------


def _top_box(kind: bytes, data: bytes) -> int:
    return data.index(kind) - 4


def _resized(data: bytes, at: int, size: int) -> bytes:
    return data[:at] + struct.pack(">I", size) + data[at + 4 :]


def _malformed() -> dict[str, bytes]:
    data = with_exif(Item(2, b"Exif", exif_item(exif_block()), in_idat=True), mdat_first=True)
    meta = _top_box(b"meta", data)
    iprp = data.index(b"iprp") - 4
    return {
        "meta past the end": _resized(data, meta, len(data)),
        "meta smaller than its header": _resized(data, meta, 4),
        "child past its parent": _resized(data, iprp, 0xFFFF),
        "child smaller than its header": _resized(data, iprp, 3),
        "64-bit size past any file": data[:meta] + struct.pack(">I4sQ", 1, b"meta", 2**62),
        "header cut off inside meta": _resized(data + bytes(3), meta, len(data) - meta + 3),
    }


MALFORMED = _malformed()


@pytest.mark.parametrize("name", MALFORMED)
def test_broken_framing_is_corrupt(name: str) -> None:
    data = MALFORMED[name]

    with pytest.raises(CorruptImage):
        isobmff.check_structure(data)
    with pytest.raises(CorruptImage):
        isobmff.exif_payloads(data)


@pytest.mark.parametrize("name", MALFORMED)
def test_libheif_refuses_the_same_framing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why refusing it early is safe: the decoder would refuse it anyway."""
    monkeypatch.setattr(isobmff, "check_structure", lambda data: None)

    with pytest.raises(CorruptImage):
        render(MALFORMED[name], DEFAULT_PRESETS)


def test_a_last_meta_of_size_0_runs_to_the_end_of_the_file() -> None:
    tiff = exif_block(orientation=None)
    data = with_exif(Item(2, b"Exif", exif_item(tiff), in_idat=True), mdat_first=True)
    to_end = _resized(data, _top_box(b"meta", data), 0)

    isobmff.check_structure(to_end)
    assert [bytes(payload) for payload in isobmff.exif_payloads(to_end)] == [tiff]
    assert pillow_heif_exif(to_end) == tiff


def test_a_top_level_box_past_the_end_after_meta_is_left_to_libheif() -> None:
    data = heif()
    mdat = _top_box(b"mdat", data)

    isobmff.check_structure(_resized(data, mdat, 1 << 31))
    assert isobmff.exif_payloads(_resized(data, mdat, 0)) == []


def test_a_child_of_size_0_runs_to_the_end_of_its_container() -> None:
    data = heif(properties=[struct.pack(">I4s", 0, b"free") + bytes(8)])

    isobmff.check_structure(data)
    with decoding(data, MAX_PIXELS) as image:
        assert image.size == (64, 64)


@pytest.mark.parametrize("step", [1, 2, 7, 9])
def test_top_level_sizes_smaller_than_a_header_step_on_and_end(step: int) -> None:
    """libheif steps by the declared size whatever it is; so does the walk, boundedly."""
    data = heif() + struct.pack(">I4sQ", 1, b"free", step) * 20_000

    with contextlib.suppress(CorruptImage, ImageTooLarge):
        isobmff.check_structure(data)
    with contextlib.suppress(CorruptImage):
        assert isobmff.exif_payloads(data) == []


def test_a_million_tiny_boxes_are_refused_after_a_few() -> None:
    tiny = heif() + box(b"free") * 1_000_000
    inside = heif(meta_extra=box(b"ipco", box(b"free") * 100) * 60)

    with pytest.raises(ImageTooLarge):
        isobmff.check_structure(tiny)
    with pytest.raises(ImageTooLarge):
        isobmff.check_structure(inside)
    with pytest.raises(CorruptImage):
        isobmff.exif_payloads(tiny)


def test_a_million_tiny_references_are_refused_after_a_few() -> None:
    one = box(b"cdsc", struct.pack(">HHH", 1, 1, 1))
    data = heif(references=full_box(b"iref", 0, one * 1_000_000))

    with pytest.raises(ImageTooLarge):
        isobmff.check_structure(data)


def test_every_truncation_raises_nothing_but_corrupt_image() -> None:
    data = with_exif(Item(2, b"Exif", exif_item(exif_block())))
    for cut in range(len(data)):
        prefix = data[:cut]
        with contextlib.suppress(CorruptImage):
            isobmff.check_structure(prefix)
        with contextlib.suppress(CorruptImage):
            isobmff.exif_payloads(prefix)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)), max_size=6))
def test_any_mutation_raises_nothing_but_source_errors(writes: list[tuple[int, bytes]]) -> None:
    data = bytearray(
        with_exif(Item(2, b"Exif", exif_item(exif_block()), in_idat=True, extents=2), large=True)
    )
    for position, value in writes:
        at = position % len(data)
        data[at : at + len(value)] = value
    mutated = bytes(data)

    with contextlib.suppress(CorruptImage, ImageTooLarge):
        isobmff.check_structure(mutated)
    with contextlib.suppress(CorruptImage):
        isobmff.exif_payloads(mutated)
