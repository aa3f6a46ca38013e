"""Reprocessing: make some of a completed job's outputs again, from its kept original, at
the presets' current versions (chalicelib/presets.py `preset_version`).

One message (chalicelib/reprocess_message.py) names a job and presets. The reprocess
function reads the job; presets whose outputs are all at their current version are left
alone (a redelivered message finds them current and does nothing). The others are
rendered from the original by the worker's own render path (chalicelib/rendering.py), and
the NEW files written first; then one conditional write (chalicelib/jobs.py
`record_reprocess`) replaces those presets' outputs, adds new presets, bumps `revision`
and gives the job a new event id. Only after that write are the superseded files (the old
versions' keys) deleted, so the job never names a file that does not exist. Then the
`job.completed` event of the new revision is announced, as at the job's first end (its
own event id: webhook receivers drop duplicates by id, not by job).

A permanent failure (the original cannot be rendered) keeps the old outputs and records
`reprocessError`; a transient one returns the message to the queue, and after
maxReceiveCount to the dead-letter queue (chalicelib/reprocess_dead_letters.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum

from chalicelib import (
    backfill_outcomes,
    job_events,
    jobs,
    rendering,
    reprocess_message,
    sqs_batch,
    storage,
)
from chalicelib.config import settings
from chalicelib.errors import (
    NotFound,
    SourceError,
    TransientError,
    UnexpectedAwsError,
    public_message,
)
from chalicelib.observability import job_fields, logger, metric
from chalicelib.presets import Preset, load_presets, preset_version
from chalicelib.rendering import RemainingMillis
from chalicelib.reprocess_message import ReprocessMessage

ORIGINAL_EXPIRED = "original_expired"
ORIGINAL_EXPIRED_MESSAGE = "The job's original upload is no longer kept; upload it again."


class Outcome(StrEnum):
    """What one reprocess message came to."""

    REPROCESSED = "REPROCESSED"  # new outputs recorded (a new revision)
    ALREADY_CURRENT = "ALREADY_CURRENT"  # every named preset's outputs were current
    ORIGINAL_EXPIRED = "ORIGINAL_EXPIRED"  # no original to render from
    FAILED = "FAILED"  # the original could not be rendered; the old outputs stand
    SKIPPED = "SKIPPED"  # no such job (of that tenant), not COMPLETED, or expired


def handle_reprocess_batch(
    records: Iterable[Mapping[str, object]], remaining_millis: RemainingMillis | None = None
) -> None:
    """The reprocess function's body: each message on its own, behind the partial-batch
    boundary (a transient failure returns that message alone). ``remaining_millis``: the
    Lambda context's clock; a render is cut to what the invocation has left, and one cut
    short returns its message to the queue (``InvocationEnding``), never fails the job."""
    sqs_batch.run_batch(records, lambda record: _process_record(record, remaining_millis))


def _process_record(record: sqs_batch.SqsRecord, remaining_millis: RemainingMillis | None) -> None:
    message = reprocess_message.parse(record.body)
    if message is None:
        logger.error("dropping malformed reprocess message", extra={"messageId": record.message_id})
        return
    if backfill_outcomes.cancelled(message):
        _log_outcome(message, Outcome.SKIPPED)
        return
    outcome = reprocess(message, remaining_millis)
    # Where each message's outcome is known (a transient failure raised above instead).
    _log_outcome(message, outcome)
    backfill_outcomes.count(message, outcome)


def _log_outcome(message: ReprocessMessage, outcome: Outcome) -> None:
    fields = job_fields(
        message.job_id,
        outcome=outcome.value,
        requestId=message.request_id,
        backfillId=message.backfill_id,
    )
    logger.info("reprocess message handled", extra=fields)
    metric(f"Reprocess{outcome.value.title().replace('_', '')}", 1)


def reprocess(
    message: ReprocessMessage, remaining_millis: RemainingMillis | None = None
) -> Outcome:
    """Do the work of one message (module docstring). Raises on a transient failure."""
    job = jobs.get_job(message.job_id)
    if (
        job is None
        or job.tenant != message.tenant
        or job.status is not jobs.JobStatus.COMPLETED
        or job.has_expired()
    ):
        return Outcome.SKIPPED
    redo = presets_to_redo(job, message.presets)
    if not redo:
        _settle(job, message, error=None)
        return Outcome.ALREADY_CURRENT
    if not original_available(job):
        _settle(job, message, error=_original_expired())
        return Outcome.ORIGINAL_EXPIRED
    configured = load_presets(settings().presets_json)
    presets = [configured[name] for name in redo]
    try:
        data = _read_original(job)
    except NotFound:
        _settle(job, message, error=_original_expired())
        return Outcome.ORIGINAL_EXPIRED
    try:
        rendered = rendering.render_and_store(
            job.tenant, job.job_id, data, presets, remaining_millis
        )
    except SourceError as exc:
        logger.warning("reprocess failed", extra=job_fields(job.job_id, code=exc.code))
        _settle(job, message, error={"code": exc.code, "message": public_message(exc)})
        return Outcome.FAILED
    return _record(job, message, presets, rendered.outputs)


def presets_to_redo(job: jobs.Job, names: Sequence[str]) -> list[str]:
    """Which of `names` (configured presets; others are ignored) have no output at their
    current version in `job`: none at all, or any of a set at another version. In the
    order named, each once. A name of the upload's own outputs is never a preset to redo."""
    configured = load_presets(settings().presets_json)
    own = {str(output.get("name")) for output in job.requested_outputs}
    redo: list[str] = []
    for name in dict.fromkeys(names):
        if name not in configured or name in own:
            continue
        version = preset_version(configured[name])
        versions = {output.get("version") for output in job.outputs if output["preset"] == name}
        if versions != {version}:
            redo.append(name)
    return redo


