"""Decoding a large PNG a band of rows at a time, so that its full image never exists.

Pillow decodes a PNG only whole, at 4 bytes per pixel for RGB: 191 MiB for 50 megapixels.
For an 8-bit, non-interlaced PNG this module inflates the image data itself, in bounded
pieces, and hands Pillow one band of rows at a time as a small PNG of its own: the band's
filtered rows, preceded by the previous band's last row unfiltered (filter type 0), so
that the filters of the band's first row, which refer to the row above, decode exactly.
Pillow does the unfiltering and the palette and transparency handling as it does for the
whole file, so each band holds exactly the pixels of those rows of a full decode.

The file is untrusted: chunk lengths, CRCs, the header's fields and the chunk order are
checked before anything is decoded, and whatever is malformed raises ``CorruptImage``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, ImageFile

from chalicelib.errors import CorruptImage
from chalicelib.imaging.decode import DECODER_ERRORS

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_CHUNK_LENGTH = 2**31 - 1  # the PNG specification's limit, also for width and height
# Samples per pixel of the colour types decoded in bands (grey, RGB, palette, grey+alpha,
# RGBA); other bit depths and interlaced files are decoded whole, as before.
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
STORED_BLOCK = 0xFFFF  # the most a stored (uncompressed) deflate block holds
# The most one call to zlib inflates: a flat band can inflate 1000:1, so nothing is
# inflated without a bound (each piece then becomes one stored block of a band's PNG).
INFLATE_PIECE = STORED_BLOCK
# The most compressed bytes handed to zlib at once (it copies what it leaves unconsumed).
FEED_PIECE = 1 << 16
# About this many filtered bytes are decoded per band (4/3 of it once decoded, for RGB):
# negligible beside the reduced image, and enough that the per-band work (a container,
# opening it) is a small share of the decode. 1 to 16 MiB measured: 2 MiB the fastest.
BAND_BYTES = 2 << 20
_CHUNKS_FOR_PIXELS = (b"PLTE", b"tRNS")  # what Pillow needs besides IHDR to decode pixels


class MalformedPng(ValueError):
    """The file breaks a rule of the PNG format; reported as ``CorruptImage``."""


@dataclass(frozen=True)
class Header:
    """The IHDR chunk's fields."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def decodable_in_bands(self) -> bool:
        return self.bit_depth == 8 and self.interlace == 0 and self.colour_type in SAMPLES

    @property
    def row_bytes(self) -> int:
        """Bytes of one filtered row of an 8-bit image: the filter type, then the samples."""
        return 1 + self.width * SAMPLES[self.colour_type]


@dataclass(frozen=True)
class Layout:
    """Where a well-formed PNG keeps what decoding it in bands needs (offsets in the file)."""

    image_data: tuple[int, int]  # from the first IDAT chunk to the end of the last
    end: int  # just past the IEND chunk
    pixel_chunks: bytes  # its PLTE and tRNS chunks, as they are in the file
    animated: bool  # it has an acTL chunk


def open_bands(data: bytes) -> PngBands | None:
    """``data`` ready to be decoded in bands, or None when it is not a PNG that can be.

    Raises ``CorruptImage`` when it is an 8-bit non-interlaced PNG whose structure is
    malformed. Call it inside ``decode.decoding``, whose pixel limit applies.
    """
    if not data.startswith(SIGNATURE):
        return None
    view = memoryview(data)
    try:
        header = read_header(view)
        if not header.decodable_in_bands:
            return None
        layout = read_layout(view, header)
        if layout.animated:
            return None  # an animated PNG: Pillow composes its frames, so decode it whole
        return PngBands(view, header, layout)
    except DECODER_ERRORS as exc:  # MalformedPng, or Pillow's about the metadata chunks
        raise CorruptImage(f"The PNG file is corrupt: {exc}") from exc


def read_header(view: memoryview) -> Header:
    """The IHDR chunk, which must come first; its fields are checked."""
    if len(view) < len(SIGNATURE) + 25:
        raise MalformedPng("too short to hold a header")
    length, kind = struct.unpack_from(">I4s", view, len(SIGNATURE))
    if kind != b"IHDR" or length != 13:
        raise MalformedPng("it does not start with a 13-byte IHDR chunk")
    fields = struct.unpack_from(">IIBBBBB", view, len(SIGNATURE) + 8)
    width, height, bit_depth, colour_type, compression, filtering, interlace = fields
    if not (0 < width <= MAX_CHUNK_LENGTH and 0 < height <= MAX_CHUNK_LENGTH):
        raise MalformedPng(f"the header claims {width}x{height} pixels")
    if bit_depth not in _BIT_DEPTHS.get(colour_type, ()):
        raise MalformedPng(f"the header has colour type {colour_type} at {bit_depth} bits")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise MalformedPng("the header names an unknown compression, filter or interlace")
    return Header(width, height, bit_depth, colour_type, interlace)


