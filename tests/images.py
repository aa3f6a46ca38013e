"""Tiny test images built in memory: encoders, hand-made files and colour profiles."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from typing import Any

from PIL import Image

Colour = tuple[int, int, int]

RED: Colour = (255, 0, 0)
GREEN: Colour = (0, 255, 0)
BLUE: Colour = (0, 0, 255)
YELLOW: Colour = (255, 255, 0)
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
GREY: Colour = (128, 128, 128)

# Quadrant colours in reading order: top-left, top-right, bottom-left, bottom-right.
QUADRANT_COLOURS: tuple[Colour, Colour, Colour, Colour] = (RED, GREEN, BLUE, YELLOW)

# The inverse of what EXIF orientation N asks a viewer to do: applied to an upright
# picture it gives the pixels a camera stores alongside tag N.
STORED_FOR_ORIENTATION: dict[int, Image.Transpose | None] = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def solid(
    colour: Sequence[int] | int | float, size: tuple[int, int] = (32, 32), mode: str = "RGB"
) -> Image.Image:
    fill: Any = tuple(colour) if isinstance(colour, Sequence) else colour
    return Image.new(mode, size, fill)


def quadrants(size: tuple[int, int] = (64, 32)) -> Image.Image:
    """An asymmetric picture: four differently coloured quadrants (see QUADRANT_COLOURS)."""
    width, height = size
    image = Image.new("RGB", size)
    half_w, half_h = width // 2, height // 2
    boxes = ((0, 0), (half_w, 0), (0, half_h), (half_w, half_h))
    for (left, top), colour in zip(boxes, QUADRANT_COLOURS, strict=True):
        image.paste(colour, (left, top, left + half_w, top + half_h))
    return image


def quadrant_colours(image: Image.Image) -> list[tuple[int, ...]]:
    """The colour at the centre of each quadrant, in reading order."""
    width, height = image.size
    points = [(width // 4, height // 4), (3 * width // 4, height // 4)]
    points += [(width // 4, 3 * height // 4), (3 * width // 4, 3 * height // 4)]
    rgb = image.convert("RGB")
    return [tuple(rgb.getpixel(point)) for point in points]  # type: ignore[arg-type]


def noise(size: tuple[int, int] = (64, 64), seed: int = 1) -> Image.Image:
    """Deterministic detail, so encoders produce a realistic amount of data."""
    import random

    generator = random.Random(seed)
    return Image.frombytes("RGB", size, generator.randbytes(size[0] * size[1] * 3))


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def with_orientation(upright: Image.Image, orientation: int, image_format: str = "JPEG") -> bytes:
    """``upright`` stored the way a camera would with EXIF orientation ``orientation``."""
    method = STORED_FOR_ORIENTATION[orientation]
    stored = upright if method is None else upright.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    options: dict[str, Any] = {"exif": exif.tobytes()}
    if image_format == "JPEG":
        options["quality"] = 95
    return encode(stored, image_format, **options)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(actual: Sequence[int], expected: Sequence[int], tolerance: int = 8) -> bool:
    return len(actual) == len(expected) and all(
        abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)
    )


# --- Hand-made files ----------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG from raw scanlines (each already prefixed with its filter byte)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png16(pixels: Sequence[Sequence[Sequence[int]]], colour_type: int) -> bytes:
    """A 16-bit PNG; ``pixels[y][x]`` holds 1 (grey), 3 (RGB) or 4 (RGBA) samples."""
    rows = b"".join(
        b"\x00" + b"".join(struct.pack(f">{len(pixel)}H", *pixel) for pixel in row)
        for row in pixels
    )
    return png_bytes(len(pixels[0]), len(pixels), 16, colour_type, rows)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but that holds almost nothing."""
    return png_bytes(width, height, 8, 2, zlib.compress(b"\x00" * 64))


def psd_bytes() -> bytes:
    """A valid 1x1 RGB Photoshop file (Pillow could open it; the service must not)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 1, 1, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers
    return header + sections + struct.pack(">H", 0) + b"\x80\x40\x20"


EPS_BYTES = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
    b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
)
PDF_BYTES = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def without_adobe_marker(jpeg: bytes) -> bytes:
    """``jpeg`` with its APP14 "Adobe" segment removed."""
    position = 2
    while position < len(jpeg):
        marker, length = struct.unpack(">HH", jpeg[position : position + 4])
        if marker == 0xFFEE and jpeg[position + 4 : position + 9] == b"Adobe":
            return jpeg[:position] + jpeg[position + 2 + length :]
        if marker == 0xFFDA:
            break
        position += 2 + length
    raise ValueError("no Adobe segment before the scan")


# --- ICC profiles -----------------------------------------------------------------------

D50 = (0.9642, 1.0, 0.8249)
# Adobe RGB (1998) colorants adapted to D50, as in Adobe's own profile; gamma 563/256.
ADOBE_RGB_COLORANTS = (
    (0.6097559, 0.3111145, 0.0194702),
    (0.2052401, 0.6256714, 0.0608902),
    (0.1492240, 0.0632141, 0.7445396),
)
ADOBE_RGB_GAMMA = 563 / 256


def rgb_icc_profile(
    description: str,
    colorants: Sequence[Sequence[float]] = ADOBE_RGB_COLORANTS,
    gamma: float = ADOBE_RGB_GAMMA,
) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (what Adobe RGB and Display P3 are)."""
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _desc_tag(description)),
        (b"cprt", b"text" + bytes(4) + b"No copyright\x00"),
        (b"wtpt", _xyz_tag(D50)),
        (b"rXYZ", _xyz_tag(colorants[0])),
        (b"gXYZ", _xyz_tag(colorants[1])),
        (b"bXYZ", _xyz_tag(colorants[2])),
    ]
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    data = b""
    for signature, payload in tags:
        table += signature + struct.pack(">II", offset + len(data), len(payload))
        data += payload + bytes(-len(payload) % 4)
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, b"mntr", b"RGB ", b"XYZ ")
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8)
        + struct.pack(">I", 0)
        + b"".join(_s15_fixed16(value) for value in D50)
        + bytes(4 + 16 + 28)
    )
    return header + table + data


def _xyz_tag(xyz: Sequence[float]) -> bytes:
    return b"XYZ " + bytes(4) + b"".join(_s15_fixed16(value) for value in xyz)


def _s15_fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _desc_tag(description: str) -> bytes:
    ascii_text = description.encode("ascii") + b"\x00"
    return (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)
        + bytes(67)  # no Macintosh ScriptCode description
    )
