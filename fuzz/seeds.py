"""Seed inputs for the fuzzer, generated: a few small files of every accepted format.

    python -m fuzz.seeds DIR     # writes DIR/<name>.<ext>

Generated rather than stored, so the repository holds no binary corpus; the fuzzer's own
corpus directory (if given one) grows from these.
"""

from __future__ import annotations

import io
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    generator = random.Random(seed)  # noqa: S311 - reproducible pixels, not secrets
    return Image.frombytes("RGB", size, generator.randbytes(size[0] * size[1] * 3))


def _encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _heif(image: Image.Image) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=80)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """Small valid files, keyed by a file name whose extension names the format."""
    picture = _noise((24, 16), 1)
    alpha = picture.copy()
    alpha.putalpha(_noise((24, 16), 2).convert("L"))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [_noise((8, 8), seed) for seed in range(3)]
    makers: dict[str, Callable[[], bytes]] = {
        "baseline.jpg": lambda: _encode(picture, "JPEG", quality=80, exif=exif.tobytes()),
        "progressive.jpg": lambda: _encode(picture, "JPEG", progressive=True),
        "cmyk.jpg": lambda: _encode(picture.convert("CMYK"), "JPEG"),
        "rgba.png": lambda: _encode(alpha, "PNG"),
        "palette.png": lambda: _encode(picture.convert("P"), "PNG"),
        "grey16.png": lambda: _encode(picture.convert("I;16"), "PNG"),
        "animated.png": lambda: _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "animated.gif": lambda: _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "rgb.bmp": lambda: _encode(picture, "BMP"),
        "palette.bmp": lambda: _encode(picture.convert("P"), "BMP"),
        "lzw.tif": lambda: _encode(picture, "TIFF", compression="tiff_lzw"),
        "pages.tif": lambda: _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "jpeg.tif": lambda: _encode(picture, "TIFF", compression="jpeg"),
        "lossy.webp": lambda: _encode(alpha, "WEBP"),
        "animated.webp": lambda: _encode(
            frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True
        ),
        "still.avif": lambda: _encode(picture, "AVIF"),
        "still.heic": lambda: _heif(picture),
    }
    return {name: make() for name, make in makers.items()}


def write_seeds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in seed_files().items():
        path = directory / name
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m fuzz.seeds DIR")
    for seed in write_seeds(Path(sys.argv[1])):
        print(seed)
