"""An upload's own outputs: `POST /uploads` may describe the outputs it wants, beside or
instead of the stage's named presets, within the stage's limits.

The request's shape is checked by its schema (`models.OUTPUT_SPEC`); this module checks
what the schema cannot know: the stage's limits and the names of the job's presets. A
refused spec raises `InvalidRequest` naming the field and the limit. Free of Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chalicelib.config import Settings
from chalicelib.errors import InvalidRequest, PresetError
from chalicelib.presets import Preset, parse_preset


def parse(raw: Sequence[Any] | None, preset_names: Sequence[str], config: Settings) -> list[Preset]:
    """The upload's outputs as presets, each within the stage's limits; [] if none."""
    if not raw:
        return []
    specs = [_preset(item, f"outputs[{index}]") for index, item in enumerate(raw)]
    taken = set(preset_names)
    for index, spec in enumerate(specs):
        where = f"outputs[{index}]"
        if spec.name in taken:
            raise InvalidRequest(
                f"{where}.name {spec.name!r} is already the name of another output of the job."
            )
        taken.add(spec.name)
        _check_dimensions(spec, where, config.max_output_dimension)
        _check_formats(spec, where, config.upload_output_formats)
    _check_totals(specs, config)
    return specs


def output_count(spec: Preset) -> int:
    return len(spec.set_widths) * len(spec.set_formats)


def output_pixels(spec: Preset) -> int:
    """The most pixels ``spec`` can render: each width's whole box, in each format."""
    boxes = (spec.box_at(width) for width in spec.set_widths)
    return sum(width * height for width, height in boxes) * len(spec.set_formats)


def _preset(item: Any, where: str) -> Preset:
    try:
        return parse_preset(item, where)
    except PresetError as exc:
        raise InvalidRequest(f"{exc}.") from exc


def _check_dimensions(spec: Preset, where: str, limit: int) -> None:
    sizes = [("width", spec.width), ("height", spec.height)]
    sizes += [(f"widths[{index}]", width) for index, width in enumerate(spec.widths)]
    sizes += [
        (f"widths[{index}] (its height)", spec.box_at(width)[1])
        for index, width in enumerate(spec.widths)
    ]
    for field, value in sizes:
        if value > limit:
            raise InvalidRequest(
                f"{where}.{field} is {value}: at most {limit} pixels (MAX_OUTPUT_DIMENSION)."
            )


def _check_formats(spec: Preset, where: str, allowed: Sequence[str]) -> None:
    asked = [("format", spec.format)]
    asked += [(f"formats[{index}]", name) for index, name in enumerate(spec.formats)]
    for field, name in asked:
        if name not in allowed:
            raise InvalidRequest(
                f"{where}.{field} {name} is not offered on this stage: one of "
                f"{', '.join(allowed)} (UPLOAD_OUTPUT_FORMATS)."
            )


def _check_totals(specs: Sequence[Preset], config: Settings) -> None:
    count = sum(output_count(spec) for spec in specs)
    if count > config.max_job_outputs:
        raise InvalidRequest(
            f"outputs asks for {count} outputs (each width counts): at most "
            f"{config.max_job_outputs} per job (MAX_JOB_OUTPUTS)."
        )
    pixels = sum(output_pixels(spec) for spec in specs)
    if pixels > config.max_job_output_pixels:
        raise InvalidRequest(
            f"outputs asks for up to {pixels} output pixels: at most "
            f"{config.max_job_output_pixels} per job (MAX_JOB_OUTPUT_PIXELS)."
        )
