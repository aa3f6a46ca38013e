"""Placeholders a front end shows while an output loads: a BlurHash, a ThumbHash and the
dominant colour, all from one tiny upright sRGB image (at most SIDE pixels a side).

BlurHash follows https://github.com/woltapp/blurhash (its algorithm document), ThumbHash
the reference implementation at https://github.com/evanw/thumbhash. Both sum cosine
products; the sums are taken row by row (separably), which keeps them to a millisecond or
two on a tiny image in plain Python.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import cast

from PIL import Image

from chalicelib.imaging.results import Placeholder

# The longest side of the image the placeholders are computed from. ThumbHash's reference
# takes up to 100; its decoder renders 32 pixels a side, and so do BlurHash's decoders
# in practice: more pixels change the hashes by less than their quantisation.
SIDE = 32
# BlurHash components along the longer side; the shorter side gets fewer in proportion.
BLURHASH_COMPONENTS = 4
# Colours are counted in buckets of 2**(8 - BUCKET_BITS) levels per channel.
BUCKET_BITS = 4
# Pixels at least this opaque count towards the dominant colour.
OPAQUE_ENOUGH = 128

_BASE83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
_SRGB_TO_LINEAR = tuple(
    value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4
    for value in (index / 255 for index in range(256))
)

Pixels = Sequence[tuple[int, ...]]  # RGBA, row by row


def tiny(image: Image.Image) -> Image.Image:
    """``image`` shrunk to fit SIDE x SIDE."""
    width, height = image.size
    scale = SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1:
        image = image.resize(size, Image.Resampling.BOX)
    return image


def placeholder(image: Image.Image, displayed: tuple[int, int]) -> Placeholder:
    """The placeholders of ``image``, upright and sRGB, from `tiny`; ``displayed`` is the
    size of the upright source."""
    image = image.convert("RGBA")
    width, height = image.size
    pixels = cast(Pixels, image.get_flattened_data())
    return Placeholder(
        blurhash=blurhash(pixels, width, height),
        thumbhash=base64.b64encode(thumbhash(pixels, width, height)).decode("ascii"),
        dominant_color=dominant_color(pixels),
        width=displayed[0],
        height=displayed[1],
    )


# --- dominant colour ------------------------------------------------------------------


def dominant_color(pixels: Pixels) -> str:
    """The mean colour of the most populated colour bucket, as ``#rrggbb``; a solid image
    gives its own colour exactly."""
    counted = [pixel for pixel in pixels if pixel[3] >= OPAQUE_ENOUGH] or list(pixels)
    shift = 8 - BUCKET_BITS
    buckets: dict[tuple[int, int, int], list[tuple[int, ...]]] = {}
    for pixel in counted:
        buckets.setdefault((pixel[0] >> shift, pixel[1] >> shift, pixel[2] >> shift), []).append(
            pixel
        )
    members = max(buckets.values(), key=len)
    mean = (round(sum(pixel[channel] for pixel in members) / len(members)) for channel in range(3))
    return "#" + "".join(f"{value:02x}" for value in mean)


# --- BlurHash -------------------------------------------------------------------------


def blurhash(pixels: Pixels, width: int, height: int) -> str:
    """The BlurHash of RGBA ``pixels`` (row by row); alpha is ignored, as BlurHash has none."""
    longer = max(width, height)
    components_x = max(1, round(BLURHASH_COMPONENTS * width / longer))
    components_y = max(1, round(BLURHASH_COMPONENTS * height / longer))
    basis_x = [
        [math.cos(math.pi * cx * x / width) for x in range(width)] for cx in range(components_x)
    ]
    basis_y = [
        [math.cos(math.pi * cy * y / height) for y in range(height)] for cy in range(components_y)
    ]
    channels = [
        _projections(_rows([_SRGB_TO_LINEAR[pixel[channel]] for pixel in pixels], width), basis_x)
        for channel in range(3)
    ]
    scale = 1 / (width * height)
    factors = [
        tuple(
            _dot(basis_y[cy], projections[cx]) * scale * (1 if cx == 0 and cy == 0 else 2)
            for projections in channels
        )
        for cy in range(components_y)
        for cx in range(components_x)
    ]
    dc, ac = factors[0], factors[1:]
    text = _base83((components_x - 1) + (components_y - 1) * 9, 1)
    if ac:
        actual_max = max(abs(value) for factor in ac for value in factor)
        quantised_max = max(0, min(82, math.floor(actual_max * 166 - 0.5)))
        maximum = (quantised_max + 1) / 166
        text += _base83(quantised_max, 1)
    else:
        maximum = 1.0
        text += _base83(0, 1)
    text += _base83(_encode_dc(dc), 4)
    for factor in ac:
        text += _base83(_encode_ac(factor, maximum), 2)
    return text


def _rows(values: Sequence[float], width: int) -> list[Sequence[float]]:
    return [values[top : top + width] for top in range(0, len(values), width)]


def _projections(
    rows: Sequence[Sequence[float]], bases: Sequence[Sequence[float]]
) -> list[list[float]]:
    """For each horizontal basis, each row's dot product with it: the first half of a
    separable two-dimensional cosine sum."""
    return [[_dot(basis, row) for row in rows] for basis in bases]


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return math.sumprod(left, right)


def _linear_to_srgb(value: float) -> int:
    value = max(0.0, min(1.0, value))
    if value <= 0.0031308:
        return round(value * 12.92 * 255)
    return round((1.055 * math.pow(value, 1 / 2.4) - 0.055) * 255)


def _encode_dc(factor: Sequence[float]) -> int:
    red, green, blue = (_linear_to_srgb(value) for value in factor)
    return (red << 16) + (green << 8) + blue


def _encode_ac(factor: Sequence[float], maximum: float) -> int:
    def quantise(value: float) -> int:
        scaled = math.copysign(abs(value / maximum) ** 0.5, value)
        return max(0, min(18, math.floor(scaled * 9 + 9.5)))

    red, green, blue = (quantise(value) for value in factor)
    return red * 19 * 19 + green * 19 + blue


def _base83(value: int, length: int) -> str:
    return "".join(
        _BASE83[(value // 83 ** (length - place)) % 83] for place in range(1, length + 1)
    )


# --- ThumbHash ------------------------------------------------------------------------


def thumbhash(pixels: Pixels, width: int, height: int) -> bytes:
    """The ThumbHash of RGBA ``pixels`` (row by row, not premultiplied), as the reference
    ``rgbaToThumbHash`` encodes it."""
    if width > 100 or height > 100:
        raise ValueError(f"{width}x{height} does not fit in 100x100")
    alphas = [pixel[3] / 255 for pixel in pixels]
    total_alpha = sum(alphas)
    has_alpha = total_alpha < width * height
    l_limit = 5 if has_alpha else 7  # fewer luminance factors when alpha needs room
    lx = max(1, round(l_limit * width / max(width, height)))
    ly = max(1, round(l_limit * height / max(width, height)))
    red, green, blue = (
        _composited([pixel[channel] for pixel in pixels], alphas, total_alpha, has_alpha)
        for channel in range(3)
    )
    lum = [(r + g + b) / 3 for r, g, b in zip(red, green, blue, strict=True)]
    yellow_blue = [(r + g) / 2 - b for r, g, b in zip(red, green, blue, strict=True)]
    red_green = [r - g for r, g in zip(red, green, strict=True)]
    l_dc, l_ac, l_scale = _thumbhash_channel(lum, width, height, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _thumbhash_channel(yellow_blue, width, height, 3, 3)
    q_dc, q_ac, q_scale = _thumbhash_channel(red_green, width, height, 3, 3)
    landscape = width > height
    header24 = (
        round(63 * l_dc)
        | (round(31.5 + 31.5 * p_dc) << 6)
        | (round(31.5 + 31.5 * q_dc) << 12)
        | (round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if landscape else lx)
        | (round(63 * p_scale) << 3)
        | (round(63 * q_scale) << 9)
        | (int(landscape) << 15)
    )
    hashed = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _thumbhash_channel(alphas, width, height, 5, 5)
        hashed.append(round(15 * a_dc) | (round(15 * a_scale) << 4))
        factors.append(a_ac)
    nibbles = [round(15 * factor) for channel in factors for factor in channel]
    nibbles += [0] * (len(nibbles) % 2)
    hashed += [low | (high << 4) for low, high in zip(nibbles[::2], nibbles[1::2], strict=True)]
    return bytes(hashed)


def _composited(
    values: Sequence[int], alphas: Sequence[float], total_alpha: float, has_alpha: bool
) -> list[float]:
    """One colour channel in 0..1, composited atop its average as the reference does."""
    if not has_alpha:
        return [value / 255 for value in values]
    average = math.sumprod(alphas, values) / 255 / total_alpha if total_alpha else 0.0
    return [
        average * (1 - alpha) + alpha / 255 * value
        for alpha, value in zip(alphas, values, strict=True)
    ]


def _thumbhash_channel(
    channel: Sequence[float], width: int, height: int, nx: int, ny: int
) -> tuple[float, list[float], float]:
    basis_x = [
        [math.cos(math.pi / width * cx * (x + 0.5)) for x in range(width)] for cx in range(nx)
    ]
    projections = _projections(_rows(channel, width), basis_x)
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        basis_y = [math.cos(math.pi / height * cy * (y + 0.5)) for y in range(height)]
        cx = 0
        while cx * ny < nx * (ny - cy):
            factor = _dot(basis_y, projections[cx]) / (width * height)
            if cx or cy:
                ac.append(factor)
                scale = max(scale, abs(factor))
            else:
                dc = factor
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * factor for factor in ac]
    return dc, ac, scale
