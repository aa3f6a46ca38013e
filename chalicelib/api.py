"""The REST API: request validation, job views and presigned URLs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from chalice.app import Request, Response

from chalicelib import auth, jobs, storage
from chalicelib.config import settings
from chalicelib.errors import InvalidRequest, UnknownPreset, UnsupportedContentType
from chalicelib.formats import ACCEPTED_CONTENT_TYPES
from chalicelib.http import json_api, json_response
from chalicelib.observability import job_fields, logger, metric
from chalicelib.presets import load_presets

MAX_BODY_BYTES = 16 * 1024
MAX_FILENAME_CHARS = 255
UPLOAD_FIELDS = frozenset({"filename", "contentType", "presets"})
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@json_api
def health() -> Response:
    return json_response({"status": "ok"})


@json_api
def create_upload(current: Request | None) -> Response:
    request = _present(current)
    tenant = auth.require_tenant(request.context)
    raw = request.raw_body
    body = _json_object(raw.encode() if isinstance(raw, str) else raw)
    content_type = _content_type(body.get("contentType"))
    filename = _filename(body.get("filename"))
    presets = _preset_names(body.get("presets"))
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
    )
    logger.info("upload created", extra=job_fields(job_id, tenant=tenant, presets=presets))
    metric("UploadsCreated", 1)
    return json_response({"jobId": job.job_id, "status": job.status, "upload": upload}, 201)


@json_api
def get_job(current: Request | None, job_id: str) -> Response:
    tenant = auth.require_tenant(_present(current).context)
    return json_response(job_view(jobs.get_tenant_job(tenant, job_id)))


@json_api
def list_jobs(current: Request | None) -> Response:
    request = _present(current)
    tenant = auth.require_tenant(request.context)
    params: Mapping[str, str] = request.query_params or {}
    unknown = set(params) - {"status", "limit", "cursor"}
    if unknown:
        raise InvalidRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))}.")
    status = params.get("status") or None
    if status is not None and status not in jobs.STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(jobs.STATUSES)}.")
    found, cursor = jobs.list_jobs(
        tenant, status=status, limit=_page_size(params.get("limit")), cursor=params.get("cursor")
    )
    return json_response({"jobs": [job_view(job) for job in found], "nextCursor": cursor})


def job_view(job: jobs.Job) -> dict[str, Any]:
    outputs = []
    if job.status == jobs.COMPLETED:
        outputs = [_output_view(output) for output in job.outputs]
    return {
        "jobId": job.job_id,
        "status": job.status,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "filename": job.filename,
        "presets": job.presets,
        "source": _source_view(job),
        "outputs": outputs,
        "error": job.error,
    }


def _source_view(job: jobs.Job) -> dict[str, Any]:
    known = job.source or {}
    return {
        "contentType": known.get("contentType", job.content_type),
        "bytes": known.get("bytes"),
        "width": known.get("width"),
        "height": known.get("height"),
        "format": known.get("format"),
    }


def _output_view(output: dict[str, Any]) -> dict[str, Any]:
    fields = ("preset", "width", "height", "format", "contentType", "bytes")
    view = {name: output[name] for name in fields}
    view["url"] = storage.presign_download(output["key"])
    return view


def _present(request: Request | None) -> Request:
    """Chalice types its current request as optional; inside a route it always exists."""
    if request is None:
        raise RuntimeError("called outside a request")
    return request


# --- validation -------------------------------------------------------------------------


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body must be a JSON object.")
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = set(body) - UPLOAD_FIELDS
    if unknown:
        raise InvalidRequest(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    return body


def _content_type(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest("contentType is required and must be a string.")
    normalized = value.strip().lower()
    if normalized not in ACCEPTED_CONTENT_TYPES:
        accepted = ", ".join(sorted(ACCEPTED_CONTENT_TYPES))
        raise UnsupportedContentType(
            f"contentType {value!r} is not accepted; use one of {accepted}."
        )
    return normalized


def _filename(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("filename must be a non-empty string.")
    if len(value) > MAX_FILENAME_CHARS or any(ord(char) < 32 for char in value):
        raise InvalidRequest(f"filename must be at most {MAX_FILENAME_CHARS} printable characters.")
    return value


def _preset_names(value: Any) -> list[str]:
    configured = load_presets(settings().presets_json)
    if value is None:
        return list(configured)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest("presets must be a non-empty list of preset names.")
    if len(set(value)) != len(value):
        raise InvalidRequest("presets must not repeat a name.")
    unknown = [name for name in value if name not in configured]
    if unknown:
        raise UnknownPreset(
            f"Unknown preset(s): {', '.join(unknown)}; available: {', '.join(configured)}."
        )
    return list(value)


def _page_size(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}.")
    return int(value)
