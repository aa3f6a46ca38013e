"""Placeholders: checked with independent decoders (the `blurhash` package, ThumbHash's
reference decoder), on tiny images."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import cast

import blurhash  # type: ignore[import-untyped]  # no type information
import pytest
from PIL import Image

from chalicelib import imaging
from chalicelib.imaging import Placeholder
from chalicelib.presets import Preset
from tests import thumbhash_reference
from tests.images import decode, encode, quadrants, solid, with_orientation
from tests.samples import sample_photo

ONE_PRESET = (Preset("small", 48, 48, "contain", "JPEG", 90),)


def placeholder_of(data: bytes) -> Placeholder:
    found = imaging.render(data, ONE_PRESET).placeholder
    assert found is not None
    return found


def mean_colour(image: Image.Image, *, linear: bool = False) -> tuple[float, ...]:
    """The mean sRGB colour; averaged in linear light (as BlurHash does) if ``linear``."""
    pixels = cast(list[tuple[int, int, int]], list(image.convert("RGB").get_flattened_data()))
    if not linear:
        return tuple(sum(pixel[c] for pixel in pixels) / len(pixels) for c in range(3))
    means = (sum(to_linear(pixel[c]) for pixel in pixels) / len(pixels) for c in range(3))
    return tuple(
        255 * (12.92 * m if m <= 0.0031308 else 1.055 * m ** (1 / 2.4) - 0.055) for m in means
    )


def to_linear(value: int) -> float:
    scaled = value / 255
    return scaled / 12.92 if scaled <= 0.04045 else ((scaled + 0.055) / 1.055) ** 2.4


def difference(image: Image.Image, expected: Image.Image) -> float:
    """Mean absolute difference per channel, at ``image``'s size."""
    resized = expected.convert("RGB").resize(image.size, Image.Resampling.BOX)
    pairs = zip(image.convert("RGB").tobytes(), resized.tobytes(), strict=True)
    return sum(abs(a - b) for a, b in pairs) / (image.width * image.height * 3)


def blurhash_image(hashed: str, width: int, height: int) -> Image.Image:
    rows = blurhash.decode(hashed, width, height)
    return Image.frombytes(
        "RGB", (width, height), bytes(v for row in rows for px in row for v in px)
    )


def thumbhash_image(hashed: str) -> Image.Image:
    width, height, rgba = thumbhash_reference.to_rgba(base64.b64decode(hashed))
    return Image.frombytes("RGBA", (width, height), bytes(rgba))


def close(actual: Sequence[float], expected: Sequence[float], tolerance: float) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


@pytest.mark.parametrize("name", ["Kite.jpg", "quadrants"])
def test_a_blurhash_decodes_to_its_images_mean_colour(name: str) -> None:
    data = encode(quadrants((80, 60)), "PNG") if name == "quadrants" else sample_photo(name)
    found = placeholder_of(data)
    decoded = blurhash_image(found.blurhash, 32, 24)
    picture = decode(data)
    picture.thumbnail((128, 128), Image.Resampling.BOX)  # the mean is the same, sooner
    assert close(mean_colour(decoded, linear=True), mean_colour(picture, linear=True), 8)


def test_a_thumbhash_decodes_with_the_reference_to_its_images_mean_colour() -> None:
    picture = quadrants((80, 60))
    found = placeholder_of(encode(picture, "PNG"))
    decoded = thumbhash_image(found.thumbhash)
    assert decoded.width > decoded.height  # landscape, as the picture
    assert close(mean_colour(decoded), mean_colour(picture), 16)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_a_rotated_photos_placeholders_are_upright(orientation: int) -> None:
    upright = quadrants((96, 64))
    found = placeholder_of(with_orientation(upright, orientation))
    assert (found.width, found.height) == (96, 64)
    turned = upright.transpose(Image.Transpose.ROTATE_180)
    mirrored = upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for decoded in (blurhash_image(found.blurhash, 48, 32), thumbhash_image(found.thumbhash)):
        assert decoded.width > decoded.height
        assert difference(decoded, upright) < difference(decoded, turned) / 2
        assert difference(decoded, upright) < difference(decoded, mirrored) / 2


@pytest.mark.parametrize("colour", [(255, 0, 0), (12, 200, 77), (128, 128, 128), (1, 2, 3)])
def test_solid_images_give_their_exact_dominant_colour(colour: tuple[int, int, int]) -> None:
    found = placeholder_of(encode(solid(colour, (70, 40)), "PNG"))
    assert found.dominant_color == "#{:02x}{:02x}{:02x}".format(*colour)


def test_the_dominant_colour_is_the_largest_area_not_the_mean() -> None:
    picture = solid((250, 250, 250), (60, 60))
    picture.paste((20, 40, 160), (0, 0, 60, 40))  # two thirds blue
    assert placeholder_of(encode(picture, "PNG")).dominant_color == "#1428a0"


def test_transparent_pixels_do_not_make_the_dominant_colour() -> None:
    picture = solid((0, 0, 0, 0), (60, 60), mode="RGBA")
    picture.paste((30, 90, 200, 255), (0, 0, 20, 60))  # one third opaque blue
    found = placeholder_of(encode(picture, "PNG"))
    assert found.dominant_color == "#1e5ac8"
    _, _, rgba = thumbhash_reference.to_rgba(base64.b64decode(found.thumbhash))
    alphas = rgba[3::4]
    assert min(alphas) < 128 < max(alphas)  # the hash keeps the transparency


def test_nothing_rendered_means_no_placeholder() -> None:
    assert imaging.render(encode(solid((1, 2, 3)), "PNG"), ()).placeholder is None
