"""The reprocess message: make some of a completed job's outputs again, from its original.

Sent on the reprocess queue by `POST /jobs/{jobId}/reprocess` (one message a request) and
by backfills (`send_many`); read by the reprocess function (chalicelib/reprocess.py). This
module is its only writer and reader::

    {"kind": "job.reprocess", "jobId": str, "tenant": str, "presets": [str, ...],
     "requestId": str, "backfillId": str | null}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib import clients
from chalicelib.config import settings
from chalicelib.errors import TransientError

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

KIND = "job.reprocess"
# SendMessageBatch takes at most this many entries.
BATCH_SIZE = 10


@dataclass(frozen=True)
class ReprocessMessage:
    job_id: str
    tenant: str
    presets: tuple[str, ...]
    request_id: str
    # The backfill that sent it; None for a request of the API.
    backfill_id: str | None = None


def build(message: ReprocessMessage) -> str:
    """The message's body."""
    return json.dumps(
        {
            "kind": KIND,
            "jobId": message.job_id,
            "tenant": message.tenant,
            "presets": list(message.presets),
            "requestId": message.request_id,
            "backfillId": message.backfill_id,
        }
    )


def parse(body: str) -> ReprocessMessage | None:
    """The message in `body`, or None if it is not a well-formed reprocess message."""
    try:
        payload: object = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        return None
    texts = [payload.get(name) for name in ("jobId", "tenant", "requestId")]
    if not all(isinstance(text, str) and text for text in texts):
        return None
    job_id, tenant, request_id = (str(text) for text in texts)
    presets = payload.get("presets")
    if not isinstance(presets, list) or not presets:
        return None
    if not all(isinstance(name, str) and name for name in presets):
        return None
    backfill_id = payload.get("backfillId")
    if backfill_id is not None and not (isinstance(backfill_id, str) and backfill_id):
        return None
    return ReprocessMessage(job_id, tenant, tuple(presets), request_id, backfill_id)


def send(message: ReprocessMessage) -> None:
    queue_url = clients.queue_url(settings().reprocess_queue)
    with clients.aws_errors(f"send the reprocess of job {message.job_id}"):
        clients.sqs().send_message(QueueUrl=queue_url, MessageBody=build(message))


def send_many(messages: Sequence[ReprocessMessage]) -> None:
    """Send `messages` with SendMessageBatch, ten at a time. Any entry SQS refuses raises
    TransientError once every chunk has been tried (resending is harmless: a message for
    outputs already current does nothing)."""
    if not messages:
        return
    queue_url = clients.queue_url(settings().reprocess_queue)
    failed: list[str] = []
    for start in range(0, len(messages), BATCH_SIZE):
        chunk = messages[start : start + BATCH_SIZE]
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "MessageBody": build(message)} for index, message in enumerate(chunk)
        ]
        with clients.aws_errors("send reprocess messages"):
            answer = clients.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed += [chunk[int(entry["Id"])].job_id for entry in answer.get("Failed", [])]
    if failed:
        raise TransientError(f"{len(failed)} reprocess message(s) not sent: {', '.join(failed)}")
