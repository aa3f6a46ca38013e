"""The webhook deliveries function, fed by the webhooks queue.

Two kinds of message arrive: a job event (chalicelib/job_events.py), which becomes one
delivery message per endpoint of the tenant subscribed to its type; and a delivery
(chalicelib/delivery_message.py), one attempt to send one event to one endpoint. An
attempt is claimed in the delivery log first (chalicelib/delivery_log.py), signed with
every active secret of the endpoint (Standard Webhooks), sent through the outbound guard
(chalicelib/outbound.py), and logged. A 2xx answer ends the delivery; 410 Gone disables
the endpoint; anything else, no answer or a refused address is tried again on the retry
schedule (chalicelib/webhook_schedule.py) until it runs out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

from chalicelib import (
    clients,
    delivery_log,
    delivery_message,
    job_events,
    jobs,
    outbound,
    sqs_batch,
    webhooks,
)
from chalicelib.api import job_view
from chalicelib.config import settings
from chalicelib.delivery_log import DeliveryState, Outcome
from chalicelib.delivery_message import Delivery
from chalicelib.errors import DeliveryUnreachable, EndpointRefused, NotFound
from chalicelib.observability import logger, metric
from chalicelib.timestamps import iso_from_epoch
from chalicelib.webhook_schedule import RETRY_WAITS_SECONDS, next_hop_seconds, next_retry
from chalicelib.webhook_signature import delivery_headers

GONE = 410


def handle_webhooks_batch(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _handle)


def _handle(record: sqs_batch.SqsRecord) -> None:
    payload = _decode(record.body)
    event = job_events.parse(payload)
    if event is not None:
        fan_out(event)
        return
    delivery = delivery_message.parse(payload)
    if delivery is not None:
        attempt(delivery, record.message_id)
        return
    logger.error("not a webhooks message; dropped", extra={"messageId": record.message_id})


def _decode(body: str) -> dict[str, object]:
    try:
        payload: object = json.loads(body)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def fan_out(event: job_events.JobEvent) -> int:
    """One delivery of `event` to each endpoint of its tenant that wants it."""
    subscribed = [e for e in webhooks.list_for(event.tenant) if e.wants(event.type)]
    now = time.time()
    for endpoint in subscribed:
        send(
            Delivery(
                tenant=event.tenant,
                endpoint_id=endpoint.endpoint_id,
                event_id=event.event_id,
                type=event.type,
                job_id=event.job_id,
                attempt=1,
                due_at=now,
            )
        )
    return len(subscribed)


def send(delivery: Delivery) -> None:
    """Put `delivery` on the webhooks queue, delayed towards its due time (at most 15
    minutes a hop: a longer wait arrives early and is sent on)."""
    delay = next_hop_seconds(delivery.due_at, time.time())
    queue_url = clients.queue_url(settings().webhooks_queue)
    with clients.aws_errors(f"send delivery of {delivery.event_id}"):
        clients.sqs().send_message(
            QueueUrl=queue_url, MessageBody=delivery.to_body(), DelaySeconds=delay
        )


def attempt(delivery: Delivery, token: str) -> None:
    """Make `delivery`'s attempt, if it is due and this message's to make."""
    if next_hop_seconds(delivery.due_at, time.time()) > 0:
        send(delivery)  # a hop of a long wait
        return
    endpoint = _endpoint(delivery)
    if not delivery_log.claim(delivery, token):
        logger.info("delivery attempt claimed elsewhere; dropped", extra=_fields(delivery))
        return
    if endpoint is None or not endpoint.enabled:
        reason = "endpoint_deleted" if endpoint is None else "endpoint_disabled"
        delivery_log.record_attempt(delivery, "", Outcome(error=reason))
        delivery_log.settle(delivery, token, DeliveryState.FAILED)
        return
    body = _body(delivery)
    if body is None:
        delivery_log.record_attempt(delivery, endpoint.url, Outcome(error="job_gone"))
        delivery_log.settle(delivery, token, DeliveryState.FAILED)
        return
    outcome, retry_after = _post(endpoint, delivery, body)
    delivery_log.record_attempt(delivery, endpoint.url, outcome)
    _settle(delivery, token, endpoint, outcome, retry_after)


def _endpoint(delivery: Delivery) -> webhooks.Endpoint | None:
    try:
        return webhooks.get(delivery.tenant, delivery.endpoint_id)
    except NotFound:
        return None


def _post(
    endpoint: webhooks.Endpoint, delivery: Delivery, body: bytes
) -> tuple[Outcome, float | None]:
    policy = webhooks.outbound_policy()
    headers = delivery_headers(
        webhooks.active_secrets(endpoint), delivery.event_id, int(time.time()), body
    )
    try:
        target = outbound.parse_endpoint(endpoint.url, policy)
        timeout = settings().webhook_timeout_seconds
        answer = outbound.post(target, body, headers, policy, timeout_seconds=timeout)
    except (EndpointRefused, DeliveryUnreachable) as exc:
        return Outcome(error=exc.code, answer=exc.message), None
    outcome = Outcome(status=answer.status, latency_ms=answer.elapsed_ms, answer=answer.prefix)
    return outcome, answer.retry_after_seconds


def _settle(
    delivery: Delivery,
    token: str,
    endpoint: webhooks.Endpoint,
    outcome: Outcome,
    retry_after: float | None,
) -> None:
    fields = _fields(delivery, status=outcome.status, error=outcome.error)
    if outcome.status is not None and 200 <= outcome.status < 300:
        delivery_log.settle(delivery, token, DeliveryState.SUCCEEDED)
        logger.info("webhook delivered", extra=fields)
        metric("WebhooksDelivered", 1)
        return
    if outcome.status == GONE:
        webhooks.disable(endpoint, "The receiver answered 410 Gone.")
        delivery_log.settle(delivery, token, DeliveryState.FAILED)
        logger.warning("webhook endpoint disabled: 410 Gone", extra=fields)
        return
    waits = settings().webhook_retry_schedule or RETRY_WAITS_SECONDS
    retry = next_retry(delivery.attempt, retry_after, waits=waits)
    if retry is None:
        delivery_log.settle(delivery, token, DeliveryState.FAILED)
        logger.warning("webhook delivery given up", extra=fields)
        metric("WebhooksGivenUp", 1)
        return
    # The next attempt is sent before this one is settled: a death in between leaves a
    # duplicate the claim refuses, never a chain with no next link.
    send(delivery.retry(retry.attempt, time.time() + retry.wait_seconds))
    delivery_log.settle(delivery, token, DeliveryState.RETRYING)
    logger.info("webhook delivery failed; retrying", extra=fields)


def _body(delivery: Delivery) -> bytes | None:
    """The event as sent: {"type", "timestamp", "data"}; None if its job is gone."""
    if delivery.job_id is None:
        data: dict[str, object] = {"endpointId": delivery.endpoint_id}
        timestamp = iso_from_epoch(delivery.due_at)
    else:
        job = jobs.get_job(delivery.job_id)
        if job is None or job.tenant != delivery.tenant or job.event_id != delivery.event_id:
            return None
        data = job_view(job, with_urls=False)
        timestamp = job.updated_at
    event = {"type": delivery.type, "timestamp": timestamp, "data": data}
    return json.dumps(event, separators=(",", ":")).encode()


def _fields(delivery: Delivery, **extra: object) -> dict[str, object]:
    return {
        "jobId": delivery.job_id,
        "eventId": delivery.event_id,
        "endpointId": delivery.endpoint_id,
        "attempt": delivery.attempt,
        **extra,
    }
