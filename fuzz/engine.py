"""Fuzz ``chalicelib.imaging.render`` with atheris: anything but a SourceError is a crash.

    python -m fuzz.engine -atheris_runs=10000            # seeds generated into a temp dir
    python -m fuzz.engine -max_total_time=300 CORPUS_DIR # a corpus that grows between runs

Arguments are libFuzzer's (``-help=1`` lists them); a directory argument is the corpus,
seeded (fuzz/seeds.py) when empty. Without one, the seeds go to a temporary directory. A crash
writes the input to ``crash-<sha1>`` (``-artifact_prefix=DIR/`` to choose where) and exits
non-zero; replay it with ``python -m fuzz.engine crash-<sha1>``. Python code of the engine
and of Pillow is instrumented for coverage; Pillow's C decoders are not (they are fuzzed
upstream by OSS-Fuzz), so they are explored through the Python paths around them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris  # type: ignore[import-untyped]

from fuzz.seeds import write_seeds

# Only the engine's own code is instrumented: atheris 2.3.0's bytecode rewriting breaks
# some of Pillow's (TiffImagePlugin's writer raised AttributeError on an int), which would
# report false crashes.

with atheris.instrument_imports(include=["chalicelib"]):
    from chalicelib.errors import SourceError
    from chalicelib.imaging import render
    from chalicelib.presets import Preset

PRESETS = [
    Preset("cover", 24, 24, "cover", "JPEG", 80),
    Preset("contain", 32, 20, "contain", "WEBP", 80),
]
# Small, so that a valid mutant costs milliseconds and libFuzzer explores more of them.
MAX_PIXELS = 4_000_000


def test_one_input(data: bytes) -> None:
    try:
        result = render(data, PRESETS, max_pixels=MAX_PIXELS)
    except SourceError:
        return
    for preset, output in zip(PRESETS, result.outputs, strict=True):
        if not (1 <= output.width <= preset.width and 1 <= output.height <= preset.height):
            raise AssertionError(f"{preset.name}: {output.width}x{output.height} outside the box")


def main(argv: list[str]) -> None:
    arguments = list(argv)
    corpora = [Path(argument) for argument in arguments[1:] if Path(argument).is_dir()]
    for corpus in corpora:
        if not any(corpus.iterdir()):
            write_seeds(corpus)
    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as seeds_dir:
        if not corpora:
            write_seeds(Path(seeds_dir))
            arguments.append(seeds_dir)
        atheris.Setup(arguments, test_one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
