"""Render images from the command line, for trying presets and for benchmarks.

    python -m chalicelib.imaging INPUT... --out DIR [--repeat N] [--presets-json FILE]

Writes ``<input stem>.<preset>.<ext>`` into DIR and prints one JSON object per input and
repeat: ``{"input", "ms", "outputs": [{"preset", "width", "height", "format", "bytes"}]}``,
or ``{"input", "error": {"code", "message"}}``. ``ms`` times ``render()`` alone. The exit
status is 0 when every input rendered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chalicelib.errors import SourceError
from chalicelib.imaging.pipeline import render
from chalicelib.imaging.results import RenderResult
from chalicelib.presets import Preset, PresetError, load_presets


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        presets = _presets(arguments.presets_json)
    except (OSError, PresetError) as exc:
        parser.error(f"--presets-json: {exc}")
    out_dir: Path = arguments.out
    out_dir.mkdir(parents=True, exist_ok=True)
    all_rendered = True
    for path in arguments.inputs:
        for repeat in range(arguments.repeat):
            report = _render_one(path, presets, out_dir, write=repeat == 0)
            all_rendered = all_rendered and "error" not in report
            print(json.dumps(report), flush=True)
    return 0 if all_rendered else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chalicelib.imaging", description="Render thumbnail presets."
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files")
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs")
    parser.add_argument("--repeat", type=_positive, default=1, help="render each input N times")
    parser.add_argument(
        "--presets-json", type=Path, help="a JSON preset list (default: the built-in presets)"
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _presets(path: Path | None) -> list[Preset]:
    raw = None if path is None else path.read_text(encoding="utf-8")
    return list(load_presets(raw).values())


def _render_one(
    path: Path, presets: Sequence[Preset], out_dir: Path, *, write: bool
) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"input": str(path), "error": {"code": "unreadable", "message": str(exc)}}
    started = time.perf_counter()
    try:
        result = render(data, presets)
    except SourceError as exc:
        return {"input": str(path), "error": {"code": exc.code, "message": exc.message}}
    elapsed_ms = (time.perf_counter() - started) * 1000
    if write:
        _write_outputs(result, path.stem, out_dir)
    return {
        "input": str(path),
        "ms": round(elapsed_ms, 2),
        "outputs": [
            {
                "preset": output.preset,
                "name": output.name,
                "width": output.width,
                "height": output.height,
                "format": output.format,
                "bytes": output.bytes,
            }
            for output in result.outputs
        ],
    }


def _write_outputs(result: RenderResult, stem: str, out_dir: Path) -> None:
    for output in result.outputs:
        (out_dir / f"{stem}.{output.name}.{output.extension}").write_bytes(output.data)


if __name__ == "__main__":
    sys.exit(main())
