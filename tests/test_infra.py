"""The data plane's CloudFormation template (infra/template.yaml) and infra/stack.py.

The template is linted, deployed into moto's CloudFormation, and what the app relies on is
read back through the AWS APIs. Where moto accepts a property but does not apply it, the
property is checked twice instead: in the template itself, and through the API after
`apply_emulator_gaps` filled it in (the tests also prove moto still ignores it).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError
from chalice.config import Config
from moto import mock_aws

from chalicelib.jobs import OPEN_JOBS_INDEX, OPEN_SHARD, STATUS_INDEX, STATUS_SINCE, TENANT_INDEX
from chalicelib.observability import APP_NAME, METRICS_NAMESPACE
from infra import alarms, policies, stack
from tests.resources import MOTO_SKIPPED_TYPES, REGION, STAGE, moto_skips_quietly

REPO = Path(__file__).resolve().parents[1]
CHALICE_CONFIG = json.loads((REPO / ".chalice" / "config.json").read_text())
TEMPLATE = stack.load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ACCOUNT = "123456789012"  # moto's
MAX_RECEIVE_COUNT = 3  # README: "dead-lettered after the queue's maxReceiveCount (3)"
# Every output of the template: the app's environment, and what else deploys and tests read.
OUTPUTS = (
    *stack.ENVIRONMENT_OUTPUTS.values(),
    "JobsQueueUrl",
    "JobsDlqUrl",
    "UploadsBucketArn",
    "DerivedBucketArn",
    "JobsTableArn",
    "ApiKeysTableArn",
    "WebhooksTableArn",
    "WebhooksQueueArn",
    "WebhooksDlqArn",
    "ReprocessQueueUrl",
    "ReprocessQueueArn",
    "ReprocessDlqUrl",
    "ReprocessDlqArn",
    "BackfillsTableArn",
    "BackfillQueueArn",
    "BackfillDlqArn",
    "JobsQueueArn",
    "JobsDlqArn",
    "AlarmTopicArn",
    # The API's access logs: `make deploy` points the API stage's accessLogSettings there.
    "ApiAccessLogGroup",
    "ApiAccessLogGroupArn",
)


def lambda_timeout(function: str) -> int:
    return int(CHALICE_CONFIG["lambda_functions"][function]["lambda_timeout"])


def properties(logical_id: str) -> dict[str, Any]:
    props: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return props


def resources_of_type(resource_type: str) -> dict[str, Any]:
    return {name: body for name, body in RESOURCES.items() if body["Type"] == resource_type}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@pytest.fixture
def cloudformation() -> Iterator[Any]:
    """moto, empty: each test deploys what it needs."""
    with mock_aws():
        yield boto3.client("cloudformation", region_name=REGION)


def deploy(cloudformation: Any, **parameters: str) -> dict[str, str]:
    with moto_skips_quietly():
        return stack.deploy(cloudformation, STAGE, parameters, poll_seconds=1)


def apply_gaps() -> list[str]:
    with moto_skips_quietly():
        return stack.apply_emulator_gaps(boto3.session.Session(region_name=REGION), STAGE)


def s3() -> Any:
    return boto3.client("s3", region_name=REGION)


def dynamodb() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def sqs() -> Any:
    return boto3.client("sqs", region_name=REGION)


# --- the template itself ------------------------------------------------------------------


def test_cfn_lint_is_clean() -> None:
    # Informational findings included: none is tolerated without a reasoned ignore.
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(stack.TEMPLATE_PATH)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_outputs_are_the_ones_the_deploy_script_maps() -> None:
    assert set(TEMPLATE["Outputs"]) == set(OUTPUTS)
    assert set(stack.ENVIRONMENT_OUTPUTS.values()) <= set(OUTPUTS)


def test_the_environment_variables_are_the_ones_the_app_reads() -> None:
    source = (REPO / "chalicelib" / "config.py").read_text() + (REPO / "app.py").read_text()
    for variable in stack.ENVIRONMENT_OUTPUTS:
        assert f'"{variable}"' in source, variable


def test_nothing_in_the_template_touches_the_uploads_bucket_notification() -> None:
    # `chalice deploy` writes the uploads bucket's notification for the dispatcher; a
    # template that set one (or ran code that could) would fight it on every deploy.
    def keys(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for key, inner in value.items():
                yield key
                yield from keys(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from keys(inner)

    assert "NotificationConfiguration" not in set(keys(RESOURCES))
    for body in RESOURCES.values():
        assert not body["Type"].startswith("Custom::")
        assert body["Type"] not in ("AWS::CloudFormation::CustomResource", "AWS::Lambda::Function")


def test_stage_names_keep_every_bucket_name_within_s3s_limit() -> None:
    stage = TEMPLATE["Parameters"]["Stage"]
    pattern = re.compile(stage["AllowedPattern"])
    longest_stage = "s" + "-" * 11
    assert pattern.match(longest_stage)
    assert not pattern.match(longest_stage + "x")
    assert pattern.match(stage["Default"])
    longest_region = "ap-southeast-2"
    for bucket in ("UploadsBucket", "DerivedBucket"):
        name = properties(bucket)["BucketName"]["Fn::Sub"]
        resolved = (
            name.replace("${Stage}", longest_stage)
            .replace("${AWS::AccountId}", ACCOUNT)
            .replace("${AWS::Region}", longest_region)
        )
        assert len(resolved) <= 63, resolved


def test_the_visibility_timeout_is_six_times_the_workers_lambda_timeout() -> None:
    # AWS's advice for an SQS event source: at least 6x the function's timeout.
    worker = lambda_timeout("make_thumbnails")
    assert stack.worker_timeout_seconds("dev") == worker
    assert stack.default_parameters("dev")["QueueVisibilityTimeoutSeconds"] == str(6 * worker)
    # A deploy without infra/stack.py (the console, the CLI) gets it right too.
    default = TEMPLATE["Parameters"]["QueueVisibilityTimeoutSeconds"]["Default"]
    assert int(default) >= 6 * worker
    assert properties("JobsQueue")["VisibilityTimeout"] == {"Ref": "QueueVisibilityTimeoutSeconds"}
    dead_letters = lambda_timeout("fail_dead_letters")
    assert int(properties("JobsDlq")["VisibilityTimeout"]) >= 6 * dead_letters


# Prints {Chalice function: deployed Lambda name} for every function `chalice deploy`
# creates for the stage (argv[1]), read from Chalice's own application graph.
CHALICE_FUNCTIONS = """
import json, sys
from chalice.cli.factory import CLIFactory
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder

