"""Domain exceptions.

Every error the service reports carries a stable snake_case ``code``. API errors also
carry the HTTP status they map to (the mapping itself lives in ``chalicelib.http``);
source errors end a job FAILED with their code and are never retried.
"""

from __future__ import annotations


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


# --- Source errors: permanent, the job ends FAILED with this code -----------------------


class SourceError(MediaPipelineError):
    """The uploaded file cannot become thumbnails; retrying will not help."""


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


class ConfigurationError(MediaPipelineError):
    code = "configuration_error"


class StaleTransition(MediaPipelineError):
    """A conditional status write lost: the job already moved past the expected state."""

    code = "stale_transition"


PROCESSING_FAILED = "processing_failed"


# --- Source errors the worker finds before decoding --------------------------------------


class ContentMismatch(SourceError):
    """The file's signature names another accepted format than the content type declared."""

    code = "content_mismatch"


# --- Jobs the sweeper ends --------------------------------------------------------------


class UploadExpired(SourceError):
    """No file arrived before the job's presigned upload form expired."""

    code = "upload_expired"
