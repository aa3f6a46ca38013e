"""The app's Lambda functions run in this process as Lambda would run them: invoked by
name with an event, fed by Lambda's SQS event source, with AWS faults (tests/faults.py)
injected into the app's clients.

With `identities` (function name -> AWS credentials), each function acts with credentials
of its own and the AWS actions it calls are recorded (tests/test_iam.py); without, every
function runs with the process's credentials and the app's clients as they are.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import boto3
from chalice.local import LambdaContext

from chalicelib import clients
from devstack.lambda_events import SqsPoller
from infra import policies
from tests.faults import Fault, attached
from tests.resources import REGION

CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# API names that AWS authorizes as another action.
ACTION_OF_OPERATION = {
    "s3:HeadObject": "s3:GetObject",
    # (and GetObject or GetObjectVersion on its source, which the function also reads)
    "s3:CopyObject": "s3:PutObject",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}
# ... and the ones it authorizes as another action when they name an object's version.
ACTION_OF_VERSIONED_OPERATION = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
}


# A transaction is authorized as the action of each of its items.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def app_clients() -> tuple[Any, ...]:
    return (clients.s3(), clients.sqs(), clients.dynamodb(), clients.kms())


class Harness:
    def __init__(self, identities: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.identities = identities
        self.calls: dict[str, set[str]] = defaultdict(set)  # by function: IAM actions called
        self.faults: list[Fault] = []

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        from app import app

        handler: Any = app if function == policies.API else app.handler_map[function]
        with self.acting_as(function):
            return handler(event, LambdaContext(function, memory_size=256))

    def poller(
        self, function: str, queue_url: str, batch_size: int = 10, sqs: Any = None
    ) -> SqsPoller:
        """Lambda's SQS event source, which polls with the function's own role (or `sqs`)."""
        if sqs is None:
            sqs = self.record_calls(self._sqs(function), f"{function} (event source)")
        return SqsPoller(
            sqs,
            queue_url,
            lambda event: self.invoke(function, event),
            batch_size=batch_size,
            expire_with=self._sqs("queue-owner"),
        )

    @contextmanager
    def faulty(self, *faults: Fault) -> Iterator[None]:
        """The faults on the app's clients while the block runs (on those an invocation
        makes with its function's identity too)."""
        self.faults.extend(faults)
        try:
            with attached(faults, app_clients()):
                yield
        finally:
            for fault in faults:
                self.faults.remove(fault)

    @contextmanager
    def acting_as(self, identity: str) -> Iterator[None]:
        """The app's clients made with the identity's credentials, if identities are given."""
        if self.identities is None:
            yield
            return
        saved = {name: os.environ.get(name) for name in CREDENTIAL_VARIABLES}
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.update(self.identities[identity])
        clients.reset_clients()
        for client in app_clients():
            self.record_calls(client, identity)
        try:
            with attached(self.faults, app_clients()):
                yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            clients.reset_clients()

    def record_calls(self, client: Any, name: str) -> Any:
        def record(model: Any, params: dict[str, Any], **_: Any) -> None:
            operation = f"{model.service_model.signing_name}:{model.name}"
            if "versionId" in params.get("query_string", {}):
                operation = ACTION_OF_VERSIONED_OPERATION.get(operation, operation)
            if operation == "dynamodb:TransactWriteItems":
                self.calls[name].update(_transaction_actions(params))
                return
            self.calls[name].add(ACTION_OF_OPERATION.get(operation, operation))

        client.meta.events.register("before-call", record)
        return client

    def _sqs(self, identity: str) -> Any:
        credentials = (self.identities or {}).get(identity, {})
        return boto3.client(
            "sqs",
            region_name=REGION,
            aws_access_key_id=credentials.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=credentials.get("AWS_SECRET_ACCESS_KEY"),
        )


def _transaction_actions(params: dict[str, Any]) -> set[str]:
    body = params.get("body") or b"{}"
    items = json.loads(body)["TransactItems"]
    return {TRANSACTION_ITEM_ACTIONS[kind] for item in items for kind in item}