def original_available(job: jobs.Job, now: float | None = None) -> bool:
    """Whether the job's original is still kept (by its record; S3 may have removed it a
    little earlier, which `reprocess` learns when it reads it)."""
    original = job.original
    if original is None:
        return False
    expires_at = original.get("expiresAt")
    return isinstance(expires_at, int) and expires_at > (time.time() if now is None else now)


def _read_original(job: jobs.Job) -> bytes:
    original = job.original or {}
    return storage.read_original(str(original["key"]), max_bytes=settings().max_upload_bytes)


def _original_expired() -> dict[str, str]:
    return {"code": ORIGINAL_EXPIRED, "message": ORIGINAL_EXPIRED_MESSAGE}


def _record(
    job: jobs.Job,
    message: ReprocessMessage,
    presets: Sequence[Preset],
    new_outputs: list[dict[str, object]],
) -> Outcome:
    """Store the new outputs (already written) in the job, then delete what they replace."""
    redone = {preset.name for preset in presets}
    outputs = _merged_outputs(job.outputs, new_outputs, redone)
    names = job.presets + [preset.name for preset in presets if preset.name not in job.presets]
    recorded = jobs.record_reprocess(
        job, request_id=message.request_id, outputs=outputs, presets=names
    )
    if not recorded.moved:
        current = recorded.job
        if current is not None and current.last_reprocess_request == message.request_id:
            return Outcome.ALREADY_CURRENT  # a duplicate of this message wrote first
        # Another request wrote meanwhile: the message comes back and is judged again.
        raise TransientError(f"job {job.job_id} changed during its reprocess")
    new_keys = {output["key"] for output in new_outputs}
    superseded = [
        str(output["key"])
        for output in job.outputs
        if output["preset"] in redone and output["key"] not in new_keys
    ]
    _delete_superseded(job.job_id, superseded)
    logger.info(
        "job reprocessed",
        extra=job_fields(
            job.job_id, presets=sorted(redone), revision=recorded.job and recorded.job.revision
        ),
    )
    job_events.announce(recorded.job)
    return Outcome.REPROCESSED


def _merged_outputs(
    old: Sequence[Mapping[str, object]], new: Sequence[dict[str, object]], redone: set[str]
) -> list[dict[str, object]]:
    """The job's outputs with each redone preset's replaced in place by its new ones, and
    presets new to the job after the rest."""
    by_preset: dict[str, list[dict[str, object]]] = {}
    for made in new:
        by_preset.setdefault(str(made["preset"]), []).append(made)
    merged: list[dict[str, object]] = []
    for output in old:
        preset = str(output["preset"])
        if preset not in redone:
            merged.append(dict(output))
        elif preset in by_preset:
            merged.extend(by_preset.pop(preset))
    for remaining in by_preset.values():
        merged.extend(remaining)
    return merged


def _delete_superseded(job_id: str, keys: Sequence[str]) -> None:
    """A failure leaves the files to the derived bucket's lifecycle rule: the job no
    longer names them, and the write that replaced them stands."""
    try:
        storage.delete_outputs(keys)
    except (TransientError, UnexpectedAwsError):
        logger.warning(
            "superseded outputs not deleted; the lifecycle rule will expire them",
            extra=job_fields(job_id, keys=list(keys)),
            exc_info=True,
        )


def _settle(job: jobs.Job, message: ReprocessMessage, *, error: Mapping[str, str] | None) -> None:
    """The message ended without new outputs: clear its pending request on the job (if it
    is the one pending), with the error if there was one."""
    if job.reprocess_request is None and error is None:
        return
    jobs.end_reprocessing(job.job_id, message.request_id, error=error)
