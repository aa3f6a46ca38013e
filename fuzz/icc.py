"""Fuzz the colour conversion with arbitrary embedded ICC profiles (lcms through Pillow).

    python -m fuzz.icc -atheris_runs=100000

Whatever the profile, ``to_srgb`` must return an sRGB image of the same size: a profile
that lcms cannot use is ignored. Seeds are lcms's own built-in profiles.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]
from PIL import Image, ImageCms

with atheris.instrument_imports(include=["chalicelib"]):
    from chalicelib.imaging import colour

IMAGES = {
    "RGB": Image.new("RGB", (4, 4), (200, 100, 50)),
    "RGBA": Image.new("RGBA", (4, 4), (200, 100, 50, 128)),
    "L": Image.new("L", (4, 4), 90),
    "CMYK": Image.new("CMYK", (4, 4), (10, 80, 160, 20)),
    "LAB": Image.new("LAB", (4, 4), (50, 128, 128)),
}
MODES = sorted(IMAGES)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    image = IMAGES[MODES[data[0] % len(MODES)]]
    converted = colour.to_srgb(image, data[1:])
    if converted.size != image.size or converted.mode not in ("RGB", "RGBA"):
        raise AssertionError(f"{image.mode} became {converted.mode} {converted.size}")


def write_seeds(directory: Path) -> None:
    for index, name in enumerate(("sRGB", "LAB", "XYZ")):
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile(name)).tobytes()  # type: ignore[arg-type]
        (directory / f"{name}.icc").write_bytes(bytes([index]) + profile)


def main(argv: list[str]) -> None:
    arguments = list(argv)
    corpora = [Path(argument) for argument in arguments[1:] if Path(argument).is_dir()]
    with tempfile.TemporaryDirectory(prefix="fuzz-icc-") as seeds_dir:
        if not corpora:
            arguments.append(seeds_dir)
            corpora = [Path(seeds_dir)]
        for corpus in corpora:
            if not any(corpus.iterdir()):
                write_seeds(corpus)
        atheris.Setup(arguments, test_one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
