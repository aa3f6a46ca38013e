"""Image formats the service accepts and produces.

Deliberately free of Pillow: the API imports this on the request path, where cold start
time matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

ACCEPTED_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/tiff",
        "image/bmp",
        "image/avif",
        "image/heic",
        "image/heif",
    }
)

# Pillow's format name of a decoded source -> its canonical content type.
SOURCE_CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "JPEG": "image/jpeg",
        "PNG": "image/png",
        "WEBP": "image/webp",
        "GIF": "image/gif",
        "TIFF": "image/tiff",
        "BMP": "image/bmp",
        "AVIF": "image/avif",
        "HEIF": "image/heif",
    }
)


# A declared content type -> the formats a source's signature may show to honour it
# (chalicelib.imaging.decode.sniff_format's names). HEIC is one of HEIF's brands, so
# image/heic and image/heif both accept a HEIF file; AVIF, though also an ISO-BMFF
# image, is declared as image/avif.
DECLARED_FORMATS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "image/jpeg": frozenset({"JPEG"}),
        "image/png": frozenset({"PNG"}),
        "image/webp": frozenset({"WEBP"}),
        "image/gif": frozenset({"GIF"}),
        "image/tiff": frozenset({"TIFF"}),
        "image/bmp": frozenset({"BMP"}),
        "image/avif": frozenset({"AVIF"}),
        "image/heic": frozenset({"HEIF"}),
        "image/heif": frozenset({"HEIF"}),
    }
)


class OutputFormat(NamedTuple):
    content_type: str
    extension: str


OUTPUT_FORMATS: Mapping[str, OutputFormat] = MappingProxyType(
    {
        "JPEG": OutputFormat("image/jpeg", "jpg"),
        "WEBP": OutputFormat("image/webp", "webp"),
        "PNG": OutputFormat("image/png", "png"),
        "AVIF": OutputFormat("image/avif", "avif"),
    }
)
