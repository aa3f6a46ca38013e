"""The header of a TIFF structure as Pillow reads it: accepted or not, byte order, BigTIFF.

One rule for every walk of a TIFF structure here (``metadata``'s directory checks,
``frames.tiff_pages``, ``isobmff``'s Exif items), so that each walks the directories Pillow
loads and no others. Pillow (``TiffImagePlugin.PREFIXES`` and ``ImageFileDirectory_v2``,
through ``Image.Exif.load`` for embedded EXIF):

- accepts six headers, two of them with the magic number's bytes swapped ("MM\\x2a\\x00",
  "II\\x00\\x2a"), read as classic TIFF;
- takes the byte order from the first two bytes alone;
- reads BigTIFF's 8-byte counts and offsets when the third byte is 43, and only then: a
  big-endian BigTIFF header ("MM\\x00\\x2b") is read as classic TIFF, its first directory at
  the offset in bytes 4-8.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIXES = (
    b"MM\x00\x2a",
    b"II\x2a\x00",
    b"MM\x2a\x00",
    b"II\x00\x2a",
    b"MM\x00\x2b",
    b"II\x2b\x00",
)


@dataclass(frozen=True)
class Layout:
    """Where a TIFF structure keeps its numbers: classic TIFF or BigTIFF, either byte order."""

    endian: str
    big: bool

    @property
    def first_offset_at(self) -> int:
        """Where the header keeps the first directory's offset."""
        return 8 if self.big else 4

    @property
    def count_format(self) -> str:
        return self.endian + ("Q" if self.big else "H")

    @property
    def offset_format(self) -> str:
        return self.endian + ("Q" if self.big else "I")

    @property
    def entry_format(self) -> str:
        return self.endian + ("HHQQ" if self.big else "HHII")

    @property
    def entry_bytes(self) -> int:
        return 20 if self.big else 12

    @property
    def inline_bytes(self) -> int:
        return 8 if self.big else 4

    def inline(self, value: int) -> bytes:
        """An entry's value field as stored, for values kept in it."""
        return value.to_bytes(self.inline_bytes, "little" if self.endian == "<" else "big")


def layout(data: bytes | memoryview) -> Layout | None:
    """How Pillow reads the TIFF structure starting ``data``; None where it reads none (an
    unknown header, or one cut short of its first directory's offset)."""
    head = bytes(data[:4])
    if head not in PREFIXES:
        return None
    big = head[2] == 43
    if len(data) < (16 if big else 8):
        return None
    return Layout("<" if head.startswith(b"II") else ">", big)
