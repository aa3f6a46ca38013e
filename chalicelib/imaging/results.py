"""What rendering returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    format: str  # Pillow's name, e.g. "JPEG"
    content_type: str
    # As displayed, i.e. after the EXIF orientation is applied.
    width: int
    height: int


@dataclass(frozen=True)
class Rendition:
    preset: str
    width: int
    height: int
    format: str  # a key of OUTPUT_FORMATS
    content_type: str
    extension: str
    data: bytes

    @property
    def bytes(self) -> int:
        """Size of the encoded output."""
        return len(self.data)


@dataclass(frozen=True)
class RenderResult:
    source: SourceInfo
    outputs: tuple[Rendition, ...]
