"""The delivery log: each event's delivery to each endpoint, and every attempt of it.

In the webhooks table, under the delivery's subject ("job#<id>", or "test#<endpoint id>"
for a test event):

- one delivery item per event and endpoint ("delivery#<event>#<endpoint>"): its state,
  how many attempts were claimed, and the claim of the latest;
- one attempt item per attempt ("attempt#<event>#<endpoint>#<nnn>"): when, the answer's
  status or the error, the latency and a short prefix of the answer.

An attempt is *claimed* before it is sent, by one conditional write on the delivery item:
attempt n needs the delivery at n - 1 attempts and waiting for a retry (or, for a replay,
finished). The claim names the SQS message that carries it, so the very same message,
delivered again after its invocation died, claims it again; a duplicate message (a job
event handed over twice, a retry sent twice) loses and is dropped. So an event reaches an
endpoint through one chain of attempts, and a success is recorded once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from chalicelib import clients
from chalicelib.config import settings
from chalicelib.delivery_message import Delivery
from chalicelib.timestamps import now_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

Item = dict[str, "AttributeValueTypeDef"]


class DeliveryState(StrEnum):
    SENDING = "sending"  # an attempt is claimed and under way
    RETRYING = "retrying"  # the next attempt is scheduled
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # given up: the schedule ran out, or the endpoint is gone

    @property
    def is_final(self) -> bool:
        return self in (DeliveryState.SUCCEEDED, DeliveryState.FAILED)


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: an HTTP status, or an error code (no answer, or refused)."""

    status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    answer: str = ""


@dataclass(frozen=True)
class DeliveryRecord:
    endpoint_id: str
    event_id: str
    type: str
    attempts: int
    state: DeliveryState


def claim(delivery: Delivery, token: str) -> bool:
    """Claim `delivery`'s attempt for the message `token`; False if it is not this
    message's to make (another chain has it, or it is done)."""
    n = delivery.attempt
    values: Item = {
        ":n": {"N": str(n)},
        ":token": {"S": token},
        ":sending": {"S": DeliveryState.SENDING},
        ":now": {"S": now_iso()},
        ":type": {"S": delivery.type},
        ":endpoint": {"S": delivery.endpoint_id},
        ":event": {"S": delivery.event_id},
        ":tenant": {"S": delivery.tenant},
        ":expires": {"N": str(_expires_at())},
    }
    same_message = "(attempts = :n AND claimToken = :token AND #state = :sending)"
    if n == 1:
        first = "attribute_not_exists(sk)"
    else:
        values[":previous"] = {"N": str(n - 1)}
        waiting = (
            (DeliveryState.SUCCEEDED, DeliveryState.FAILED)
            if delivery.replay
            else (DeliveryState.RETRYING,)
        )
        for i, state in enumerate(waiting):
            values[f":waiting{i}"] = {"S": state}
        states = ", ".join(f":waiting{i}" for i in range(len(waiting)))
        first = f"(attempts = :previous AND #state IN ({states}))"
    return _update(
        delivery,
        "SET attempts = :n, claimToken = :token, #state = :sending, updatedAt = :now, "
        "eventType = :type, endpointId = :endpoint, eventId = :event, tenant = :tenant, "
        "expiresAt = if_not_exists(expiresAt, :expires)",
        f"{first} OR {same_message}",
        values,
    )


def settle(delivery: Delivery, token: str, state: DeliveryState) -> bool:
    """Move the delivery this message claimed to `state` (RETRYING, SUCCEEDED or FAILED)."""
    return _update(
        delivery,
        "SET #state = :state, updatedAt = :now",
        "claimToken = :token AND attempts = :n AND #state = :sending",
        {
            ":state": {"S": state},
            ":now": {"S": now_iso()},
            ":token": {"S": token},
            ":n": {"N": str(delivery.attempt)},
            ":sending": {"S": DeliveryState.SENDING},
        },
    )


