"""The webhook routes: a tenant's endpoints, created, listed, rotated and deleted.

Every route reads only the caller's own endpoints (the store's keys start with the
tenant), so another tenant's endpoint answers 404 as one that never existed.
"""

from __future__ import annotations

import time

from chalice.app import Request, Response

from chalicelib import deliveries, delivery_log, jobs, models, webhooks
from chalicelib.api import caller, json_body, present
from chalicelib.delivery_message import Delivery
from chalicelib.errors import (
    DeliveryUnreachable,
    EndpointRefused,
    InvalidRequest,
    JobNotFinished,
    NotFound,
)
from chalicelib.http import json_api, json_response
from chalicelib.observability import logger


@json_api
def create_webhook(current: Request | None) -> Response:
    tenant = caller(current)
    body = json_body(present(current))
    models.validate(models.WEBHOOK_REQUEST, body, "The request body")
    url: str = body["url"]
    _check_url(url)
    created = webhooks.create(
        tenant, url=url, events=body["events"], description=body.get("description")
    )
    logger.info(
        "webhook endpoint created",
        extra={"tenant": tenant, "endpointId": created.endpoint.endpoint_id},
    )
    return json_response(_with_secret(created), 201)


@json_api
def list_webhooks(current: Request | None) -> Response:
    tenant = caller(current)
    found = webhooks.list_for(tenant)
    return json_response({"webhooks": [webhooks.view(endpoint) for endpoint in found]})


@json_api
def get_webhook(current: Request | None, endpoint_id: str) -> Response:
    tenant = caller(current)
    return json_response(webhooks.view(webhooks.get(tenant, _endpoint_id(endpoint_id))))


@json_api
def delete_webhook(current: Request | None, endpoint_id: str) -> Response:
    tenant = caller(current)
    webhooks.delete(tenant, _endpoint_id(endpoint_id))
    logger.info("webhook endpoint deleted", extra={"tenant": tenant, "endpointId": endpoint_id})
    return Response(body="", status_code=204)


@json_api
def rotate_webhook_secret(current: Request | None, endpoint_id: str) -> Response:
    tenant = caller(current)
    rotated = webhooks.rotate(tenant, _endpoint_id(endpoint_id))
    logger.info("webhook secret rotated", extra={"tenant": tenant, "endpointId": endpoint_id})
    return json_response(_with_secret(rotated))


@json_api
def send_test_event(current: Request | None, endpoint_id: str) -> Response:
    tenant = caller(current)
    endpoint = webhooks.get(tenant, _endpoint_id(endpoint_id))
    event_id = jobs.new_event_id()
    deliveries.send(
        Delivery(
            tenant=tenant,
            endpoint_id=endpoint.endpoint_id,
            event_id=event_id,
            type=webhooks.WEBHOOK_TEST,
            job_id=None,
            attempt=1,
            due_at=time.time(),
        )
    )
    return json_response({"eventId": event_id, "type": webhooks.WEBHOOK_TEST}, 202)


@json_api
def list_deliveries(current: Request | None, job_id: str) -> Response:
    tenant = caller(current)
    job = _tenant_job(tenant, job_id)
    return json_response({"deliveries": delivery_log.attempts_of_job(job.job_id)})


@json_api
def replay_deliveries(current: Request | None, job_id: str) -> Response:
    """Send the job's final event again to each endpoint that wants it: a new attempt
    after a finished delivery, a first one where there was none. A delivery still under
    way is left to its own attempts."""
    tenant = caller(current)
    job = _tenant_job(tenant, job_id)
    if not job.is_terminal or job.event_id is None:
        raise JobNotFinished("The job has not ended yet: it has no final event to replay.")
    event_type = "job.completed" if job.status is jobs.JobStatus.COMPLETED else "job.failed"
    logged = {d.endpoint_id: d for d in delivery_log.deliveries_of_event(job.job_id, job.event_id)}
    queued: list[str] = []
    for endpoint in webhooks.list_for(tenant):
        previous = logged.get(endpoint.endpoint_id)
        if not endpoint.wants(event_type) or (previous and not previous.state.is_final):
            continue
        deliveries.send(
            Delivery(
                tenant=tenant,
                endpoint_id=endpoint.endpoint_id,
                event_id=job.event_id,
                type=event_type,
                job_id=job.job_id,
                attempt=previous.attempts + 1 if previous else 1,
                due_at=time.time(),
                replay=previous is not None,
            )
        )
        queued.append(endpoint.endpoint_id)
    return json_response({"eventId": job.event_id, "type": event_type, "endpoints": queued}, 202)


def _tenant_job(tenant: str, job_id: str) -> jobs.Job:
    if not models.conforms(models.JOB_ID, job_id):
        raise NotFound("No such job.")
    return jobs.get_tenant_job(tenant, job_id)


def _endpoint_id(endpoint_id: str) -> str:
    # A malformed id names no endpoint; DynamoDB never sees it.
    if not models.conforms(models.ENDPOINT_ID, endpoint_id):
        raise NotFound("No such webhook endpoint.")
    return endpoint_id


def _check_url(url: str) -> None:
    try:
        webhooks.check_url(url)
    except (EndpointRefused, DeliveryUnreachable) as exc:
        raise InvalidRequest(f"url: {exc.message}") from exc


def _with_secret(created: webhooks.Created) -> dict[str, object]:
    return {**webhooks.view(created.endpoint), "secret": created.secret}
