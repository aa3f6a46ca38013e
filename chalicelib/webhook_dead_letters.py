"""The webhooks dead-letter handler: a message the deliveries function failed on five
times (an AWS fault that outlasted SQS's retries, or a bug) ends here, visibly.

A delivery's attempt is logged as failed with `dead_lettered` and the delivery settled
FAILED, so `GET /jobs/{id}/deliveries` shows it and a replay can send it again. A job
event that could not be fanned out is logged as an error; the queue's alarm (its depth)
has already told the operator, who can redrive the queue once the cause is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from chalicelib import delivery_log, delivery_message, job_events, sqs_batch
from chalicelib.delivery_log import DeliveryState, Outcome
from chalicelib.observability import logger, metric

DEAD_LETTERED = "dead_lettered"


def handle_webhook_dead_letters(records: Iterable[Mapping[str, object]]) -> None:
    sqs_batch.run_batch(records, _give_up)


def _give_up(record: sqs_batch.SqsRecord) -> None:
    try:
        payload: object = json.loads(record.body)
    except ValueError:
        payload = None
    decoded = payload if isinstance(payload, dict) else {}
    delivery = delivery_message.parse(decoded)
    if delivery is not None:
        delivery_log.record_attempt(delivery, "", Outcome(error=DEAD_LETTERED))
        delivery_log.force_settle(delivery, DeliveryState.FAILED)
        logger.error(
            "webhook delivery dead-lettered",
            extra={"jobId": delivery.job_id, "eventId": delivery.event_id},
        )
        metric("WebhooksGivenUp", 1)
        return
    event = job_events.parse(decoded)
    fields = {"messageId": record.message_id}
    if event is not None:
        fields |= {"jobId": event.job_id, "eventId": event.event_id}
    logger.error("webhooks message dead-lettered", extra=fields)
    metric("WebhookEventsDeadLettered", 1)
