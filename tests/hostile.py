"""Hostile inputs, built in memory: lying headers, bombs, endless frames, loops, polyglots.

Each builder returns the bytes of one file. Sizes are kept small so the tests stay fast;
what makes them hostile is what their headers claim or how their structure repeats.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from functools import partial

from PIL import Image

from tests.images import encode, noise, png_bytes, png_chunk, solid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HUGE = 65535
SHORT, LONG = 3, 4  # TIFF field types

# --- truncation -----------------------------------------------------------------------


def prefixes(data: bytes, count: int = 12) -> list[bytes]:
    """``count`` proper prefixes of ``data``, spread from 0 bytes to all but the last byte."""
    cuts = sorted({round(i * (len(data) - 1) / (count - 1)) for i in range(count)})
    return [data[:cut] for cut in cuts]


SIGNATURES_ONLY = {
    "jpeg": b"\xff\xd8\xff",
    "png": PNG_SIGNATURE,
    "gif": b"GIF89a",
    "webp": b"RIFF\x00\x00\x00\x00WEBP",
    "tiff": b"II*\x00",
    "bigtiff": b"II+\x00",
    "bmp": b"BM",
    "avif": b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1",
    "heif": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00heicmif1",
}

# --- huge declared dimensions -----------------------------------------------------------


def png_header_only(width: int, height: int, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    return png_bytes(width, height, bit_depth, colour_type, b"")


def gif_header(width: int, height: int) -> bytes:
    """A GIF whose screen and one frame claim ``width`` x ``height``, with one byte of data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    return screen + frame + b"\x02\x02\x44\x01\x00\x3b"


