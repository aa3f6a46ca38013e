"""Small inputs for flow tests (the engine's own cases build theirs in tests/images.py)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "photos"


def jpeg(width: int = 640, height: int = 480, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png(width: int = 300, height: int = 200) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 128, 255, 128)).save(buffer, "PNG")
    return buffer.getvalue()


def corpus_photo(name: str) -> bytes:
    path = CORPUS / name
    assert path.is_file(), f"test corpus missing: {path} (shared/corpus/photos beside the repo)"
    return path.read_bytes()