def force_settle(delivery: Delivery, state: DeliveryState) -> None:
    """Settle the delivery whatever its claim (the dead-letter handler: no attempt of this
    message will ever finish)."""
    _update(
        delivery,
        "SET #state = :state, updatedAt = :now, attempts = if_not_exists(attempts, :n), "
        "eventType = :type, endpointId = :endpoint, eventId = :event, tenant = :tenant",
        "attribute_not_exists(sk) OR attempts <= :n",
        {
            ":state": {"S": state},
            ":now": {"S": now_iso()},
            ":n": {"N": str(delivery.attempt)},
            ":type": {"S": delivery.type},
            ":endpoint": {"S": delivery.endpoint_id},
            ":event": {"S": delivery.event_id},
            ":tenant": {"S": delivery.tenant},
        },
    )


def record_attempt(delivery: Delivery, url: str, outcome: Outcome) -> None:
    item: Item = {
        "pk": {"S": delivery.subject},
        "sk": {"S": _attempt_sk(delivery)},
        "endpointId": {"S": delivery.endpoint_id},
        "eventId": {"S": delivery.event_id},
        "eventType": {"S": delivery.type},
        "attempt": {"N": str(delivery.attempt)},
        "at": {"S": now_iso()},
        "url": {"S": url},
        "answer": {"S": outcome.answer},
        "expiresAt": {"N": str(_expires_at())},
    }
    if outcome.status is not None:
        item["status"] = {"N": str(outcome.status)}
    if outcome.error is not None:
        item["error"] = {"S": outcome.error}
    if outcome.latency_ms is not None:
        item["latencyMs"] = {"N": str(round(outcome.latency_ms))}
    with clients.aws_errors(f"log attempt {delivery.attempt} of {delivery.event_id}"):
        clients.dynamodb().put_item(TableName=settings().webhooks_table, Item=item)


def attempts_of_job(job_id: str) -> list[dict[str, object]]:
    """Every attempt logged for the job's events, oldest first, as the API shows them."""
    return [_attempt_view(item) for item in _query(f"job#{job_id}", "attempt#")]


def deliveries_of_event(job_id: str, event_id: str) -> list[DeliveryRecord]:
    return [
        DeliveryRecord(
            endpoint_id=item["endpointId"]["S"],
            event_id=item["eventId"]["S"],
            type=item["eventType"]["S"],
            attempts=int(item["attempts"]["N"]),
            state=DeliveryState(item["state"]["S"]),
        )
        for item in _query(f"job#{job_id}", f"delivery#{event_id}#")
    ]


def _attempt_view(item: Item) -> dict[str, object]:
    return {
        "endpointId": item["endpointId"]["S"],
        "eventId": item["eventId"]["S"],
        "type": item["eventType"]["S"],
        "attempt": int(item["attempt"]["N"]),
        "at": item["at"]["S"],
        "url": item["url"]["S"],
        "status": int(item["status"]["N"]) if "status" in item else None,
        "error": item["error"]["S"] if "error" in item else None,
        "latencyMs": int(item["latencyMs"]["N"]) if "latencyMs" in item else None,
        "answer": item["answer"]["S"],
    }


def _query(pk: str, prefix: str) -> list[Item]:
    request = {
        "TableName": settings().webhooks_table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": prefix}},
        "ConsistentRead": True,
    }
    found: list[Item] = []
    with clients.aws_errors(f"read the delivery log of {pk}"):
        paginator = clients.dynamodb().get_paginator("query")
        for page in paginator.paginate(**request):  # type: ignore[arg-type]
            found.extend(page["Items"])
    return sorted(found, key=lambda item: (item.get("at", {}).get("S", ""), item["sk"]["S"]))


def _update(delivery: Delivery, expression: str, condition: str, values: Item) -> bool:
    return clients.update_if(
        f"update the delivery of {delivery.event_id}",
        {
            "TableName": settings().webhooks_table,
            "Key": {"pk": {"S": delivery.subject}, "sk": {"S": _delivery_sk(delivery)}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        },
    )


def _delivery_sk(delivery: Delivery) -> str:
    return f"delivery#{delivery.event_id}#{delivery.endpoint_id}"


def _attempt_sk(delivery: Delivery) -> str:
    return f"attempt#{delivery.event_id}#{delivery.endpoint_id}#{delivery.attempt:03d}"


def _expires_at() -> int:
    # The log lives as long as the jobs it speaks of (JOB_TTL_DAYS).
    return int(time.time()) + settings().job_ttl_days * 86400
