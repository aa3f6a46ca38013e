"""Domain exceptions.

Every error the service reports carries a stable snake_case ``code``. API errors also
carry the HTTP status they map to (the mapping itself lives in ``chalicelib.http``);
source errors end a job FAILED with their code and are never retried.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class MediaPipelineError(Exception):
    """Base of every error this service raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- API errors ---------------------------------------------------------------------


class ApiError(MediaPipelineError):
    status = 500


class InvalidRequest(ApiError):
    code = "invalid_request"
    status = 400


class UnsupportedContentType(ApiError):
    code = "unsupported_content_type"
    status = 400


class UnknownPreset(ApiError):
    code = "unknown_preset"
    status = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401


class NotFound(ApiError):
    code = "not_found"
    status = 404


class Forbidden(ApiError):
    """Answered by API Gateway (ACCESS_DENIED), never by the app."""

    code = "forbidden"
    status = 403


class MethodNotAllowed(ApiError):
    code = "method_not_allowed"
    status = 405


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"
    status = 415


class Throttled(ApiError):
    """Answered by API Gateway when a stage's rate or burst limit is exceeded."""

    code = "throttled"
    status = 429


class InternalError(ApiError):
    code = "internal_error"
    status = 500


class ServiceUnavailable(ApiError):
    code = "service_unavailable"
    status = 503


class TooManyPendingUploads(ApiError):
    """The tenant holds MAX_PENDING_UPLOADS jobs waiting for their upload (POST /uploads)."""

    code = "too_many_pending_uploads"
    status = 429


class TooManyWebhooks(ApiError):
    """The tenant has MAX_WEBHOOKS_PER_TENANT endpoints (POST /webhooks)."""

    code = "too_many_webhooks"
    status = 409


class JobNotFinished(ApiError):
    """A replay of a job's final event before the job has ended."""

    code = "job_not_finished"
    status = 409


class JobNotCompleted(ApiError):
    """A reprocess of a job that has not completed: it has no outputs to make again."""

    code = "job_not_completed"
    status = 409


class OriginalExpired(ApiError):
    """A reprocess of a job whose original upload is no longer kept."""

    code = "original_expired"
    status = 409


class BackfillFinished(ApiError):
    """A cancellation of a backfill that has already completed or failed."""

    code = "backfill_finished"
    status = 409


# --- Source errors: permanent, the job ends FAILED with this code -----------------------


class SourceError(MediaPipelineError):
    """The uploaded file cannot become thumbnails; retrying will not help.

    `message` may quote a library and goes to the log only; the job stores its code's
    fixed text (`job_error_message`), with `detail` when given: our own numbers and names
    in the `SAFE_DETAIL` form, such as ``"limit: 50000000 pixels"``.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class UnsupportedFormat(SourceError):
    code = "unsupported_format"


class CorruptImage(SourceError):
    code = "corrupt_image"


class ImageTooLarge(SourceError):
    code = "image_too_large"


class FileTooLarge(SourceError):
    code = "file_too_large"


class TooManyFrames(ImageTooLarge):
    """More frames or pages than the frame cap, or frames x pixels over the total cap."""


class ProcessingTimeout(SourceError):
    """Rendering outlasted its time budget. Rendering is deterministic and the budget is
    many times the slowest legitimate image, so a retry would only spend it again."""

    code = "processing_timeout"


# --- Infrastructure errors ------------------------------------------------------------


class TransientError(MediaPipelineError):
    """An AWS call failed in a way that may succeed on retry (throttling, 5xx, network)."""

    code = "transient_error"


class UnexpectedAwsError(MediaPipelineError):
    """An AWS call failed in a way no retry cures (a denied permission, a missing resource,
    a malformed request): a bug or a misconfiguration, answered 500 and logged with the
    AWS error code."""

    def __init__(self, operation: str, aws_code: str) -> None:
        super().__init__(f"{operation} failed: {aws_code}")
        self.operation = operation
        self.aws_code = aws_code


class BatchIncomplete(TransientError):
    """Some records of an SQS batch failed; they return to the queue for another try."""


class InvocationEnding(TransientError):
    """The render ran out of what was left of the invocation, not of its own budget: the
    image may be fine, so the record goes back to the queue for a fresh invocation."""


class SweepIncomplete(TransientError):
    """Some jobs could not be swept; the next run tries them again."""


class ConfigurationError(MediaPipelineError):
    code = "configuration_error"


class PresetError(ValueError):
    """A preset or a preset configuration is invalid; the message says what and where."""


class StaleTransition(MediaPipelineError):
    """A conditional status write lost: the job already moved past the expected state.
    (The job store answers a refused move with its `Transition`;
    infra/migrate_status_index.py raises this for its own writes.)"""

    code = "stale_transition"


PROCESSING_FAILED = "processing_failed"


# --- Source errors the worker finds before decoding --------------------------------------


class ContentMismatch(SourceError):
    """The file's signature names another accepted format than the content type declared."""

    code = "content_mismatch"


