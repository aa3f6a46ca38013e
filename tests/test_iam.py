"""The hand-written IAM policies are enough and least.

Enough: the pipeline runs end to end under moto with IAM enforced, each function acting
with credentials limited to its own policy, and the SQS event source polling with the
function's role. Least: what each function's policy grants for its code is exactly what
the function was seen to call in that run, and every action granted anywhere is one the
code makes (a static scan of chalicelib).

moto cannot check four things, so those are checked statically instead:
- DynamoDB and KMS requests are authorized against resource "*" (moto does not resolve
  table or key ARNs), and so is sqs:GetQueueUrl (it has no queue URL to resolve). For the
  enforced run these actions are granted on "*"; the real policies are checked for their
  ARNs below.
- moto authorizes sqs:DeleteMessageBatch, sqs:SendMessageBatch and
  dynamodb:TransactWriteItems by those names; AWS authorizes them as sqs:DeleteMessage,
  sqs:SendMessage and each item's action (dynamodb:PutItem, UpdateItem, DeleteItem), so
  the enforced copy grants both.
- moto cannot authorize a presigned POST upload, so the upload is made as a PutObject
  with the API function's credentials, which is the authority a presigned POST delegates.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin

from chalicelib import auth, clients, reprocess_message
from chalicelib.backfill_message import PageMessage
from chalicelib.config import reset_settings, settings
from chalicelib.delivery_message import Delivery
from devstack.lambda_events import api_gateway_event, s3_object_created_event
from devstack.runner import scheduled_event
from devstack.webhooks import receiver
from infra import policies, stack
from tests.faults import Fault, body_contains, url_contains
from tests.harness import ACTION_OF_VERSIONED_OPERATION, Harness
from tests.resources import REGION, Queues
from tests.samples import jpeg

REPO = Path(__file__).resolve().parents[1]
STAGE = "test"
UNSCOPED_IN_MOTO = ("dynamodb:", "sqs:GetQueueUrl", "kms:")
# Presigning makes no API call: the URL carries the signer's own authority.
PRESIGNED = {policies.API: {"s3:PutObject", "s3:GetObject"}}
# moto authorizes batch calls by their own name; AWS by the single action's.
MOTO_BATCH_NAMES = {
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "dynamodb:PutItem": "dynamodb:TransactWriteItems",
}
# The stage `local`'s outbound rules (a receiver on 127.0.0.1), retries at once, and the
# sweeper handing over an unannounced event at its first run.
WEBHOOK_ENVIRONMENT = {
    "WEBHOOK_ALLOW_HTTP": "1",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "WEBHOOK_RETRY_SCHEDULE": "0",
    "SWEEP_ANNOUNCE_GRACE_SECONDS": "0",
}


def enforceable(document: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can enforce it (see the module docstring)."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"] + sorted(
            {MOTO_BATCH_NAMES[a] for a in statement["Action"] if a in MOTO_BATCH_NAMES}
        )
        scoped = [a for a in actions if not a.startswith(UNSCOPED_IN_MOTO)]
        unscoped = [a for a in actions if a.startswith(UNSCOPED_IN_MOTO)]
        if scoped:
            statements.append({**statement, "Action": scoped})
        if unscoped:
            statements.append(
                {**statement, "Sid": f"{statement['Sid']}Moto", "Action": unscoped, "Resource": "*"}
            )
    return {**document, "Statement": statements}


def code_actions(function: str, outputs: dict[str, str]) -> set[str]:
    arns = policies.StageArns.from_outputs(outputs)
    return {
        action
        for statement in policies.statements(function, STAGE, arns)
        if statement.reason == "code"
        for action in statement.actions
    }


def rest_event(
    method: str, path: str, resource: str, body: Any = None, **params: str
) -> dict[str, Any]:
    return api_gateway_event(
        method, path, resource, tenant="acme", body=body, path_parameters=params or None
    )


@pytest.fixture
def outputs(aws: Queues) -> dict[str, str]:
    return stack.outputs(boto3.client("cloudformation", region_name=REGION), STAGE)


@pytest.fixture
def harness(outputs: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Harness:
    for name, value in WEBHOOK_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    iam = boto3.client("iam", region_name=REGION)
    documents = {
        function: enforceable(policies.policy_document(function, STAGE, outputs))
        for function in policies.FUNCTIONS
    }
    # The operator who creates API keys (python -m infra.keys) is not a Lambda function.
    documents["operator"] = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*"}],
    }
    # The test stands in for SQS itself when it lets a visibility timeout expire early,
    # drops a message at the end of its retention, or moves one to a dead-letter queue.
    documents["queue-owner"] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "sqs:ChangeMessageVisibility",
                    "sqs:PurgeQueue",
                    "sqs:SendMessage",
                    "sqs:GetQueueUrl",
                ],
                "Resource": "*",
            }
        ],
    }
    # ... and for time passing, when it moves jobs' timestamps back.
    documents["clock"] = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": "*"}],
    }
    identities = {}
    for name, document in documents.items():
        user = name.replace("_", "-")
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="only", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        identities[name] = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
    return Harness(identities)


@contextmanager
def iam_enforced() -> Iterator[None]:
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous


def create_upload(harness: Harness) -> tuple[str, str]:
    """A new job: its id and the key its upload goes to."""
    created = harness.invoke(
        policies.API, rest_event("POST", "/uploads", "/uploads", {"contentType": "image/jpeg"})
    )
    assert created["statusCode"] == 201, created["body"]
    body = json.loads(created["body"])
    return str(body["jobId"]), str(body["upload"]["fields"]["key"])


def upload_and_dispatch(harness: Harness, *, versioned: bool = True) -> str:
    """A job, its upload and the upload's S3 event; `versioned=False` sends the event a
    bucket without versioning would (no versionId)."""
    job_id, key = create_upload(harness)
    version_id = upload(harness, key)
    event = s3_object_created_event(
        settings().uploads_bucket, key, len(jpeg()), version_id=version_id if versioned else None
    )
    harness.invoke(policies.DISPATCHER, event)
    return job_id


def upload(harness: Harness, key: str) -> str:
    """The client's upload (not the function's call): the version S3 stored."""
    with harness.acting_as(policies.API):
        stored = clients.s3().put_object(
            Bucket=settings().uploads_bucket, Key=key, Body=jpeg(), ContentType="image/jpeg"
        )
    harness.calls[policies.API].discard("s3:PutObject")
    return stored["VersionId"]


def upload_again(harness: Harness, job_id: str) -> None:
    """A second upload to a job already dispatched, which the dispatcher deletes."""
    key = f"uploads/acme/{job_id}/source"
    event = s3_object_created_event(
        settings().uploads_bucket, key, len(jpeg()), version_id=upload(harness, key)
    )
    harness.invoke(policies.DISPATCHER, event)


def overdue_jobs(harness: Harness, aws: Queues) -> list[str]:
    """Jobs the sweeper must end, long overdue: an upload (two, in fact) whose events were
    lost, an upload that never came, and a queued job whose message was lost."""
    lost, key = create_upload(harness)
    upload(harness, key)
    upload(harness, key)
    expired, _ = create_upload(harness)
    stuck = upload_and_dispatch(harness)
    with harness.acting_as("queue-owner"):
        clients.sqs().purge_queue(QueueUrl=aws.jobs_url)
    with harness.acting_as("clock"):
        for job_id in (lost, expired, stuck):
            clients.dynamodb().update_item(
                TableName=settings().jobs_table,
                Key={"jobId": {"S": job_id}},
                UpdateExpression="SET updatedAt = :long_ago",
                ExpressionAttributeValues={":long_ago": {"S": "2020-01-01T00:00:00.000000Z"}},
            )
    return [lost, expired, stuck]


def run_every_path(harness: Harness, aws: Queues) -> dict[str, str]:
    """Success, a batch with a retried record, jobs that die into the DLQ, a DLQ batch
    with a retried record, a job dead-lettered before it was ever claimed and sent back
    to complete, and a sweep that dispatches a lost upload and ends two jobs: every call
    each function can make."""
    with harness.acting_as("operator"):
        api_key = auth.create_api_key("acme")
    method_arn = "arn:aws:execute-api:us-east-1:123456789012:abc/api/GET/jobs"
    verdict = harness.invoke(
        policies.AUTHORIZER,
        {"type": "TOKEN", "authorizationToken": f"Bearer {api_key}", "methodArn": method_arn},
    )
    assert verdict["context"]["tenant"] == "acme"

    job_ids = [upload_and_dispatch(harness, versioned=i > 0) for i in range(6)]
    upload_again(harness, job_ids[2])
    flaky, doomed, never_claimed = job_ids[1], job_ids[3:5], job_ids[5]
    with harness.faulty(
        Fault("GetObject", times=1, when=url_contains(flaky)),
        *(Fault("GetObject", when=url_contains(job)) for job in doomed),
        Fault("UpdateItem", when=body_contains(never_claimed)),
        # One job's event is not handed over at its end: the sweeper hands it over.
        Fault("SendMessage", times=1, when=body_contains("job.event")),
    ):
        harness.poller(policies.WORKER, aws.jobs_url).drain()
    with harness.faulty(Fault("UpdateItem", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.DEAD_LETTERS, aws.dlq_url).drain()
    harness.poller(policies.WORKER, aws.jobs_url).drain()  # the job sent back
    job_ids += overdue_jobs(harness, aws)
    harness.invoke(policies.SWEEPER, scheduled_event())
    harness.poller(policies.WORKER, aws.jobs_url).drain()

    statuses = {}
    for job_id in job_ids:
        job = harness.invoke(
            policies.API, rest_event("GET", f"/jobs/{job_id}", "/jobs/{job_id}", job_id=job_id)
        )
        statuses[job_id] = json.loads(job["body"])["status"]
    listing = harness.invoke(policies.API, rest_event("GET", "/jobs", "/jobs"))
    assert len(json.loads(listing["body"])["jobs"]) == len(job_ids)
    run_webhook_paths(harness, job_ids[0])
    run_reprocess_paths(harness, job_ids[0], job_ids[2])
    run_backfill_paths(harness)
    return statuses


def run_backfill_paths(harness: Harness) -> None:
    """A backfill of a new preset (a page read again after a fault, every job reprocessed
    and counted), a cancelled one, and a dead-lettered page ending its backfill failed."""
    with harness.acting_as("queue-owner"):
        pages_url = clients.queue_url(settings().backfill_queue)
        dlq_url = clients.queue_url(settings().backfill_queue + "-dlq")
        reprocess_url = clients.queue_url(settings().reprocess_queue)
    wide = {"name": "wide", "width": 40, "height": 20, "fit": "contain", "format": "WEBP"}
    os.environ["PRESETS"] = json.dumps([*json.loads(os.environ["PRESETS"]), wide])
    reset_settings()
    on_backfill = "/backfills/{backfill_id}"
    started = api_call(harness, "POST", "/backfills", {"presets": ["wide"]})
    with harness.faulty(Fault("Query", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.BACKFILL_PAGES, pages_url, batch_size=1).drain()
    harness.poller(policies.REPROCESS, reprocess_url, batch_size=5).drain()
    shown = api_call(harness, "GET", f"/backfills/{started['backfillId']}", resource=on_backfill)
    assert shown["status"] == "completed", (shown["counts"], shown["allPagesRead"])
    assert shown["counts"]["done"] > 0
    cancelled = api_call(harness, "POST", "/backfills", {"presets": ["thumb"]})
    on_cancelled = f"/backfills/{cancelled['backfillId']}"
    api_call(harness, "DELETE", on_cancelled, resource=on_backfill)
    doomed = api_call(harness, "POST", "/backfills", {"presets": ["thumb"]})
    with harness.acting_as("queue-owner"):
        for letter in (PageMessage("acme", doomed["backfillId"], 0).to_body(), "not a page"):
            clients.sqs().send_message(QueueUrl=dlq_url, MessageBody=letter)
    with harness.faulty(Fault("UpdateItem", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.BACKFILL_DEAD_LETTERS, dlq_url).drain()
    harness.poller(policies.BACKFILL_PAGES, pages_url, batch_size=1).drain()
    failed = api_call(harness, "GET", f"/backfills/{doomed['backfillId']}", resource=on_backfill)
    assert failed["status"] == "failed"


def run_reprocess_paths(harness: Harness, job_id: str, other_job_id: str) -> None:
    """Two reprocess requests (one of them retried once), and a dead-lettered one given up
    in a batch with a retried record."""
    with harness.acting_as("queue-owner"):
        queue_url = clients.queue_url(settings().reprocess_queue)
        dlq_url = clients.queue_url(settings().reprocess_dlq)
    on_job = "/jobs/{job_id}/reprocess"
    # The stage's thumb preset changed: its outputs are made again at the new version.
    changed = {"name": "thumb", "width": 32, "height": 32, "fit": "cover", "format": "JPEG"}
    os.environ["PRESETS"] = json.dumps([changed])
    reset_settings()
    for job in (job_id, other_job_id):
        body = {"presets": ["thumb"]}
        api_call(harness, "POST", f"/jobs/{job}/reprocess", body, resource=on_job)
    with harness.faulty(Fault("GetItem", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.REPROCESS, queue_url, batch_size=2).drain()
    dead = reprocess_message.ReprocessMessage(job_id, "acme", ("thumb",), "rpr_dead")
    with harness.acting_as("queue-owner"):
        for letter in (reprocess_message.build(dead), reprocess_message.build(dead)):
            clients.sqs().send_message(QueueUrl=dlq_url, MessageBody=letter)
    with harness.faulty(Fault("UpdateItem", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.REPROCESS_DEAD_LETTERS, dlq_url).drain()
    job = api_call(harness, "GET", f"/jobs/{job_id}", resource="/jobs/{job_id}")
    assert (job["reprocessing"], job["reprocessError"]["code"]) == (False, "processing_failed")


def run_webhook_paths(harness: Harness, job_id: str) -> None:
    """Endpoints registered, listed, rotated, deleted; every job's event delivered (the
    first attempt failing and retried), a test event, the delivery log and a replay; a
    dead-lettered delivery given up, in a batch with a retried record."""
    with harness.acting_as("queue-owner"):
        webhooks_url = clients.queue_url(settings().webhooks_queue)
        dlq_url = clients.queue_url(settings().webhooks_dlq)
    events = ["job.completed", "job.failed"]
    with receiver([500, 200]) as listening:
        endpoint = api_call(harness, "POST", "/webhooks", {"url": listening.url, "events": events})
        other = api_call(harness, "POST", "/webhooks", {"url": listening.url, "events": events})
        on_other = f"/webhooks/{other['id']}"
        api_call(harness, "POST", f"{on_other}/rotate", resource="/webhooks/{endpoint_id}/rotate")
        api_call(harness, "DELETE", on_other, resource="/webhooks/{endpoint_id}")
        assert len(api_call(harness, "GET", "/webhooks")["webhooks"]) == 1
        on_endpoint = f"/webhooks/{endpoint['id']}/test"
        api_call(harness, "POST", on_endpoint, resource="/webhooks/{endpoint_id}/test")
        deliveries = harness.poller(policies.DELIVERIES, webhooks_url, batch_size=1)
        deliveries.drain()
        on_job = f"/jobs/{job_id}/deliveries"
        logged = api_call(harness, "GET", on_job, resource="/jobs/{job_id}/deliveries")
        assert logged["deliveries"][-1]["status"] == 200
        api_call(harness, "POST", f"{on_job}/replay", resource="/jobs/{job_id}/deliveries/replay")
        deliveries.drain()
    ids = [received.headers["webhook-id"] for received in listening.received]
    # Nine jobs' events and the test event; one attempt failed and was retried; a replay.
    assert (len(set(ids)), len(ids)) == (10, 12)
    dead = Delivery("acme", endpoint["id"], "evt_dead", "job.completed", job_id, 9, 0.0)
    with harness.acting_as("queue-owner"):
        for body in (dead.to_body(), "not a webhooks message"):
            clients.sqs().send_message(QueueUrl=dlq_url, MessageBody=body)
    with harness.faulty(Fault("PutItem", code="ThrottlingException", status=400, times=1)):
        harness.poller(policies.WEBHOOK_DEAD_LETTERS, dlq_url).drain()
    logged = api_call(harness, "GET", on_job, resource="/jobs/{job_id}/deliveries")
    assert logged["deliveries"][-1]["error"] == "dead_lettered"


def api_call(
    harness: Harness, method: str, path: str, body: Any = None, resource: str | None = None
) -> Any:
    parameters = dict(
        zip(re.findall(r"{(\w+)}", resource or ""), path.split("/")[2::2], strict=False)
    )
    answer = harness.invoke(
        policies.API, rest_event(method, path, resource or path, body, **parameters)
    )
    assert answer["statusCode"] < 300, answer["body"]
    return json.loads(answer["body"]) if answer["body"] else None


def test_each_function_runs_with_only_its_own_policy(aws: Queues, harness: Harness) -> None:
    with iam_enforced():
        statuses = run_every_path(harness, aws)
    assert list(statuses.values()) == ["COMPLETED"] * 3 + ["FAILED"] * 2 + [
        "COMPLETED",  # sent back by the dead-letter handler
        "COMPLETED",  # the lost upload, dispatched by the sweeper
        "FAILED",  # upload_expired
        "FAILED",  # processing_failed
    ]


def test_each_policy_grants_only_what_its_function_calls(
    aws: Queues, harness: Harness, outputs: dict[str, str]
) -> None:
    with iam_enforced():
        run_every_path(harness, aws)
    for function in policies.FUNCTIONS:
        seen = harness.calls[function] | PRESIGNED.get(function, set())
        assert code_actions(function, outputs) == seen, function
    pollers = (
        policies.WORKER,
        policies.DEAD_LETTERS,
        policies.DELIVERIES,
        policies.WEBHOOK_DEAD_LETTERS,
        policies.REPROCESS,
        policies.REPROCESS_DEAD_LETTERS,
        policies.BACKFILL_PAGES,
        policies.BACKFILL_DEAD_LETTERS,
    )
    for function in pollers:
        assert harness.calls[f"{function} (event source)"] <= set(policies.SQS_POLLER_ACTIONS)


def test_a_missing_grant_is_refused(aws: Queues, harness: Harness) -> None:
    """The enforcement is real: the dispatcher may not read sources."""
    with (
        iam_enforced(),
        harness.acting_as(policies.DISPATCHER),
        pytest.raises(Exception, match="AccessDenied"),
    ):
        clients.s3().get_object(Bucket=settings().uploads_bucket, Key="uploads/acme/x/source")


# --- static checks -----------------------------------------------------------------------------


def test_policies_are_scoped_to_the_stage_resources(outputs: dict[str, str]) -> None:
    jobs_table, webhooks_table = outputs["JobsTableArn"], outputs["WebhooksTableArn"]
    webhooks_queue = outputs["WebhooksQueueArn"]
    backfills_table, backfill_queue = outputs["BackfillsTableArn"], outputs["BackfillQueueArn"]
    expected_resources = {
        "dynamodb:PutItem": {jobs_table, webhooks_table, backfills_table},
        "dynamodb:GetItem": {
            jobs_table,
            outputs["ApiKeysTableArn"],
            webhooks_table,
            backfills_table,
        },
        "dynamodb:UpdateItem": {jobs_table, webhooks_table, backfills_table},
        "dynamodb:DeleteItem": {webhooks_table},
        "dynamodb:Query": {
            f"{jobs_table}/index/{policies.JOBS_INDEX}",
            f"{jobs_table}/index/{policies.STATUS_INDEX}",
            f"{jobs_table}/index/{policies.OPEN_JOBS_INDEX}",
            webhooks_table,
        },
        "kms:Encrypt": {outputs["WebhookSecretsKey"]},
        "kms:Decrypt": {outputs["WebhookSecretsKey"]},
        "s3:ListBucketVersions": {outputs["UploadsBucketArn"]},
        "sqs:GetQueueUrl": {
            outputs["JobsQueueArn"],
            outputs["JobsDlqArn"],
            webhooks_queue,
            outputs["WebhooksDlqArn"],
            outputs["ReprocessQueueArn"],
            outputs["ReprocessDlqArn"],
            backfill_queue,
            outputs["BackfillDlqArn"],
        },
        # Messages go to their queues only, never straight to a dead-letter queue.
        "sqs:SendMessage": {
            outputs["JobsQueueArn"],
            webhooks_queue,
            outputs["ReprocessQueueArn"],
            backfill_queue,
        },
        "s3:GetObject": {
            f"{outputs['UploadsBucketArn']}/uploads/*",
            f"{outputs['UploadsBucketArn']}/originals/*",
            f"{outputs['DerivedBucketArn']}/*",
        },
        "s3:DeleteObject": {f"{outputs['DerivedBucketArn']}/*"},
        "s3:PutObject": {
            f"{outputs['UploadsBucketArn']}/uploads/*",
            f"{outputs['UploadsBucketArn']}/originals/*",
            f"{outputs['DerivedBucketArn']}/*",
        },
        "s3:GetObjectVersion": {f"{outputs['UploadsBucketArn']}/uploads/*"},
        "s3:DeleteObjectVersion": {f"{outputs['UploadsBucketArn']}/uploads/*"},
    }
    granted: dict[str, set[str]] = defaultdict(set)
    for function in policies.FUNCTIONS:
        document = policies.policy_document(function, STAGE, outputs)
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in statement["Action"]), statement
            for action in statement["Action"]:
                granted[action].update(statement["Resource"])
            if statement["Resource"] == ["*"]:
                assert all(a.startswith("xray:") for a in statement["Action"]), statement
    for action, resources in expected_resources.items():
        assert granted[action] == resources, action


def test_every_granted_action_is_called_by_the_code(outputs: dict[str, str]) -> None:
    called = actions_called_in(REPO / "chalicelib")
    for function in policies.FUNCTIONS:
        assert code_actions(function, outputs) <= called, function


SDK_METHOD_ACTIONS = {
    ("dynamodb", "put_item"): "dynamodb:PutItem",
    ("kms", "encrypt"): "kms:Encrypt",
    ("kms", "decrypt"): "kms:Decrypt",
    ("dynamodb", "get_item"): "dynamodb:GetItem",
    ("dynamodb", "update_item"): "dynamodb:UpdateItem",
    ("dynamodb", "query"): "dynamodb:Query",
    ("s3", "generate_presigned_post"): "s3:PutObject",
    ("s3", "head_object"): "s3:GetObject",
    ("s3", "get_object"): "s3:GetObject",
    ("s3", "put_object"): "s3:PutObject",
    ("s3", "copy_object"): "s3:PutObject",
    ("s3", "delete_object"): "s3:DeleteObject",
    ("s3", "list_object_versions"): "s3:ListBucketVersions",
    ("sqs", "get_queue_url"): "sqs:GetQueueUrl",
    ("sqs", "send_message"): "sqs:SendMessage",
    ("sqs", "send_message_batch"): "sqs:SendMessage",
    ("sqs", "delete_message"): "sqs:DeleteMessage",
}


# What the code's transactions may write: their items' actions (the table's endpoints and
# their counter: put, update, delete).
TRANSACTION_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def actions_called_in(package: Path) -> set[str]:
    """IAM actions of every `clients.<service>().<method>(...)` (or, inside clients.py,
    `<service>().<method>(...)`) call in the package."""
    actions = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            service_method = _client_call(node)
            if service_method is None:
                continue
            if service_method == ("dynamodb", "transact_write_items"):
                actions |= TRANSACTION_ACTIONS
                continue
            known = set(SDK_METHOD_ACTIONS) | {
                ("s3", "generate_presigned_url"),
                ("dynamodb", "get_paginator"),
            }
            assert service_method in known, f"{path.name}: unmapped call {service_method}"
            actions.add(_action(*service_method, node))  # type: ignore[arg-type]
    return actions


def _client_call(node: ast.AST) -> tuple[str, str] | None:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    receiver = node.func.value
    if not isinstance(receiver, ast.Call):
        return None
    factory = receiver.func
    name = factory.attr if isinstance(factory, ast.Attribute) else getattr(factory, "id", None)
    if name not in ("s3", "sqs", "dynamodb", "kms"):
        return None
    return str(name), node.func.attr


def _action(service: str, method: str, call: ast.Call) -> str:
    if (service, method) == ("s3", "generate_presigned_url"):
        operation = call.args[0]
        assert isinstance(operation, ast.Constant), "presigned operation must be a literal"
        return {"get_object": "s3:GetObject"}[str(operation.value)]
    if (service, method) == ("dynamodb", "get_paginator"):
        operation = call.args[0]
        assert isinstance(operation, ast.Constant), "paginated operation must be a literal"
        return SDK_METHOD_ACTIONS[(service, str(operation.value))]
    action = SDK_METHOD_ACTIONS[(service, method)]
    if action not in ACTION_OF_VERSIONED_OPERATION:
        return action
    keywords = {keyword.arg for keyword in call.keywords}
    assert None not in keywords, f"{method}: **kwargs hide whether a version is named"
    return ACTION_OF_VERSIONED_OPERATION[action] if "VersionId" in keywords else action
