"""Inputs for flow tests (the engine's own cases build theirs in tests/images.py).

`sample_photo` reads the real photos committed in samples/photos/; `phone_photo` makes a
phone-style photo from one of them, deterministically, at test time (never committed).
The shared corpus beside the clone (`CORPUS`) only widens a test where it is present.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "photos"
CORPUS = REPO.parent / "shared" / "corpus" / "photos"

PHONE_SIZE = (4032, 3024)  # 12 MP as displayed; stored rotated, 3024x4032
PHONE_MAKE, PHONE_MODEL = "SampleCam", "Model 12"
PHONE_GPS = {1: "N", 2: (59.0, 26.0, 12.5), 3: "E", 4: (24.0, 44.0, 3.1)}


def jpeg(width: int = 640, height: int = 480, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png(width: int = 300, height: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 255, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def sample_photo(name: str) -> bytes:
    """A photo committed in samples/photos/ (BytheWater, ColorfulCups, Kite .jpg)."""
    return (SAMPLES / name).read_bytes()


def phone_name(source: str) -> str:
    return f"phone-{Path(source).stem}-o6-gps.jpg"


@functools.cache
def phone_photo(source: str = "BytheWater.jpg") -> bytes:
    """A phone-style JPEG made from a sample photo, the same bytes every time: the picture
    cropped to 4:3 and upscaled to 12 MP (4032x3024) with sensor-like noise (a fixed seed),
    stored rotated (3024x4032) with EXIF orientation 6, camera make and model and a GPS
    position; quality 90. Cached: one build per source and test process."""
    with Image.open(SAMPLES / source) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    crop = min(width, height * 4 // 3)
    left = (width - crop) // 2
    picture = picture.crop((left, 0, left + crop, crop * 3 // 4)).resize(
        PHONE_SIZE, Image.Resampling.BICUBIC
    )
    pixels = np.asarray(picture, dtype=np.int16)
    noise = np.random.default_rng(12).integers(-6, 7, size=pixels.shape, dtype=np.int16)
    picture = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8), "RGB")
    stored = picture.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    exif = Image.Exif()
    exif.update({0x010F: PHONE_MAKE, 0x0110: PHONE_MODEL, 0x0112: 6})
    exif.get_ifd(0x8825).update(PHONE_GPS)
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


def write_photos(directory: Path, samples: list[str], phones: list[str]) -> Path:
    """`directory` with the named sample photos and the phone photos made from `phones`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in samples:
        (directory / name).write_bytes(sample_photo(name))
    for source in phones:
        (directory / phone_name(source)).write_bytes(phone_photo(source))
    return directory


def corpus_photos() -> list[Path]:
    """The shared corpus's JPEGs where it lies beside the clone; none where it does not."""
    return sorted(CORPUS.glob("*.jpg"))
