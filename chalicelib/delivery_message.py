"""The delivery message: one attempt to send one event to one endpoint.

This module is the message's only writer and reader::

    {"kind": "delivery", "tenant": str, "endpointId": str, "eventId": str, "type": str,
     "jobId": str | null, "attempt": int, "dueAt": float, "replay": bool}

`jobId` is null for a `webhook.test` event. `dueAt` (Unix seconds) is when the attempt
is due: a wait longer than SQS's 15-minute delay is a chain of hops, each sending the
message on unchanged until it is due. `replay` marks an attempt asked for with
`POST /jobs/{id}/deliveries/replay`, which may follow a finished delivery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from chalicelib.webhooks import JOB_EVENTS, WEBHOOK_TEST

KIND = "delivery"
EVENT_TYPES = (*JOB_EVENTS, WEBHOOK_TEST)


@dataclass(frozen=True)
class Delivery:
    tenant: str
    endpoint_id: str
    event_id: str
    type: str
    job_id: str | None
    attempt: int
    due_at: float
    replay: bool = False

    @property
    def subject(self) -> str:
        """What the delivery is about, the log's partition: a job, or an endpoint's test."""
        return f"job#{self.job_id}" if self.job_id is not None else f"test#{self.endpoint_id}"

    def to_body(self) -> str:
        return json.dumps(
            {
                "kind": KIND,
                "tenant": self.tenant,
                "endpointId": self.endpoint_id,
                "eventId": self.event_id,
                "type": self.type,
                "jobId": self.job_id,
                "attempt": self.attempt,
                "dueAt": self.due_at,
                "replay": self.replay,
            }
        )

    def retry(self, attempt: int, due_at: float) -> Delivery:
        return replace(self, attempt=attempt, due_at=due_at, replay=False)


def parse(payload: dict[str, object]) -> Delivery | None:
    """The delivery in a decoded message body, or None if it is not a well-formed one."""
    texts = [payload.get(name) for name in ("tenant", "endpointId", "eventId", "type")]
    if payload.get("kind") != KIND or not all(isinstance(t, str) and t for t in texts):
        return None
    tenant, endpoint_id, event_id, event_type = (str(text) for text in texts)
    job_id = payload.get("jobId")
    if event_type not in EVENT_TYPES or (job_id is None) != (event_type == WEBHOOK_TEST):
        return None
    if job_id is not None and not (isinstance(job_id, str) and job_id):
        return None
    attempt = _number(payload.get("attempt"))
    due_at = _number(payload.get("dueAt"))
    replay = payload.get("replay", False)
    if attempt is None or attempt < 1 or attempt != int(attempt) or due_at is None:
        return None
    if not isinstance(replay, bool):
        return None
    return Delivery(
        tenant=tenant,
        endpoint_id=endpoint_id,
        event_id=event_id,
        type=event_type,
        job_id=job_id,
        attempt=int(attempt),
        due_at=due_at,
        replay=replay,
    )


def _number(value: object) -> float | None:
    # bool is an int to Python, not to JSON: `true` is no number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