def read_chunks(view: memoryview) -> Iterator[tuple[bytes, int, int]]:
    """``(kind, offset, length)`` of each chunk up to IEND, its length and CRC checked.

    Nothing is kept per chunk: a file can hold millions. Bytes after IEND are ignored,
    as PNG decoders do.
    """
    offset = len(SIGNATURE)
    while True:
        if offset + 12 > len(view):
            raise MalformedPng("the file ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", view, offset)
        if not kind.isalpha():
            raise MalformedPng(f"the chunk at byte {offset} is named {kind!r}")
        end = offset + 12 + length
        if length > MAX_CHUNK_LENGTH or end > len(view):
            raise MalformedPng(f"the {kind.decode()} chunk at byte {offset} claims {length} bytes")
        (crc,) = struct.unpack_from(">I", view, end - 4)
        if zlib.crc32(view[offset + 4 : end - 4]) != crc:
            raise MalformedPng(f"the {kind.decode()} chunk at byte {offset} fails its CRC check")
        yield kind, offset, length
        if kind == b"IEND":
            return
        offset = end


def read_layout(view: memoryview, header: Header) -> Layout:
    """Every chunk checked (see ``read_chunks``), and the order the specification requires
    of those the pixels depend on: one IHDR, first; PLTE and tRNS at most once each, before
    the image data; the IDAT chunks one after another; an empty IEND last."""
    first_idat: int | None = None
    last_idat_end: int | None = None
    pixel_chunks: dict[bytes, bytes] = {}
    animated = False
    for kind, offset, length in read_chunks(view):
        end = offset + 12 + length
        if kind == b"IDAT":
            if last_idat_end is not None and last_idat_end != offset:
                raise MalformedPng("its IDAT chunks are not consecutive")
            first_idat = offset if first_idat is None else first_idat
            last_idat_end = end
        elif kind == b"IHDR" and offset != len(SIGNATURE):
            raise MalformedPng("it has a second IHDR chunk")
        elif kind in _CHUNKS_FOR_PIXELS:
            if kind in pixel_chunks or first_idat is not None:
                raise MalformedPng(f"its {kind.decode()} chunk is repeated or after the image data")
            pixel_chunks[kind] = bytes(view[offset:end])
        elif kind == b"IEND" and length:
            raise MalformedPng("its IEND chunk is not empty")
        animated = animated or kind == b"acTL"
    if first_idat is None or last_idat_end is None:
        raise MalformedPng("it has no image data before its IEND chunk")
    _check_palette(header, has_palette=b"PLTE" in pixel_chunks)
    joined = b"".join(pixel_chunks.values())
    return Layout((first_idat, last_idat_end), end, joined, animated)  # `end`: IEND's


def _check_palette(header: Header, *, has_palette: bool) -> None:
    if header.colour_type == 3 and not has_palette:
        raise MalformedPng("the palette image has no PLTE chunk")
    if header.colour_type in (0, 4) and has_palette:
        raise MalformedPng("the greyscale image has a PLTE chunk")


