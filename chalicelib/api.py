"""The REST API: request validation, job views and presigned URLs.

Requests are checked against the models in `chalicelib.models`, the same definitions the
OpenAPI document (`GET /openapi.json`) publishes.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from chalice.app import Request, Response

from chalicelib import (
    auth,
    jobs,
    models,
    openapi,
    reprocess,
    reprocess_message,
    responsive,
    storage,
    upload_outputs,
)
from chalicelib.config import settings
from chalicelib.errors import (
    InvalidRequest,
    JobNotCompleted,
    NotFound,
    OriginalExpired,
    PayloadTooLarge,
    TooManyPendingUploads,
    TransientError,
    UnexpectedAwsError,
)
from chalicelib.http import json_api, json_response, require_json_content_type
from chalicelib.jobs import JobStatus
from chalicelib.observability import job_fields, logger, metric
from chalicelib.presets import load_presets, preset_document, preset_version

# A long-poll reads the job (one consistent read) this often, so it answers within this
# much of the job's end.
LONG_POLL_INTERVAL_SECONDS = 0.5
# What a long-poll leaves of the API function's time to answer.
LONG_POLL_MARGIN_SECONDS = 2.0


@json_api
def health(current: Request | None) -> Response:
    checked_query(present(current))
    return json_response({"status": "ok"})


@json_api
def openapi_document(current: Request | None) -> Response:
    checked_query(present(current))
    return json_response(openapi.document(configured_presets()))


@json_api
def create_upload(current: Request | None) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    body = json_body(request)
    configured = configured_presets()
    models.validate(models.upload_request(configured), body, "The request body")
    content_type: str = body["contentType"]
    filename: str | None = body.get("filename")
    requested = body.get("outputs")
    presets: list[str] = body.get("presets") or ([] if requested else configured)
    own_outputs = upload_outputs.parse(requested, presets, settings())
    _check_pending_uploads(tenant)
    job_id = jobs.new_job_id()
    key = storage.source_key(tenant, job_id, filename)
    upload = storage.presign_upload(key, content_type)
    job = jobs.create_job(
        job_id=job_id,
        tenant=tenant,
        source_key=key,
        content_type=content_type,
        filename=filename,
        presets=presets,
        requested_outputs=[preset_document(output) for output in own_outputs],
    )
    logger.info("upload created", extra=job_fields(job_id, tenant=tenant, presets=presets))
    metric("UploadsCreated", 1)
    return json_response({"jobId": job.job_id, "status": job.status, "upload": upload}, 201)


def _check_pending_uploads(tenant: str) -> None:
    """At most MAX_PENDING_UPLOADS jobs of a tenant wait for their file. The count is
    eventually consistent: a burst may pass the bound by the uploads of the last moment."""
    config = settings()
    bound = config.max_pending_uploads
    if jobs.count_pending(tenant, up_to=bound) >= bound:
        expiry = config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds
        raise TooManyPendingUploads(
            f"{bound} of your uploads are waiting for their file. Upload to them, or let "
            f"them expire (upload_expired, about {expiry // 60} minutes after they were "
            "created), then try again."
        )


@json_api
def get_job(current: Request | None, job_id: str) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    params = checked_query(request, models.GET_JOB_QUERY)
    # A malformed id names no job; DynamoDB never sees it.
    if not models.conforms(models.JOB_ID, job_id):
        raise NotFound("No such job.")
    job = jobs.get_tenant_job(tenant, job_id)
    if params["wait"] is not None:
        job = _wait_for_end(job, _wait_deadline(request, params["wait"]))
    return json_response(job_view(job))


def _wait_deadline(request: Request, wait_seconds: int) -> float:
    """When a long-poll answers at the latest: after `wait_seconds`, and always in time
    to answer before the invocation ends."""
    deadline = time.monotonic() + wait_seconds
    context = getattr(request, "lambda_context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        deadline = min(deadline, time.monotonic() + remaining() / 1000 - LONG_POLL_MARGIN_SECONDS)
    return deadline


def _wait_for_end(job: jobs.Job, deadline: float) -> jobs.Job:
    """The job once it is COMPLETED or FAILED, or as it stands at `deadline`."""
    while not job.status.is_terminal:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(LONG_POLL_INTERVAL_SECONDS, left))
        job = jobs.get_tenant_job(job.tenant, job.job_id)
    return job


@json_api
def list_jobs(current: Request | None) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    query = request.query_params
    given = {name: query.getlist(name) for name in query} if query else {}
    params = models.parse_query(models.LIST_JOBS_QUERY, given)
    status = None if params["status"] is None else JobStatus(params["status"])
    found, cursor = jobs.list_jobs(
        tenant, status=status, limit=params["limit"], cursor=params["cursor"]
    )
    return json_response({"jobs": [job_view(job) for job in found], "nextCursor": cursor})


@json_api
def list_presets(current: Request | None) -> Response:
    """The stage's presets, each with its current version (what reprocessing and backfills
    bring outputs to)."""
    caller(current)
    configured = load_presets(settings().presets_json).values()
    shown = [
        {**preset_document(preset), "version": preset_version(preset)} for preset in configured
    ]
    return json_response({"presets": shown})


@json_api
def reprocess_job(current: Request | None, job_id: str) -> Response:
    """Ask for some of a completed job's outputs to be made again from its original."""
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    body = json_body(request)
    models.validate(models.reprocess_request(configured_presets()), body, "The request body")
    presets: list[str] = body["presets"]
    job = jobs.get_tenant_job(tenant, job_id) if models.conforms(models.JOB_ID, job_id) else None
    if job is None:
        raise NotFound("No such job.")
    if job.status is not JobStatus.COMPLETED:
        raise JobNotCompleted("The job has not completed: it has no outputs to make again.")
    if not reprocess.original_available(job):
        raise OriginalExpired("The job's original upload is no longer kept; upload it again.")
    request_id = f"rpr_{secrets.token_hex(16)}"
    marked = jobs.mark_reprocessing(tenant, job.job_id, request_id)
    if not marked.moved:
        raise JobNotCompleted("The job has not completed: it has no outputs to make again.")
    send_or_withdraw(
        reprocess_message.ReprocessMessage(job.job_id, tenant, tuple(presets), request_id)
    )
    logger.info("reprocess requested", extra=job_fields(job.job_id, requestId=request_id))
    answer = {
        "jobId": job.job_id,
        "requestId": request_id,
        "revision": job.revision + 1,
        "presets": presets,
    }
    return json_response(answer, 202)