def bmp_header(width: int, height: int, bits: int = 24) -> bytes:
    """A BITMAPINFOHEADER BMP claiming ``width`` x ``height`` (negative: top-down)."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, 0, 2835, 2835, 0, 0)
    pixels = bytes(64)
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return header + info + pixels


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real JPEG whose SOF segment is patched to claim ``width`` x ``height``."""
    data = bytearray(encode(solid((90, 90, 90), (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def webp_canvas(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP whose canvas claims ``width`` x ``height`` (24-bit fields)."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    vp8x += (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    inner = encode(solid((10, 20, 30), (4, 4)), "WEBP")[12:]  # a small frame's chunk
    body += inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff(
    entries: Sequence[tuple[int, int, int, int | bytes]],
    *,
    next_ifd: int = 0,
    pixels: bytes = b"",
) -> bytes:
    """A little-endian TIFF with one IFD of ``(tag, type, count, value)`` entries.

    A value that fits in 4 bytes is stored inline; ``bytes`` go after the IFD. The pixel
    data, if any, comes last; tag 273 (StripOffsets) with value -1 points at it.
    """
    ifd_offset = 8
    extra_at = ifd_offset + 2 + 12 * len(entries) + 4
    extra = b""
    packed = b""
    pixels_at = extra_at + sum(len(v) for *_, v in entries if isinstance(v, bytes))
    for tag, kind, count, value in sorted(entries, key=lambda entry: entry[0]):
        if isinstance(value, bytes):
            packed += struct.pack("<HHII", tag, kind, count, extra_at + len(extra))
            extra += value
        else:
            number = pixels_at if value == -1 else value
            if kind == SHORT:
                packed += struct.pack("<HHIHH", tag, kind, count, number, 0)
            else:
                packed += struct.pack("<HHII", tag, kind, count, number)
    ifd = struct.pack("<H", len(entries)) + packed + struct.pack("<I", next_ifd)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + extra + pixels


def tiff_grey(width: int, height: int, *, extra: Sequence[tuple[int, int, int, int]] = ()) -> bytes:
    """An uncompressed 8-bit grey TIFF of ``width`` x ``height`` claimed, 16 bytes of data."""
    entries: list[tuple[int, int, int, int | bytes]] = [
        (256, LONG, 1, width),
        (257, LONG, 1, height),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (273, LONG, 1, -1),
        (277, SHORT, 1, 1),
        (278, LONG, 1, height),
        (279, LONG, 1, 16),
        *extra,
    ]
    return tiff(entries, pixels=bytes(range(16)))


def tiff_huge_tiles() -> bytes:
    """A 4x4 TIFF claiming tiles of 65536 x 65536: a 4-gigapixel buffer for one tile."""
    entries: list[tuple[int, int, int, int | bytes]] = [
        (256, LONG, 1, 4),
        (257, LONG, 1, 4),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (277, SHORT, 1, 1),
        (322, LONG, 1, 65536),
        (323, LONG, 1, 65536),
        (324, LONG, 1, -1),
        (325, LONG, 1, 16),
    ]
    return tiff(entries, pixels=bytes(16))


# --- bombs ----------------------------------------------------------------------------------


def png_idat_overflow(extra_bytes: int = 1 << 30) -> bytes:
    """A 1x1 PNG whose IDAT inflates to ``extra_bytes`` more than the image needs (~1 MB)."""
    stream = zlib.compressobj(9)
    compressed = stream.compress(b"\x00\x10\x20\x30")
    chunk = bytes(1 << 20)
    for _ in range(extra_bytes // len(chunk)):
        compressed += stream.compress(chunk)
    compressed += stream.flush()
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", compressed)
        + png_chunk(b"IEND", b"")
    )


def png_broken_stream() -> bytes:
    """A 64x64 PNG whose zlib stream is damaged half-way through (found by fuzzing: the
    half-decoded pixels used to render as if nothing had happened)."""
    rows = b"".join(b"\x00" + noise((64, 1), row).tobytes() for row in range(64))
    compressed = bytearray(zlib.compress(rows))
    compressed[len(compressed) // 2] ^= 0xFF
    return png_bytes_from_stream(64, 64, bytes(compressed))


def png_bytes_from_stream(width: int, height: int, stream: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", stream)
        + png_chunk(b"IEND", b"")
    )


def png_with_chunk(kind: bytes, payload: bytes, base: bytes | None = None) -> bytes:
    """``base`` (a small PNG) with one more chunk right after IHDR."""
    base = base if base is not None else encode(noise((8, 8)), "PNG")
    after_ihdr = 8 + 25
    return base[:after_ihdr] + png_chunk(kind, payload) + base[after_ihdr:]


def png_text_bomb(inflated: int = 64 << 20) -> bytes:
    """A zTXt chunk inflating to ``inflated`` bytes (Pillow stops at 1 MiB per chunk)."""
    return png_with_chunk(b"zTXt", b"comment\x00\x00" + _zeros_compressed(inflated))


def png_icc_bomb(inflated: int = 64 << 20) -> bytes:
    return png_with_chunk(b"iCCP", b"icc\x00\x00" + _zeros_compressed(inflated))


def _zeros_compressed(size: int) -> bytes:
    stream = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    out = b"".join(stream.compress(chunk) for _ in range(size // len(chunk)))
    return out + stream.flush()


# --- frames -------------------------------------------------------------------------------


def gif_frames(count: int, screen_size: tuple[int, int] = (1, 1)) -> bytes:
    """A GIF of ``count`` one-pixel frames on a screen of ``screen_size``, written directly
    (Pillow's encoder would merge identical frames)."""
    width, height = screen_size
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 3
    screen += b"\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame * count + b"\x3b"


def gif_one_frame_in_tiny_sub_blocks(sub_blocks: int) -> bytes:
    """A 1x1 GIF whose frame data is ``sub_blocks`` one-byte sub-blocks (the worst case
    for anything that walks sub-blocks in Python)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00" * 3 + b"\xff" * 3
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02"
    data = b"\x01\x44" + b"\x01\x00" * (sub_blocks - 1) + b"\x00"
    return screen + frame + data + b"\x3b"


def tiff_pages(count: int) -> bytes:
    """A TIFF of ``count`` 1x1 grey pages, all sharing one strip of pixel data."""
    entry_count = 9
    ifd_bytes = 2 + 12 * entry_count + 4
    first = 8
    pixel_at = first + ifd_bytes * count
    out = b"II*\x00" + struct.pack("<I", first)
    for page in range(count):
        following = 0 if page == count - 1 else first + ifd_bytes * (page + 1)
        out += _one_by_one_ifd(pixel_at, following)
    return out + b"\x80"


def tiff_ifd_loop() -> bytes:
    """A 1x1 TIFF whose first IFD names itself as the next one."""
    return b"II*\x00" + struct.pack("<I", 8) + _one_by_one_ifd(8 + 2 + 12 * 9 + 4, 8) + b"\x80"


def _one_by_one_ifd(pixel_at: int, following: int) -> bytes:
    entries = [
        struct.pack("<HHII", 256, LONG, 1, 1),
        struct.pack("<HHII", 257, LONG, 1, 1),
        struct.pack("<HHIHH", 258, SHORT, 1, 8, 0),
        struct.pack("<HHIHH", 259, SHORT, 1, 1, 0),
        struct.pack("<HHIHH", 262, SHORT, 1, 1, 0),
        struct.pack("<HHII", 273, LONG, 1, pixel_at),
        struct.pack("<HHIHH", 277, SHORT, 1, 1, 0),
        struct.pack("<HHII", 278, LONG, 1, 1),
        struct.pack("<HHII", 279, LONG, 1, 1),
    ]
    return struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", following)


def apng_claiming_frames(declared: int) -> bytes:
    """A one-frame APNG whose acTL chunk declares ``declared`` frames."""
    base = encode(solid((200, 10, 10), (4, 4)), "PNG", save_all=True, append_images=[solid(0)])
    start = base.index(b"acTL") - 4
    patched = png_chunk(b"acTL", struct.pack(">II", declared, 0))
    return base[:start] + patched + base[start + 20 :]


def animation(image_format: str, count: int, size: tuple[int, int] = (2, 2)) -> bytes:
    frames = [solid((index % 256, 0, 0), size) for index in range(count)]
    options = {} if image_format == "TIFF" else {"duration": 10, "loop": 0}
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options)


# --- JPEG scans ---------------------------------------------------------------------------


def jpeg_repeated_scans(repeats: int, size: tuple[int, int] = (64, 64)) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` more times.

    libjpeg accepts the repeats (a warning), and decodes each over the whole image: the
    cost grows with repeats x pixels while the file grows by ~70 bytes a repeat.
    """
    data = encode(solid((128, 60, 30), size), "JPEG", progressive=True, quality=90)
    start = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[start:end] * repeats + data[end:]


def jpeg_with_junk_before_scans(repeats: int) -> bytes:
    """Like ``jpeg_repeated_scans``, with garbage bytes before the repeats (libjpeg skips
    them with a warning, so a scan count that stopped at garbage would miss the repeats)."""
    data = jpeg_repeated_scans(0)
    start = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + b"junk" + data[start:end] * repeats + data[end:]


# --- EXIF -----------------------------------------------------------------------------------


def exif_block(ifd: bytes) -> bytes:
    return b"Exif\x00\x00" + ifd


def exif_ifd0_loop(orientation: int = 6) -> bytes:
    """EXIF whose IFD0 holds an orientation, names itself as the next IFD and points its
    EXIF and GPS sub-IFDs back at itself."""
    entries = [
        struct.pack("<HHIHH", 0x0112, SHORT, 1, orientation, 0),
        struct.pack("<HHII", 0x8769, LONG, 1, 8),
        struct.pack("<HHII", 0x8825, LONG, 1, 8),
    ]
    return _tiff_header_with_ifd(entries, next_ifd=8)


def exif_giant_counts() -> bytes:
    """EXIF entries claiming 2**32 - 1 values each, far beyond the block."""
    entries = [
        struct.pack("<HHII", 0x010E, 2, 0xFFFFFFFF, 8),  # ImageDescription, ASCII
        struct.pack("<HHII", 0x0112, SHORT, 0xFFFFFFFF, 8),
        struct.pack("<HHII", 0x8769, LONG, 0xFFFFFFFF, 8),
    ]
    return _tiff_header_with_ifd(entries, next_ifd=0xFFFFFFF0)


def exif_entry_count_overflow() -> bytes:
    """An IFD claiming 65535 entries in a block that holds two."""
    return b"II*\x00" + struct.pack("<IH", 8, 0xFFFF) + bytes(24)


def exif_deep_chain(depth: int = 2000) -> bytes:
    """IFD0 whose EXIF sub-IFD pointer leads to another, ``depth`` deep."""
    ifd_bytes = 2 + 12 + 4
    out = b"II*\x00" + struct.pack("<I", 8)
    for level in range(depth):
        target = 8 + ifd_bytes * (level + 1)
        out += struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, LONG, 1, target)
        out += struct.pack("<I", 0)
    return out + struct.pack("<HI", 0, 0)


def _tiff_header_with_ifd(entries: Sequence[bytes], *, next_ifd: int) -> bytes:
    return (
        b"II*\x00"
        + struct.pack("<I", 8)
        + struct.pack("<H", len(entries))
        + b"".join(entries)
        + struct.pack("<I", next_ifd)
    )


def jpeg_with_exif(exif: bytes, image: Image.Image | None = None, *, jfif: bool = True) -> bytes:
    """A JPEG with ``exif`` in an APP1 segment; without ``jfif``, no JFIF segment either
    (Pillow then reads the EXIF's IFD0 at open, for a resolution)."""
    return _jpeg_with_segment(0xE1, exif_block(exif), image, jfif=jfif)


def jpeg_with_mpf(index: bytes) -> bytes:
    """A JPEG with ``index`` as its multi-picture (MPF) index, which Pillow reads at open."""
    return _jpeg_with_segment(0xE2, b"MPF\x00" + index)


def _jpeg_with_segment(
    marker: int, payload: bytes, image: Image.Image | None = None, *, jfif: bool = True
) -> bytes:
    picture = image if image is not None else noise((32, 16))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    if not jfif:
        assert data[2:4] == b"\xff\xe0"  # Pillow writes JFIF's APP0 first
        data = data[:2] + data[4 + int.from_bytes(data[4:6], "big") :]
    segment = bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload
    return data[:2] + segment + data[2:]


def png_with_exif(exif: bytes, *, after_image_data: bool = False) -> bytes:
    if not after_image_data:
        return png_with_chunk(b"eXIf", exif)
    base = encode(noise((8, 8)), "PNG")
    iend = len(base) - 12
    return base[:iend] + png_chunk(b"eXIf", exif) + base[iend:]


def png_with_raw_profile(exif: bytes, kind: bytes = b"tEXt", base: bytes | None = None) -> bytes:
    """ImageMagick's "Raw profile type exif": hex digits after three lines of header, in a
    tEXt chunk or compressed in a zTXt one. Pillow's ``getexif`` reads it."""
    digits = exif.hex()
    lines = "\n".join(digits[start : start + 72] for start in range(0, len(digits), 72))
    text = f"\nexif\n{len(exif):8d}\n{lines}\n".encode("latin-1")
    key = b"Raw profile type exif\x00"
    if kind == b"zTXt":
        return png_with_chunk(b"zTXt", key + b"\x00" + zlib.compress(text, 9), base)
    return png_with_chunk(b"tEXt", key + text, base)


def with_exif_item(image_format: str, exif: bytes) -> bytes:
    """A 4x4 WebP, AVIF or HEIF whose EXIF chunk or Exif item is ``exif``.

    The encoders read the EXIF they are given, so they get a harmless block of the same
    length, which is then swapped for ``exif`` where it lies in the file.
    """
    stand_in = b"II*\x00" + struct.pack("<IHI", 8, 0, 0) + b"STAND-IN"
    stand_in += bytes(len(exif) - len(stand_in))
    picture = solid((40, 90, 140), (4, 4))
    if image_format == "HEIF":
        import pillow_heif

        buffer = io.BytesIO()
        pillow_heif.from_pillow(picture).save(buffer, quality=90, exif=stand_in)
        data = buffer.getvalue()
    else:
        data = encode(picture, image_format, exif=stand_in)
    start = data.index(stand_in)
    return data[:start] + exif + data[start + len(exif) :]


# --- ICC profiles ---------------------------------------------------------------------------


def jpeg_with_icc(profile: bytes, mode: str = "RGB") -> bytes:
    colour = (200, 100, 50) if mode == "RGB" else (10, 80, 160, 20)
    return encode(solid(colour, (16, 16), mode), "JPEG", icc_profile=profile, quality=95)


# --- odd pixels -------------------------------------------------------------------------------


def png_palette_bad_index() -> bytes:
    """A 4x4 palette PNG with a 2-colour palette and pixels indexing entries 2..255."""
    rows = b"".join(b"\x00" + bytes([0, 1, 2, 255]) for _ in range(4))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 3, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"PLTE", b"\xff\x00\x00\x00\x00\xff")
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_palette_without_plte() -> bytes:
    rows = b"".join(b"\x00" + bytes(4) for _ in range(4))
    return png_bytes(4, 4, 8, 3, rows)


def bmp_rle_overrun() -> bytes:
    """An 8-bit RLE BMP whose runs write past the end of its 4x4 pixels."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    rle = b"\xff\x07" * 40 + b"\x00\x02\xff\xff" + b"\x00\x01"
    info = struct.pack("<IiiHHIIiiII", 40, 4, 4, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset)
    return header + info + palette + rle


# --- polyglots ------------------------------------------------------------------------------

HTML_PAYLOAD = b"<html><script>alert(document.domain)</script></html>"
PDF_PAYLOAD = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def zip_archive(name: str = "payload.class", content: bytes = b"\xca\xfe\xba\xbe") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def jpeg_with_comment(comment: bytes) -> bytes:
    data = encode(noise((32, 32)), "JPEG", quality=90)
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return data[:2] + segment + data[2:]


def polyglots() -> dict[str, bytes]:
    """Files that are a valid image and something else, keyed by what they pretend to be."""
    jpeg = encode(noise((32, 32)), "JPEG", quality=90)
    png = encode(noise((32, 32)), "PNG")
    gif = encode(noise((32, 32)).convert("P"), "GIF")
    return {
        "jpeg+zip": jpeg + zip_archive(),
        "jpeg+html-comment": jpeg_with_comment(HTML_PAYLOAD),
        "jpeg+pdf": jpeg + PDF_PAYLOAD,
        "png+script": png + HTML_PAYLOAD,
        "png+script-chunk": png_with_chunk(b"tEXt", b"html\x00" + HTML_PAYLOAD),
        "gifar": gif + zip_archive("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
    }


def disguised() -> dict[str, bytes]:
    """Other files that carry an image inside; none starts with an image signature."""
    jpeg = encode(noise((16, 16)), "JPEG")
    return {
        "pdf-with-jpeg": PDF_PAYLOAD + jpeg,
        "zip-with-jpeg": zip_archive("photo.jpg", jpeg),
        "html-with-jpeg": HTML_PAYLOAD + jpeg,
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    }


# --- metadata amplification -----------------------------------------------------------------
#
# Pillow copies every tag's out-of-line data once per entry, and entries may overlap: a
# directory of BOMB_ENTRIES tags all pointing at one blob costs entries x blob bytes.

UNDEFINED, IFD_POINTER = 7, LONG
BOMB_ENTRIES = 1000  # under metadata.MAX_ENTRIES_PER_IFD: only the overlap gives it away
BOMB_BLOB = 1 << 20  # 1 MiB: ~1 GB copied unchecked
JPEG_BOMB_BLOB = 50_000  # what fits in a JPEG segment (64 KiB) beside the directory
# Where a bomb can sit: IFD0, its Exif and GPS sub-IFDs, the Exif IFD's Interop IFD, and
# IFD1 (a thumbnail's directory in EXIF, the second page of a TIFF).
DIRECTORIES = ("ifd0", "exif", "gps", "interop", "ifd1")
_BOMB_TAG = 0xE000  # the bomb's tags count up from here (unassigned numbers)


def tiff_structure(
    bombed: str,
    *,
    entries: int = BOMB_ENTRIES,
    blob_bytes: int = BOMB_BLOB,
    big: bool = False,
    pages: bool = False,
) -> bytes:
    """A little-endian TIFF structure (an EXIF block, or with ``pages`` a 2-page 1x1 TIFF)
    with every directory of DIRECTORIES, and in ``bombed`` ``entries`` UNDEFINED tags of
    ``blob_bytes`` each, all pointing at one blob."""
    contents: dict[str, list[tuple[int, int, int, int | bytes | str]]] = {
        "ifd0": [(0x8769, IFD_POINTER, 1, "exif"), (0x8825, IFD_POINTER, 1, "gps")],
        "exif": [(0x9000, UNDEFINED, 4, b"0230"), (0xA005, IFD_POINTER, 1, "interop")],
        "gps": [(0x0000, 1, 4, b"\x02\x03\x00\x00")],
        "interop": [(0x0001, 2, 4, b"R98\x00")],
        "ifd1": [(0x0103, SHORT, 1, 6)],
    }
    if pages:
        contents["ifd0"] += _page_entries()
        contents["ifd1"] = _page_entries()
    contents[bombed] += [(_BOMB_TAG + i, UNDEFINED, blob_bytes, "blob") for i in range(entries)]
    header_bytes, count_bytes, entry_bytes = (16, 8, 20) if big else (8, 2, 12)
    offsets: dict[str, int] = {}
    position = header_bytes
    for name in DIRECTORIES:
        offsets[name] = position
        position += count_bytes + entry_bytes * len(contents[name]) + (8 if big else 4)
    offsets["blob"] = position
    offsets["pixels"] = position + blob_bytes
    if big:  # then the offset size (8) and a reserved 0 before the first IFD's offset
        out = b"II+\x00" + struct.pack("<HHQ", 8, 0, header_bytes)
    else:
        out = b"II*\x00" + struct.pack("<I", header_bytes)
    for name in DIRECTORIES:
        out += _directory(contents[name], offsets, big, offsets["ifd1"] if name == "ifd0" else 0)
    return out + bytes(blob_bytes) + b"\x80"


def _page_entries() -> list[tuple[int, int, int, int | bytes | str]]:
    """A 1x1 8-bit grey page whose one pixel is the structure's last byte."""
    return [
        (256, LONG, 1, 1),
        (257, LONG, 1, 1),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (273, LONG, 1, "pixels"),
        (277, SHORT, 1, 1),
        (278, LONG, 1, 1),
        (279, LONG, 1, 1),
    ]


def _directory(
    entries: Sequence[tuple[int, int, int, int | bytes | str]],
    offsets: dict[str, int],
    big: bool,
    next_ifd: int,
) -> bytes:
    width = 8 if big else 4
    packed = b""
    for tag, kind, count, value in sorted(entries, key=lambda entry: entry[0]):
        if isinstance(value, str):
            field = offsets[value].to_bytes(width, "little")
        elif isinstance(value, bytes):
            field = value.ljust(width, b"\x00")
        elif kind == SHORT:
            field = struct.pack("<H", value).ljust(width, b"\x00")
        else:
            field = value.to_bytes(width, "little")
        packed += struct.pack("<HHQ" if big else "<HHI", tag, kind, count) + field
    count_format, next_format = ("<Q", "<Q") if big else ("<H", "<I")
    return struct.pack(count_format, len(entries)) + packed + struct.pack(next_format, next_ifd)


def exif_bomb(bombed: str, *, blob_bytes: int = BOMB_BLOB) -> bytes:
    """An EXIF block with ``BOMB_ENTRIES`` overlapping tags in the directory ``bombed``."""
    return tiff_structure(bombed, blob_bytes=blob_bytes)


def tiff_many_strips(strips: int = 1 << 20) -> bytes:
    """A 1x1 TIFF whose pixel is split into ``strips`` strips: its offsets and byte counts
    (4 bytes each in the file) become a Python int and a tile each when Pillow reads them."""
    arrays_at = 8 + 2 + 12 * 9 + 4
    offsets = struct.pack("<I", arrays_at + 8 * strips) * strips
    counts = struct.pack("<I", 1) * strips
    entries: list[tuple[int, int, int, int | bytes]] = [
        (256, LONG, 1, 1),
        (257, LONG, 1, 1),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (273, LONG, strips, offsets),
        (277, SHORT, 1, 1),
        (278, LONG, 1, 1),
        (279, LONG, strips, counts),
    ]
    return tiff(entries, pixels=b"\x80")


def exif_chain(ifds: int, entries: int = 0) -> bytes:
    """EXIF whose IFD0 starts a chain of ``ifds`` directories of ``entries`` inline SHORTs."""
    ifd_bytes = 2 + 12 * entries + 4
    out = b"II*\x00" + struct.pack("<I", 8)
    packed = b"".join(struct.pack("<HHIHH", 0x1000 + tag, SHORT, 1, 1, 0) for tag in range(entries))
    for index in range(ifds):
        following = 0 if index == ifds - 1 else 8 + ifd_bytes * (index + 1)
        out += struct.pack("<H", entries) + packed + struct.pack("<I", following)
    return out


def png_in_many_chunks(chunks: int, *, exif: bytes | None = None) -> bytes:
    """A 4x4 PNG whose image data is split into ``chunks`` IDAT chunks, and ``exif`` in an
    eXIf chunk after them."""
    rows = b"".join(b"\x00" + bytes(range(row, row + 12)) for row in range(4))
    stream = zlib.compress(rows)
    pieces = [stream[index : index + 1] for index in range(len(stream))]
    pieces += [b""] * (chunks - len(pieces))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return b"".join(
        [
            PNG_SIGNATURE,
            png_chunk(b"IHDR", header),
            *(png_chunk(b"IDAT", piece) for piece in pieces),
            b"" if exif is None else png_chunk(b"eXIf", exif),
            png_chunk(b"IEND", b""),
        ]
    )


def webp_in_many_chunks(chunks: int, *, exif: bytes) -> bytes:
    """A WebP with ``exif`` after ``chunks`` empty chunks of an unknown kind."""
    data = with_exif_item("WEBP", exif)
    at = data.index(b"EXIF")
    body = data[12:at] + b"JUNK\x00\x00\x00\x00" * chunks + data[at:]
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def _jpeg_exif_bomb(bombed: str, *, jfif: bool = True) -> bytes:
    return jpeg_with_exif(exif_bomb(bombed, blob_bytes=JPEG_BOMB_BLOB), jfif=jfif)


def _png_exif_bomb(bombed: str) -> bytes:
    return png_with_exif(exif_bomb(bombed))


def _exif_item_bomb(image_format: str, bombed: str) -> bytes:
    return with_exif_item(image_format, exif_bomb(bombed))


def _exif_segments(blocks: Sequence[bytes]) -> bytes:
    """APP1 segments, each "Exif\\0\\0" and one of ``blocks``."""
    return b"".join(
        b"\xff\xe1" + struct.pack(">H", len(block) + 8) + exif_block(block) for block in blocks
    )


def jpeg_exif_across_segments(*, after_eoi: bool = False) -> bytes:
    """A JPEG whose IFD0 (in the first APP1 Exif segment) points its BOMB_ENTRIES tags at a
    BOMB_BLOB in the segments after it: Pillow joins every Exif segment into one block. With
    ``after_eoi``, the segments follow an EOI marker, which Pillow's marker loop reads past."""
    blob_at = 8 + 2 + 12 * BOMB_ENTRIES + 4
    ifd0 = b"II*\x00" + struct.pack("<IH", 8, BOMB_ENTRIES)
    ifd0 += b"".join(
        struct.pack("<HHII", _BOMB_TAG + i, UNDEFINED, BOMB_BLOB, blob_at)
        for i in range(BOMB_ENTRIES)
    )
    ifd0 += struct.pack("<I", 0)
    piece = 65_000
    pieces = [bytes(min(piece, BOMB_BLOB - at)) for at in range(0, BOMB_BLOB, piece)]
    data = encode(noise((16, 16)), "JPEG", quality=90)  # JFIF without a resolution unit
    eoi = b"\xff\xd9" if after_eoi else b""
    return data[:2] + eoi + _exif_segments([ifd0, *pieces]) + data[2:]


def jpeg_mpf_after_eoi() -> bytes:
    data = jpeg_with_mpf(exif_bomb("ifd0", blob_bytes=JPEG_BOMB_BLOB))
    return data[:2] + b"\xff\xd9" + data[2:]


def swapped_magic(structure: bytes) -> bytes:
    """A little-endian TIFF structure with its magic number's bytes swapped ("II\\0*"):
    Pillow reads it as it would "II*\\0"."""
    assert structure.startswith(b"II*\x00")
    return b"II\x00*" + structure[4:]


def avif_exif_before_its_header() -> bytes:
    """An AVIF whose Exif item holds an IFD0 bomb with a swapped magic, then a tiny standard
    TIFF where the item's offset field points: libavif checks only that the offset leads to
    the first standard header, and hands Pillow every byte after the offset field."""
    bomb = swapped_magic(exif_bomb("ifd0"))
    data = with_exif_item("AVIF", bomb + b"II*\x00" + struct.pack("<IHI", 8, 0, 0))
    at = data.index(bomb)
    return data[: at - 4] + struct.pack(">I", len(bomb)) + data[at:]


def tiff_read_as_classic_by_pillow() -> bytes:
    """A big-endian BigTIFF header ("MM\\0+") over an empty BigTIFF IFD; Pillow decides BigTIFF
    by the third byte alone and reads it as classic TIFF, its first IFD at bytes 4-8 (524,288):
    there a 1x1 page with BOMB_ENTRIES tags all pointing at one BOMB_BLOB."""
    ifd_at = 0x0008_0000
    head = b"MM\x00+" + struct.pack(">HHQ", 8, 0, 16) + struct.pack(">QQ", 0, 0)
    page = [(256, LONG, 1), (257, LONG, 1), (258, SHORT, 8), (259, SHORT, 1), (262, SHORT, 1)]
    page += [(273, LONG, -1), (277, SHORT, 1), (278, LONG, 1), (279, LONG, 1)]
    count = len(page) + BOMB_ENTRIES
    blob_at = ifd_at + 2 + 12 * count + 4
    entries = b""
    for tag, kind, value in page:
        number = blob_at + BOMB_BLOB if value == -1 else value
        field = struct.pack(">HH", number, 0) if kind == SHORT else struct.pack(">I", number)
        entries += struct.pack(">HHI", tag, kind, 1) + field
    entries += b"".join(
        struct.pack(">HHII", _BOMB_TAG + i, UNDEFINED, BOMB_BLOB, blob_at)
        for i in range(BOMB_ENTRIES)
    )
    ifd = struct.pack(">H", count) + entries + struct.pack(">I", 0)
    return head.ljust(ifd_at, b"\x00") + ifd + bytes(BOMB_BLOB) + b"\x80"


RATIONAL, SRATIONAL = 5, 10
# Under the cap on integers (metadata.MAX_NUMERIC_VALUES), far past the one on rationals.
BOMB_RATIONALS = (1 << 19) - 64


def _rationals(count: int) -> bytes:
    return b"".join(struct.pack("<II", 72 + i, 1 + i % 7) for i in range(count))


def tiff_rationals(count: int = BOMB_RATIONALS) -> bytes:
    """A 1x1 TIFF whose XResolution holds ``count`` rationals (Pillow reads it at open)."""
    entries: list[tuple[int, int, int, int | bytes]] = [
        (256, LONG, 1, 1),
        (257, LONG, 1, 1),
        (258, SHORT, 1, 8),
        (259, SHORT, 1, 1),
        (262, SHORT, 1, 1),
        (273, LONG, 1, -1),
        (277, SHORT, 1, 1),
        (278, LONG, 1, 1),
        (279, LONG, 1, 1),
        (282, RATIONAL, count, _rationals(count)),
        (296, SHORT, 1, 2),
    ]
    return tiff(entries, pixels=b"\x80")


def avif_rationals(count: int = BOMB_RATIONALS) -> bytes:
    """An AVIF (no irot) whose EXIF says orientation 6 and holds ``count`` rationals: Pillow's
    AVIF plugin sees the orientations differ and writes the whole EXIF again."""
    data_at = 8 + 2 + 12 * 2 + 4
    exif = b"II*\x00" + struct.pack("<IH", 8, 2)
    exif += struct.pack("<HHIHH", 0x0112, SHORT, 1, 6, 0)
    exif += struct.pack("<HHII", _BOMB_TAG, RATIONAL, count, data_at) + struct.pack("<I", 0)
    return with_exif_item("AVIF", exif + _rationals(count))


def tiff_pages_sharing_a_profile(profile_bytes: int = 600_000) -> bytes:
    """A valid 2-page 1x1 TIFF whose pages share one ICC profile by offset: Pillow loads one
    page's directory at a time, so the profile is copied once per page read, not twice."""
    ifd_bytes = 2 + 12 * 10 + 4
    first, second = 8, 8 + ifd_bytes
    profile_at = second + ifd_bytes
    pixel_at = profile_at + profile_bytes

    def page(following: int) -> bytes:
        entries = _one_by_one_ifd(pixel_at, following)[2:-4]
        entries += struct.pack("<HHII", 34675, UNDEFINED, profile_bytes, profile_at)
        return struct.pack("<H", 10) + entries + struct.pack("<I", following)

    header = b"II*\x00" + struct.pack("<I", first)
    return header + page(second) + page(0) + bytes(profile_bytes) + b"\x80"


# Each ends `image_too_large` before Pillow reads a directory. Name: container-directory.
METADATA_BOMBS: dict[str, Callable[[], bytes]] = {
    **{f"tiff-{where}": partial(tiff_structure, where, pages=True) for where in DIRECTORIES[:4]},
    "tiff-page2": partial(tiff_structure, "ifd1", pages=True),
    "tiff-2000-entries": partial(tiff_structure, "ifd0", entries=2000, pages=True),
    "tiff-many-strips": tiff_many_strips,
    "bigtiff-ifd0": partial(tiff_structure, "ifd0", big=True, pages=True),
    "bigtiff-exif": partial(tiff_structure, "exif", big=True, pages=True),
    "bigtiff-page2": partial(tiff_structure, "ifd1", big=True, pages=True),
    **{f"jpeg-{where}": partial(_jpeg_exif_bomb, where) for where in DIRECTORIES},
    **{
        f"jpeg-no-jfif-{where}": partial(_jpeg_exif_bomb, where, jfif=False)
        for where in DIRECTORIES
    },
    "jpeg-mpf": lambda: jpeg_with_mpf(exif_bomb("ifd0", blob_bytes=JPEG_BOMB_BLOB)),
    **{f"png-{where}": partial(_png_exif_bomb, where) for where in DIRECTORIES},
    "png-after-image-data": lambda: png_with_exif(exif_bomb("ifd0"), after_image_data=True),
    "png-raw-profile-text": lambda: png_with_raw_profile(exif_bomb("ifd0")),
    "png-after-5000-chunks": lambda: png_in_many_chunks(5000, exif=exif_bomb("ifd0")),
    "webp-after-5000-chunks": lambda: webp_in_many_chunks(5000, exif=exif_bomb("ifd0")),
    "png-raw-profile-ztxt": lambda: png_with_raw_profile(
        exif_bomb("exif", blob_bytes=400_000), b"zTXt"
    ),
    **{
        f"{image_format.lower()}-{where}": partial(_exif_item_bomb, image_format, where)
        for image_format in ("WEBP", "AVIF", "HEIF")
        for where in DIRECTORIES
    },
    "jpeg-exif-across-segments": jpeg_exif_across_segments,
    "jpeg-exif-after-eoi": partial(jpeg_exif_across_segments, after_eoi=True),
    "jpeg-mpf-after-eoi": jpeg_mpf_after_eoi,
    "tiff-mm-bigtiff-header": tiff_read_as_classic_by_pillow,
    "jpeg-swapped-magic": lambda: jpeg_with_exif(
        swapped_magic(exif_bomb("ifd0", blob_bytes=JPEG_BOMB_BLOB)), jfif=False
    ),
    "avif-exif-before-its-header": avif_exif_before_its_header,
    "tiff-rationals": tiff_rationals,
    "avif-rationals": avif_rationals,
}