class PngBands:
    """An 8-bit, non-interlaced, well-formed PNG, decodable a band of rows at a time.

    ``metadata`` is a 1x1 image with the file's other chunks (see ``_metadata_image``).
    """

    def __init__(self, view: memoryview, header: Header, layout: Layout) -> None:
        self.header = header
        self.layout = layout
        self._view = view
        self.metadata = self._metadata_image()

    @property
    def size(self) -> tuple[int, int]:
        return self.header.width, self.header.height

    def band_rows(self, multiple: int) -> int:
        """Rows per band: a multiple of ``multiple``, about BAND_BYTES of filtered data."""
        return multiple * max(1, BAND_BYTES // (self.header.row_bytes * multiple))

    def inflater(self) -> IdatInflater:
        return IdatInflater(self._view, self.layout.image_data)

    def bands(
        self, rows: int, inflater: IdatInflater | None = None
    ) -> Iterator[tuple[int, Image.Image]]:
        """``(top, image)`` for each band of ``rows`` rows (the last may be shorter).

        Each image holds exactly rows ``top`` to ``top + rows`` of a full decode, in the
        mode Pillow gives the whole file, with its palette and ``transparency``.
        Raises ``CorruptImage`` when the image data is broken or ends early.
        """
        width, height = self.size
        source = inflater if inflater is not None else self.inflater()
        above: list[bytes] = []  # the previous band's last row, unfiltered (filter type 0)
        for top in range(0, height, rows):
            count = min(rows, height - top)
            try:
                filtered = above + source.read(count * self.header.row_bytes)
                band = self._decode(filtered, len(above) + count)
            except DECODER_ERRORS as exc:  # MalformedPng, zlib's or Pillow's
                raise CorruptImage(f"The PNG image data is corrupt: {exc}") from exc
            last = band.height - 1
            above = [b"\x00" + band.crop((0, last, width, last + 1)).tobytes()]
            yield top, band.crop((0, band.height - count, width, band.height)) if top else band

    def _decode(self, filtered: Sequence[bytes], rows: int) -> Image.Image:
        """The pixels of ``rows`` filtered rows (``filtered``: their bytes, in pieces)."""
        band = Image.open(io.BytesIO(self._band_png(filtered, rows)), formats=["PNG"])
        band.load()
        return band

    def _band_png(self, pieces: Sequence[bytes], rows: int) -> bytes:
        """A PNG of ``rows`` rows whose filtered rows are ``pieces``, stored uncompressed."""
        header = self.header
        ihdr = struct.pack(">IIBBBBB", header.width, rows, 8, header.colour_type, 0, 0, 0)
        stream = _stored_zlib(pieces)
        crc = zlib.crc32(b"IDAT")
        for part in stream:
            crc = zlib.crc32(part, crc)
        return b"".join(
            [
                SIGNATURE,
                _chunk(b"IHDR", ihdr),
                self.layout.pixel_chunks,
                struct.pack(">I4s", sum(len(part) for part in stream), b"IDAT"),
                *stream,
                struct.pack(">I", crc),
                _chunk(b"IEND", b""),
            ]
        )

    def _metadata_image(self) -> ImageFile.ImageFile:
        """A 1x1 PNG with every other chunk of the source, in the same places.

        Loading it reads the chunks after the image data as loading the source would, so
        its ``info`` and ``getexif()`` are what the source's would be after a full decode
        (EXIF orientation, ICC profile, text), without decoding the source's pixels.
        """
        colour_type = self.header.colour_type
        ihdr = struct.pack(">IIBBBBB", 1, 1, 8, colour_type, 0, 0, 0)
        pixel = zlib.compress(bytes(1 + SAMPLES[colour_type]))
        first_idat, after_idat = self.layout.image_data
        header_end = len(SIGNATURE) + 25
        png = b"".join(
            [
                SIGNATURE,
                _chunk(b"IHDR", ihdr),
                self._view[header_end:first_idat],
                _chunk(b"IDAT", pixel),
                self._view[after_idat : self.layout.end],
            ]
        )
        return Image.open(io.BytesIO(png), formats=["PNG"])


class IdatInflater:
    """The inflated IDAT stream, read in exact amounts, never inflating more than asked.

    ``inflated`` counts the bytes inflated so far and ``largest_inflate`` the most one
    call to zlib returned: the bound that holds whatever the stream's compression ratio.
    Whatever follows the last row in the stream is never inflated (Pillow ignores it too).
    """

    def __init__(self, view: memoryview, image_data: tuple[int, int]) -> None:
        self._feed = _pieces(view, *image_data)
        self._zlib = zlib.decompressobj()
        self._pending: bytes | memoryview = b""
        self.inflated = 0
        self.largest_inflate = 0

    def read(self, size: int) -> list[bytes]:
        """The next ``size`` inflated bytes, in pieces of at most INFLATE_PIECE bytes."""
        pieces = []
        remaining = size
        while remaining:
            if not self._pending:
                self._pending = next(self._feed, b"")
                if self._zlib.eof or not self._pending:
                    raise MalformedPng("the image data ends before its last row")
            try:
                piece = self._zlib.decompress(self._pending, min(remaining, INFLATE_PIECE))
            except zlib.error as exc:
                raise MalformedPng(f"the image data cannot be inflated ({exc})") from exc
            self._pending = b"" if self._zlib.eof else self._zlib.unconsumed_tail
            if piece:
                pieces.append(piece)
                remaining -= len(piece)
                self.inflated += len(piece)
                self.largest_inflate = max(self.largest_inflate, len(piece))
        return pieces


def _pieces(view: memoryview, first: int, end: int) -> Iterator[memoryview]:
    """The data of the (checked, consecutive) IDAT chunks from ``first`` to ``end``."""
    offset = first
    while offset < end:
        (length,) = struct.unpack_from(">I", view, offset)
        data_end = offset + 8 + length
        for start in range(offset + 8, data_end, FEED_PIECE):
            yield view[start : min(start + FEED_PIECE, data_end)]
        offset = data_end + 4


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def _stored_zlib(pieces: Sequence[bytes]) -> list[bytes | memoryview]:
    """The parts of a zlib stream of ``pieces`` in stored (uncompressed) deflate blocks."""
    blocks = [
        memoryview(piece)[start : start + STORED_BLOCK]
        for piece in pieces
        for start in range(0, len(piece), STORED_BLOCK)
    ]
    stream: list[bytes | memoryview] = [b"\x78\x01"]  # deflate, 32 KiB window, no dictionary
    checksum = zlib.adler32(b"")
    for index, block in enumerate(blocks):
        final = 1 if index == len(blocks) - 1 else 0
        stream += (struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF), block)
        checksum = zlib.adler32(block, checksum)
    stream.append(struct.pack(">I", checksum))
    return stream
