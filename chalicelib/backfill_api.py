"""The backfill routes: start one, follow it, cancel it.

A backfill belongs to the tenant that started it: another tenant's answers 404 as one
that never existed, and it only ever reads the starting tenant's jobs.
"""

from __future__ import annotations

from datetime import datetime

from chalice.app import Request, Response

from chalicelib import backfill_message, backfills, models
from chalicelib.api import caller, configured_presets, json_body, present
from chalicelib.backfill_message import PageMessage
from chalicelib.errors import InvalidRequest, MediaPipelineError
from chalicelib.http import json_api, json_response
from chalicelib.observability import logger
from chalicelib.timestamps import iso_utc, now_iso

# Before any job: the range's lower end when the request names none.
BEGINNING = "0000-01-01T00:00:00.000000Z"


@json_api
def create_backfill(current: Request | None) -> Response:
    tenant = caller(current)
    body = json_body(present(current))
    models.validate(models.backfill_request(configured_presets()), body, "The request body")
    after = _moment(body, "createdAfter") or BEGINNING
    before = _moment(body, "createdBefore") or now_iso()
    if after > before:
        raise InvalidRequest("createdAfter must not be later than createdBefore.")
    backfill = backfills.create(
        tenant,
        presets=body["presets"],
        created_after=after,
        created_before=before,
        dry_run=bool(body.get("dryRun", False)),
    )
    _start(backfill)
    logger.info(
        "backfill started",
        extra={"tenant": tenant, "backfillId": backfill.backfill_id, "dryRun": backfill.dry_run},
    )
    response = json_response(backfills.view(backfill), 202)
    response.headers["Location"] = f"/backfills/{backfill.backfill_id}"
    return response


@json_api
def get_backfill(current: Request | None, backfill_id: str) -> Response:
    tenant = caller(current)
    return json_response(backfills.view(backfills.get_tenant_backfill(tenant, backfill_id)))


@json_api
def cancel_backfill(current: Request | None, backfill_id: str) -> Response:
    tenant = caller(current)
    cancelled = backfills.cancel(tenant, backfill_id)
    logger.info("backfill cancelled", extra={"tenant": tenant, "backfillId": backfill_id})
    return json_response(backfills.view(cancelled))


def _start(backfill: backfills.Backfill) -> None:
    """Send the first page's message; if it cannot be sent, the backfill ends failed (it
    would otherwise stay running with nothing to move it) and the caller gets the error."""
    try:
        backfill_message.send(PageMessage(backfill.tenant, backfill.backfill_id, 0))
    except MediaPipelineError:
        backfills.fail(
            backfill.backfill_id, code="not_started", message="The backfill could not start."
        )
        raise


def _moment(body: dict[str, object], name: str) -> str | None:
    """The date-time `body[name]` in the jobs' own format (UTC, microseconds)."""
    raw = body.get(name)
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidRequest(f"{name} must be an ISO 8601 date-time with an offset.")
    return iso_utc(moment)
