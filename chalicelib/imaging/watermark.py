"""Text watermarks: white text with a dark outline, readable on light and dark pictures."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from chalicelib.presets import Watermark

MIN_TEXT_PX = 10  # below this the default font stops being legible
MIN_MARGIN_PX = 2

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def apply_watermark(image: Image.Image, watermark: Watermark) -> Image.Image:
    """A copy of ``image`` (RGB or RGBA) with ``watermark`` drawn in its corner."""
    layer = _text_layer(watermark, image.size)
    if layer is None:
        return image
    text, position = layer
    result = image.copy()
    if result.mode == "RGBA":
        result.alpha_composite(text, dest=position)
    else:
        result.paste(text, position, mask=text)
    return result


def _text_layer(
    watermark: Watermark, size: tuple[int, int]
) -> tuple[Image.Image, tuple[int, int]] | None:
    """The watermark as an RGBA tile, and where its top-left corner goes; None if invisible."""
    width, height = size
    alpha = round(255 * watermark.opacity)
    if alpha == 0:
        return None
    text_px = max(MIN_TEXT_PX, round(watermark.size * min(width, height)))
    margin = max(MIN_MARGIN_PX, text_px // 2)
    font, stroke, (left, top, right, bottom) = _fit_text(
        watermark.text, text_px, width - 2 * margin
    )
    tile = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
    ImageDraw.Draw(tile).text(
        (-left, -top),
        watermark.text,
        font=font,
        fill=(255, 255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0, 255),
    )
    if alpha < 255:
        tile.putalpha(tile.getchannel("A").point(lambda value: value * alpha // 255))
    x = margin if watermark.corner.endswith("left") else width - margin - tile.width
    y = margin if watermark.corner.startswith("top") else height - margin - tile.height
    return tile, (x, y)


def _fit_text(
    text: str, text_px: int, available_width: int
) -> tuple[Font, int, tuple[int, int, int, int]]:
    """Font, outline width and ink box of ``text``, shrunk once if it is wider than the room."""
    font, stroke, box = _measure(text, text_px)
    text_width = box[2] - box[0]
    if text_width > available_width > 0:
        smaller = max(1, text_px * available_width // text_width)
        font, stroke, box = _measure(text, smaller)
    return font, stroke, box


def _measure(text: str, text_px: int) -> tuple[Font, int, tuple[int, int, int, int]]:
    font = _font(text_px)
    stroke = max(1, round(text_px / 12))
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    return font, stroke, (int(left), int(top), int(right), int(bottom))


@lru_cache(maxsize=32)
def _font(text_px: int) -> Font:
    # Pillow's bundled Aileron Regular (FreeType); no font files to ship or fetch.
    return ImageFont.load_default(size=text_px)
