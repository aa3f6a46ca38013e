"""The render path shared by the worker (a job's first run) and reprocessing: the engine
renders presets from a source's bytes, every output is written to the derived bucket at
its versioned key, and the job's output records come back for the caller to store.

Output keys are `<tenant>/<jobId>/<output>.<version>.<ext>` (chalicelib/storage.py): the
same preset definition always writes the same keys, so a retry overwrites, never adds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib import storage
from chalicelib.config import settings
from chalicelib.errors import InvocationEnding, ProcessingTimeout
from chalicelib.presets import Preset, preset_version

if TYPE_CHECKING:  # the engine (and Pillow) load only when a job is rendered
    from chalicelib.imaging import Placeholder

RemainingMillis = Callable[[], int]

# Kept back from the invocation's remaining time for writing outputs and the final status.
FINISHING_SECONDS = 5.0
# Below this much time left, the invocation's clock is not worth honouring: the render gets
# its whole budget, and if Lambda's timeout ends the invocation first, the batch returns.
MIN_RENDER_SECONDS = 1.0


@dataclass(frozen=True)
class Rendered:
    """What one render stored: the output records (as a job keeps them, written to S3
    already), what the engine found of the source, and the placeholder."""

    outputs: list[dict[str, object]]
    source: dict[str, object]
    placeholder: dict[str, object] | None


def render_and_store(
    job_tenant: str,
    job_id: str,
    data: bytes,
    presets: Sequence[Preset],
    remaining_millis: RemainingMillis | None = None,
) -> Rendered:
    """Render `presets` from the source `data` and write every output. Raises SourceError
    (a permanent failure of this source) or a transient error (nothing recorded yet)."""
    from chalicelib import imaging

    config = settings()
    budget, cut_short = render_budget(config.render_time_budget_seconds, remaining_millis)
    try:
        result = imaging.render(
            data,
            list(presets),
            max_pixels=config.max_pixels,
            max_frames=config.max_frames,
            time_budget=budget,
        )
    except ProcessingTimeout as exc:
        if cut_short:
            raise InvocationEnding(f"The invocation ended within {budget:.1f} s") from exc
        exc.detail = f"budget: {budget:g} s"
        raise
    versions = {preset.name: preset_version(preset) for preset in presets}
    written = [
        storage.Output(
            storage.output_key(
                job_tenant, job_id, rendition.name, versions[rendition.preset], rendition.extension
            ),
            rendition.data,
            rendition.content_type,
        )
        for rendition in result.outputs
    ]
    storage.write_outputs(written)
    outputs: list[dict[str, object]] = [
        {
            "preset": rendition.preset,
            "name": rendition.name,
            "responsive": rendition.in_set,
            "width": rendition.width,
            "height": rendition.height,
            "format": rendition.format,
            "contentType": rendition.content_type,
            "bytes": len(rendition.data),
            "key": output.key,
            "version": versions[rendition.preset],
        }
        for rendition, output in zip(result.outputs, written, strict=True)
    ]
    source: dict[str, object] = {
        "contentType": result.source.content_type,
        "bytes": len(data),
        "width": result.source.width,
        "height": result.source.height,
        "format": result.source.format,
    }
    return Rendered(outputs, source, _placeholder(result.placeholder))


def _placeholder(found: Placeholder | None) -> dict[str, object] | None:
    if found is None:
        return None
    return {
        "blurhash": found.blurhash,
        "thumbhash": found.thumbhash,
        "dominantColor": found.dominant_color,
        "width": found.width,
        "height": found.height,
    }


def remaining_time(lambda_context: object) -> RemainingMillis | None:
    """The Lambda context's clock, if the context has one."""
    clock = getattr(lambda_context, "get_remaining_time_in_millis", None)
    return clock if callable(clock) else None


def render_budget(
    configured: float, remaining_millis: RemainingMillis | None
) -> tuple[float, bool]:
    """Seconds the next render may take, and whether that is less than its own budget."""
    if remaining_millis is None:
        return configured, False
    left = remaining_millis() / 1000 - FINISHING_SECONDS
    if left >= configured or left < MIN_RENDER_SECONDS:
        return configured, False
    return left, True