class SourceGone(SourceError):
    """The uploaded object version no longer exists."""

    code = PROCESSING_FAILED


class PresetRemoved(SourceError):
    """A preset the job asked for is no longer configured."""

    code = PROCESSING_FAILED


# --- Jobs the sweeper ends --------------------------------------------------------------


class UploadExpired(SourceError):
    """No file arrived before the job's presigned upload form expired."""

    code = "upload_expired"


# --- Webhooks ---------------------------------------------------------------------------


class InvalidWebhookSecret(MediaPipelineError):
    """A stored endpoint secret is not ``whsec_`` + base64 of 24 to 64 bytes."""

    code = "invalid_webhook_secret"


class EndpointRefused(MediaPipelineError):
    """A webhook URL the service will not call (the outbound guard): its form, scheme,
    port, or an address it names or resolves to outside the public internet."""

    code = "endpoint_refused"


class DeliveryUnreachable(MediaPipelineError):
    """A delivery attempt got no HTTP answer: the name did not resolve, the connection
    failed or was reset, TLS failed, or no response came within the timeout."""

    code = "delivery_unreachable"


# --- What a FAILED job says --------------------------------------------------------------

# One fixed text per failure code: the only text a job's `error.message` carries, so no
# library's wording (or a file's own bytes) ever reaches a client. README's table of job
# failure codes quotes it.
JOB_FAILURE_MESSAGES: Mapping[str, str] = {
    UnsupportedFormat.code: "The file is not an image in one of the accepted formats.",
    CorruptImage.code: "The image data is corrupt or truncated.",
    ContentMismatch.code: "The file is in another format than the content type declared.",
    ImageTooLarge.code: (
        "The image is over a limit on its pixels, side length, frames or metadata."
    ),
    FileTooLarge.code: "The file is larger than the upload size limit.",
    ProcessingTimeout.code: "Rendering the image took longer than its time budget.",
    PROCESSING_FAILED: "The job could not be processed and was given up; upload the image again.",
    UploadExpired.code: "No file was uploaded before the upload URL expired.",
}

# A detail is "name: value" items joined by "; ", each value a number, a media type or a
# format name, optionally followed by a unit.
_DETAIL_ITEM = r"[a-z]+(?: [a-z]+)*: [A-Za-z0-9][A-Za-z0-9/.+_-]*(?: [a-z]+)?"
SAFE_DETAIL = re.compile(rf"{_DETAIL_ITEM}(?:; {_DETAIL_ITEM})*")


def job_error_message(code: str, detail: str | None = None) -> str:
    """The `error.message` of a job that FAILED with `code`: its fixed text, and `detail`
    in parentheses if it has the safe form (any other detail is left out)."""
    text = JOB_FAILURE_MESSAGES[code]
    if detail is not None and SAFE_DETAIL.fullmatch(detail):
        return f"{text} ({detail})"
    return text


def public_message(error: SourceError) -> str:
    return job_error_message(error.code, error.detail)
