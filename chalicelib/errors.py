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
