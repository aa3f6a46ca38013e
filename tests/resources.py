"""The AWS resources the app expects, created through the API for moto-backed tests."""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3

REGION = "us-east-1"
MAX_RECEIVE_COUNT = 3


@dataclass(frozen=True)
class Names:
    uploads_bucket: str = "mp-test-uploads"
    derived_bucket: str = "mp-test-derived"
    jobs_table: str = "mp-test-jobs"
    api_keys_table: str = "mp-test-api-keys"
    jobs_queue: str = "mp-test-jobs"
    jobs_dlq: str = "mp-test-jobs-dlq"

    def environment(self) -> dict[str, str]:
        return {
            "UPLOADS_BUCKET": self.uploads_bucket,
            "DERIVED_BUCKET": self.derived_bucket,
            "JOBS_TABLE": self.jobs_table,
            "API_KEYS_TABLE": self.api_keys_table,
            "JOBS_QUEUE": self.jobs_queue,
            "JOBS_DLQ": self.jobs_dlq,
        }


@dataclass(frozen=True)
class Queues:
    jobs_url: str
    dlq_url: str


def provision(names: Names) -> Queues:
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (names.uploads_bucket, names.derived_bucket):
        s3.create_bucket(Bucket=bucket)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=names.jobs_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "jobId", "AttributeType": "S"},
            {"AttributeName": "tenant", "AttributeType": "S"},
            {"AttributeName": "createdAt", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "tenant-createdAt-index",
                "KeySchema": [
                    {"AttributeName": "tenant", "KeyType": "HASH"},
                    {"AttributeName": "createdAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.create_table(
        TableName=names.api_keys_table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "keyHash", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "keyHash", "KeyType": "HASH"}],
    )
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName=names.jobs_dlq)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
    jobs_url = sqs.create_queue(
        QueueName=names.jobs_queue,
        Attributes={"VisibilityTimeout": "360", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return Queues(jobs_url=jobs_url, dlq_url=dlq_url)
