"""Lambda's event sources, reproduced against real (or emulated) S3 and SQS.

`s3_object_created_event` builds the notification S3 sends for a new object (with the
key URL-encoded and, in a versioned bucket, the object's version, as S3 does).
`SqsPoller` is Lambda's SQS poller: it receives a batch, hands it to the function as one
event, deletes the whole batch when the function returns, and leaves it for redelivery
(and the queue's redrive policy) when it raises.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any]
WINDOW_POLL_SECONDS = 0.02


def s3_object_created_event(
    bucket: str,
    key: str,
    size: int,
    *,
    region: str = "us-east-1",
    etag: str = "",
    version_id: str | None = None,
) -> dict[str, Any]:
    """S3's notification for a new object; `version_id` is the object's version in a
    versioned bucket (S3 leaves the field out for a bucket without versioning)."""
    created: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag}
    if version_id is not None:
        created["versionId"] = version_id
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": region,
                "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "eventName": "ObjectCreated:Post",
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": created,
                },
            }
        ]
    }


def api_gateway_event(
    method: str,
    path: str,
    resource: str,
    *,
    tenant: str,
    body: Any = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The proxy event API Gateway hands the API function once the authorizer has named
    the caller's tenant (what chalicelib.auth reads from the request context)."""
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "stage": "api",
            "requestId": "request",
            "authorizer": {"tenant": tenant, "principalId": tenant},
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


@dataclass(frozen=True)
class BatchResult:
    received: int
    failed: bool


@dataclass
class SqsPoller:
    """One event source mapping: a queue, a function and a batch size.

    Tests do not wait out a visibility timeout: with `expire_with` (a client of the queue's
    owner, not the function's role), a failed batch is made visible again at once, which
    is what the timeout expiring does."""

    sqs: SQSClient
    queue_url: str
    handler: Handler
    _: KW_ONLY
    batch_size: int = 1
    wait_seconds: int = 0
    batching_window: float = 0.0
    expire_with: SQSClient | None = None
    queue_arn: str = field(init=False)

    def __post_init__(self) -> None:
        self.queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]

    def poll_once(self) -> BatchResult:
        messages = self._receive_batch()
        if not messages:
            return BatchResult(received=0, failed=False)
        event = sqs_event(list(messages), self.queue_arn, self.queue_arn.split(":")[3])
        try:
            self.handler(event)
        # Lambda's contract: any exception fails the whole batch, which stays on the queue.
        except Exception:  # noqa: BLE001
            log.info("batch of %d failed; left for redelivery", len(messages))
            if self.expire_with is not None:
                self._expire(self.expire_with, messages)
            return BatchResult(received=len(messages), failed=True)
        self._delete(messages)
        return BatchResult(received=len(messages), failed=False)

    def _receive_batch(self) -> list[Any]:
        """Up to a batch of messages; with a batching window, keep gathering until the batch
        is full or the window has passed since the first message, as Lambda does."""
        messages = self._receive(self.batch_size, self.wait_seconds)
        deadline = time.monotonic() + self.batching_window
        while messages and len(messages) < self.batch_size and time.monotonic() < deadline:
            more = self._receive(self.batch_size - len(messages), 0)
            if not more:
                time.sleep(WINDOW_POLL_SECONDS)
            messages += more
        return messages

    def _receive(self, count: int, wait_seconds: int) -> list[Any]:
        return list(
            self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(count, 10),
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        )

    def drain(self, max_batches: int = 100) -> int:
        """Poll until the queue gives nothing back; returns the batches handled."""
        for handled in range(max_batches):
            if self.poll_once().received == 0:
                return handled
        raise RuntimeError(f"queue still not empty after {max_batches} batches")

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        self.sqs.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]}
                for i, message in enumerate(messages)
            ],
        )

    def _expire(self, sqs: SQSClient, messages: list[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        for message in messages:
            try:
                sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            except ClientError:
                # The function deleted this one itself before failing the batch.
                log.debug("message %s already deleted", message["MessageId"])
