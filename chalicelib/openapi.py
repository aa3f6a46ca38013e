"""The OpenAPI 3.1 document of the REST API (`GET /openapi.json`), built from `models`.

Every schema in it is one `chalicelib.api` validates with or answers in; `OPERATIONS` is
the route table (tests check it against the Chalice app's routes, both ways), all but the
routes in `NOT_OPERATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib import models
from chalicelib.errors import (
    BackfillFinished,
    Forbidden,
    InternalError,
    InvalidRequest,
    JobNotFinished,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Throttled,
    TooManyWebhooks,
    Unauthorized,
    UnsupportedMediaType,
)
from chalicelib.http import RETRY_AFTER_SECONDS

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
SECURITY_SCHEME = "apiKey"

Document = dict[str, Any]

# Every answer an error status can carry, and when.
ERROR_RESPONSES: Mapping[int, str] = {
    InvalidRequest.status: (
        "The request is invalid; the message names the field or query parameter. Every "
        "route refuses query parameters it does not document."
    ),
    Unauthorized.status: (
        "The API key is missing, malformed, unknown or revoked. A request without an "
        "Authorization header is refused before any function runs: on AWS in the error "
        "shape (`make deploy` sets it), on Chalice's local server as LocalGatewayMessage."
    ),
    Forbidden.status: "API Gateway denied access (AWS only).",
    NotFound.status: (
        "No such job, webhook endpoint or backfill, or another tenant's (indistinguishable)."
    ),
    TooManyWebhooks.status: (
        "`too_many_webhooks` (POST /webhooks): the tenant has MAX_WEBHOOKS_PER_TENANT "
        "endpoints; delete one first. `job_not_finished` (replay): the job has not ended. "
        "`job_not_completed` (reprocess): the job is not COMPLETED. `original_expired` "
        "(reprocess): the job's original upload is no longer kept. "
        "`backfill_finished` (DELETE /backfills/{id}): the backfill has completed or failed."
    ),
    PayloadTooLarge.status: f"The body is larger than {models.MAX_BODY_BYTES} bytes.",
    UnsupportedMediaType.status: (
        "The Content-Type header names something other than JSON; with a body, it must be "
        "exactly one application/json (parameters allowed, a charset only utf-8)."
    ),
    Throttled.status: (
        "`throttled`: over the stage's rate or burst limit (API Gateway); retry later. "
        "`too_many_pending_uploads` (POST /uploads): the tenant has MAX_PENDING_UPLOADS "
        "jobs waiting for their file; upload to them or let them expire."
    ),
    InternalError.status: "A bug. The body never carries internals; the log has the detail.",
    ServiceUnavailable.status: "An AWS dependency failed transiently; retry after Retry-After.",
}
# Any request can meet these: unknown query parameters, the media-type check, the
# gateway's throttling, a bug.
ALWAYS = (
    InvalidRequest.status,
    UnsupportedMediaType.status,
    Throttled.status,
    InternalError.status,
)
# Routes behind the authorizer, and those that call AWS.
AUTHENTICATED = (Unauthorized.status, Forbidden.status)
AWS_BACKED = (ServiceUnavailable.status,)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    success: int
    success_schema: str | None  # None: the success answer has no body
    errors: tuple[int, ...]
    secured: bool = True
    # The request body's schema, given the stage's preset names; None: no body.
    request_body: Callable[[Sequence[str]], models.Schema] | None = None
    query: Mapping[str, models.Schema] = field(default_factory=dict)
    path_parameters: Mapping[str, models.Schema] = field(default_factory=dict)
    # OpenAPI links from the success answer: the operations that take its `id` as their
    # `endpoint_id` (clients and schemathesis follow them).
    links_by_id: tuple[str, ...] = ()


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/health",
        "health",
        "Liveness; needs no key.",
        200,
        "Health",
        ALWAYS,
        secured=False,
    ),
    Operation(
        "GET",
        "/openapi.json",
        "openapi",
        "This document; needs no key.",
        200,
        "OpenApiDocument",
        ALWAYS,
        secured=False,
    ),
    Operation(
        "POST",
        "/uploads",
        "createUpload",
        "Create a job and a presigned POST to upload its image with.",
        201,
        "UploadCreated",
        (InvalidRequest.status, PayloadTooLarge.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        request_body=models.upload_request,
    ),
    Operation(
        "GET",
        "/jobs",
        "listJobs",
        "The caller's jobs, newest first, a page at a time.",
        200,
        "JobList",
        (InvalidRequest.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        query=models.LIST_JOBS_QUERY,
    ),
    Operation(
        "GET",
        "/jobs/{job_id}",
        "getJob",
        "One of the caller's jobs, with a download URL per output once COMPLETED.",
        200,
        "Job",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"job_id": models.JOB_ID},
        query=models.GET_JOB_QUERY,
    ),
    Operation(
        "GET",
        "/presets",
        "listPresets",
        "The stage's presets with their current versions: an output whose version differs "
        "is made again by reprocessing or a backfill.",
        200,
        "PresetList",
        (*AUTHENTICATED, *ALWAYS, *AWS_BACKED),  # the key's lookup
    ),
    Operation(
        "POST",
        "/webhooks",
        "createWebhook",
        "Register a webhook endpoint; the answer shows its signing secret, once.",
        201,
        "WebhookWithSecret",
        (
            InvalidRequest.status,
            PayloadTooLarge.status,
            TooManyWebhooks.status,
            *AUTHENTICATED,
            *ALWAYS,
            *AWS_BACKED,
        ),
        request_body=lambda _: models.WEBHOOK_REQUEST,
        links_by_id=("getWebhook", "rotateWebhookSecret", "sendTestEvent", "deleteWebhook"),
    ),
    Operation(
        "GET",
        "/webhooks",
        "listWebhooks",
        "The caller's webhook endpoints, oldest first (never their secrets).",
        200,
        "WebhookList",
        (*AUTHENTICATED, *ALWAYS, *AWS_BACKED),
    ),
    Operation(
        "GET",
        "/webhooks/{endpoint_id}",
        "getWebhook",
        "One of the caller's webhook endpoints (never its secrets).",
        200,
        "Webhook",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"endpoint_id": models.ENDPOINT_ID},
    ),
    Operation(
        "DELETE",
        "/webhooks/{endpoint_id}",
        "deleteWebhook",
        "Delete one of the caller's webhook endpoints; nothing more is sent to it.",
        204,
        None,
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"endpoint_id": models.ENDPOINT_ID},
    ),
    Operation(
        "POST",
        "/webhooks/{endpoint_id}/rotate",
        "rotateWebhookSecret",
        "A new signing secret, shown once; the old one keeps signing beside it for 24 hours.",
        200,
        "WebhookWithSecret",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"endpoint_id": models.ENDPOINT_ID},
    ),
    Operation(
        "POST",
        "/webhooks/{endpoint_id}/test",
        "sendTestEvent",
        "Send a webhook.test event to the endpoint, signed as any event is.",
        202,
        "WebhookTestSent",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"endpoint_id": models.ENDPOINT_ID},
    ),
    Operation(
        "GET",
        "/jobs/{job_id}/deliveries",
        "listDeliveries",
        "Every delivery attempt of the job's events, oldest first.",
        200,
        "DeliveryList",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"job_id": models.JOB_ID},
    ),
    Operation(
        "POST",
        "/jobs/{job_id}/deliveries/replay",
        "replayDeliveries",
        "Send the job's final event again (the same event id) to each endpoint that wants it.",
        202,
        "ReplayQueued",
        (NotFound.status, JobNotFinished.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"job_id": models.JOB_ID},
    ),
    Operation(
        "POST",
        "/jobs/{job_id}/reprocess",
        "reprocessJob",
        "Make some of a completed job's outputs again from its original, at the presets' "
        "current versions; the job's revision moves on and a job.completed event follows.",
        202,
        "ReprocessQueued",
        (
            InvalidRequest.status,
            NotFound.status,
            JobNotFinished.status,
            PayloadTooLarge.status,
            *AUTHENTICATED,
            *ALWAYS,
            *AWS_BACKED,
        ),
        request_body=models.reprocess_request,
        path_parameters={"job_id": models.JOB_ID},
    ),
    Operation(
        "POST",
        "/backfills",
        "createBackfill",
        "Give every job of a range the presets named, at their current version, from the "
        "originals; a job already current costs nothing.",
        202,
        "Backfill",
        (InvalidRequest.status, PayloadTooLarge.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        request_body=models.backfill_request,
    ),
    Operation(
        "GET",
        "/backfills/{backfill_id}",
        "getBackfill",
        "One of the caller's backfills: its status and counts.",
        200,
        "Backfill",
        (NotFound.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"backfill_id": models.BACKFILL_ID},
    ),
    Operation(
        "DELETE",
        "/backfills/{backfill_id}",
        "cancelBackfill",
        "Cancel one of the caller's backfills: no more jobs are sent; those sent and not yet "
        "reprocessed are left as they are.",
        200,
        "Backfill",
        (NotFound.status, BackfillFinished.status, *AUTHENTICATED, *ALWAYS, *AWS_BACKED),
        path_parameters={"backfill_id": models.BACKFILL_ID},
    ),
)


# Routes the document leaves out on purpose, with why: they serve a web page to people's
# browsers, not JSON to API clients (tests/test_console.py checks their answers).
NOT_OPERATIONS: Mapping[tuple[str, str], str] = {
    ("/console", "GET"): "the browser console's page (HTML)",
    ("/console/{asset}", "GET"): "the browser console's script, style and icon files",
}


def document(preset_names: Sequence[str]) -> Document:
    """The whole document for a stage whose configured presets are `preset_names`."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, preset_names
        )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "media-pipeline",
            "version": API_VERSION,
            "description": (
                "Image thumbnails: ask for an upload, send the image to S3 with the presigned "
                'POST, poll the job. Every error is {"error": {"code", "message"}}.'
            ),
        },
        # Relative to this document, so it holds under any stage or base path.
        "servers": [{"url": "."}],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "schemas": {
                **models.COMPONENTS,
                "OpenApiDocument": {"type": "object", "required": ["openapi", "paths"]},
            },
            "responses": {_response_name(status): _error(status) for status in ERROR_RESPONSES},
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "API key",
                    "description": (
                        "Authorization: Bearer <key>, a key from `make api-key` "
                        "(16 to 128 characters of A-Z, a-z, 0-9, _ and -)."
                    ),
                }
            },
        },
    }


