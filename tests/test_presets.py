"""Preset configuration and the format tables (no Pillow involved)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.formats import ACCEPTED_CONTENT_TYPES, OUTPUT_FORMATS, SOURCE_CONTENT_TYPES
from chalicelib.presets import (
    DEFAULT_PRESETS,
    DEFAULT_QUALITY,
    Preset,
    PresetError,
    Watermark,
    load_presets,
    preset_version,
    presets_to_json,
)

REPO = Path(__file__).resolve().parents[1]


def preset_json(**overrides: Any) -> str:
    item: dict[str, Any] = {
        "name": "card",
        "width": 300,
        "height": 200,
        "fit": "cover",
        "format": "WEBP",
    }
    item.update(overrides)
    return json.dumps([{key: value for key, value in item.items() if value is not ...}])


# --- defaults -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   \n"])
def test_no_configuration_means_the_defaults_in_order(raw: str | None) -> None:
    presets = load_presets(raw)

    assert list(presets) == ["thumb", "small", "large"]
    assert tuple(presets.values()) == DEFAULT_PRESETS


def test_default_presets_are_the_documented_ones() -> None:
    thumb, small, large = DEFAULT_PRESETS

    assert (thumb.width, thumb.height, thumb.fit, thumb.format) == (256, 256, "cover", "JPEG")
    assert (small.width, small.height, small.fit, small.format) == (512, 512, "contain", "JPEG")
    assert (large.width, large.height, large.fit, large.format) == (1024, 1024, "contain", "WEBP")
    assert all(preset.watermark is None for preset in DEFAULT_PRESETS)


# --- parsing ------------------------------------------------------------------------


def test_a_full_configuration_is_parsed_in_order() -> None:
    raw = json.dumps(
        [
            {"name": "b-first", "width": 10, "height": 20, "fit": "contain", "format": "PNG"},
            {
                "name": "a_second",
                "width": 4096,
                "height": 1,
                "fit": "cover",
                "format": "AVIF",
                "quality": 1,
                "watermark": {
                    "text": "© Example",
                    "corner": "top-left",
                    "opacity": 1,
                    "size": 0.1,
                },
            },
        ]
    )

    presets = load_presets(raw)

    assert list(presets) == ["b-first", "a_second"]
    assert presets["b-first"] == Preset("b-first", 10, 20, "contain", "PNG", DEFAULT_QUALITY["PNG"])
    assert presets["a_second"] == Preset(
        "a_second", 4096, 1, "cover", "AVIF", 1, Watermark("© Example", "top-left", 1.0, 0.1)
    )


@pytest.mark.parametrize("output_format", sorted(OUTPUT_FORMATS))
def test_quality_defaults_per_format(output_format: str) -> None:
    preset = load_presets(preset_json(format=output_format))["card"]

    assert preset.quality == DEFAULT_QUALITY[output_format]


def test_watermark_defaults() -> None:
    preset = load_presets(preset_json(watermark={"text": "hello"}))["card"]

    assert preset.watermark == Watermark("hello", "bottom-right", 0.6, 0.04)


def test_presets_round_trip_through_json() -> None:
    presets = [
        *DEFAULT_PRESETS,
        Preset("marked", 640, 480, "cover", "AVIF", 55, Watermark("x", "top-right", 0.25, 0.05)),
    ]

    assert list(load_presets(presets_to_json(presets)).values()) == presets


# --- rejection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"name": "x"}', "non-empty JSON list"),
        ("[]", "non-empty JSON list"),
        ('["thumb"]', "presets[0] must be a JSON object"),
        (preset_json(colour="red"), "unknown field(s): colour"),
        (preset_json(fit=...), "missing field(s): fit"),
        (preset_json(name="Thumb"), "preset name 'Thumb'"),
        (preset_json(name="-thumb"), "preset name '-thumb'"),
        (preset_json(name=""), "preset name ''"),
        (preset_json(name="a" * 33), "preset name"),
        (preset_json(name="thumb/x"), "preset name"),
        (preset_json(name="thumb\n"), "preset name"),
        (preset_json(name=7), "presets[0].name must be a string"),
        (preset_json(width=0), "width must be 1..4096"),
        (preset_json(height=4097), "height must be 1..4096"),
        (preset_json(width=True), "presets[0].width must be an integer"),
        (preset_json(width=12.5), "presets[0].width must be an integer"),
        (preset_json(height="200"), "presets[0].height must be an integer"),
        (preset_json(fit="fill"), "fit must be one of cover, contain"),
        (preset_json(format="jpeg"), "format must be one of JPEG, WEBP, PNG, AVIF"),
        (preset_json(format="GIF"), "format must be one of"),
        (preset_json(quality=0), "quality must be 1..100"),
        (preset_json(quality=101), "quality must be 1..100"),
        (preset_json(quality=False), "quality must be an integer"),
        (preset_json(watermark="hello"), "watermark must be a JSON object"),
        (preset_json(watermark={}), "watermark is missing field(s): text"),
        (preset_json(watermark={"text": "  "}), "watermark text must not be empty"),
        (preset_json(watermark={"text": "a\nb"}), "single line"),
        (preset_json(watermark={"text": "x" * 101}), "at most 100 characters"),
        (preset_json(watermark={"text": "x", "corner": "middle"}), "corner must be one of"),
        (preset_json(watermark={"text": "x", "opacity": 1.5}), "opacity must be between 0 and 1"),
        (preset_json(watermark={"text": "x", "opacity": -0.1}), "opacity must be between"),
        (preset_json(watermark={"text": "x", "opacity": "high"}), "opacity must be a number"),
        (preset_json(watermark={"text": "x", "size": 0}), "size must be above 0"),
        (preset_json(watermark={"text": "x", "size": 0.75}), "at most 0.5"),
        (preset_json(watermark={"text": "x", "font": "Arial"}), "unknown field(s): font"),
        (
            '[{"name": "a", "width": 1, "height": 1, "fit": "cover", "format": "PNG",'
            ' "watermark": {"text": "x", "opacity": NaN}}]',
            "opacity must be between",
        ),
    ],
)
def test_invalid_configurations_are_rejected_with_a_clear_message(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_presets(raw)


def test_duplicate_names_are_rejected() -> None:
    item = json.loads(preset_json())[0]

    with pytest.raises(PresetError, match=r"presets\[1\]: duplicate preset name 'card'"):
        load_presets(json.dumps([item, item]))


def test_errors_say_which_preset_is_wrong() -> None:
    good = json.loads(preset_json(name="good"))[0]
    bad = json.loads(preset_json(name="bad", width=0))[0]

    with pytest.raises(PresetError, match=r"^presets\[1\]: preset 'bad': width"):
        load_presets(json.dumps([good, bad]))


def test_presets_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValueError, match="format must be one of"):
        Preset("x", 10, 10, "cover", "BMP", 80)
    with pytest.raises(ValueError, match="opacity"):
        Watermark("x", opacity=2)


def test_preset_errors_are_value_errors() -> None:
    assert issubclass(PresetError, ValueError)


# --- format tables ------------------------------------------------------------------


def test_accepted_content_types() -> None:
    assert set(ACCEPTED_CONTENT_TYPES) == {
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


def test_every_decoded_format_maps_to_an_accepted_content_type() -> None:
    assert set(SOURCE_CONTENT_TYPES) == {
        "JPEG",
        "PNG",
        "WEBP",
        "GIF",
        "TIFF",
        "BMP",
        "AVIF",
        "HEIF",
    }
    assert set(SOURCE_CONTENT_TYPES.values()) <= ACCEPTED_CONTENT_TYPES


def test_output_formats() -> None:
    assert dict(OUTPUT_FORMATS) == {
        "JPEG": ("image/jpeg", "jpg"),
        "WEBP": ("image/webp", "webp"),
        "PNG": ("image/png", "png"),
        "AVIF": ("image/avif", "avif"),
    }
    assert OUTPUT_FORMATS["JPEG"].extension == "jpg"


def test_presets_and_formats_do_not_import_pillow() -> None:
    # The API imports these on the request path; Pillow would slow every cold start.
    code = (
        "import sys, chalicelib.presets, chalicelib.formats\n"
        "loaded = sorted(m for m in sys.modules if m == 'PIL' or m.startswith('PIL.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- versions ------------------------------------------------------------------------------


def test_a_presets_version_is_ten_hex_of_its_canonical_documents_sha256() -> None:
    import hashlib

    preset = Preset("thumb", 256, 256, "cover", "JPEG", 82)
    canonical = (
        '{"fit":"cover","format":"JPEG","height":256,"name":"thumb","quality":82,"width":256}'
    )
    assert preset_version(preset) == hashlib.sha256(canonical.encode()).hexdigest()[:10]
    assert re.fullmatch(r"[0-9a-f]{10}", preset_version(preset))


def test_the_same_definition_has_the_same_version_however_written() -> None:
    spaced = '[{"width": 256, "name": "thumb", "format": "JPEG", "height": 256, "fit": "cover"}]'
    packed = '[{"name":"thumb","fit":"cover","format":"JPEG","height":256,"width":256}]'
    (first,), (second,) = load_presets(spaced).values(), load_presets(packed).values()
    assert preset_version(first) == preset_version(second)
    # Quality left out is its default, the same definition as one that names it.
    explicit = load_presets(packed.replace('"width":256', '"width":256,"quality":82'))
    assert preset_version(explicit["thumb"]) == preset_version(first)


@pytest.mark.parametrize(
    "change",
    [
        {"width": 300},
        {"quality": 90},
        {"fit": "contain"},
        {"format": "WEBP"},
        {"name": "thumb2"},
        {"widths": [128, 256]},
        {"watermark": {"text": "(c) acme"}},
    ],
)
def test_any_change_to_a_definition_gives_a_new_version(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"name": "thumb", "width": 256, "height": 256, "fit": "cover"}
    base["format"] = "JPEG"
    (before,) = load_presets(json.dumps([base])).values()
    (after,) = load_presets(json.dumps([{**base, **change}])).values()
    assert preset_version(after) != preset_version(before)
