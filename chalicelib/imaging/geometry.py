"""Where each rendition comes from in the source and how big it is. Pure arithmetic.

Nothing is ever upscaled: no output dimension exceeds the source's.

* ``contain`` fits the whole source inside the box, keeping its aspect ratio. A source that
  already fits is kept at its own size.
* ``cover`` takes the largest centred region of the source with the box's aspect ratio and
  scales it to exactly the box. When the source is too small to cover the box, that region
  is used as it is, without scaling: the output has the box's aspect ratio (up to rounding)
  and is smaller than the box, e.g. a 100x50 source in a 256x256 box becomes the centre
  50x50.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Placement:
    """A region of the source (left, top, right, bottom in source pixels) and its output size."""

    box: Box
    width: int
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel, horizontally and vertically (at most 1)."""
        left, top, right, bottom = self.box
        return self.width / (right - left), self.height / (bottom - top)

    def covers_whole(self, source_width: int, source_height: int) -> bool:
        return self.box == (0, 0, source_width, source_height)


def place(
    fit: Literal["cover", "contain"],
    box_width: int,
    box_height: int,
    source_width: int,
    source_height: int,
) -> Placement:
    if fit == "contain":
        return _contain(box_width, box_height, source_width, source_height)
    return _cover(box_width, box_height, source_width, source_height)


def _contain(box_width: int, box_height: int, source_width: int, source_height: int) -> Placement:
    whole: Box = (0, 0, source_width, source_height)
    if source_width <= box_width and source_height <= box_height:
        return Placement(whole, source_width, source_height)
    if source_width * box_height >= source_height * box_width:  # limited by the width
        height = _at_least_one(source_height * box_width / source_width)
        return Placement(whole, box_width, min(height, box_height))
    width = _at_least_one(source_width * box_height / source_height)
    return Placement(whole, min(width, box_width), box_height)


def _cover(box_width: int, box_height: int, source_width: int, source_height: int) -> Placement:
    if source_width * box_height > source_height * box_width:  # source is wider than the box
        region_width: float = source_height * box_width / box_height
        region_height: float = source_height
    else:
        region_width = source_width
        region_height = source_width * box_height / box_width
    if region_width >= box_width:
        left = (source_width - region_width) / 2
        top = (source_height - region_height) / 2
        return Placement(
            (left, top, left + region_width, top + region_height), box_width, box_height
        )
    # Too small to cover the box: crop whole pixels to the box's aspect ratio, no scaling.
    width = min(_at_least_one(region_width), source_width)
    height = min(_at_least_one(region_height), source_height)
    left_pixel = (source_width - width) // 2
    top_pixel = (source_height - height) // 2
    return Placement((left_pixel, top_pixel, left_pixel + width, top_pixel + height), width, height)


def _at_least_one(length: float) -> int:
    return max(1, round(length))


def to_stored(placement: Placement, orientation: int, displayed: tuple[int, int]) -> Placement:
    """The same placement in the pixels as stored, for an EXIF ``orientation`` (1-8).

    ``displayed`` is the source size after orientation. Working in stored coordinates lets
    the pixels be rotated only once they are small.
    """
    width, height = displayed
    left, top, right, bottom = placement.box
    stored: dict[int, Box] = {
        1: (left, top, right, bottom),
        2: (width - right, top, width - left, bottom),
        3: (width - right, height - bottom, width - left, height - top),
        4: (left, height - bottom, right, height - top),
        5: (top, left, bottom, right),
        6: (top, width - right, bottom, width - left),
        7: (height - bottom, width - right, height - top, width - left),
        8: (height - bottom, left, height - top, right),
    }
    if orientation >= 5:
        return Placement(stored[orientation], placement.height, placement.width)
    return Placement(stored[orientation], placement.width, placement.height)
