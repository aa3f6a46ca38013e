"""The imaging engine: bytes in, encoded renditions and metadata out.

Pure: no AWS, no environment, no files. ``probe`` reads only the header; ``render``
decodes once and produces every preset. Undecodable input raises the domain's
``UnsupportedFormat``, ``CorruptImage`` or ``ImageTooLarge``, never a raw Pillow error.
"""

from __future__ import annotations

from chalicelib.imaging.pipeline import DEFAULT_MAX_PIXELS, probe, render
from chalicelib.imaging.results import Placeholder, RenderResult, Rendition, SourceInfo

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Placeholder",
    "RenderResult",
    "Rendition",
    "SourceInfo",
    "probe",
    "render",
]
