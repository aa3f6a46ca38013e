"""Responsive sets in the job view: per preset, a ``srcset`` for each format and a
``<picture>`` snippet, made only of outputs that exist, each at its true width.

Pure: output views in (as ``api.job_view`` lists them, with their URLs), JSON out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

# The format the <img> falls back to: the most widely decoded the set has.
FALLBACK_ORDER = ("JPEG", "PNG", "WEBP", "AVIF")

OutputView = Mapping[str, object]


def sets(outputs: Sequence[OutputView]) -> list[dict[str, object]]:
    """One entry per preset with responsive outputs, in the outputs' order."""
    by_preset: dict[str, list[OutputView]] = {}
    for output in outputs:
        if output.get("responsive") and "url" in output:
            by_preset.setdefault(str(output["preset"]), []).append(output)
    return [_set(preset, members) for preset, members in by_preset.items()]


def _set(preset: str, members: Sequence[OutputView]) -> dict[str, object]:
    by_format: dict[str, list[OutputView]] = {}
    for output in sorted(members, key=_width):
        by_format.setdefault(str(output["format"]), []).append(output)
    srcsets = {name: _srcset(outputs) for name, outputs in by_format.items()}
    fallback = next((name for name in FALLBACK_ORDER if name in by_format), next(iter(by_format)))
    largest = by_format[fallback][-1]
    sizes = f"(max-width: {_width(largest)}px) 100vw, {_width(largest)}px"
    sources = [
        _tag("source", type=str(outputs[0]["contentType"]), srcset=srcsets[name], sizes=sizes)
        for name, outputs in by_format.items()
        if name != fallback
    ]
    image = _tag(
        "img",
        src=str(largest["url"]),
        srcset=srcsets[fallback],
        sizes=sizes,
        width=str(_width(largest)),
        height=str(largest["height"]),
        alt="",
        loading="lazy",
        decoding="async",
    )
    return {
        "preset": preset,
        "sizes": sizes,
        "srcset": srcsets,
        "picture": "<picture>" + "".join(sources) + image + "</picture>",
    }


def _width(output: OutputView) -> int:
    width = output["width"]
    if not isinstance(width, int):
        raise TypeError(f"an output's width is not an integer: {width!r}")
    return width


def _srcset(outputs: Sequence[OutputView]) -> str:
    return ", ".join(f"{output['url']} {_width(output)}w" for output in outputs)


def _tag(name: str, **attributes: str) -> str:
    rendered = " ".join(f'{key}="{html.escape(value)}"' for key, value in attributes.items())
    return f"<{name} {rendered}>"
