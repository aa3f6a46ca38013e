"""AWS clients, created on first use and cached per process.

boto3 honours ``AWS_ENDPOINT_URL`` (and the per-service variants), which is how the
local stack points the same code at its emulator. Tests call `reset_clients()` so a
client never outlives the moto context it was made in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Literal

from chalicelib.errors import (
    ConfigurationError,
    MediaPipelineError,
    TransientError,
    UnexpectedAwsError,
)

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateItemInputTypeDef
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


@cache
def _session() -> Session:
    import boto3

    return boto3.session.Session()


def _config() -> Config:
    from botocore.config import Config

    # Signature v4 everywhere: presigned URLs must work in every region and locally.
    # An emulator on 127.0.0.1 has no per-bucket host names, so it sets path style.
    return Config(
        signature_version="s3v4",
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": _addressing_style()},
    )


def _addressing_style() -> Literal["auto", "virtual", "path"]:
    style = os.environ.get("S3_ADDRESSING_STYLE") or "auto"
    if style not in ("auto", "virtual", "path"):
        raise ConfigurationError(f"S3_ADDRESSING_STYLE must be auto, virtual or path: {style!r}")
    return style  # type: ignore[return-value]


@cache
def s3() -> S3Client:
    client: S3Client = _session().client("s3", config=_config())
    return client


@cache
def sqs() -> SQSClient:
    client: SQSClient = _session().client("sqs", config=_config())
    return client


@cache
def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _session().client("dynamodb", config=_config())
    return client


@cache
def kms() -> KMSClient:
    client: KMSClient = _session().client("kms", config=_config())
    return client


# AWS error codes that say "not now": throttling, a service briefly down, a request that
# timed out. Any other code is a bug or a misconfiguration (a missing table, a denied
# permission) that no retry would cure.
TRANSIENT_ERROR_CODES = frozenset(
    {
        # throttling
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "BandwidthLimitExceeded",
        "SlowDown",
        # the service's own failures
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        # timeouts
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
# HTTP statuses of an AWS answer that say the same, whatever its code.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@contextmanager
def aws_errors(
    operation: str, translate: Mapping[str, type[MediaPipelineError]] | None = None
) -> Iterator[None]:
    """Translate botocore failures into domain errors.

    An AWS error code named in `translate` becomes that domain error; a transient one
    (TRANSIENT_ERROR_CODES, a 5xx or 429 answer, a timeout or a lost connection) becomes a
    `TransientError`, which is retried; anything else an `UnexpectedAwsError`, a bug.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
    )

    try:
        yield
    except ClientError as exc:
        code = aws_error_code(exc)
        domain_error = (translate or {}).get(code)
        if domain_error is not None:
            raise domain_error(f"{operation} failed: {code}") from exc
        if code in TRANSIENT_ERROR_CODES or _http_status(exc) in TRANSIENT_STATUSES:
            raise TransientError(f"{operation} failed: {code or 'unknown error'}") from exc
        raise UnexpectedAwsError(operation, code or "unknown error") from exc
    # Timeouts, refused or reset connections, a response cut short: the network's.
    except (ConnectionError, HTTPClientError, IncompleteReadError) as exc:
        raise TransientError(f"{operation} failed: {type(exc).__name__}") from exc
    except BotoCoreError as exc:
        raise UnexpectedAwsError(operation, type(exc).__name__) from exc


def update_if(operation: str, request: UpdateItemInputTypeDef) -> bool:
    """One conditional DynamoDB UpdateItem: False if its condition refused it (any other
    failure is translated as `aws_errors` does)."""
    from botocore.exceptions import ClientError

    with aws_errors(operation):
        try:
            dynamodb().update_item(**request)
        except ClientError as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False
    return True


def transact_if(operation: str, items: Sequence[TransactWriteItemTypeDef]) -> bool:
    """One DynamoDB transaction: False if a condition of one of its items refused it (any
    other failure is translated as `aws_errors` does)."""
    from botocore.exceptions import ClientError

    with aws_errors(operation):
        try:
            dynamodb().transact_write_items(TransactItems=list(items))
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons", [])
            codes = {reason.get("Code") for reason in reasons}
            if aws_error_code(exc) == "TransactionCanceledException" and (
                "ConditionalCheckFailed" in codes
            ):
                return False
            raise
    return True


def aws_error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status if isinstance(status, int) else None


@cache
def queue_url(queue_name: str, account_id: str | None = None) -> str:
    """The URL of a queue, looked up once per process."""
    lookup: dict[str, str] = {"QueueName": queue_name}
    if account_id:
        lookup["QueueOwnerAWSAccountId"] = account_id
    with aws_errors(f"look up queue {queue_name}"):
        return sqs().get_queue_url(**lookup)["QueueUrl"]


def queue_url_from_arn(queue_arn: str) -> str:
    """arn:aws:sqs:<region>:<account>:<name> -> the queue's URL."""
    parts = queue_arn.split(":")
    if len(parts) != 6:
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    return queue_url(parts[5], parts[4])


def reset_clients() -> None:
    for factory in (_session, s3, sqs, dynamodb, kms, queue_url):
        factory.cache_clear()