def _operation(operation: Operation, preset_names: Sequence[str]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "responses": {
            str(operation.success): _success(operation),
            **{
                str(status): {"$ref": f"#/components/responses/{_response_name(status)}"}
                for status in sorted(operation.errors)
            },
        },
    }
    if not operation.secured:
        described["security"] = []
    parameters = [
        _parameter(name, "path", schema, required=True)
        for name, schema in operation.path_parameters.items()
    ] + [_parameter(name, "query", schema) for name, schema in operation.query.items()]
    if parameters:
        described["parameters"] = parameters
    if operation.request_body is not None:
        described["requestBody"] = {
            "required": True,
            "content": _json(operation.request_body(preset_names)),
        }
    return described


def _success(operation: Operation) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": operation.summary}
    if operation.success_schema is not None:
        answer["content"] = _json(_ref(operation.success_schema))
    if operation.links_by_id:
        answer["links"] = {
            target[0].upper() + target[1:]: {
                "operationId": target,
                "parameters": {"endpoint_id": "$response.body#/id"},
            }
            for target in operation.links_by_id
        }
    return answer


def _parameter(
    name: str, location: str, schema: models.Schema, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": location,
        "required": required,
        "description": schema.get("description", ""),
        "schema": schema,
    }


def _error(status: int) -> dict[str, Any]:
    body = models.error_body(models.error_codes(status))
    if status == Unauthorized.status:
        body = {"anyOf": [body, _ref("LocalGatewayMessage")]}
    response: dict[str, Any] = {"description": ERROR_RESPONSES[status], "content": _json(body)}
    if status == ServiceUnavailable.status:
        response["headers"] = {
            "Retry-After": {
                "description": f"Seconds to wait ({RETRY_AFTER_SECONDS} from the app).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _response_name(status: int) -> str:
    return f"Error{status}"


def _json(schema: models.Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> models.Schema:
    return {"$ref": f"#/components/schemas/{name}"}
