"""The imaging engine, on tiny in-memory images and on real photos (samples/photos/)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import random
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageStat

from chalicelib.errors import CorruptImage, ImageTooLarge, SourceError, UnsupportedFormat
from chalicelib.imaging import RenderResult, Rendition, SourceInfo, metadata, probe, render
from chalicelib.imaging.__main__ import main as cli_main
from chalicelib.imaging.decode import draft, sniff_format
from chalicelib.imaging.geometry import Placement, place, to_stored
from chalicelib.presets import DEFAULT_PRESETS, Corner, Fit, Preset, Watermark
from tests import hostile
from tests.images import (
    BLACK,
    BLUE,
    EPS_BYTES,
    GREEN,
    GREY,
    PDF_BYTES,
    QUADRANT_COLOURS,
    RED,
    STORED_FOR_ORIENTATION,
    WHITE,
    YELLOW,
    decode,
    encode,
    near,
    noise,
    png16,
    png_bomb,
    png_bytes,
    psd_bytes,
    quadrant_colours,
    quadrants,
    rgb_icc_profile,
    solid,
    with_orientation,
    without_adobe_marker,
)
from tests.samples import corpus_photos, phone_name, phone_photo, sample_photo

REPO = Path(__file__).resolve().parents[1]

# A box no test image reaches: the output is the source's pixels, untouched by resampling.
AS_IS = Preset("as-is", 4096, 4096, "contain", "PNG", 100)
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def preset(
    name: str = "out",
    size: tuple[int, int] = (4096, 4096),
    fit: Fit = "contain",
    output_format: str = "PNG",
    quality: int = 90,
    watermark: Watermark | None = None,
) -> Preset:
    return Preset(name, size[0], size[1], fit, output_format, quality, watermark)


def render_one(data: bytes, rendition: Preset = AS_IS) -> Image.Image:
    return decode(render(data, [rendition]).outputs[0].data)


def pixel(image: Image.Image, point: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    value = image.getpixel(point)
    assert isinstance(value, tuple)
    return value


def extrema(image: Image.Image) -> tuple[float, float]:
    low, high = image.getextrema()
    assert not isinstance(low, tuple)
    assert not isinstance(high, tuple)
    return low, high


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


# --- geometry -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [
        ((2000, 1000), (512, 512), (512, 256)),
        ((1000, 2000), (512, 512), (256, 512)),
        ((1000, 1000), (300, 200), (200, 200)),
        ((3000, 10), (100, 100), (100, 1)),  # never below one pixel
        ((100, 50), (512, 512), (100, 50)),  # never upscaled
        ((512, 512), (512, 512), (512, 512)),
    ],
)
def test_contain_fits_inside_the_box_keeping_the_aspect_ratio(
    source: tuple[int, int], box: tuple[int, int], expected: tuple[int, int]
) -> None:
    placement = place("contain", *box, *source)

    assert (placement.width, placement.height) == expected
    assert placement.box == (0, 0, *source)


def test_cover_fills_the_box_with_the_centre_of_the_source() -> None:
    placement = place("cover", 256, 256, 2000, 1000)

    assert (placement.width, placement.height) == (256, 256)
    assert placement.box == (500, 0, 1500, 1000)


def test_cover_with_a_small_source_crops_to_the_box_shape_without_scaling() -> None:
    assert place("cover", 256, 256, 100, 50) == Placement((25, 0, 75, 50), 50, 50)
    assert place("cover", 256, 128, 300, 100) == Placement((50, 0, 250, 100), 200, 100)
    assert place("cover", 256, 256, 200, 300) == Placement((0, 50, 200, 250), 200, 200)


def test_no_output_dimension_ever_exceeds_the_source() -> None:
    generator = random.Random(7)
    for _ in range(2000):
        source = (generator.randint(1, 5000), generator.randint(1, 5000))
        box = (generator.randint(1, 4096), generator.randint(1, 4096))
        fits: tuple[Fit, ...] = ("cover", "contain")
        for fit in fits:
            placement = place(fit, *box, *source)
            assert 1 <= placement.width <= min(box[0], source[0]), (fit, source, box)
            assert 1 <= placement.height <= min(box[1], source[1]), (fit, source, box)
            left, top, right, bottom = placement.box
            assert 0 <= left < right <= source[0]
            assert 0 <= top < bottom <= source[1]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_placements_map_to_the_same_pixels_as_stored(orientation: int) -> None:
    upright = noise((40, 24))
    method = STORED_FOR_ORIENTATION[orientation]
    stored = upright if method is None else upright.transpose(method)
    placement = Placement((5, 3, 21, 11), 16, 8)  # deliberately off-centre

    mapped = to_stored(placement, orientation, upright.size)

    left, top, right, bottom = (int(edge) for edge in mapped.box)
    crop = stored.crop((left, top, right, bottom))
    if orientation in UPRIGHT:
        crop = crop.transpose(UPRIGHT[orientation])
    assert crop.tobytes() == upright.crop((5, 3, 21, 11)).tobytes()
    swapped = orientation >= 5
    assert (mapped.width, mapped.height) == ((8, 16) if swapped else (16, 8))


# --- rendering sizes and content ------------------------------------------------------------


def test_default_presets_on_a_landscape_image() -> None:
    result = render(encode(noise((1200, 800)), "JPEG"), DEFAULT_PRESETS)

    assert result.source == SourceInfo("JPEG", "image/jpeg", 1200, 800)
    assert [(o.preset, o.width, o.height, o.format) for o in result.outputs] == [
        ("thumb", 256, 256, "JPEG"),
        ("small", 512, 341, "JPEG"),
        ("large", 1024, 683, "WEBP"),
    ]
    for output in result.outputs:
        image = decode(output.data)
        assert image.size == (output.width, output.height)
        assert image.format == output.format
        assert output.bytes == len(output.data)


def test_a_rendition_knows_its_size_in_bytes() -> None:
    assert Rendition("p", 1, 1, "PNG", "image/png", "png", b"abc").bytes == 3


def test_renditions_describe_their_encoding() -> None:
    presets = [
        preset(f"p-{fmt.lower()}", (16, 16), output_format=fmt)
        for fmt in ("JPEG", "WEBP", "PNG", "AVIF")
    ]

    outputs = render(encode(noise((32, 32)), "PNG"), presets).outputs

    described = [(o.preset, o.format, o.content_type, o.extension) for o in outputs]
    assert described == [
        ("p-jpeg", "JPEG", "image/jpeg", "jpg"),
        ("p-webp", "WEBP", "image/webp", "webp"),
        ("p-png", "PNG", "image/png", "png"),
        ("p-avif", "AVIF", "image/avif", "avif"),
    ]
    assert [decode(o.data).format for o in outputs] == ["JPEG", "WEBP", "PNG", "AVIF"]


def test_small_sources_are_never_upscaled() -> None:
    source = noise((40, 20))

    result = render(encode(source, "PNG"), [*DEFAULT_PRESETS, AS_IS])

    sizes = [(o.preset, o.width, o.height) for o in result.outputs]
    assert sizes == [("thumb", 20, 20), ("small", 40, 20), ("large", 40, 20), ("as-is", 40, 20)]
    assert decode(result.outputs[3].data).tobytes() == source.tobytes()
    # The cover crop is the centre 20x20, pixel for pixel.
    thumb_as_png = render(encode(source, "PNG"), [preset(size=(256, 256), fit="cover")]).outputs[0]
    assert decode(thumb_as_png.data).tobytes() == source.crop((10, 0, 30, 20)).tobytes()


def test_cover_keeps_the_centre_and_contain_keeps_everything() -> None:
    data = encode(quadrants((128, 64)), "PNG")

    cover, contain = render(
        data, [preset("c", (32, 32), fit="cover"), preset("k", (32, 32), fit="contain")]
    ).outputs

    assert (cover.width, cover.height) == (32, 32)
    assert (contain.width, contain.height) == (32, 16)
    for output in (cover, contain):
        colours = quadrant_colours(decode(output.data))
        assert all(near(c, e, 4) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))


def test_outputs_come_in_preset_order_whatever_their_size() -> None:
    presets = [preset("tiny", (8, 8)), preset("big", (200, 200)), preset("mid", (50, 50))]

    outputs = render(encode(noise((400, 300)), "PNG"), presets).outputs

    assert [(o.preset, o.width) for o in outputs] == [("tiny", 8), ("big", 200), ("mid", 50)]


def test_the_cascade_matches_resizing_from_the_source() -> None:
    # The thumbnail is resized from the larger output; that must not visibly differ.
    data = encode(noise((90, 60), seed=3).resize((900, 600), Image.Resampling.BICUBIC), "PNG")
    thumb = preset("t", (64, 64), fit="cover")

    alone = render(data, [thumb]).outputs[0]
    cascaded = render(data, [preset("l", (400, 400)), thumb]).outputs[1]

    assert mean_difference(decode(alone.data), decode(cascaded.data)) < 2  # of 255


def test_render_without_presets_still_validates_the_image() -> None:
    result = render(encode(noise((64, 48)), "JPEG"), [])

    assert result == RenderResult(SourceInfo("JPEG", "image/jpeg", 64, 48), ())
    with pytest.raises(CorruptImage):
        render(encode(noise((64, 48)), "JPEG")[:400], [])


def test_jpeg_decodes_at_a_reduced_scale_but_never_below_the_need() -> None:
    data = encode(noise((800, 600)), "JPEG")
    for wanted, expected_scale in [(0.2, 0.25), (0.26, 0.5), (0.125, 0.125), (0.01, 0.125)]:
        image = Image.open(io.BytesIO(data))
        scale = draft(image, wanted)
        image.load()
        assert scale == (expected_scale, expected_scale)
        assert image.width >= 800 * wanted


# --- EXIF orientation -----------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_is_applied_to_the_pixels(orientation: int) -> None:
    data = with_orientation(quadrants((64, 32)), orientation)
    stored = Image.open(io.BytesIO(data))
    assert stored.size == ((32, 64) if orientation >= 5 else (64, 32))

    result = render(data, [AS_IS, preset("half", (32, 32), output_format="JPEG")])

    assert result.source == SourceInfo("JPEG", "image/jpeg", 64, 32)
    for output, size in zip(result.outputs, [(64, 32), (32, 16)], strict=True):
        image = decode(output.data)
        assert image.size == size
        colours = quadrant_colours(image)
        assert all(near(c, e, 24) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))
        assert ExifTags.Base.Orientation not in image.getexif()


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_orientation_combines_with_dct_scaling_and_cover_crops(orientation: int) -> None:
    data = with_orientation(quadrants((512, 256)), orientation)

    outputs = render(
        data, [preset("c", (40, 40), fit="cover"), preset("k", (64, 64), output_format="WEBP")]
    ).outputs

    assert [(o.width, o.height) for o in outputs] == [(40, 40), (64, 32)]
    for output in outputs:
        colours = quadrant_colours(decode(output.data))
        assert all(near(c, e, 24) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))


@pytest.mark.parametrize("image_format", ["PNG", "WEBP", "TIFF", "AVIF"])
@pytest.mark.parametrize("orientation", [3, 6])
def test_orientation_of_other_formats(image_format: str, orientation: int) -> None:
    data = with_orientation(quadrants((64, 32)), orientation, image_format)

    assert probe(data, max_pixels=10_000).width == 64
    image = render_one(data)

    assert image.size == (64, 32)
    colours = quadrant_colours(image)
    assert all(near(c, e, 24) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))


def _exif(*entries: tuple[int, int, int, bytes], endian: str = "<", big: bool = False) -> bytes:
    """An EXIF block whose IFD0 holds ``entries`` (tag, type, count, value field); the bytes
    after the IFD are ``1, 2, 3, ...`` as SHORTs, for entries that point past it."""
    order = b"II" if endian == "<" else b"MM"
    if big:
        header = order + struct.pack(endian + "HHHQ", 43, 8, 0, 16)
        layout, width = "HHQ", 8
    else:
        header = order + struct.pack(endian + "HI", 42, 8)
        layout, width = "HHI", 4
    count = struct.pack(endian + ("Q" if big else "H"), len(entries))
    packed = b"".join(
        struct.pack(endian + layout, tag, kind, number) + value.ljust(width, b"\x00")
        for tag, kind, number, value in entries
    )
    tail = b"".join(struct.pack(endian + "H", value) for value in range(1, 9))
    return header + count + packed + bytes(width) + tail


def _short(value: int, endian: str = "<") -> bytes:
    return struct.pack(endian + "H", value)


ORIENTATION_BLOCKS = {
    "short": _exif((0x0112, 3, 1, _short(6))),
    "big-endian": _exif((0x0112, 3, 1, _short(8, ">")), endian=">"),
    "long": _exif((0x0112, 4, 1, struct.pack("<I", 5))),
    "signed-short": _exif((0x0112, 8, 1, _short(7))),
    "two-shorts-inline": _exif((0x0112, 3, 2, _short(2) + _short(9))),
    "three-shorts-out-of-line": _exif((0x0112, 3, 3, struct.pack("<I", 22))),
    "out-of-line-past-the-end": _exif((0x0112, 3, 40, struct.pack("<I", 22))),
    "first-entry-wins": _exif((0x0112, 3, 1, _short(6)), (0x0112, 3, 1, _short(3))),
    "unreadable-last-entry": _exif((0x0112, 3, 1, _short(6)), (0x0112, 3, 99, b"\xff" * 4)),
    "unreadable-first-entry": _exif((0x0112, 3, 99, b"\xff" * 4), (0x0112, 3, 1, _short(3))),
    # Out-of-line data past the block's size (54 bytes) is counted even when skipped ...
    "out-of-line-budget-spent": _exif(
        (0x010E, 2, 200, struct.pack("<I", 8)), (0x0112, 3, 3, struct.pack("<I", 40))
    ),
    # ... but a duplicate, skipped unread, is not (32 + 6 bytes of 66, not 32 + 32 + 6).
    "duplicate-not-counted": _exif(
        (0x010E, 2, 32, struct.pack("<I", 8)),
        (0x010E, 2, 32, struct.pack("<I", 8)),
        (0x0112, 3, 3, struct.pack("<I", 52)),
    ),
    "rational": _exif((0x0112, 5, 1, struct.pack("<I", 22))),
    "byte": _exif((0x0112, 1, 1, b"\x06")),
    "ascii": _exif((0x0112, 2, 2, b"6\x00")),
    "unknown-type": _exif((0x0112, 99, 1, _short(6))),
    "count-zero": _exif((0x0112, 3, 0, _short(6))),
    "out-of-range": _exif((0x0112, 3, 1, _short(9))),
    "none": _exif((0x010F, 2, 2, b"X\x00")),
    "double-prefix": b"Exif\x00\x00" + _exif((0x0112, 3, 1, _short(6))),
    # Headers Pillow accepts besides the standard two (see tiffheader).
    "swapped-magic": b"II\x00*" + _exif((0x0112, 3, 1, _short(6)))[4:],
    "big-endian-swapped-magic": b"MM*\x00" + _exif((0x0112, 3, 1, _short(8, ">")), endian=">")[4:],
    "big-endian-bigtiff-magic": b"MM\x00+" + _exif((0x0112, 3, 1, _short(7, ">")), endian=">")[4:],
    "ifd-outside": b"II*\x00" + struct.pack("<I", 4096) + bytes(8),
    "count-only": b"II*\x00" + struct.pack("<IH", 8, 3),
    "empty": b"",
}


def _pillows_orientation(block: bytes) -> int | None:
    exif = Image.Exif()
    exif.load(block)
    value = exif.get(ExifTags.Base.Orientation)
    return value if isinstance(value, int) and 1 <= value <= 8 else None


@pytest.mark.parametrize("name", sorted(ORIENTATION_BLOCKS))
def test_orientation_is_read_as_pillow_reads_it(name: str) -> None:
    block = b"Exif\x00\x00" + ORIENTATION_BLOCKS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _pillows_orientation(block)

    value = metadata.orientation({"exif": block})

    assert (value if value is not None and 1 <= value <= 8 else None) == expected


@pytest.mark.parametrize(
    "block",
    [
        b"Exif\x00\x00" + bytes(16),
        b"GIF89a" + bytes(16),
        _exif((0x0112, 3, 1, _short(3)), big=True),  # Pillow reads only 8 bytes of header
    ],
    ids=["zeros", "not-tiff", "bigtiff"],
)
def test_exif_without_a_tiff_header_is_unreadable_as_for_pillow(block: bytes) -> None:
    with pytest.raises((SyntaxError, struct.error)):
        _pillows_orientation(block)
    with pytest.raises(metadata.UnreadableExif):
        metadata.orientation({"exif": block})


def test_xmp_orientation_applies_without_exif() -> None:
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    stored = quadrants((64, 32)).transpose(Image.Transpose.ROTATE_90)
    data = encode(stored, "JPEG", quality=95, xmp=xmp)
    assert "exif" not in Image.open(io.BytesIO(data)).info

    assert probe(data, max_pixels=10_000).width == 64
    colours = quadrant_colours(render_one(data))
    assert all(near(c, e, 24) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))


def test_a_png_raw_exif_profile_gives_the_orientation() -> None:
    # ImageMagick writes EXIF as hex digits in a text chunk; Pillow's getexif read it.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    stored = encode(quadrants((64, 32)).transpose(Image.Transpose.ROTATE_90), "PNG")
    data = hostile.png_with_raw_profile(b"Exif\x00\x00" + exif.tobytes(), base=stored)

    colours = quadrant_colours(render_one(data))
    assert all(near(c, e, 24) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))


def test_probe_reports_the_displayed_size_from_the_header() -> None:
    data = with_orientation(noise((300, 200)), 6)

    assert probe(data, max_pixels=1_000_000) == SourceInfo("JPEG", "image/jpeg", 300, 200)
    # Header only: the truncated pixel data is never decoded.
    assert probe(data[: len(data) // 2], max_pixels=1_000_000).height == 200


# --- colour ---------------------------------------------------------------------------------


def test_a_non_srgb_profile_is_converted_to_srgb() -> None:
    adobe_rgb = rgb_icc_profile("Test Adobe RGB (1998)")
    colour = (100, 150, 100)
    tagged = solid(colour, (16, 16))

    untagged_output = pixel(render_one(encode(tagged, "PNG")))
    converted = pixel(render_one(encode(tagged, "PNG", icc_profile=adobe_rgb)))
    converted_jpeg = pixel(render_one(encode(tagged, "JPEG", quality=95, icc_profile=adobe_rgb)))

    assert untagged_output == colour
    # Adobe RGB's green is more saturated than sRGB's, so in sRGB the colour spreads out.
    assert near(converted, (66, 151, 97), 2)
    assert near(converted_jpeg, (66, 151, 97), 4)
    assert converted[1] - converted[0] > colour[1] - colour[0] + 20


def test_a_srgb_profile_leaves_colours_alone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    data = encode(solid((100, 150, 100)), "PNG", icc_profile=srgb)

    assert pixel(render_one(data)) == (100, 150, 100)


@pytest.mark.parametrize(
    "profile",
    [
        b"definitely not an ICC profile" * 10,
        rgb_icc_profile("truncated")[:200],
        ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),  # wrong colour space
    ],
    ids=["garbage", "truncated", "lab-profile-on-rgb"],
)
def test_an_unusable_profile_is_ignored(profile: bytes) -> None:
    colour = (100, 150, 100)

    assert pixel(render_one(encode(solid(colour), "PNG", icc_profile=profile))) == colour
    jpeg_colour = pixel(render_one(encode(solid(colour), "JPEG", quality=95, icc_profile=profile)))
    assert near(jpeg_colour, colour, 3)


CMYK_SWATCHES = [
    ((255, 0, 0, 0), (0, 255, 255)),  # cyan
    ((0, 255, 0, 0), (255, 0, 255)),  # magenta
    ((0, 0, 255, 0), (255, 255, 0)),  # yellow
    ((0, 0, 0, 255), (0, 0, 0)),  # black
    ((0, 0, 0, 0), (255, 255, 255)),  # paper
]


def cmyk_swatches(invert: bool = False) -> Image.Image:
    image = Image.new("CMYK", (16 * len(CMYK_SWATCHES), 16))
    for index, (cmyk, _) in enumerate(CMYK_SWATCHES):
        value = tuple(255 - channel for channel in cmyk) if invert else cmyk
        image.paste(value, (16 * index, 0, 16 * index + 16, 16))
    return image


def swatch_colours(image: Image.Image) -> list[tuple[int, ...]]:
    return [pixel(image, (16 * index + 8, 8)) for index in range(len(CMYK_SWATCHES))]


def test_adobe_cmyk_jpeg_converts_to_the_right_rgb() -> None:
    data = encode(cmyk_swatches(), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).info.get("adobe") is not None  # Photoshop-style

    colours = swatch_colours(render_one(data))

    for colour, (_, expected) in zip(colours, CMYK_SWATCHES, strict=True):
        assert near(colour, expected, 6)


def test_plain_cmyk_jpeg_without_adobe_marker_converts_to_the_right_rgb() -> None:
    # Pillow stores CMYK inverted (Adobe style); pre-inverting leaves plain values in the file.
    data = without_adobe_marker(encode(cmyk_swatches(invert=True), "JPEG", quality=95))

    colours = swatch_colours(render_one(data))

    for colour, (_, expected) in zip(colours, CMYK_SWATCHES, strict=True):
        assert near(colour, expected, 6)


def test_cmyk_tiff_converts_to_rgb() -> None:
    colours = swatch_colours(render_one(encode(cmyk_swatches(), "TIFF")))

    assert colours == [expected for _, expected in CMYK_SWATCHES]


def test_outputs_are_untagged_srgb_without_metadata() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.Base.Orientation] = 1
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>SecretXmp</rdf:RDF></x:xmpmeta>'
    icc = rgb_icc_profile("Test Adobe RGB (1998)")
    data = encode(
        noise((96, 64)),
        "JPEG",
        exif=exif.tobytes(),
        xmp=xmp,
        comment="SecretComment",
        icc_profile=icc,
    )
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    presets = [
        preset(f"p-{fmt.lower()}", (48, 48), output_format=fmt)
        for fmt in ("JPEG", "WEBP", "PNG", "AVIF")
    ]

    for output in render(data, presets).outputs:
        image = decode(output.data)
        assert not image.getexif(), output.format
        assert not {"exif", "xmp", "comment", "icc_profile", "XML:com.adobe.xmp"} & set(image.info)
        for secret in (b"Exif\x00\x00", b"SecretCam", b"SecretXmp", b"SecretComment", b"Adobe RGB"):
            assert secret not in output.data, (output.format, secret)


# --- transparency ---------------------------------------------------------------------------


def half_transparent_red() -> Image.Image:
    image = Image.new("RGBA", (16, 16), (255, 0, 0, 128))
    image.paste((0, 0, 255, 0), (0, 0, 8, 16))  # left half fully transparent
    return image


def test_jpeg_outputs_flatten_transparency_onto_white() -> None:
    image = render_one(
        encode(half_transparent_red(), "PNG"), preset(output_format="JPEG", quality=95)
    )

    assert image.mode == "RGB"
    assert near(pixel(image, (3, 8)), WHITE, 3)
    assert near(pixel(image, (12, 8)), (255, 127, 127), 6)


@pytest.mark.parametrize(("output_format", "tolerance"), [("PNG", 0), ("WEBP", 2), ("AVIF", 8)])
def test_other_outputs_keep_transparency(output_format: str, tolerance: int) -> None:
    image = render_one(encode(half_transparent_red(), "PNG"), preset(output_format=output_format))

    assert image.mode == "RGBA"
    assert pixel(image, (3, 8))[3] == 0
    assert near(pixel(image, (12, 8)), (255, 0, 0, 128), tolerance)


def test_grey_with_alpha_keeps_transparency() -> None:
    source = Image.new("LA", (8, 8), (200, 255))
    source.putpixel((0, 0), (50, 0))

    image = render_one(encode(source, "PNG"))

    assert image.mode == "RGBA"
    assert pixel(image, (4, 4)) == (200, 200, 200, 255)
    assert pixel(image, (0, 0))[3] == 0


def test_palette_transparency_is_kept() -> None:
    source = Image.new("P", (32, 16), 1)
    source.putpalette([*RED, *GREEN])
    source.paste(0, (0, 0, 16, 16))
    data = encode(source, "PNG", transparency=0)  # a tRNS chunk for palette entry 0

    image = render_one(data)
    flattened = render_one(data, preset(output_format="JPEG", quality=95))

    assert image.mode == "RGBA"
    assert pixel(image, (4, 4))[3] == 0
    assert pixel(image, (24, 8)) == (*GREEN, 255)
    assert near(pixel(flattened, (4, 4)), WHITE, 3)


def test_rgb_colour_key_transparency_is_kept() -> None:
    source = solid(BLUE, (8, 8))
    source.putpixel((0, 0), RED)

    image = render_one(encode(source, "PNG", transparency=RED))

    assert pixel(image, (0, 0))[3] == 0
    assert pixel(image, (4, 4)) == (*BLUE, 255)


def test_opaque_alpha_is_dropped() -> None:
    image = render_one(encode(Image.new("RGBA", (8, 8), (1, 2, 3, 255)), "PNG"))

    assert image.mode == "RGB"
    assert pixel(image) == (1, 2, 3)


# --- bit depths and modes -------------------------------------------------------------------

SIXTEEN_BIT = [0, 256, 1000, 32768, 65535]


def test_sixteen_bit_grey_png_maps_to_the_right_8_bit_values() -> None:
    data = png16([[(value,) for value in SIXTEEN_BIT]], colour_type=0)
    assert Image.open(io.BytesIO(data)).mode == "I;16"

    image = render_one(data)

    assert [pixel(image, (x, 0)) for x in range(5)] == [(v, v, v) for v in (0, 1, 4, 128, 255)]


@pytest.mark.parametrize("colour_type", [2, 6])
def test_sixteen_bit_colour_png_maps_to_the_right_8_bit_values(colour_type: int) -> None:
    samples = 3 if colour_type == 2 else 4
    data = png16([[(value,) * samples for value in SIXTEEN_BIT]], colour_type)

    image = render_one(data)

    assert image.mode == ("RGB" if samples == 3 else "RGBA")
    for x, value in enumerate(SIXTEEN_BIT):
        assert near(pixel(image, (x, 0)), (round(value / 257),) * samples, 1)


def gradient_image(mode: str, values: Sequence[float]) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", SIXTEEN_BIT, [0, 1, 4, 128, 255]),
        ("I", SIXTEEN_BIT, [0, 1, 4, 128, 255]),  # 16-bit range
        ("I", [0, 10, 200, 255], [0, 10, 200, 255]),  # 8-bit range
        ("I", [-1000, 0, 1000], [0, 128, 255]),  # anything else is stretched
        ("F", [0.0, 0.25, 0.5, 1.0], [0, 64, 128, 255]),  # normalised
        ("F", [0.0, 100.0, 255.0], [0, 100, 255]),
        ("F", [-1.0, 1.0, 3.0], [0, 128, 255]),
    ],
)
def test_deep_modes_become_correct_8_bit_grey(
    mode: str, values: Sequence[float], expected: Sequence[int]
) -> None:
    image = render_one(encode(gradient_image(mode, values), "TIFF"))

    assert [pixel(image, (x, 0)) for x in range(len(values))] == [(v, v, v) for v in expected]


@pytest.mark.parametrize(
    ("source", "image_format", "expected"),
    [
        (Image.new("1", (8, 8), 1), "PNG", WHITE),
        (Image.new("1", (8, 8), 0), "TIFF", BLACK),
        (Image.new("L", (8, 8), 77), "PNG", (77, 77, 77)),
        (solid(RED).convert("P"), "GIF", RED),
        # YCbCr TIFFs in the wild are JPEG-compressed (TIFF 6.0, section 21).
        (solid(YELLOW).convert("YCbCr"), "TIFF-JPEG", YELLOW),
        (solid(GREY).convert("LAB"), "TIFF", GREY),
        (solid(BLUE), "BMP", BLUE),
    ],
    ids=["1-white", "1-black", "L", "P", "YCbCr", "LAB", "BMP"],
)
def test_other_modes_become_correct_rgb(
    source: Image.Image, image_format: str, expected: tuple[int, int, int]
) -> None:
    if image_format == "TIFF-JPEG":
        data = encode(source, "TIFF", compression="jpeg")
    else:
        data = encode(source, image_format)
    image = render_one(data)

    assert image.mode == "RGB"
    assert near(pixel(image, (4, 4)), expected, 2)


# --- formats, frames ------------------------------------------------------------------------


def heif_bytes(image: Image.Image) -> bytes:
    import pillow_heif

    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEVC encoder to make a test file")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image_format", "content_type", "tolerance"),
    [
        ("JPEG", "image/jpeg", 24),
        ("PNG", "image/png", 0),
        ("GIF", "image/gif", 0),
        ("BMP", "image/bmp", 0),
        ("TIFF", "image/tiff", 0),
        ("WEBP", "image/webp", 24),
        ("AVIF", "image/avif", 24),
        ("HEIF", "image/heif", 24),
    ],
)
def test_every_accepted_format_renders(
    image_format: str, content_type: str, tolerance: int
) -> None:
    source = quadrants((64, 32))
    data = heif_bytes(source) if image_format == "HEIF" else encode(source, image_format)

    result = render(data, [AS_IS, preset("small", (32, 32), fit="cover", output_format="JPEG")])

    assert result.source == SourceInfo(image_format, content_type, 64, 32)
    assert probe(data, max_pixels=10_000) == result.source
    colours = quadrant_colours(decode(result.outputs[0].data))
    assert all(near(c, e, tolerance) for c, e in zip(colours, QUADRANT_COLOURS, strict=True))
    assert (result.outputs[1].width, result.outputs[1].height) == (32, 32)


def test_heif_rotation_is_applied_once() -> None:
    # In HEIF the `irot`/`imir` boxes rotate the picture, and libheif applies them on
    # decode; the EXIF orientation that accompanies them must not rotate it a second time.
    import pillow_heif

    picture = quadrants((64, 32))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    picture.info["exif"] = exif.tobytes()
    data = heif_bytes(picture)
    heif = pillow_heif.open_heif(io.BytesIO(data))
    assert b"irot" in data
    stored_exif = Image.Exif()
    stored_exif.load(heif.info["exif"])
    assert stored_exif[ExifTags.Base.Orientation] == 6
    as_libheif_shows_it = Image.frombytes(
        heif.mode, heif.size, bytes(heif.data), "raw", heif.mode, heif.stride
    )

    result = render(data, [AS_IS])

    image = decode(result.outputs[0].data)
    assert (result.source.width, result.source.height) == image.size == heif.size
    assert mean_difference(image, as_libheif_shows_it) < 1


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG", "TIFF", "AVIF"])
def test_animations_and_multi_page_files_render_their_first_frame(image_format: str) -> None:
    frames = [solid(RED), solid(GREEN), solid(BLUE)]
    options = {} if image_format == "TIFF" else {"duration": 100, "loop": 0}
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3

    image = render_one(data, preset(size=(16, 16)))

    assert near(pixel(image, (8, 8)), RED, 10)


def test_a_multi_picture_jpeg_is_a_jpeg() -> None:
    data = encode(solid(RED, (64, 48)), "MPO", save_all=True, append_images=[solid(BLUE, (64, 48))])
    assert Image.open(io.BytesIO(data)).format == "MPO"

    result = render(data, [preset(size=(32, 32))])

    assert result.source == SourceInfo("JPEG", "image/jpeg", 64, 48)
    assert near(pixel(decode(result.outputs[0].data), (16, 12)), RED, 6)


def test_importing_the_engine_does_not_load_pillow_heif() -> None:
    code = (
        "import sys\n"
        "from chalicelib import imaging\n"
        "from tests.images import encode, noise\n"
        "imaging.render(encode(noise((8, 8)), 'PNG'), [])\n"
        "assert 'pillow_heif' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- rejected input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        random.Random(1).randbytes(4000),
        b"Just some text, not an image.\n" * 20,
        PDF_BYTES,
        EPS_BYTES,
        psd_bytes(),
        b"",
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # an MP4 header
    ],
    ids=["random", "text", "pdf", "eps", "psd", "empty", "mp4"],
)
def test_other_files_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        render(data, DEFAULT_PRESETS)
    with pytest.raises(UnsupportedFormat):
        probe(data, max_pixels=1_000_000)


@pytest.mark.parametrize("data", [EPS_BYTES, psd_bytes()], ids=["eps", "psd"])
def test_formats_pillow_could_open_never_reach_it(data: bytes) -> None:
    assert Image.open(io.BytesIO(data)).format in ("EPS", "PSD")  # so the allow-list matters

    assert sniff_format(data) is None


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated_images_are_corrupt(image_format: str) -> None:
    data = encode(noise((64, 64)), image_format)

    with pytest.raises(CorruptImage) as caught:
        render(data[: len(data) * 2 // 3], DEFAULT_PRESETS)

    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"\xff\xd8\xff\xe0" + b"garbage" * 20,
        b"GIF89a" + b"\xff" * 3,
        b"II*\x00" + b"\x00" * 50,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20,
        b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00avifmif1" + b"\x00" * 20,
    ],
    ids=["png", "jpeg", "gif", "tiff", "webp", "avif"],
)
def test_right_signature_wrong_content_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptImage):
        render(data, DEFAULT_PRESETS)


def test_no_raw_decoder_error_escapes() -> None:
    generator = random.Random(5)
    originals = [
        encode(noise((48, 32)), fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
    ]
    for original in originals:
        for _ in range(25):
            damaged = bytearray(original)
            for _ in range(generator.randint(1, 8)):
                damaged[generator.randrange(len(damaged))] = generator.randrange(256)
            with contextlib.suppress(SourceError):
                render(bytes(damaged), [preset(size=(16, 16))])


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = png_bomb(20000, 20000)  # 400 million pixels claimed in 100-odd bytes
    assert len(bomb) < 200

    with pytest.raises(ImageTooLarge):
        render(bomb, DEFAULT_PRESETS)
    with pytest.raises(ImageTooLarge):
        probe(bomb, max_pixels=50_000_000)
    # Even with a limit above Pillow's own default, the header check refuses it.
    with pytest.raises(ImageTooLarge):
        render(bomb, DEFAULT_PRESETS, max_pixels=300_000_000)


def test_max_pixels_is_the_limit() -> None:
    data = encode(noise((100, 50)), "PNG")

    assert render(data, [AS_IS], max_pixels=5000).outputs
    with pytest.raises(ImageTooLarge, match="4999"):
        render(data, [AS_IS], max_pixels=4999)
    with pytest.raises(ImageTooLarge):
        probe(data, max_pixels=4999)


def test_the_pixel_limit_leaves_no_global_state_behind() -> None:
    limit_before = Image.MAX_IMAGE_PIXELS
    filters_before = list(warnings.filters)

    with pytest.raises(ImageTooLarge):
        render(png_bomb(), DEFAULT_PRESETS, max_pixels=1000)
    render(encode(noise((8, 8)), "PNG"), DEFAULT_PRESETS, max_pixels=1000)

    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert list(warnings.filters) == filters_before


def test_a_big_but_allowed_image_does_not_trip_pillows_own_limit() -> None:
    # 95 megapixels: above Pillow's default limit (~89.5 MP), within the one asked for.
    header_only = png_bytes(10000, 9500, 8, 0, b"")

    assert probe(header_only, max_pixels=100_000_000).width == 10000
    with pytest.raises(ImageTooLarge):
        probe(header_only, max_pixels=90_000_000)


# --- watermarks -----------------------------------------------------------------------------

CORNERS: list[Corner] = ["top-left", "top-right", "bottom-left", "bottom-right"]
CORNER_BOXES = {
    "top-left": (0, 0, 100, 40),
    "top-right": (100, 0, 200, 40),
    "bottom-left": (0, 110, 100, 150),
    "bottom-right": (100, 110, 200, 150),
}
OPPOSITE = {
    "top-left": "bottom-right",
    "top-right": "bottom-left",
    "bottom-left": "top-right",
    "bottom-right": "top-left",
}


def watermarked(background: tuple[int, int, int], watermark: Watermark | None) -> Image.Image:
    data = encode(solid(background, (200, 150)), "PNG")
    return render_one(data, preset(watermark=watermark))


@pytest.mark.parametrize("corner", CORNERS)
def test_the_watermark_goes_in_its_corner_only(corner: Corner) -> None:
    plain = watermarked(GREY, None)
    marked = watermarked(GREY, Watermark("© Example", corner, opacity=0.8, size=0.1))

    difference = ImageChops.difference(plain, marked)

    assert difference.crop(CORNER_BOXES[corner]).getbbox() is not None
    assert difference.crop(CORNER_BOXES[OPPOSITE[corner]]).getbbox() is None
    left, top, right, bottom = difference.getbbox() or (0, 0, 0, 0)
    assert min(left, top, 200 - right, 150 - bottom) >= 2  # a margin from the edges


def test_the_watermark_is_readable_on_light_and_dark_pictures() -> None:
    mark = Watermark("© Example", opacity=1.0, size=0.12)
    box = CORNER_BOXES["bottom-right"]

    on_white = watermarked(WHITE, mark).convert("L").crop(box)
    on_black = watermarked(BLACK, mark).convert("L").crop(box)

    assert extrema(on_white)[0] < 60  # dark outline shows on white
    assert extrema(on_black)[1] > 200  # white text shows on black


def test_the_watermark_is_semi_transparent() -> None:
    box = CORNER_BOXES["bottom-right"]

    half = watermarked(BLACK, Watermark("© Example", opacity=0.5, size=0.12)).convert("L")
    invisible = watermarked(BLACK, Watermark("© Example", opacity=0.0, size=0.12))

    assert 100 < extrema(half.crop(box))[1] < 160
    assert invisible.tobytes() == watermarked(BLACK, None).tobytes()


def test_a_watermark_too_wide_for_the_output_is_shrunk_to_fit() -> None:
    mark = Watermark("A very long watermark text that cannot fit", "bottom-left", 1.0, 0.2)

    image = render_one(encode(solid(GREY, (60, 60)), "PNG"), preset(watermark=mark))

    difference = ImageChops.difference(image, solid(GREY, (60, 60)))
    left, _, right, _ = difference.getbbox() or (0, 0, 0, 0)
    assert left >= 2
    assert right <= 58


def test_watermarks_keep_transparency_elsewhere() -> None:
    source = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    image = render_one(encode(source, "PNG"), preset(watermark=Watermark("hi", size=0.2)))

    assert image.mode == "RGBA"
    assert pixel(image, (5, 5))[3] == 0
    assert extrema(image.getchannel("A"))[1] > 0


# --- command line ---------------------------------------------------------------------------


def test_cli_renders_and_reports_each_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(noise((300, 200)), "PNG"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    presets_file = tmp_path / "presets.json"
    presets_file.write_text(
        json.dumps([{"name": "mini", "width": 30, "height": 30, "fit": "cover", "format": "AVIF"}])
    )

    status = cli_main(
        [
            str(photo),
            str(broken),
            "--out",
            str(tmp_path / "out"),
            "--repeat",
            "2",
            "--presets-json",
            str(presets_file),
        ]
    )

    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1
    assert [report["input"] for report in reports] == [str(photo)] * 2 + [str(broken)] * 2
    assert reports[0]["ms"] > 0
    assert reports[0]["outputs"] == [
        {
            "preset": "mini",
            "name": "mini",
            "width": 30,
            "height": 30,
            "format": "AVIF",
            "bytes": reports[0]["outputs"][0]["bytes"],
        }
    ]
    assert reports[2]["error"]["code"] == "unsupported_format"
    written = tmp_path / "out" / "photo.mini.avif"
    assert decode(written.read_bytes()).size == (30, 30)
    assert written.stat().st_size == reports[0]["outputs"][0]["bytes"]


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    photo = tmp_path / "tiny.jpg"
    photo.write_bytes(encode(noise((64, 40)), "JPEG"))

    completed = subprocess.run(
        [sys.executable, "-m", "chalicelib.imaging", str(photo), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert [output["preset"] for output in report["outputs"]] == ["thumb", "small", "large"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "tiny.jpg",
        "tiny.large.webp",
        "tiny.small.jpg",
        "tiny.thumb.jpg",
    ]


# --- real photos: the repository's samples, phone photos made from them ----------------------

# Phone photos made at test time from the samples, widened by the shared corpus's own where it
# lies beside the clone (never required).
PHONE_PHOTOS = [
    pytest.param(functools.partial(phone_photo, source), id=phone_name(source))
    for source in ("BytheWater.jpg", "Kite.jpg")
] + [
    pytest.param(path.read_bytes, id=f"corpus-{path.name}")
    for path in corpus_photos()
    if path.name.startswith("phone-")
]


@pytest.mark.parametrize("load", PHONE_PHOTOS)
def test_phone_photos_come_out_upright_without_gps(load: Callable[[], bytes]) -> None:
    data = load()
    assert Image.open(io.BytesIO(data)).size == (3024, 4032)  # stored rotated
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # with a GPS position

    result = render(data, DEFAULT_PRESETS)

    assert result.source == SourceInfo("JPEG", "image/jpeg", 4032, 3024)
    sizes = {output.preset: (output.width, output.height) for output in result.outputs}
    assert sizes == {"thumb": (256, 256), "small": (512, 384), "large": (1024, 768)}
    for output in result.outputs:
        image = decode(output.data)
        assert image.width >= image.height
        assert not image.getexif()
        assert b"Exif" not in output.data
        assert b"GPS" not in output.data


def test_phone_photo_thumbnail_matches_the_upright_picture() -> None:
    data = phone_photo("BytheWater.jpg")
    reference = Image.open(io.BytesIO(data))
    reference.draft("RGB", (378, 504))
    upright = reference.transpose(Image.Transpose.ROTATE_270).resize((512, 384))

    small = decode(render(data, DEFAULT_PRESETS).outputs[1].data)

    assert mean_difference(small, upright) < 6
    assert mean_difference(small, upright.transpose(Image.Transpose.ROTATE_180)) > 12


def test_an_icc_profiled_photo_renders() -> None:
    data = sample_photo("Kite.jpg")
    assert "icc_profile" in Image.open(io.BytesIO(data)).info

    result = render(data, DEFAULT_PRESETS)

    assert result.source == SourceInfo("JPEG", "image/jpeg", 2560, 1600)
    assert [(o.width, o.height) for o in result.outputs] == [(256, 256), (512, 320), (1024, 640)]
    assert all("icc_profile" not in decode(o.data).info for o in result.outputs)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
@pytest.mark.parametrize("factor", [2, 3, 5])
def test_reducing_in_strips_gives_the_same_pixels(
    mode: str, factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.imaging import pipeline

    monkeypatch.setattr(pipeline, "STRIP_ROWS", 7)  # many strips, and a ragged last one
    bands = len(mode)
    image = Image.frombytes(mode, (101, 67), os.urandom(101 * 67 * bands))

    reduced = pipeline.reduce_in_strips(image, factor)

    assert reduced.size == image.reduce(factor).size
    assert reduced.tobytes() == image.reduce(factor).tobytes()
