"""Least-privilege IAM policies, one per Lambda function, scoped to a stage's resources.

Chalice's automatic policy reads only app.py, so it misses everything chalicelib calls
(and presigning, which needs the signer to hold the permission it delegates). These are
written by hand instead: each statement lists its actions one by one, on the ARNs the
stage's stack created. The only wildcard resources are the ones AWS requires (X-Ray).

Each action is there for one of two reasons, kept apart so tests can prove the policies
are least: a call the function's code makes (`code`), or a call AWS makes with the
function's role on its behalf (`aws`): the SQS event source polling the queue, the
Lambda runtime writing logs, the X-Ray daemon sending traces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

APP_NAME = "media-pipeline"
JOBS_INDEX = "tenant-createdAt-index"
STATUS_INDEX = "tenant-status-index"
OPEN_JOBS_INDEX = "open-jobs-index"

# The Chalice names of the Lambda functions app.py declares ("api_handler" is the REST API).
API = "api_handler"
AUTHORIZER = "key_authorizer"
DISPATCHER = "dispatch_upload"
WORKER = "make_thumbnails"
DEAD_LETTERS = "fail_dead_letters"
SWEEPER = "sweep_jobs"
DELIVERIES = "deliver_webhooks"
WEBHOOK_DEAD_LETTERS = "fail_webhook_dead_letters"
REPROCESS = "reprocess_outputs"
REPROCESS_DEAD_LETTERS = "fail_reprocess_dead_letters"
BACKFILL_PAGES = "walk_backfill_pages"
BACKFILL_DEAD_LETTERS = "fail_backfill_dead_letters"
FUNCTIONS = (
    API,
    AUTHORIZER,
    DISPATCHER,
    WORKER,
    DEAD_LETTERS,
    SWEEPER,
    DELIVERIES,
    WEBHOOK_DEAD_LETTERS,
    REPROCESS,
    REPROCESS_DEAD_LETTERS,
    BACKFILL_PAGES,
    BACKFILL_DEAD_LETTERS,
)

# What Lambda's SQS event source calls with the function's role.
SQS_POLLER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
SEND_ACTIONS = ("sqs:GetQueueUrl", "sqs:SendMessage")
DELETE_ACTIONS = ("sqs:GetQueueUrl", "sqs:DeleteMessage")


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    reason: Literal["code", "aws"]

    def to_json(self) -> dict[str, Any]:
        return {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": list(self.actions),
            "Resource": list(self.resources),
        }


@dataclass(frozen=True)
class StageArns:
    region: str
    account: str
    uploads_bucket: str
    derived_bucket: str
    jobs_table: str
    api_keys_table: str
    jobs_queue: str
    jobs_dlq: str
    webhooks_table: str
    webhooks_queue: str
    webhooks_dlq: str
    webhook_secrets_key: str
    reprocess_queue: str
    reprocess_dlq: str
    backfills_table: str
    backfill_queue: str
    backfill_dlq: str

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, str]) -> StageArns:
        queue_arn = outputs["JobsQueueArn"]
        _, _, _, region, account, _ = queue_arn.split(":")
        return cls(
            region=region,
            account=account,
            uploads_bucket=outputs["UploadsBucketArn"],
            derived_bucket=outputs["DerivedBucketArn"],
            jobs_table=outputs["JobsTableArn"],
            api_keys_table=outputs["ApiKeysTableArn"],
            jobs_queue=queue_arn,
            jobs_dlq=outputs["JobsDlqArn"],
            webhooks_table=outputs["WebhooksTableArn"],
            webhooks_queue=outputs["WebhooksQueueArn"],
            webhooks_dlq=outputs["WebhooksDlqArn"],
            webhook_secrets_key=outputs["WebhookSecretsKey"],
            reprocess_queue=outputs["ReprocessQueueArn"],
            reprocess_dlq=outputs["ReprocessDlqArn"],
            backfills_table=outputs["BackfillsTableArn"],
            backfill_queue=outputs["BackfillQueueArn"],
            backfill_dlq=outputs["BackfillDlqArn"],
        )


def function_name(stage: str, function: str) -> str:
    """The deployed Lambda's name, as Chalice makes it."""
    if function == API:
        return f"{APP_NAME}-{stage}"
    return f"{APP_NAME}-{stage}-{function}"