def send_or_withdraw(message: reprocess_message.ReprocessMessage) -> None:
    """Send the request's message; if it cannot be sent, withdraw the request before the
    error is answered, so that the job is not left `reprocessing` with nothing under way
    (the caller may ask again)."""
    try:
        reprocess_message.send(message)
    except (TransientError, UnexpectedAwsError):
        jobs.end_reprocessing(message.job_id, message.request_id)
        raise


def job_view(job: jobs.Job, *, with_urls: bool = True) -> dict[str, object]:
    """The job as the API shows it; a webhook event's `data` leaves the presigned URLs out
    (they expire: the receiver fetches the job for fresh ones)."""
    outputs: list[dict[str, object]] = []
    if job.status is JobStatus.COMPLETED:
        outputs = [_output_view(output, with_url=with_urls) for output in job.outputs]
    return {
        "jobId": job.job_id,
        "status": job.status.value,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "filename": job.filename,
        "presets": job.presets,
        "source": _source_view(job),
        "outputs": outputs,
        "responsive": responsive.sets(outputs),
        "placeholder": job.placeholder if job.status is JobStatus.COMPLETED else None,
        "error": job.error,
        "revision": job.revision,
        "reprocessing": job.is_reprocessing,
        "reprocessError": job.reprocess_error,
    }


def _source_view(job: jobs.Job) -> dict[str, object]:
    known = job.source or {}
    return {
        "contentType": known.get("contentType", job.content_type),
        "bytes": known.get("bytes"),
        "width": known.get("width"),
        "height": known.get("height"),
        "format": known.get("format"),
    }


def _output_view(output: Mapping[str, object], *, with_url: bool) -> dict[str, object]:
    fields = ("preset", "width", "height", "format", "contentType", "bytes")
    view = {name: output[name] for name in fields}
    # Outputs recorded before responsive sets existed have neither.
    view["name"] = output.get("name", output["preset"])
    view["responsive"] = bool(output.get("responsive", False))
    # The preset's version that made it (outputs recorded before versions have none).
    version = output.get("version")
    view["version"] = version if isinstance(version, str) else None
    if with_url:
        view["url"] = storage.presign_download(str(output["key"]))
    return view


def present(request: Request | None) -> Request:
    """Chalice types its current request as optional; inside a route it always exists."""
    if request is None:
        raise RuntimeError("called outside a request")
    return request


def caller(current: Request | None) -> str:
    """The tenant of a route's caller, once the request has no query parameter."""
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    return tenant


def checked_query(
    request: Request, schemas: Mapping[str, models.Schema] = models.NO_QUERY
) -> dict[str, Any]:
    """The query string checked against `schemas`: any other parameter is refused, on
    every route (SECURITY.md: known parameters only)."""
    query = request.query_params
    given = {name: query.getlist(name) for name in query} if query else {}
    return models.parse_query(schemas, given)


def configured_presets() -> list[str]:
    return list(load_presets(settings().presets_json))


# --- the JSON body -----------------------------------------------------------------------


def json_body(request: Request) -> Any:
    """The body parsed as strict JSON (I-JSON, RFC 7493: UTF-8, no NaN, no repeated names,
    no unpaired surrogates), sent as application/json."""
    require_json_content_type(request)
    try:
        raw = request.raw_body
    except UnicodeEncodeError as exc:  # a text body API Gateway could not pass on as UTF-8
        raise InvalidRequest("The request body is not UTF-8.") from exc
    data = raw.encode() if isinstance(raw, str) else (raw or b"")
    if len(data) > models.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"The request body is larger than {models.MAX_BODY_BYTES} bytes.")
    if not data:
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("The request body is not UTF-8.") from exc
    try:
        body = json.loads(text, parse_constant=_not_json, object_pairs_hook=_unique_names)
    except RecursionError as exc:
        raise InvalidRequest("The request body is nested too deeply.") from exc
    except ValueError as exc:
        raise InvalidRequest("The request body is not valid JSON.") from exc
    try:
        # A \ud800 escape alone decodes to a str that no UTF-8 store, log or response can
        # hold (RFC 8259 leaves such strings unpredictable; I-JSON forbids them).
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("The request body has an unpaired UTF-16 surrogate.") from exc
    return body


def _not_json(constant: str) -> NoReturn:
    raise InvalidRequest(f"The request body is not valid JSON: {constant} is not a JSON value.")


def _unique_names(pairs: Sequence[tuple[str, object]]) -> dict[str, object]:
    names = [name for name, _ in pairs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidRequest(f"Field(s) given more than once: {', '.join(repeated)}.")
    return dict(pairs)
