"""Thumbnail presets: what each rendition of an upload looks like.

A stage can replace the defaults with a JSON list in an environment variable; that text
goes through :func:`load_presets`, which rejects anything malformed with a ``ValueError``.
Deliberately free of Pillow (imported on the API's request path).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

# Re-exported: the engine (chalicelib.imaging) and callers name it from here.
from chalicelib.errors import PresetError as PresetError
from chalicelib.formats import OUTPUT_FORMATS

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
Fit = Literal["cover", "contain"]

CORNERS: tuple[Corner, ...] = get_args(Corner)
FITS: tuple[Fit, ...] = get_args(Fit)
MAX_DIMENSION = 4096
MAX_WATERMARK_TEXT = 100
# A responsive set's widths, and its formats, at most.
MAX_SET_WIDTHS = 8
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")

# Encoder quality when a preset does not give one. PNG is lossless and ignores it.
DEFAULT_QUALITY: Mapping[str, int] = MappingProxyType(
    {"JPEG": 82, "WEBP": 80, "AVIF": 60, "PNG": 100}
)


@dataclass(frozen=True)
class Watermark:
    text: str
    corner: Corner = "bottom-right"
    opacity: float = 0.6
    # Text height as a fraction of the output's shorter side (never below a legible minimum).
    size: float = 0.04

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise PresetError("watermark text must not be empty")
        if len(self.text) > MAX_WATERMARK_TEXT:
            raise PresetError(f"watermark text must be at most {MAX_WATERMARK_TEXT} characters")
        if not self.text.isprintable():
            raise PresetError("watermark text must be a single line of printable characters")
        if self.corner not in CORNERS:
            raise PresetError(f"watermark corner must be one of {', '.join(CORNERS)}")
        if not (math.isfinite(self.opacity) and 0 <= self.opacity <= 1):
            raise PresetError("watermark opacity must be between 0 and 1")
        if not (math.isfinite(self.size) and 0 < self.size <= 0.5):
            raise PresetError("watermark size must be above 0 and at most 0.5")


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: Fit
    format: str  # a key of OUTPUT_FORMATS
    quality: int
    watermark: Watermark | None = None
    # A responsive set: one output per width (the box scaled to it, never above the source)
    # and per format. Empty: one output, `width` x `height` in `format`.
    widths: tuple[int, ...] = ()
    formats: tuple[str, ...] = ()

    @property
    def is_set(self) -> bool:
        return bool(self.widths or self.formats)

    @property
    def set_widths(self) -> tuple[int, ...]:
        """The widths asked for, smallest first (the preset's own width for a plain one)."""
        return tuple(sorted(self.widths)) if self.widths else (self.width,)

    @property
    def set_formats(self) -> tuple[str, ...]:
        return self.formats or (self.format,)

    def box_at(self, width: int) -> tuple[int, int]:
        """The preset's box scaled to ``width``, its aspect ratio kept."""
        return width, max(1, round(self.height * width / self.width))

    def quality_of(self, output_format: str) -> int:
        """``quality`` is for ``format``; a set's other formats take their own default."""
        return self.quality if output_format == self.format else DEFAULT_QUALITY[output_format]

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise PresetError(
                f"preset name {self.name!r} must be 1-32 characters of a-z, 0-9, '_' or '-',"
                " starting with a letter or digit"
            )
        for dimension in ("width", "height"):
            value = getattr(self, dimension)
            if not 1 <= value <= MAX_DIMENSION:
                raise PresetError(f"preset {self.name!r}: {dimension} must be 1..{MAX_DIMENSION}")
        if self.fit not in FITS:
            raise PresetError(f"preset {self.name!r}: fit must be one of {', '.join(FITS)}")
        if self.format not in OUTPUT_FORMATS:
            raise PresetError(
                f"preset {self.name!r}: format must be one of {', '.join(OUTPUT_FORMATS)}"
            )
        if not 1 <= self.quality <= 100:
            raise PresetError(f"preset {self.name!r}: quality must be 1..100")
        self._check_set()

    def _check_set(self) -> None:
        where = f"preset {self.name!r}"
        if len(self.widths) > MAX_SET_WIDTHS or len(set(self.widths)) != len(self.widths):
            raise PresetError(f"{where}: widths must be at most {MAX_SET_WIDTHS} distinct widths")
        if any(not 1 <= width <= MAX_DIMENSION for width in self.widths):
            raise PresetError(f"{where}: each of widths must be 1..{MAX_DIMENSION}")
        if len(set(self.formats)) != len(self.formats):
            raise PresetError(f"{where}: formats must not repeat")
        if any(name not in OUTPUT_FORMATS for name in self.formats):
            raise PresetError(
                f"{where}: each of formats must be one of {', '.join(OUTPUT_FORMATS)}"
            )


DEFAULT_PRESETS: tuple[Preset, ...] = (
    Preset("thumb", 256, 256, "cover", "JPEG", DEFAULT_QUALITY["JPEG"]),
    Preset("small", 512, 512, "contain", "JPEG", DEFAULT_QUALITY["JPEG"]),
    Preset("large", 1024, 1024, "contain", "WEBP", DEFAULT_QUALITY["WEBP"]),
)

_PRESET_KEYS = frozenset(
    {"name", "width", "height", "fit", "format", "quality", "watermark", "widths", "formats"}
)
_REQUIRED_PRESET_KEYS = ("name", "width", "height", "fit", "format")
_WATERMARK_KEYS = frozenset({"text", "corner", "opacity", "size"})


def load_presets(raw: str | None) -> dict[str, Preset]:
    """Parse a stage's preset configuration; ``None`` or blank means the defaults.

    The result is keyed by preset name, in the configured order.
    """
    if raw is None or not raw.strip():
        return {preset.name: preset for preset in DEFAULT_PRESETS}
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PresetError(f"presets are not valid JSON: {exc}") from exc
    if not isinstance(document, list) or not document:
        raise PresetError("presets must be a non-empty JSON list of objects")
    presets: dict[str, Preset] = {}
    for index, item in enumerate(document):
        preset = _parse_preset(item, f"presets[{index}]")
        if preset.name in presets:
            raise PresetError(f"presets[{index}]: duplicate preset name {preset.name!r}")
        presets[preset.name] = preset
    return presets


def presets_to_json(presets: Iterable[Preset]) -> str:
    """The JSON text that :func:`load_presets` turns back into ``presets``."""
    return json.dumps([_preset_document(preset) for preset in presets])


def parse_preset(item: object, where: str) -> Preset:
    """One preset from its JSON document; a ``PresetError`` names ``where`` and the field."""
    return _parse_preset(item, where)


def preset_document(preset: Preset) -> dict[str, Any]:
    """The JSON document :func:`parse_preset` turns back into ``preset``."""
    return _preset_document(preset)


def preset_version(preset: Preset) -> str:
    """The preset's version: the first 10 hex digits of the SHA-256 of its canonical JSON
    document (sorted keys, no whitespace), name included. A pure function of the
    definition: the same preset always has the same version, a changed one a new one, so
    an output's key says which definition made it."""
    canonical = json.dumps(_preset_document(preset), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _parse_preset(item: object, where: str) -> Preset:
    fields = _object(item, where, allowed=_PRESET_KEYS, required=_REQUIRED_PRESET_KEYS)
    output_format = _string(fields["format"], f"{where}.format")
    if output_format not in OUTPUT_FORMATS:
        raise PresetError(f"{where}.format must be one of {', '.join(OUTPUT_FORMATS)}")
    name = _string(fields["name"], f"{where}.name")
    width = _integer(fields["width"], f"{where}.width")
    height = _integer(fields["height"], f"{where}.height")
    fit = _string(fields["fit"], f"{where}.fit")
    quality = _integer(fields.get("quality", DEFAULT_QUALITY[output_format]), f"{where}.quality")
    raw_watermark = fields.get("watermark")
    watermark = None if raw_watermark is None else _parse_watermark(raw_watermark, where)
    widths = tuple(_integer(value, f"{where}.widths") for value in _list(fields, "widths", where))
    formats = tuple(_string(value, f"{where}.formats") for value in _list(fields, "formats", where))
    try:
        return Preset(
            name, width, height, cast(Fit, fit), output_format, quality, watermark, widths, formats
        )
    except PresetError as exc:
        raise PresetError(f"{where}: {exc}") from exc


def _parse_watermark(item: object, where: str) -> Watermark:
    where = f"{where}.watermark"
    fields = _object(item, where, allowed=_WATERMARK_KEYS, required=("text",))
    options: dict[str, Any] = {"text": _string(fields["text"], f"{where}.text")}
    if "corner" in fields:
        options["corner"] = _string(fields["corner"], f"{where}.corner")
    for key in ("opacity", "size"):
        if key in fields:
            options[key] = _number(fields[key], f"{where}.{key}")
    try:
        return Watermark(**options)
    except PresetError as exc:
        raise PresetError(f"{where}: {exc}") from exc


def _preset_document(preset: Preset) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": preset.name,
        "width": preset.width,
        "height": preset.height,
        "fit": preset.fit,
        "format": preset.format,
        "quality": preset.quality,
    }
    if preset.widths:
        document["widths"] = list(preset.widths)
    if preset.formats:
        document["formats"] = list(preset.formats)
    if preset.watermark is not None:
        watermark = preset.watermark
        document["watermark"] = {
            "text": watermark.text,
            "corner": watermark.corner,
            "opacity": watermark.opacity,
            "size": watermark.size,
        }
    return document


def _object(
    item: object, where: str, *, allowed: frozenset[str], required: tuple[str, ...]
) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise PresetError(f"{where} must be a JSON object")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise PresetError(f"{where} has unknown field(s): {', '.join(unknown)}")
    missing = [key for key in required if key not in item]
    if missing:
        raise PresetError(f"{where} is missing field(s): {', '.join(missing)}")
    return cast(dict[str, Any], item)


def _list(fields: dict[str, Any], key: str, where: str) -> list[object]:
    value = fields.get(key, [])
    if not isinstance(value, list):
        raise PresetError(f"{where}.{key} must be a JSON list")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PresetError(f"{where} must be a string")
    return value


def _integer(value: object, where: str) -> int:
    # bool is an int subclass; `true` is never a size.
    if isinstance(value, bool) or not isinstance(value, int):
        raise PresetError(f"{where} must be an integer")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PresetError(f"{where} must be a number")
    return float(value)
