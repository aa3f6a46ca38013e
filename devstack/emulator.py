"""The embedded AWS emulator: moto in server mode (as devstack.emulator_server patches it),
in a process of its own, provisioned from infra/template.yaml like any stage."""

from __future__ import annotations

import functools
from typing import Any

from infra import stack

STAGE = "local"
REGION = "us-east-1"
# Where Chalice would point the uploads bucket's notification on AWS, the local stack
# sends S3's own notification: a queue the event runner reads (see runner.s3_events_process).
S3_EVENTS_QUEUE = f"media-pipeline-{STAGE}-s3-events"
VISIBILITY_PARAMETER = "QueueVisibilityTimeoutSeconds"
# The stack's own credentials. The emulator accepts any for signed calls, but checks a
# presigned POST's signature (devstack.s3_guard) against this secret, as S3 checks it
# against the signer's.
ACCESS_KEY_ID = "local"
SECRET_ACCESS_KEY = "local"  # noqa: S105 - not a secret: every local stack has it


def visibility_bounds() -> tuple[int, int]:
    """The least and greatest visibility timeout the template accepts, in seconds."""
    declared = stack.load_template()["Parameters"][VISIBILITY_PARAMETER]
    return int(declared["MinValue"]), int(declared["MaxValue"])


def aws_environment(endpoint: str) -> dict[str, str]:
    """What every AWS client of the local stack needs: the endpoint, its credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "S3_ADDRESSING_STYLE": "path",
    }


def add_version_ids_to_s3_events() -> None:
    """Patch moto (in the emulator's own process, before it serves): its S3 notifications
    (moto.s3.notifications._get_s3_event) leave out the object's `versionId`, which S3
    sends for every object of a versioned bucket and the dispatcher pins on the job."""
    from moto.s3 import notifications

    get_s3_event = notifications._get_s3_event

    @functools.wraps(get_s3_event)
    def with_version_id(event_name: str, bucket: Any, key: Any, *args: Any) -> Any:
        event = get_s3_event(event_name, bucket, key, *args)
        if bucket.is_versioned:
            for record in event["Records"]:
                record["s3"]["object"]["versionId"] = key.version_id
        return event

    notifications._get_s3_event = with_version_id  # type: ignore[assignment]


def provision(session: Any, queue_visibility_seconds: int | None = None) -> dict[str, str]:
    """Deploy the production template into the emulator and fill in what its
    CloudFormation ignores. Returns the stack's outputs.

    `queue_visibility_seconds` replaces the jobs queue's visibility timeout (the template's
    QueueVisibilityTimeoutSeconds, which the stack's outputs and so the app's environment
    repeat): how soon the batch of a worker that died is received again."""
    parameters = {}
    if queue_visibility_seconds is not None:
        parameters[VISIBILITY_PARAMETER] = str(queue_visibility_seconds)
    outputs = stack.deploy(session.client("cloudformation"), STAGE, parameters, poll_seconds=1)
    stack.apply_emulator_gaps(session, STAGE)
    return outputs


def route_s3_notifications(session: Any, bucket: str, notification: dict[str, Any]) -> str:
    """Send the uploads bucket's notifications (`notification`: events and key filter, as
    chalice deploy would configure them for the dispatcher) to a queue the runner reads.
    Returns the queue's URL."""
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName=S3_EVENTS_QUEUE)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    session.client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, **notification}]
        },
    )
    return str(queue_url)
