"""One line for a person about each error the API (or the storage it uploads to) answers.

The API answers `{"error": {"code", "message"}}` (chalicelib/errors.py lists the codes);
a presigned upload refused by S3 answers XML with its `<Code>`. A code not listed here is
shown with the API's own message.
"""

from __future__ import annotations

from collections.abc import Mapping

from media_pipeline.client import ApiError

EXPLANATIONS: Mapping[str, str] = {
    # the API
    "invalid_request": "the API refused the request as sent",
    "unsupported_content_type": "the API does not accept this type of file",
    "unknown_preset": "a preset given with --presets is not configured on this API",
    "unauthorized": "the API key was refused: check --key or MEDIA_PIPELINE_KEY",
    "forbidden": "the API denied access: check the key, and that --api is this stage's URL",
    "not_found": "no such job, webhook endpoint or backfill for this key (ids are per tenant)",
    "method_not_allowed": "this URL does not answer that request: check --api",
    "payload_too_large": "the request was larger than the API accepts",
    "unsupported_media_type": "the API expected a JSON body",
    "throttled": "the API's rate limit was still exceeded after retries: try fewer at once",
    "too_many_pending_uploads": (
        "too many of your uploads are waiting for their file: let them finish or expire"
    ),
    "too_many_webhooks": "this key's tenant has all the webhook endpoints it may: remove one",
    "job_not_finished": "the job has not ended yet",
    "job_not_completed": "the job has not completed: it has no outputs to make again",
    "original_expired": "the job's original upload is no longer kept: upload it again",
    "backfill_finished": "the backfill has already completed or failed",
    "internal_error": "the service failed on its side",
    "service_unavailable": "the service was still unavailable after retries: try again later",
    # S3, refusing a presigned upload
    "EntityTooLarge": "the file is larger than the upload size limit",
    "EntityTooSmall": "the file is empty",
    "AccessDenied": "the storage refused the upload: its form expired or was altered",
    "RequestTimeout": "the storage gave up waiting for the file: the connection was too slow",
}
# Codes whose API message names what exactly was wrong (a field, a value, a limit).
WITH_API_MESSAGE = frozenset(
    {"invalid_request", "unsupported_content_type", "unknown_preset", "payload_too_large"}
)


def explain(error: ApiError) -> str:
    """`code: what it means` on one line (the API's message where it adds the specifics)."""
    code = error.code or f"http_{error.status}"
    text = EXPLANATIONS.get(code)
    if text is None:
        text = error.message or f"the API answered HTTP {error.status}"
    elif code in WITH_API_MESSAGE and error.message:
        text = f"{text}: {error.message}"
    return one_line(f"{code}: {text}")


def one_line(text: str) -> str:
    return " ".join(text.split())
