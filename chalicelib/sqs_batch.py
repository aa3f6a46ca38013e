"""The partial-batch boundary of every SQS-fed handler.

Chalice cannot turn on SQS partial batch responses, so a batch is all-or-nothing for
Lambda: if the handler raises, every message in it comes back. To keep one failing record
from replaying its siblings, `run_batch` processes each record on its own; when any record
fails, the ones that finished are deleted from the queue explicitly before it raises
BatchIncomplete. Only the failed ones return, and after the queue's maxReceiveCount they
go to its dead-letter queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from chalicelib import clients
from chalicelib.errors import BatchIncomplete, UnexpectedAwsError
from chalicelib.observability import logger


@dataclass(frozen=True)
class SqsRecord:
    """The fields of an SQS event record that the handlers read."""

    message_id: str
    receipt_handle: str
    body: str
    queue_arn: str
    # ApproximateReceiveCount: 1 on the first delivery.
    receive_count: int

    @classmethod
    def of(cls, record: Mapping[str, object]) -> SqsRecord:
        attributes = record.get("attributes")
        count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, dict) else None
        return cls(
            message_id=_text(record, "messageId"),
            receipt_handle=_text(record, "receiptHandle"),
            body=_text(record, "body"),
            queue_arn=_text(record, "eventSourceARN"),
            receive_count=int(count) if isinstance(count, str) and count.isdigit() else 1,
        )


RecordHandler = Callable[[SqsRecord], None]


def run_batch(records: Iterable[Mapping[str, object]], process: RecordHandler) -> None:
    """`process` each record; if any failed, delete the finished ones from their queue and
    raise BatchIncomplete, so that only the failed ones are delivered again."""
    done: list[SqsRecord] = []
    failed = 0
    for raw in records:
        record = SqsRecord.of(raw)
        try:
            process(record)
        # A batch boundary: whatever one record raises must not cost its siblings
        # their completed work, so every failure is counted and the rest go on.
        except Exception as exc:  # noqa: BLE001
            failed += 1
            fields: dict[str, object] = {
                "messageId": record.message_id,
                "attempt": record.receive_count,
            }
            if isinstance(exc, UnexpectedAwsError):
                fields["awsErrorCode"] = exc.aws_code
            logger.exception("record failed; it will be retried", extra=fields)
        else:
            done.append(record)
    if failed:
        _delete_records(done)
        raise BatchIncomplete(f"{failed} of {failed + len(done)} record(s) failed")


def _delete_records(records: list[SqsRecord]) -> None:
    for record in records:
        queue_url = clients.queue_url_from_arn(record.queue_arn)
        with clients.aws_errors("delete finished message"):
            clients.sqs().delete_message(QueueUrl=queue_url, ReceiptHandle=record.receipt_handle)


def _text(record: Mapping[str, object], name: str) -> str:
    value = record.get(name)
    return value if isinstance(value, str) else ""
