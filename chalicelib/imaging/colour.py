"""Turning any decoded image into 8-bit sRGB: RGB, or RGBA when it has transparency."""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from functools import cache

from PIL import Image, ImageChops, ImageCms

from chalicelib.errors import UnsupportedFormat
from chalicelib.observability import logger

WHITE = (255, 255, 255)

# Display profiles are a few KiB; the largest print (CMYK) profiles in use are 1-3 MiB. A
# JPEG can carry 16 MiB, and lcms parses whatever it is given: beyond this, the profile is
# ignored (with a log line) and the pixels are converted as if untagged.
MAX_ICC_PROFILE_BYTES = 4 * 1024 * 1024
# Transforms kept, keyed by the profile's digest: uploads from one camera share a profile.
TRANSFORM_CACHE_SIZE = 16

# Modes `to_8bit` leaves for `to_srgb`; every other mode is converted into one of them.
_EIGHT_BIT_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "LAB"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_SIMPLE_CONVERSIONS = {"1": "L", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "YCbCr": "RGB"}
_PLAIN_TO_SRGB = {"L": "RGB", "LA": "RGBA", "CMYK": "RGB", "LAB": "RGB"}


def to_8bit(image: Image.Image) -> Image.Image:
    """Reduce ``image`` to L, LA, RGB, RGBA, CMYK or LAB, keeping any transparency."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _rescale_to_l(image.convert("I"), 255 / 65535)
    if mode == "I":
        return _integer_to_l(image)
    if mode == "F":
        return _float_to_l(image)
    if mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if mode in ("L", "RGB") and "transparency" in image.info:  # a PNG tRNS colour key
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in _SIMPLE_CONVERSIONS:
        return image.convert(_SIMPLE_CONVERSIONS[mode])
    if mode in _EIGHT_BIT_MODES:
        return image
    raise UnsupportedFormat(f"Images in Pillow mode {mode} are not supported.")


def _integer_to_l(image: Image.Image) -> Image.Image:
    # 32-bit integer samples carry no bit depth: 0..255 is taken as 8-bit, 0..65535 as
    # 16-bit, and any other range is stretched to 0..255.
    low, high = _extrema(image)
    if low >= 0 and high <= 255:
        return image.convert("L")
    if low >= 0 and high <= 65535:
        return _rescale_to_l(image, 255 / 65535)
    return _stretch_to_l(image, low, high)


def _float_to_l(image: Image.Image) -> Image.Image:
    # Floating point samples in 0..1 are normalised intensities; 0..255 are 8-bit values;
    # any other range is stretched to 0..255.
    low, high = _extrema(image)
    if low >= 0 and high <= 1:
        return _rescale_to_l(image, 255)
    if low >= 0 and high <= 255:
        return _rescale_to_l(image, 1)
    return _stretch_to_l(image, low, high)


def _stretch_to_l(image: Image.Image, low: float, high: float) -> Image.Image:
    return _rescale_to_l(image, 255 / (high - low) if high > low else 0, low)


def _rescale_to_l(image: Image.Image, scale: float, low: float = 0) -> Image.Image:
    # Pillow truncates when it converts I or F to L; adding 0.5 makes that a rounding.
    return image.point(lambda value: (value - low) * scale + 0.5).convert("L")


def _extrema(image: Image.Image) -> tuple[float, float]:
    low, high = image.getextrema()
    if isinstance(low, tuple) or isinstance(high, tuple):
        raise TypeError(f"expected a single-band image, got {image.mode}")
    return float(low), float(high)


def invert_cmyk(image: Image.Image) -> Image.Image:
    """Undo Pillow's Adobe assumption for a CMYK JPEG that lacks Adobe's APP14 marker.

    Pillow reads every CMYK JPEG as Adobe's inverted CMYK (as Photoshop writes it); a file
    without the marker holds plain CMYK, which is what libjpeg-based decoders assume.
    """
    return ImageChops.invert(image)


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Convert an image from `to_8bit` to sRGB RGB/RGBA, through its ICC profile if any.

    A profile that cannot be read or does not fit the image is ignored, as browsers do.
    """
    if icc_profile and len(icc_profile) > MAX_ICC_PROFILE_BYTES:
        logger.warning(
            "embedded colour profile ignored: too large",
            extra={"profileBytes": len(icc_profile), "limit": MAX_ICC_PROFILE_BYTES},
        )
    elif icc_profile:
        converted = _apply_profile(image, icc_profile)
        if converted is not None:
            return converted
    if image.mode in _PLAIN_TO_SRGB:
        return image.convert(_PLAIN_TO_SRGB[image.mode])
    return image


def _apply_profile(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    if image.mode == "LA":
        return None  # lcms has no grey+alpha type; grey profiles differ only in their curve
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        transform = _cached_transform(icc_profile, image.mode, output_mode)
        if transform is None:
            return None
        return ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
        logger.info(
            "embedded colour profile ignored: unusable",
            extra={"profileBytes": len(icc_profile), "reason": str(exc), "mode": image.mode},
        )
        return None


_TransformKey = tuple[bytes, str, str]
_transforms: OrderedDict[_TransformKey, ImageCms.ImageCmsTransform | None] = OrderedDict()


def _cached_transform(
    icc_profile: bytes, input_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """``_transform_to_srgb``, remembered by the profile's digest (building a transform costs
    more than applying it to a thumbnail). Keyed by digest, not by the profile itself, so
    the cache never holds profiles' bytes; failures are not remembered."""
    key = (hashlib.sha256(icc_profile).digest(), input_mode, output_mode)
    if key in _transforms:
        _transforms.move_to_end(key)
        return _transforms[key]
    transform = _transform_to_srgb(icc_profile, input_mode, output_mode)
    _transforms[key] = transform
    if len(_transforms) > TRANSFORM_CACHE_SIZE:
        _transforms.popitem(last=False)
    return transform


def _transform_to_srgb(
    icc_profile: bytes, input_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """A transform from the embedded profile to sRGB; None when the profile is sRGB already."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
    if input_mode in ("RGB", "RGBA") and _is_srgb(profile):
        return None
    return ImageCms.buildTransform(
        profile,
        _srgb_profile(),
        input_mode,
        output_mode,
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    # Names the standard profile carries ("sRGB IEC61966-2.1", "sRGB built-in", ...).
    description = ImageCms.getProfileDescription(profile).strip()
    return description.startswith("sRGB")


@cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def drop_opaque_alpha(image: Image.Image) -> Image.Image:
    """RGB when every pixel of an RGBA image is opaque: smaller and faster to encode."""
    if image.mode == "RGBA" and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")
    return image


def flatten(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """An RGB image: transparency composited onto ``background``."""
    if image.mode != "RGBA":
        return image
    canvas = Image.new("RGB", image.size, background)
    canvas.paste(image, mask=image.getchannel("A"))
    return canvas
