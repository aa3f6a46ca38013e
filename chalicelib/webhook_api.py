"""The webhook routes: a tenant's endpoints, created, listed, rotated and deleted.

Every route reads only the caller's own endpoints (the store's keys start with the
tenant), so another tenant's endpoint answers 404 as one that never existed.
"""

from __future__ import annotations

from chalice.app import Request, Response

from chalicelib import auth, models, webhooks
from chalicelib.api import checked_query, json_body, present
from chalicelib.errors import DeliveryUnreachable, EndpointRefused, InvalidRequest, NotFound
from chalicelib.http import json_api, json_response
from chalicelib.observability import logger


@json_api
def create_webhook(current: Request | None) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    body = json_body(request)
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
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    found = webhooks.list_for(tenant)
    return json_response({"webhooks": [webhooks.view(endpoint) for endpoint in found]})


@json_api
def get_webhook(current: Request | None, endpoint_id: str) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    return json_response(webhooks.view(webhooks.get(tenant, _endpoint_id(endpoint_id))))


@json_api
def delete_webhook(current: Request | None, endpoint_id: str) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    webhooks.delete(tenant, _endpoint_id(endpoint_id))
    logger.info("webhook endpoint deleted", extra={"tenant": tenant, "endpointId": endpoint_id})
    return Response(body="", status_code=204)


@json_api
def rotate_webhook_secret(current: Request | None, endpoint_id: str) -> Response:
    request = present(current)
    tenant = auth.require_tenant(request.context)
    checked_query(request)
    rotated = webhooks.rotate(tenant, _endpoint_id(endpoint_id))
    logger.info("webhook secret rotated", extra={"tenant": tenant, "endpointId": endpoint_id})
    return json_response(_with_secret(rotated))


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
