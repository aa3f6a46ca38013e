"""AWS clients, created on first use and cached per process.

boto3 honours ``AWS_ENDPOINT_URL`` (and the per-service variants), which is how the
local stack points the same code at its emulator. Tests call `reset_clients()` so a
client never outlives the moto context it was made in.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Literal

from chalicelib.errors import ConfigurationError, MediaPipelineError, TransientError

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
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


@contextmanager
def aws_errors(
    operation: str, translate: Mapping[str, type[MediaPipelineError]] | None = None
) -> Iterator[None]:
    """Translate botocore failures into domain errors.

    An AWS error code named in `translate` becomes that domain error; everything else
    becomes a `TransientError`, which is retried and then dead-lettered.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        domain_error = (translate or {}).get(code, TransientError)
        raise domain_error(f"{operation} failed: {code or 'unknown error'}") from exc
    except BotoCoreError as exc:
        raise TransientError(f"{operation} failed: {type(exc).__name__}") from exc


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
    for factory in (_session, s3, sqs, dynamodb, queue_url):
        factory.cache_clear()