stage = sys.argv[1]
config = CLIFactory(project_dir=".").create_config_obj(chalice_stage_name=stage)
application = ApplicationGraphBuilder().build(config, stage)
print(json.dumps({
    resource.resource_name: resource.function_name
    for resource in DependencyBuilder().build_dependencies(application)
    if isinstance(resource, models.LambdaFunction)
}))
"""


@cache
def chalice_functions(stage: str) -> dict[str, str]:
    """{function: deployed name} as `chalice deploy` would create them for the stage, from
    Chalice's own application graph of app.py and .chalice/config.json. In a process of its
    own: importing app.py fixes the event sources' names from the environment of whichever
    test imports it first."""
    done = subprocess.run(
        [sys.executable, "-c", CHALICE_FUNCTIONS, stage],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    functions: dict[str, str] = json.loads(done.stdout)
    return functions


def lambda_errors_alarms() -> dict[str, dict[str, Any]]:
    return {
        logical_id: body["Properties"]
        for logical_id, body in resources_of_type("AWS::CloudWatch::Alarm").items()
        if body["Properties"]["Namespace"] == "AWS/Lambda"
        and body["Properties"]["MetricName"] == "Errors"
    }


def substitute_stage(value: Any, stage: str) -> str:
    """A `!Sub` of the Stage parameter alone, resolved."""
    text = value["Fn::Sub"]
    assert isinstance(text, str)
    assert set(re.findall(r"\$\{([^}]+)\}", text)) <= {"Stage"}, text
    return text.replace("${Stage}", stage)


def test_chalice_deploys_the_functions_the_project_declares() -> None:
    # The app graph is the source of truth for the alarms below; it must see every function.
    functions = chalice_functions("dev")
    assert set(functions) == set(CHALICE_CONFIG["lambda_functions"])
    assert set(functions) == set(policies.FUNCTIONS)
    # Chalice names a stage's function <app>-<stage>-<function>, but the REST API's <app>-<stage>.
    assert functions["api_handler"] == "media-pipeline-dev"
    assert functions["make_thumbnails"] == "media-pipeline-dev-make_thumbnails"


@pytest.mark.parametrize("stage", ["dev", STAGE])
def test_every_function_chalice_deploys_has_an_errors_alarm(stage: str) -> None:
    watched = {
        substitute_stage(dimension["Value"], stage): logical_id
        for logical_id, alarm in lambda_errors_alarms().items()
        for dimension in alarm["Dimensions"]
        if dimension["Name"] == "FunctionName"
    }
    deployed = chalice_functions(stage)
    missing = {function for function, name in deployed.items() if name not in watched}
    assert not missing, f"functions without an errors alarm: {sorted(missing)}"
    assert set(watched) == set(deployed.values()), "an alarm watches no deployed function"


def test_the_errors_alarms_are_generated_and_uniform() -> None:
    # One per function, rendered by infra/alarms.py: the template's block is its output.
    assert stack.template_body().count(alarms.BEGIN) == 1
    assert alarms.with_block(stack.template_body()) == stack.template_body(), (
        "stale errors alarms: run python -m infra.alarms"
    )
    assert alarms.main(["--check"]) == 0
    by_id = lambda_errors_alarms()
    assert set(by_id) == {alarm.logical_id for alarm in alarms.ERRORS_ALARMS}
    names = set()
    for alarm in alarms.ERRORS_ALARMS:
        props = by_id[alarm.logical_id]
        name = substitute_stage(props["AlarmName"], "dev")
        assert re.fullmatch(r"media-pipeline-dev-[a-z-]+-errors", name), name
        names.add(name)
        (dimension,) = props["Dimensions"]
        assert (
            substitute_stage(dimension["Value"], "dev") == chalice_functions("dev")[alarm.function]
        )
        assert props["Statistic"] == "Sum"
        assert int(props["Threshold"]) == 0
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}]
        # Why missing data is healthy is said where the alarm is read.
        assert "notBreaching" in props["AlarmDescription"]
        assert alarm.function in props["AlarmDescription"]
    assert len(names) == len(alarms.ERRORS_ALARMS)
    # The names that existed before every function had one still work.
    assert {"media-pipeline-dev-worker-errors", "media-pipeline-dev-sweeper-errors"} <= names


def test_every_alarm_notifies_the_topic_and_ignores_missing_data() -> None:
    by_id = {
        logical_id: body["Properties"]
        for logical_id, body in resources_of_type("AWS::CloudWatch::Alarm").items()
    }
    errors = {alarm.logical_id: "Errors" for alarm in alarms.ERRORS_ALARMS}
    assert {logical_id: alarm["MetricName"] for logical_id, alarm in by_id.items()} == {
        "JobsDlqNotEmptyAlarm": "ApproximateNumberOfMessagesVisible",
        "WebhooksDlqNotEmptyAlarm": "ApproximateNumberOfMessagesVisible",
        "ReprocessDlqNotEmptyAlarm": "ApproximateNumberOfMessagesVisible",
        "BackfillDlqNotEmptyAlarm": "ApproximateNumberOfMessagesVisible",
        "JobsQueueOldestMessageAlarm": "ApproximateAgeOfOldestMessage",
        "WorkerThrottlesAlarm": "Throttles",
        "Api5xxAlarm": "5XXError",
        **errors,
    }
    for alarm in by_id.values():
        assert alarm["TreatMissingData"] == "notBreaching", alarm["AlarmName"]
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm["AlarmName"]
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", alarm["AlarmName"]
    sweeper = by_id["SweeperErrorsAlarm"]
    assert sweeper["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Fn::Sub": "media-pipeline-${Stage}-sweep_jobs"}}
    ]
    assert int(sweeper["Threshold"]) == 0
    alarms_by_metric = {
        alarm["MetricName"]: alarm
        for logical_id, alarm in by_id.items()
        if logical_id not in errors
    }
    for logical_id, queue in (
        ("JobsDlqNotEmptyAlarm", "JobsDlq"),
        ("WebhooksDlqNotEmptyAlarm", "WebhooksDlq"),
        ("ReprocessDlqNotEmptyAlarm", "ReprocessDlq"),
        ("BackfillDlqNotEmptyAlarm", "BackfillDlq"),
    ):
        assert by_id[logical_id]["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}
        ]
    age = alarms_by_metric["ApproximateAgeOfOldestMessage"]
    assert age["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["JobsQueue", "QueueName"]}
    for metric in ("ApproximateNumberOfMessagesVisible", "Throttles", "5XXError"):
        assert int(alarms_by_metric[metric]["Threshold"]) == 0, metric
    # One batch failing transiently is retried by itself: only failures in 3 of 5 minutes
    # (a bug, or AWS failing for minutes) page anyone.
    worker = by_id["WorkerErrorsAlarm"]
    assert (int(worker["DatapointsToAlarm"]), int(worker["EvaluationPeriods"])) == (3, 5)
    assert int(worker["Period"]) == 60
    api = [
        {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        for alarm in resources_of_type("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"]["Namespace"] == "AWS/ApiGateway"
    ]
    config = Config(chalice_stage="dev", config_from_disk=CHALICE_CONFIG)
    assert config.app_name == APP_NAME
    assert api == [{"ApiName": config.app_name, "Stage": config.api_gateway_stage}]


def test_the_errors_alarms_resolve_against_the_deployed_stack(cloudformation: Any) -> None:
    # moto's CloudFormation skips alarms: their values are resolved as CloudFormation would
    # for the deployed stack, and must name its topic and the functions Chalice deploys.
    outputs = deploy(cloudformation)
    with moto_skips_quietly():
        resolver = stack.Resolver.for_stack(cloudformation, STAGE)
    deployed = chalice_functions(STAGE)
    for alarm in alarms.ERRORS_ALARMS:
        props = resolver.resolve(RESOURCES[alarm.logical_id]["Properties"])
        assert props["AlarmName"] == f"media-pipeline-{STAGE}-{alarm.role}-errors"
        assert props["Dimensions"] == [{"Name": "FunctionName", "Value": deployed[alarm.function]}]
        assert props["AlarmActions"] == [outputs["AlarmTopicArn"]]
        assert props["OKActions"] == [outputs["AlarmTopicArn"]]


def test_the_alarm_topic_is_encrypted_with_a_key_cloudwatch_may_use() -> None:
    # The AWS managed key alias/aws/sns cannot grant CloudWatch: alarms could not publish.
    topic = properties("AlarmTopic")
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    statements = properties("AlarmTopicKey")["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch[0]["Action"])


# What moto ignores on stack creation is checked (a) here, in the template, ...


def test_the_template_blocks_public_access_and_enforces_bucket_ownership() -> None:
    for bucket in ("UploadsBucket", "DerivedBucket"):
        block = properties(bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        rules = properties(bucket)["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        # moto skips bucket policies altogether: TLS only, checked here alone.
        policy = properties(f"{bucket}Policy")
        assert policy["Bucket"] == {"Ref": bucket}
        (statement,) = policy["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_template_lets_browsers_post_uploads_and_expires_them() -> None:
    (cors,) = properties("UploadsBucket")["CorsConfiguration"]["CorsRules"]
    assert "POST" in cors["AllowedMethods"]
    assert cors["AllowedOrigins"] == {"Ref": "UploadOrigins"}
    listed = properties("UploadsBucket")["LifecycleConfiguration"]["Rules"]
    rules = {rule["Id"]: rule for rule in listed if "Id" in rule}
    expire = rules["expire-stale-uploads"]
    assert expire["Prefix"] == "uploads/"
    assert expire["ExpirationInDays"] == {"Ref": "StaleUploadDays"}
    assert expire["Status"] == "Enabled"
    # Versioned: an expired upload leaves a noncurrent version and a delete marker behind,
    # and both must go too.
    assert properties("UploadsBucket")["VersioningConfiguration"] == {"Status": "Enabled"}
    assert expire["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    markers = rules["remove-expired-delete-markers"]
    assert (markers["Prefix"], markers["Status"]) == ("uploads/", "Enabled")
    assert markers["ExpiredObjectDeleteMarker"] is True
    assert "VersioningConfiguration" not in properties("DerivedBucket")
    abort = rules["abort-incomplete-multipart-uploads"]
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert "CorsConfiguration" not in properties("DerivedBucket")


def test_the_template_gives_the_tables_ttl_recovery_and_encryption() -> None:
    jobs = properties("JobsTable")
    assert jobs["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    for table in ("JobsTable", "ApiKeysTable"):
        assert properties(table)["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }
        # moto reads SSESpecification in the API's spelling ("Enabled") only, and cannot
        # change it later: encryption is checked here alone.
        assert properties(table)["SSESpecification"] == {"SSEEnabled": True}


def test_the_template_lets_only_the_jobs_queue_dead_letter_into_the_dlq() -> None:
    # moto's queues have no RedriveAllowPolicy: checked here, resolved as AWS would.
    policy = properties("JobsDlq")["RedriveAllowPolicy"]
    assert policy["redrivePermission"] == "byQueue"
    (source,) = policy["sourceQueueArns"]
    resolved = (
        source["Fn::Sub"]
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT)
        .replace("${Stage}", STAGE)
    )
    assert resolved == f"arn:aws:sqs:{REGION}:{ACCOUNT}:" + properties("JobsQueue")["QueueName"][
        "Fn::Sub"
    ].replace("${Stage}", STAGE)


# --- deployed into moto ---------------------------------------------------------------------


def test_the_template_deploys_and_outputs_everything(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    status = cloudformation.describe_stacks(StackName="media-pipeline-test")["Stacks"][0]
    assert status["StackStatus"] == "CREATE_COMPLETE"
    assert set(outputs) == set(OUTPUTS)
    suffix = f"{ACCOUNT}-{REGION}"
    environment = stack.environment(outputs)
    key_arn = environment.pop("WEBHOOK_SECRETS_KEY")
    assert key_arn.startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:key/")
    assert environment == {
        "UPLOADS_BUCKET": f"media-pipeline-test-uploads-{suffix}",
        "DERIVED_BUCKET": f"media-pipeline-test-derived-{suffix}",
        "JOBS_TABLE": "media-pipeline-test-jobs",
        "API_KEYS_TABLE": "media-pipeline-test-api-keys",
        "JOBS_QUEUE": "media-pipeline-test-jobs",
        "JOBS_DLQ": "media-pipeline-test-jobs-dlq",
        "BACKFILLS_TABLE": "media-pipeline-test-backfills",
        "BACKFILL_QUEUE": "media-pipeline-test-backfill",
        "BACKFILL_DLQ": "media-pipeline-test-backfill-dlq",
        "WEBHOOKS_TABLE": "media-pipeline-test-webhooks",
        "WEBHOOKS_QUEUE": "media-pipeline-test-webhooks",
        "WEBHOOKS_DLQ": "media-pipeline-test-webhooks-dlq",
        "JOB_TTL_DAYS": "30",
        "ORIGINALS_RETENTION_DAYS": "30",
        "REPROCESS_QUEUE": "media-pipeline-test-reprocess",
        "REPROCESS_DLQ": "media-pipeline-test-reprocess-dlq",
        "JOBS_QUEUE_RETENTION_SECONDS": str(4 * 24 * 3600),
        "JOBS_QUEUE_VISIBILITY_TIMEOUT_SECONDS": stack.default_parameters(STAGE)[
            "QueueVisibilityTimeoutSeconds"
        ],
    }
    assert outputs["JobsQueueUrl"].endswith("/media-pipeline-test-jobs")
    assert outputs["JobsDlqArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:media-pipeline-test-jobs-dlq"
    assert outputs["JobsTableArn"].endswith(":table/media-pipeline-test-jobs")
    assert outputs["UploadsBucketArn"] == f"arn:aws:s3:::media-pipeline-test-uploads-{suffix}"
    assert outputs["AlarmTopicArn"].endswith(":media-pipeline-test-alarms")
    assert outputs["ApiAccessLogGroup"] == "media-pipeline-test-api-access"
    assert outputs["ApiAccessLogGroupArn"].endswith(":log-group:media-pipeline-test-api-access")


def test_moto_skips_only_the_alarms_and_bucket_policies(cloudformation: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack.deploy(cloudformation, STAGE, poll_seconds=1)
    skipped = {
        match.group(1)
        for warning in caught
        if (
            match := re.search(r"Tried to parse (\S+) but it's not supported", str(warning.message))
        )
    }
    assert skipped == set(MOTO_SKIPPED_TYPES)


def test_the_queues_redrive_to_the_dlq_after_three_receives(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    jobs = sqs().get_queue_attributes(QueueUrl=outputs["JobsQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(jobs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == outputs["JobsDlqArn"]
    assert int(redrive["maxReceiveCount"]) == MAX_RECEIVE_COUNT
    assert int(jobs["VisibilityTimeout"]) >= 6 * lambda_timeout("make_thumbnails")
    assert jobs["SqsManagedSseEnabled"] == "true"
    dlq = sqs().get_queue_attributes(QueueUrl=outputs["JobsDlqUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600
    assert int(dlq["VisibilityTimeout"]) >= 6 * lambda_timeout("fail_dead_letters")
    assert dlq["SqsManagedSseEnabled"] == "true"


def test_the_tables_have_the_keys_and_index_the_app_queries(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    jobs = dynamodb().describe_table(TableName=outputs["JobsTable"])["Table"]
    assert jobs["KeySchema"] == [{"AttributeName": "jobId", "KeyType": "HASH"}]
    types = {d["AttributeName"]: d["AttributeType"] for d in jobs["AttributeDefinitions"]}
    assert types == {
        "jobId": "S",
        "tenant": "S",
        "createdAt": "S",
        OPEN_SHARD: "S",
        "updatedAt": "S",
        STATUS_SINCE: "S",
    }
    assert jobs["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {index["IndexName"]: index for index in jobs["GlobalSecondaryIndexes"]}
    assert set(indexes) == {TENANT_INDEX, OPEN_JOBS_INDEX, STATUS_INDEX}
    tenant = indexes[TENANT_INDEX]
    assert tenant["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": "createdAt", "KeyType": "RANGE"},
    ]
    assert tenant["Projection"]["ProjectionType"] == "ALL"
    by_status = indexes[STATUS_INDEX]
    assert by_status["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": STATUS_SINCE, "KeyType": "RANGE"},
    ]
    assert by_status["Projection"]["ProjectionType"] == "ALL"
    # The sweeper's index: sparse (only open jobs have openShard), and it projects what the
    # sweeper reads (chalicelib.jobs.OpenJob), no more.
    open_jobs = indexes[OPEN_JOBS_INDEX]
    assert open_jobs["KeySchema"] == [
        {"AttributeName": OPEN_SHARD, "KeyType": "HASH"},
        {"AttributeName": "updatedAt", "KeyType": "RANGE"},
    ]
    assert open_jobs["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["status", "tenant", "sourceKey"],
    }
    keys = dynamodb().describe_table(TableName=outputs["ApiKeysTable"])["Table"]
    assert keys["KeySchema"] == [{"AttributeName": "keyHash", "KeyType": "HASH"}]


def test_the_buckets_are_encrypted(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    for bucket in (outputs["UploadsBucket"], outputs["DerivedBucket"]):
        rules = s3().get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        algorithm = rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        assert algorithm in ("AES256", "aws:kms"), bucket


def test_the_dashboard_shows_the_pipeline(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    body = json.loads(
        cloudwatch.get_dashboard(DashboardName="media-pipeline-test")["DashboardBody"]
    )
    text = json.dumps(body)
    for name in (outputs["JobsQueue"], outputs["JobsDlq"], "media-pipeline-test-make_thumbnails"):
        assert f'"{name}"' in text, name
    for metric in (
        "Duration",
        "Errors",
        "Throttles",
        "ConcurrentExecutions",
        "4XXError",
        "5XXError",
        "Latency",
        "ApproximateAgeOfOldestMessage",
    ):
        assert f'"{metric}"' in text, metric
    for metric in (
        "UploadsCreated",
        "JobsQueued",
        "JobsCompleted",
        "JobsFailed",
        "JobDuration",
        "DuplicateDeliveries",
        "JobsSwept",
    ):
        assert metric in text, metric
    assert f'"{METRICS_NAMESPACE}", "UploadsCreated", "service", "{APP_NAME}"' in text
    # Every function's errors, each of which has an alarm.
    errors = {
        metric[3]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if metric[:3] == ["AWS/Lambda", "Errors", "FunctionName"]
    }
    assert errors == set(chalice_functions(STAGE).values())
    # The stage's own 4xx and 5xx, from its access log (API Gateway's metrics are per API
    # name, which every stage's API shares).
    (access,) = [widget for widget in body["widgets"] if widget["type"] == "log"]
    query = access["properties"]["query"]
    assert query.startswith(f"SOURCE '{outputs['ApiAccessLogGroup']}' |")
    for term in ("status", "(?<clientError>4)", "(?<serverError>5)", "by bin(1m)"):
        assert term in query, term
    assert access["properties"]["region"] == REGION


def logs() -> Any:
    return boto3.client("logs", region_name=REGION)


def test_the_access_log_group_keeps_the_stages_log_retention(cloudformation: Any) -> None:
    retention = Config(chalice_stage=STAGE, config_from_disk=CHALICE_CONFIG).log_retention_in_days
    assert retention == 30
    assert stack.default_parameters(STAGE)["LogRetentionDays"] == str(retention)
    outputs = deploy(cloudformation)
    assert outputs["ApiAccessLogGroup"] == "media-pipeline-test-api-access"
    (group,) = logs().describe_log_groups(logGroupNamePrefix=outputs["ApiAccessLogGroup"])[
        "logGroups"
    ]
    assert group["retentionInDays"] == retention
    # The group's own ARN (no ":*"), as API Gateway's accessLogSettings take it.
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:media-pipeline-test-api-access"
    assert outputs["ApiAccessLogGroupArn"] == group["logGroupArn"] == arn
    stack.delete(cloudformation, STAGE, poll_seconds=1)
    assert logs().describe_log_groups(logGroupNamePrefix="media-pipeline-test")["logGroups"] == []


def test_access_logs_never_expire_where_chalice_sets_no_retention(cloudformation: Any) -> None:
    deploy(cloudformation, LogRetentionDays="0")
    (group,) = logs().describe_log_groups(logGroupNamePrefix="media-pipeline-test-api-access")[
        "logGroups"
    ]
    assert "retentionInDays" not in group


def test_the_log_retention_is_the_one_chalice_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = json.loads(json.dumps(CHALICE_CONFIG))
    config["stages"]["prod"] = {"log_retention_in_days": 90}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    monkeypatch.setattr(stack, "CHALICE_CONFIG_PATH", path)
    assert stack.log_retention_days("prod") == 90
    assert stack.log_retention_days("dev") == 30
    del config["log_retention_in_days"]
    path.write_text(json.dumps(config))
    assert stack.log_retention_days("dev") == 0  # Chalice's log groups never expire then
    allowed = {int(v) for v in TEMPLATE["Parameters"]["LogRetentionDays"]["AllowedValues"]}
    assert {0, 30, 90} <= allowed


def test_the_alarm_email_is_subscribed_only_when_given(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    sns = boto3.client("sns", region_name=REGION)
    topic = outputs["AlarmTopicArn"]
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"].get("KmsMasterKeyId")
    stack.delete(cloudformation, STAGE, poll_seconds=1)
    outputs = deploy(cloudformation, AlarmEmail="oncall@example.com")
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=outputs["AlarmTopicArn"])[
        "Subscriptions"
    ]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "oncall@example.com")


# ... and (b) through the API, after apply_emulator_gaps, which must be needed at all.

# The property -> how to read it back, and the error S3 answers while it is absent.
GAP_READERS: dict[str, tuple[Any, str]] = {
    "PublicAccessBlockConfiguration": (
        lambda name: s3().get_public_access_block(Bucket=name),
        "NoSuchPublicAccessBlockConfiguration",
    ),
    "CorsConfiguration": (
        lambda name: s3().get_bucket_cors(Bucket=name),
        "NoSuchCORSConfiguration",
    ),
    "LifecycleConfiguration": (
        lambda name: s3().get_bucket_lifecycle_configuration(Bucket=name),
        "NoSuchLifecycleConfiguration",
    ),
    "OwnershipControls": (
        lambda name: s3().get_bucket_ownership_controls(Bucket=name),
        "OwnershipControlsNotFoundError",
    ),
}


def template_gaps() -> list[tuple[str, str]]:
    return sorted(
        (logical_id, gap)
        for logical_id, body in RESOURCES.items()
        for gap in stack.EMULATOR_GAPS.get(body["Type"], ())
        if gap in body.get("Properties", {})
    )


def test_moto_still_ignores_every_property_apply_emulator_gaps_fills(cloudformation: Any) -> None:
    with moto_skips_quietly():
        deploy(cloudformation)
        physical = stack.Resolver.for_stack(cloudformation, STAGE).physical_ids
    assert template_gaps(), "the template has none of the gap properties"
    for logical_id, gap in template_gaps():
        name = physical[logical_id]
        still_ignored = f"moto now applies {logical_id}.{gap}: drop it from EMULATOR_GAPS"
        if gap in GAP_READERS:
            read, absent = GAP_READERS[gap]
            try:
                read(name)
            except ClientError as exc:
                answer = error_code(exc)
            else:
                answer = "the property"
            assert answer == absent, still_ignored
        elif gap == "VersioningConfiguration":
            # A bucket that was never versioned answers without a Status.
            assert "Status" not in s3().get_bucket_versioning(Bucket=name), still_ignored
        elif gap == "TimeToLiveSpecification":
            ttl = dynamodb().describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            assert ttl["TimeToLiveStatus"] == "DISABLED", still_ignored
        elif gap == "PointInTimeRecoverySpecification":
            backups = dynamodb().describe_continuous_backups(TableName=name)
            recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
            assert recovery["PointInTimeRecoveryStatus"] == "DISABLED", still_ignored
        else:
            pytest.fail(f"no reader for {gap}")


def test_apply_emulator_gaps_gives_the_emulator_what_aws_creates(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    applied = apply_gaps()
    assert sorted(item.split(".") for item in applied) == [list(gap) for gap in template_gaps()]
    uploads, derived = outputs["UploadsBucket"], outputs["DerivedBucket"]
    for bucket in (uploads, derived):
        block = s3().get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert block == {
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        }
        ownership = s3().get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
        assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (cors,) = s3().get_bucket_cors(Bucket=uploads)["CORSRules"]
    assert cors["AllowedMethods"] == ["POST"]
    assert cors["AllowedOrigins"] == ["*"]  # the UploadOrigins default
    assert "Content-Type" in cors["AllowedHeaders"]
    rules = s3().get_bucket_lifecycle_configuration(Bucket=uploads)["Rules"]
    expire = next(rule for rule in rules if rule.get("Expiration", {}).get("Days"))
    assert expire["Filter"] == {"Prefix": "uploads/"}
    assert expire["Expiration"] == {"Days": 1}  # the StaleUploadDays default
    assert expire["Status"] == "Enabled"
    assert expire["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    markers = next(rule for rule in rules if rule["ID"] == "remove-expired-delete-markers")
    assert markers["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert markers["Filter"] == {"Prefix": "uploads/"}
    assert any(rule.get("AbortIncompleteMultipartUpload") for rule in rules)
    assert s3().get_bucket_versioning(Bucket=uploads)["Status"] == "Enabled"
    assert "Status" not in s3().get_bucket_versioning(Bucket=derived)
    with pytest.raises(ClientError) as no_cors:
        s3().get_bucket_cors(Bucket=derived)
    assert error_code(no_cors.value) == "NoSuchCORSConfiguration"
    ttl = dynamodb().describe_time_to_live(TableName=outputs["JobsTable"])
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expiresAt",
    }
    for table in (outputs["JobsTable"], outputs["ApiKeysTable"]):
        backups = dynamodb().describe_continuous_backups(TableName=table)
        recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert recovery["PointInTimeRecoveryStatus"] == "ENABLED", table
    # Idempotent: AWS would refuse to enable TTL twice; it is not asked to.
    assert apply_gaps() == applied


def test_apply_emulator_gaps_takes_the_values_from_the_stacks_parameters(
    cloudformation: Any,
) -> None:
    outputs = deploy(
        cloudformation,
        UploadOrigins="https://app.example.com, https://admin.example.com",
        StaleUploadDays="3",
    )
    apply_gaps()
    (cors,) = s3().get_bucket_cors(Bucket=outputs["UploadsBucket"])["CORSRules"]
    assert cors["AllowedOrigins"] == ["https://app.example.com", "https://admin.example.com"]
    rules = s3().get_bucket_lifecycle_configuration(Bucket=outputs["UploadsBucket"])["Rules"]
    expire = next(rule for rule in rules if rule["ID"] == "expire-stale-uploads")
    assert expire["Expiration"] == {"Days": 3}


def test_originals_expire_after_their_retention_and_none_rule_at_zero(
    cloudformation: Any,
) -> None:
    outputs = deploy(cloudformation, OriginalsRetentionDays="7")
    apply_gaps()
    assert stack.environment(outputs)["ORIGINALS_RETENTION_DAYS"] == "7"
    rules = s3().get_bucket_lifecycle_configuration(Bucket=outputs["UploadsBucket"])["Rules"]
    expire = next(rule for rule in rules if rule["ID"] == "expire-originals")
    assert expire["Filter"] == {"Prefix": "originals/"}
    assert expire["Expiration"] == {"Days": 7}
    assert expire["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    markers = next(rule for rule in rules if rule["ID"] == "remove-expired-original-markers")
    assert markers["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    # 0 keeps none: no expiration rule (S3 refuses 0 days), and the app copies nothing.
    outputs = deploy(cloudformation, OriginalsRetentionDays="0")
    apply_gaps()
    assert stack.environment(outputs)["ORIGINALS_RETENTION_DAYS"] == "0"
    rules = s3().get_bucket_lifecycle_configuration(Bucket=outputs["UploadsBucket"])["Rules"]
    assert "expire-originals" not in {rule["ID"] for rule in rules}
    assert "expire-stale-uploads" in {rule["ID"] for rule in rules}


def test_outputs_expire_with_their_jobs(cloudformation: Any) -> None:
    outputs = deploy(cloudformation, JobRetentionDays="45")
    apply_gaps()
    assert stack.environment(outputs)["JOB_TTL_DAYS"] == "45"
    rules = s3().get_bucket_lifecycle_configuration(Bucket=outputs["DerivedBucket"])["Rules"]
    expire = next(rule for rule in rules if rule["ID"] == "expire-outputs-with-their-job")
    assert expire["Expiration"] == {"Days": 45}
    assert expire["Status"] == "Enabled"


def test_the_app_fixture_provisions_from_the_template(aws: Any) -> None:
    # What every other test runs against: this stack, gaps filled, app pointed at it.
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    outputs = stack.outputs(cloudformation, STAGE)
    assert aws.jobs_url == outputs["JobsQueueUrl"]
    assert aws.dlq_url == outputs["JobsDlqUrl"]
    from chalicelib.config import settings

    assert settings().uploads_bucket == outputs["UploadsBucket"]
    assert settings().jobs_table == outputs["JobsTable"]
    ttl = dynamodb().describe_time_to_live(TableName=outputs["JobsTable"])
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"


# --- deploy and delete ----------------------------------------------------------------------


def test_deploying_again_without_changes_succeeds(cloudformation: Any) -> None:
    first = deploy(cloudformation)
    assert deploy(cloudformation) == first

    # AWS answers an update that changes nothing with a ValidationError (moto does not).
    def no_updates(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Code": "ValidationError", "Message": "No updates are to be performed."}
        return AWSResponse("", 400, HTTPHeaders(), None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    cloudformation.meta.events.register("before-call.cloudformation.UpdateStack", no_updates)
    assert deploy(cloudformation) == first


def test_deploy_updates_a_changed_parameter(cloudformation: Any) -> None:
    deploy(cloudformation)
    deploy(cloudformation, QueueVisibilityTimeoutSeconds="720")
    described = cloudformation.describe_stacks(StackName="media-pipeline-test")["Stacks"][0]
    assert described["StackStatus"] == "UPDATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert parameters["QueueVisibilityTimeoutSeconds"] == "720"


def test_deploy_refuses_a_stage_parameter_that_contradicts_the_stage(cloudformation: Any) -> None:
    with pytest.raises(ValueError, match="contradicts"):
        deploy(cloudformation, Stage="prod")


def test_delete_removes_the_stack_and_its_resources(cloudformation: Any) -> None:
    outputs = deploy(cloudformation)
    stack.delete(cloudformation, STAGE, poll_seconds=1)
    with pytest.raises(ClientError) as gone:
        stack.outputs(cloudformation, STAGE)
    assert "does not exist" in str(gone.value)
    assert outputs["JobsTable"] not in dynamodb().list_tables()["TableNames"]
    assert outputs["UploadsBucket"] not in {b["Name"] for b in s3().list_buckets()["Buckets"]}
    stack.delete(cloudformation, STAGE, poll_seconds=1)  # nothing to delete: no error
