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
    in_set: bool = False  # one of a preset's responsive set

    @property
    def name(self) -> str:
        """Unique within a job: the preset's name, or for a set ``<preset>-<width>w``
        (a set's formats differ by extension)."""
        return f"{self.preset}-{self.width}w" if self.in_set else self.preset

    @property
    def bytes(self) -> int:
        """Size of the encoded output."""
        return len(self.data)


@dataclass(frozen=True)
class Placeholder:
    """What a front end shows before an output loads."""

    blurhash: str
    thumbhash: str  # base64
    dominant_color: str  # "#rrggbb"
    # The upright source's, so the placeholder holds the output's place.
    width: int
    height: int


@dataclass(frozen=True)
class RenderResult:
    source: SourceInfo
    outputs: tuple[Rendition, ...]
    placeholder: Placeholder | None = None  # None when nothing was rendered