def statements(function: str, stage: str, arns: StageArns) -> tuple[Statement, ...]:
    sources = f"{arns.uploads_bucket}/uploads/*"
    originals = f"{arns.uploads_bucket}/originals/*"
    outputs = f"{arns.derived_bucket}/*"
    jobs_index = f"{arns.jobs_table}/index/"
    # A job's moves are conditional UpdateItems (each returns the job, or its state when
    # refused); a second upload to a job already dispatched is deleted, by its version.
    update_jobs = Statement("JobRecords", ("dynamodb:UpdateItem",), (arns.jobs_table,), "code")
    reject_other_uploads = Statement(
        "RejectOtherUploads", ("s3:DeleteObjectVersion",), (sources,), "code"
    )
    send_jobs = Statement("SendJobs", SEND_ACTIONS, (arns.jobs_queue,), "code")
    # A job's end hands its event to the webhooks queue (chalicelib/job_events.py).
    send_job_events = Statement("SendJobEvents", SEND_ACTIONS, (arns.webhooks_queue,), "code")
    webhooks = (arns.webhooks_table,)
    by_function: dict[str, tuple[Statement, ...]] = {
        API: (
            Statement(
                "JobRecords", ("dynamodb:GetItem", "dynamodb:PutItem"), (arns.jobs_table,), "code"
            ),
            # Listings, and counting a tenant's PENDING jobs (MAX_PENDING_UPLOADS).
            Statement(
                "JobListing",
                ("dynamodb:Query",),
                (jobs_index + JOBS_INDEX, jobs_index + STATUS_INDEX),
                "code",
            ),
            # Presigned URLs carry the signer's authority: the POST needs PutObject on
            # sources, the output links GetObject on outputs.
            Statement("PresignSourceUploads", ("s3:PutObject",), (sources,), "code"),
            Statement("PresignOutputDownloads", ("s3:GetObject",), (outputs,), "code"),
            # Endpoints (created and deleted with their tenant's counter in one
            # transaction, rotated), and the delivery log's reads.
            Statement(
                "WebhookEndpoints",
                (
                    "dynamodb:GetItem",
                    "dynamodb:Query",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                ),
                webhooks,
                "code",
            ),
            Statement(
                "EncryptWebhookSecrets", ("kms:Encrypt",), (arns.webhook_secrets_key,), "code"
            ),
            # Test events and replays.
            Statement("SendDeliveries", SEND_ACTIONS, (arns.webhooks_queue,), "code"),
            # Reprocess requests: the job marked, the message sent.
            Statement("MarkReprocessing", ("dynamodb:UpdateItem",), (arns.jobs_table,), "code"),
            Statement("SendReprocess", SEND_ACTIONS, (arns.reprocess_queue,), "code"),
            # Backfills: started (their first page sent), read and cancelled.
            Statement(
                "Backfills",
                ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                (arns.backfills_table,),
                "code",
            ),
            Statement("StartBackfills", SEND_ACTIONS, (arns.backfill_queue,), "code"),
        ),
        AUTHORIZER: (
            Statement("ApiKeyLookup", ("dynamodb:GetItem",), (arns.api_keys_table,), "code"),
        ),
        DISPATCHER: (update_jobs, reject_other_uploads, send_jobs),
        WORKER: (
            update_jobs,
            # The pinned version (GetObjectVersion), or the current object for an event from
            # a bucket without versioning (GetObject); a finished job's version is deleted.
            Statement("ReadSources", ("s3:GetObject", "s3:GetObjectVersion"), (sources,), "code"),
            Statement("DeleteFinishedSources", ("s3:DeleteObjectVersion",), (sources,), "code"),
            Statement("WriteOutputs", ("s3:PutObject",), (outputs,), "code"),
            # The pinned version copied to the job's original (CopyObject: GetObjectVersion
            # on the source, above, and PutObject on the copy).
            Statement("KeepOriginals", ("s3:PutObject",), (originals,), "code"),
            send_job_events,
            Statement("DeleteFinishedJobs", DELETE_ACTIONS, (arns.jobs_queue,), "code"),
            Statement("PollJobs", SQS_POLLER_ACTIONS, (arns.jobs_queue,), "aws"),
        ),
        DEAD_LETTERS: (
            # One conditional write fails a job claimed maxReceiveCount times; one claimed
            # fewer times was only in batches that kept failing, and is sent back instead.
            Statement("FailJobs", ("dynamodb:UpdateItem",), (arns.jobs_table,), "code"),
            Statement("SendJobsBack", SEND_ACTIONS, (arns.jobs_queue,), "code"),
            send_job_events,
            Statement("DeleteHandledLetters", DELETE_ACTIONS, (arns.jobs_dlq,), "code"),
            Statement("PollDeadLetters", SQS_POLLER_ACTIONS, (arns.jobs_dlq,), "aws"),
        ),
        SWEEPER: (
            Statement("FindOpenJobs", ("dynamodb:Query",), (jobs_index + OPEN_JOBS_INDEX,), "code"),
            # Ending a job, or dispatching a lost upload.
            update_jobs,
            # Whether an overdue PENDING job's source was uploaded (its event lost).
            Statement(
                "FindLostUploads", ("s3:ListBucketVersions",), (arns.uploads_bucket,), "code"
            ),
            reject_other_uploads,
            send_jobs,
            # An ended job whose event was not handed over: read, then its event sent.
            Statement("ReadEndedJobs", ("dynamodb:GetItem",), (arns.jobs_table,), "code"),
            send_job_events,
        ),
        DELIVERIES: (
            Statement(
                "DeliveryLog",
                ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                webhooks,
                "code",
            ),
            Statement(
                "DecryptWebhookSecrets", ("kms:Decrypt",), (arns.webhook_secrets_key,), "code"
            ),
            # The event's data: the job as GET /jobs/{id} shows it.
            Statement("ReadJobs", ("dynamodb:GetItem",), (arns.jobs_table,), "code"),
            # Retries, and the hops of a long wait. (Batches of one message: no record has
            # a finished sibling to delete, so the function deletes nothing itself.)
            Statement("SendDeliveries", SEND_ACTIONS, (arns.webhooks_queue,), "code"),
            Statement("PollDeliveries", SQS_POLLER_ACTIONS, (arns.webhooks_queue,), "aws"),
        ),
        REPROCESS: (
            Statement(
                "ReprocessJobs",
                ("dynamodb:GetItem", "dynamodb:UpdateItem"),
                (arns.jobs_table,),
                "code",
            ),
            Statement("ReadOriginals", ("s3:GetObject",), (originals,), "code"),
            # New outputs written, then the superseded ones deleted.
            Statement("ReplaceOutputs", ("s3:PutObject", "s3:DeleteObject"), (outputs,), "code"),
            send_job_events,
            # A backfill's job: is the backfill cancelled; its outcome counted once (a marker
            # and the count in one transaction), and the backfill completed by the last.
            Statement(
                "CountBackfillOutcomes",
                ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"),
                (arns.backfills_table,),
                "code",
            ),
            Statement("DeleteFinishedReprocess", DELETE_ACTIONS, (arns.reprocess_queue,), "code"),
            Statement("PollReprocess", SQS_POLLER_ACTIONS, (arns.reprocess_queue,), "aws"),
        ),
        REPROCESS_DEAD_LETTERS: (
            Statement("EndReprocess", ("dynamodb:UpdateItem",), (arns.jobs_table,), "code"),
            Statement("DeleteHandledLetters", DELETE_ACTIONS, (arns.reprocess_dlq,), "code"),
            Statement("PollDeadLetters", SQS_POLLER_ACTIONS, (arns.reprocess_dlq,), "aws"),
        ),
        WEBHOOK_DEAD_LETTERS: (
            Statement(
                "GiveUpDeliveries", ("dynamodb:PutItem", "dynamodb:UpdateItem"), webhooks, "code"
            ),
            Statement("DeleteHandledLetters", DELETE_ACTIONS, (arns.webhooks_dlq,), "code"),
            Statement("PollDeadLetters", SQS_POLLER_ACTIONS, (arns.webhooks_dlq,), "aws"),
        ),
        BACKFILL_PAGES: (
            # A page's plan and its counts: conditional writes on the backfill's record.
            Statement(
                "BackfillPages",
                ("dynamodb:GetItem", "dynamodb:UpdateItem"),
                (arns.backfills_table,),
                "code",
            ),
            Statement("ReadTenantJobs", ("dynamodb:Query",), (jobs_index + JOBS_INDEX,), "code"),
            Statement("SendReprocessing", SEND_ACTIONS, (arns.reprocess_queue,), "code"),
            # The next page. (Batches of one message: the function deletes nothing itself.)
            Statement("SendNextPages", SEND_ACTIONS, (arns.backfill_queue,), "code"),
            Statement("PollPages", SQS_POLLER_ACTIONS, (arns.backfill_queue,), "aws"),
        ),
        BACKFILL_DEAD_LETTERS: (
            Statement("FailBackfills", ("dynamodb:UpdateItem",), (arns.backfills_table,), "code"),
            Statement("DeleteHandledLetters", DELETE_ACTIONS, (arns.backfill_dlq,), "code"),
            Statement("PollDeadLetters", SQS_POLLER_ACTIONS, (arns.backfill_dlq,), "aws"),
        ),
    }
    return by_function[function] + _runtime_statements(function, stage, arns)


def _runtime_statements(function: str, stage: str, arns: StageArns) -> tuple[Statement, ...]:
    # Chalice creates each function's log group (with its retention) at deploy time, so the
    # function only writes streams into its own group.
    log_group = (
        f"arn:aws:logs:{arns.region}:{arns.account}:log-group:"
        f"/aws/lambda/{function_name(stage, function)}"
    )
    return (
        Statement(
            "Logs", ("logs:CreateLogStream", "logs:PutLogEvents"), (f"{log_group}:*",), "aws"
        ),
        # X-Ray's trace APIs take no resource: AWS requires "*" here.
        Statement("Traces", ("xray:PutTraceSegments", "xray:PutTelemetryRecords"), ("*",), "aws"),
    )


def policy_document(function: str, stage: str, outputs: Mapping[str, str]) -> dict[str, Any]:
    arns = StageArns.from_outputs(outputs)
    return {
        "Version": "2012-10-17",
        "Statement": [statement.to_json() for statement in statements(function, stage, arns)],
    }


def policy_file_name(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"
