"""What `make deploy` writes and runs besides CloudFormation, checked without AWS."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import io
import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError
from chalice.config import Config
from moto import mock_aws

from chalicelib import auth, openapi
from infra import cost, deploy, keys, policies, stack
from tests.resources import REGION, Queues

REPO = Path(__file__).resolve().parents[1]
STAGE = "test"


@pytest.fixture
def outputs(aws: Queues) -> dict[str, str]:
    return stack.outputs(boto3.client("cloudformation", region_name=REGION), STAGE)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".chalice").mkdir()
    shutil.copy(REPO / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    return tmp_path


def chalice_config(project: Path, function: str) -> Config:
    on_disk = json.loads((project / ".chalice" / "config.json").read_text())
    return Config(
        chalice_stage=STAGE,
        function_name=function,
        user_provided_params={"project_dir": str(project)},
        config_from_disk=on_disk,
    )


def test_the_stage_config_points_every_function_at_the_stack(
    project: Path, outputs: dict[str, str]
) -> None:
    deploy.write_stage_config(project, STAGE, outputs)
    for function in policies.FUNCTIONS:
        config = chalice_config(project, function)
        assert config.autogen_policy is False
        assert config.iam_policy_file == policies.policy_file_name(STAGE, function)
        written = json.loads((project / ".chalice" / config.iam_policy_file).read_text())
        assert written == policies.policy_document(function, STAGE, outputs)
        environment = config.environment_variables
        assert environment["UPLOADS_BUCKET"] == outputs["UploadsBucket"]
        assert environment["DERIVED_BUCKET"] == outputs["DerivedBucket"]
        assert environment["JOBS_TABLE"] == outputs["JobsTable"]
        assert environment["API_KEYS_TABLE"] == outputs["ApiKeysTable"]
        assert environment["JOBS_QUEUE"] == outputs["JobsQueue"]
        assert environment["JOBS_DLQ"] == outputs["JobsDlq"]
        assert config.lambda_architecture == "arm64"
        assert config.xray_enabled is True
        assert config.log_retention_in_days == 30


def test_functions_get_their_own_lambda_settings(project: Path, outputs: dict[str, str]) -> None:
    deploy.write_stage_config(project, STAGE, outputs)
    worker = chalice_config(project, policies.WORKER)
    assert (worker.lambda_memory_size, worker.lambda_timeout) == (1769, 60)
    assert worker.reserved_concurrency == 20
    api = chalice_config(project, policies.API)
    assert (api.lambda_memory_size, api.lambda_timeout) == (512, 25)
    assert api.reserved_concurrency is None
    sweeper = chalice_config(project, policies.SWEEPER)
    assert (sweeper.lambda_memory_size, sweeper.lambda_timeout) == (256, 60)


def test_the_worker_trigger_never_outruns_its_reserved_concurrency(
    project: Path, outputs: dict[str, str]
) -> None:
    from app import app

    deploy.write_stage_config(project, STAGE, outputs)
    reserved = chalice_config(project, policies.WORKER).reserved_concurrency
    from chalice.app import SQSEventConfig

    (trigger,) = [
        source
        for source in app.event_sources
        if isinstance(source, SQSEventConfig) and source.name == policies.WORKER
    ]
    assert trigger.maximum_concurrency is not None
    assert 2 <= trigger.maximum_concurrency <= reserved


def test_rewriting_a_stage_keeps_what_else_it_says(project: Path, outputs: dict[str, str]) -> None:
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"][STAGE] = {"environment_variables": {"PRESETS": "[]", "LOG_LEVEL": "DEBUG"}}
    config_path.write_text(json.dumps(config))
    deploy.write_stage_config(project, STAGE, outputs)
    deploy.write_stage_config(project, STAGE, outputs)
    environment = chalice_config(project, policies.WORKER).environment_variables
    assert environment["PRESETS"] == "[]"
    assert environment["LOG_LEVEL"] == "DEBUG"
    assert environment["JOBS_TABLE"] == outputs["JobsTable"]


def test_gateway_errors_answer_in_the_api_error_shape(aws: Queues) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    api_id = apigateway.create_rest_api(name="media-pipeline")["id"]
    deploy.apply_gateway_responses(apigateway, api_id)
    responses = apigateway.get_gateway_responses(restApiId=api_id)["items"]
    by_type = {item["responseType"]: item for item in responses}
    unauthorized = json.loads(by_type["UNAUTHORIZED"]["responseTemplates"]["application/json"])
    assert unauthorized["error"]["code"] == "unauthorized"
    assert set(unauthorized["error"]) == {"code", "message"}
    for response_type in deploy.GATEWAY_RESPONSES:
        body = json.loads(by_type[response_type]["responseTemplates"]["application/json"])
        assert set(body) == {"error"}


def test_the_key_command_prints_a_key_once_and_stores_its_hash(
    aws: Queues, outputs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert keys.main(["create", "--stage", STAGE, "--tenant", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("mpk_")
    stored = boto3.client("dynamodb", region_name=REGION).scan(TableName=outputs["ApiKeysTable"])
    assert key not in json.dumps(stored["Items"])
    assert auth.tenant_for_authorization(f"Bearer {key}") == "acme"
    assert keys.main(["revoke", "--stage", STAGE, "--key", key]) == 0
    assert auth.tenant_for_authorization(f"Bearer {key}") == auth.ANONYMOUS


def test_the_cost_estimate_prices_compute_at_the_configured_memory() -> None:
    memory_mb, architecture, _ = cost.worker_settings()
    assert (memory_mb, architecture) == (1769, "arm64")
    estimate = cost.estimate(engine_ms=100, overhead_ms=0)
    compute = 1e6 * 0.1 * memory_mb / 1024 * cost.PRICES["lambda_gb_second_arm64"]
    assert estimate.lines["Lambda worker compute"] == pytest.approx(compute)
    slower = cost.estimate(engine_ms=200, overhead_ms=0)
    assert slower.lines["Lambda worker compute"] == pytest.approx(2 * compute)
    assert estimate.total > estimate.lines["Lambda worker compute"]


def test_the_cost_estimate_prices_originals_by_their_retention() -> None:
    def originals(days: int) -> float:
        estimate = cost.estimate(engine_ms=100, overhead_ms=0, originals_days=days)
        return sum(dollars for name, dollars in estimate.lines.items() if "originals" in name)

    copies = 1e6 * cost.PRICES["s3_put"]
    month = 1e6 * cost.ORIGINAL_MB / 1024 * cost.PRICES["s3_standard_gb_month"]
    assert originals(30) == pytest.approx(copies + month)
    assert originals(60) == pytest.approx(copies + 2 * month)
    assert originals(0) == 0


def test_the_cost_estimate_prices_the_access_log_lines_deploy_sets() -> None:
    # Every variable of the format has a sample: the estimate follows the format's changes.
    variables = set(re.findall(r"\$context\.([A-Za-z.]+)", deploy.ACCESS_LOG_FORMAT))
    assert variables == set(cost.ACCESS_LOG_SAMPLES)
    line = cost.access_log_line_bytes()
    keys_alone = re.sub(r"\$context\.[A-Za-z.]+", "", deploy.ACCESS_LOG_FORMAT)
    assert len(keys_alone) + len(variables) < line < 1024
    logs = cost.estimate(engine_ms=100, overhead_ms=0).lines[
        "CloudWatch Logs: API access log lines"
    ]
    per_gb = cost.PRICES["cloudwatch_logs_ingested_gb"]
    assert logs == pytest.approx(1e6 * cost.API_REQUESTS["polls"] * line / 1e9 * per_gb)


def test_the_monthly_cost_counts_every_alarm_of_the_template() -> None:
    resources = stack.load_template()["Resources"].values()
    alarms = [r for r in resources if r["Type"] == "AWS::CloudWatch::Alarm"]
    monthly = cost.monthly_per_stage()
    assert monthly[f"CloudWatch alarms ({len(alarms)})"] == pytest.approx(0.10 * len(alarms))
    assert monthly["CloudWatch dashboard (1)"] == pytest.approx(3.00)
    assert monthly["KMS keys (2)"] == pytest.approx(2.00)


def test_webhooks_cost_less_than_three_polls() -> None:
    polls = cost.estimate(engine_ms=60, overhead_ms=60, notify="polls")
    webhooks = cost.estimate(engine_ms=60, overhead_ms=60, notify="webhooks")
    saved = 2 * 1e6 * cost.PRICES["api_gateway_rest_request"]
    assert polls.lines["API Gateway REST requests"] - webhooks.lines[
        "API Gateway REST requests"
    ] == pytest.approx(saved)
    assert "Webhooks: deliveries function (2 invocations)" in webhooks.lines
    assert webhooks.total < polls.total


def test_template_parameters_come_from_key_value_pairs() -> None:
    assert deploy.parse_parameters(["AlarmEmail=ops@example.com", "UploadOrigins=a,b"]) == {
        "AlarmEmail": "ops@example.com",
        "UploadOrigins": "a,b",
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        deploy.parse_parameters(["AlarmEmail"])


def test_chalice_deploy_wires_the_event_sources_to_the_stack(
    project: Path, outputs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """app.py's decorators are evaluated in the deploying process: what Chalice sees there
    must be the stack's bucket and queues, not the defaults."""
    import subprocess
    import sys

    for variable in stack.ENVIRONMENT_OUTPUTS:  # a deploying shell has none of them
        monkeypatch.delenv(variable, raising=False)
    deploy.write_stage_config(project, STAGE, outputs)
    variables = deploy.stage_environment(project, STAGE)
    environment = deploy.chalice_environment(project / "wheelhouse", "arm64", variables)
    script = (
        "import json, app; print(json.dumps({s.name: getattr(s, 'bucket', None) "
        "or getattr(s, 'queue', None) or s.schedule_expression.to_string() "
        "for s in app.app.event_sources}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    wired = json.loads(done.stdout)
    assert wired == {
        policies.DISPATCHER: outputs["UploadsBucket"],
        policies.WORKER: outputs["JobsQueue"],
        policies.DEAD_LETTERS: outputs["JobsDlq"],
        policies.SWEEPER: "rate(5 minutes)",
        policies.DELIVERIES: outputs["WebhooksQueue"],
        policies.WEBHOOK_DEAD_LETTERS: outputs["WebhooksDlq"],
        policies.REPROCESS: outputs["ReprocessQueue"],
        policies.REPROCESS_DEAD_LETTERS: outputs["ReprocessDlq"],
        policies.BACKFILL_PAGES: outputs["BackfillQueue"],
        policies.BACKFILL_DEAD_LETTERS: outputs["BackfillDlq"],
    }


# API Gateway's own status for each response type (DEFAULT_5XX: any 5xx it makes).
GATEWAY_DEFAULT_STATUS = {
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "REQUEST_TOO_LARGE": 413,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "DEFAULT_5XX": 500,
}


def test_gateway_answers_use_api_codes_with_their_statuses(aws: Queues) -> None:
    from chalicelib.models import api_error_types

    statuses = {error.code: error.status for error in api_error_types()}
    apigateway = boto3.client("apigateway", region_name=REGION)
    api_id = apigateway.create_rest_api(name="media-pipeline")["id"]
    deploy.apply_gateway_responses(apigateway, api_id)
    by_type = {
        item["responseType"]: item
        for item in apigateway.get_gateway_responses(restApiId=api_id)["items"]
    }
    assert set(by_type) == set(deploy.GATEWAY_RESPONSES)
    for response_type, (code, _) in deploy.GATEWAY_RESPONSES.items():
        answered = int(
            by_type[response_type].get("statusCode") or GATEWAY_DEFAULT_STATUS[response_type]
        )
        assert statuses[code] == answered, response_type
    assert by_type["MISSING_AUTHENTICATION_TOKEN"]["statusCode"] == "404"
    throttled = json.loads(by_type["THROTTLED"]["responseTemplates"]["application/json"])
    assert throttled["error"]["code"] == "throttled"


def write_throttling(project: Path, top: Any = None, stage: Any = None) -> None:
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    if top is not None:
        config["api_throttling"] = top
    if stage is not None:
        config.setdefault("stages", {}).setdefault(STAGE, {})["api_throttling"] = stage
    config_path.write_text(json.dumps(config))


def test_a_stage_without_settings_gets_the_default_throttling(project: Path) -> None:
    assert deploy.stage_throttling(project, STAGE) == deploy.DEFAULT_THROTTLING
    assert deploy.Throttling(rate_limit=50.0, burst_limit=100) == deploy.DEFAULT_THROTTLING


def test_throttling_is_overridden_per_stage_then_per_key(
    project: Path, outputs: dict[str, str]
) -> None:
    write_throttling(project, top={"rate_limit": 20}, stage={"burst_limit": 400})
    assert deploy.stage_throttling(project, STAGE) == deploy.Throttling(20.0, 400)
    assert deploy.stage_throttling(project, "other") == deploy.Throttling(20.0, 100)
    write_throttling(project, stage={"rate_limit": 7.5, "burst_limit": 15})
    assert deploy.stage_throttling(project, STAGE) == deploy.Throttling(7.5, 15)
    # Chalice itself still reads a config that carries the setting.
    deploy.write_stage_config(project, STAGE, outputs)
    assert chalice_config(project, policies.API).lambda_memory_size == 512


@pytest.mark.parametrize(
    "setting",
    [
        {"rate_limit": 0},
        {"rate_limit": -1},
        {"rate_limit": "100"},
        {"rate_limit": True},
        {"burst_limit": 0},
        {"burst_limit": 2.5},
        {"burst": 10},
    ],
)
def test_bad_throttling_stops_the_deploy(project: Path, setting: dict[str, Any]) -> None:
    write_throttling(project, stage=setting)
    with pytest.raises(SystemExit, match="api_throttling"):
        deploy.stage_throttling(project, STAGE)


def test_throttling_lands_on_every_method_of_the_api_stage(aws: Queues, project: Path) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    api_id = apigateway.create_rest_api(name="media-pipeline")["id"]
    root = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
    apigateway.put_method(
        restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="NONE"
    )
    apigateway.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
    api_stage = deploy.api_gateway_stage(project, "dev")
    assert api_stage == "api"
    apigateway.create_deployment(restApiId=api_id, stageName=api_stage)

    write_throttling(project, stage={"rate_limit": 25, "burst_limit": 60})
    throttling = deploy.stage_throttling(project, STAGE)
    deploy.update_stage(
        apigateway, api_id, api_stage, deploy.throttling_patch_operations(throttling)
    )
    settings = apigateway.get_stage(restApiId=api_id, stageName=api_stage)["methodSettings"]
    assert settings["*/*"]["throttlingRateLimit"] == 25.0
    assert settings["*/*"]["throttlingBurstLimit"] == 60
    assert deploy.throttling_patch_operations(throttling) == [
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "25.0"},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "60"},
    ]


def _zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_every_function_gets_the_audited_package(tmp_path: Path) -> None:
    with mock_aws():
        iam = boto3.client("iam", region_name=REGION)
        role = iam.create_role(
            RoleName="media-pipeline-test",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lambda_client = boto3.client("lambda", region_name=REGION)
        chalice_zip = _zip_of({"app.py": b"# as chalice deploy built it\n"})
        functions = [
            lambda_client.create_function(
                FunctionName=f"media-pipeline-test-{name}",
                Runtime="python3.13",
                Role=role,
                Handler="app.handler",
                Code={"ZipFile": chalice_zip},
            )["FunctionArn"]
            for name in ("api_handler", "make_thumbnails")
        ]
        audited = tmp_path / "deployment.zip"
        audited.write_bytes(
            _zip_of({"app.py": b"# audited\n", "__pycache__/app.cpython-313.pyc": b"\x00"})
        )
        deploy.ship_audited_package(lambda_client, functions, audited)
        expected = base64.b64encode(hashlib.sha256(audited.read_bytes()).digest()).decode()
        for function in functions:
            configuration = lambda_client.get_function(FunctionName=function)["Configuration"]
            assert configuration["CodeSha256"] == expected


def test_the_functions_shipped_are_those_chalice_recorded(tmp_path: Path) -> None:
    deployed = tmp_path / ".chalice" / "deployed"
    deployed.mkdir(parents=True)
    function = "lambda_function"
    resources = [
        {"name": "api_handler", "resource_type": function, "lambda_arn": "arn:a"},
        {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "x"},
        {"name": "sweep_jobs", "resource_type": function, "lambda_arn": "arn:b"},
    ]
    (deployed / "dev.json").write_text(json.dumps({"resources": resources}))
    assert deploy.deployed_functions(tmp_path, "dev") == ["arn:a", "arn:b"]


# --- access logs ------------------------------------------------------------------------


def deployed_api_stage(apigateway: Any, project: Path) -> tuple[str, str]:
    """A REST API with one method, deployed to the stage Chalice would deploy it to."""
    api_id = apigateway.create_rest_api(name="media-pipeline")["id"]
    root = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
    apigateway.put_method(
        restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="NONE"
    )
    apigateway.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
    api_stage = deploy.api_gateway_stage(project, STAGE)
    apigateway.create_deployment(restApiId=api_id, stageName=api_stage)
    return api_id, api_stage


def test_access_logs_land_on_the_api_stage_beside_its_throttling(
    aws: Queues, project: Path, outputs: dict[str, str]
) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    api_id, api_stage = deployed_api_stage(apigateway, project)
    destination = outputs["ApiAccessLogGroupArn"]
    throttling = deploy.throttling_patch_operations(deploy.DEFAULT_THROTTLING)
    deploy.update_stage(apigateway, api_id, api_stage, throttling)
    access_logs = deploy.access_log_patch_operations(destination)
    deploy.update_stage(apigateway, api_id, api_stage, access_logs)
    deploy.update_stage(apigateway, api_id, api_stage, access_logs)  # a second deploy
    described = apigateway.get_stage(restApiId=api_id, stageName=api_stage)
    assert described["accessLogSettings"] == {
        "destinationArn": destination,
        "format": deploy.ACCESS_LOG_FORMAT,
    }
    assert described["methodSettings"]["*/*"]["throttlingBurstLimit"] == 100
    # The destination is the stack's log group, by its own ARN.
    groups = boto3.client("logs", region_name=REGION).describe_log_groups(
        logGroupNamePrefix=outputs["ApiAccessLogGroup"]
    )["logGroups"]
    assert [group["logGroupArn"] for group in groups] == [destination]


def test_the_access_log_patch_sets_destination_and_format() -> None:
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:media-pipeline-dev-api-access"
    assert deploy.access_log_patch_operations(arn, '{"requestId":"$context.requestId"}') == [
        {"op": "replace", "path": "/accessLogSettings/destinationArn", "value": arn},
        {
            "op": "replace",
            "path": "/accessLogSettings/format",
            "value": '{"requestId":"$context.requestId"}',
        },
    ]
    assert deploy.access_log_patch_operations(arn)[1]["value"] == deploy.ACCESS_LOG_FORMAT


def test_an_access_log_line_is_json_with_the_request_and_the_tenant_never_the_key() -> None:
    log_format = deploy.ACCESS_LOG_FORMAT
    assert "\n" not in log_format
    variables = re.findall(r"\$context\.[A-Za-z.]+", log_format)
    # What API Gateway writes: each variable replaced by its value ("-" when it has none).
    line = re.sub(r"\$context\.[A-Za-z.]+", "-", log_format)
    assert set(json.loads(line)) == set(deploy.ACCESS_LOG_FIELDS)
    for variable in (
        "requestId",
        "extendedRequestId",
        "identity.sourceIp",
        "requestTime",
        "httpMethod",
        "resourcePath",
        "path",
        "status",
        "protocol",
        "responseLength",
        "responseLatency",
        "integrationLatency",
        "integration.error",
        "authorizer.error",
        "authorizer.latency",
    ):
        assert f"$context.{variable}" in variables, variable
    # The tenant, under the key the authorizer hands API Gateway.
    for key in auth.authorizer_context(None)["context"]:
        assert f"$context.authorizer.{key}" in variables, key
    # Nothing that could carry the key: no header, no API Gateway API key, no request body.
    lowered = log_format.lower()
    for secret in ("authorization", "apikey", "header", "$input", "$method", "requestoverride"):
        assert secret not in lowered, secret


def role_policy(iam: Any) -> dict[str, Any]:
    document = iam.get_role_policy(
        RoleName=deploy.LOGS_ROLE_NAME, PolicyName=deploy.LOGS_ROLE_POLICY
    )
    policy: dict[str, Any] = document["PolicyDocument"]
    return policy if isinstance(policy, dict) else json.loads(policy)


def granted(policy: dict[str, Any], action: str, resource: str) -> bool:
    return any(
        action in statement["Action"]
        and any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"])
        for statement in policy["Statement"]
    )


def test_an_account_without_a_logging_role_gets_the_apps_own(
    aws: Queues, outputs: dict[str, str]
) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    assert not apigateway.get_account().get("cloudwatchRoleArn")
    destination = outputs["ApiAccessLogGroupArn"]
    role_arn = deploy.ensure_api_gateway_logs_role(apigateway, iam, destination)
    assert apigateway.get_account()["cloudwatchRoleArn"] == role_arn
    role = iam.get_role(RoleName=deploy.LOGS_ROLE_NAME)["Role"]
    assert role["Arn"] == role_arn
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    # It writes the access logs of every stage of the app, and nothing else.
    policy = role_policy(iam)
    other_stage = destination.replace(f"-{STAGE}-", "-prod-")
    for group in (destination, other_stage):
        assert granted(policy, "logs:CreateLogStream", group), group
        assert granted(policy, "logs:PutLogEvents", f"{group}:log-stream:abc"), group
    not_ours = destination.replace("media-pipeline-test-api-access", "/aws/lambda/other")
    assert not granted(policy, "logs:PutLogEvents", f"{not_ours}:log-stream:abc")
    assert not granted(policy, "logs:CreateLogStream", not_ours)
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert actions == {
        "logs:DescribeLogGroups",
        "logs:CreateLogStream",
        "logs:DescribeLogStreams",
        "logs:PutLogEvents",
    }
    # A second deploy (or another stage's) finds it set, and only brings its policy up to
    # date (here: undoes a hand edit).
    iam.put_role_policy(
        RoleName=deploy.LOGS_ROLE_NAME,
        PolicyName=deploy.LOGS_ROLE_POLICY,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}
                ],
            }
        ),
    )
    assert deploy.ensure_api_gateway_logs_role(apigateway, iam, destination) == role_arn
    assert role_policy(iam) == policy
    assert apigateway.get_account()["cloudwatchRoleArn"] == role_arn
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert roles.count(deploy.LOGS_ROLE_NAME) == 1


def test_the_apps_role_made_in_another_region_is_reused(
    aws: Queues, outputs: dict[str, str]
) -> None:
    # IAM is global, API Gateway's account settings are per region.
    iam = boto3.client("iam", region_name=REGION)
    existing = iam.create_role(
        RoleName=deploy.LOGS_ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(deploy.LOGS_ROLE_TRUST_POLICY),
    )["Role"]["Arn"]
    apigateway = boto3.client("apigateway", region_name=REGION)
    destination = outputs["ApiAccessLogGroupArn"]
    assert deploy.ensure_api_gateway_logs_role(apigateway, iam, destination) == existing
    assert apigateway.get_account()["cloudwatchRoleArn"] == existing
    assert granted(role_policy(iam), "logs:PutLogEvents", f"{destination}:log-stream:x")


def test_an_account_logging_role_already_set_is_left_alone(
    aws: Queues, outputs: dict[str, str]
) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    theirs = "arn:aws:iam::123456789012:role/the-accounts-own"
    apigateway.update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": theirs}]
    )
    destination = outputs["ApiAccessLogGroupArn"]
    assert deploy.ensure_api_gateway_logs_role(apigateway, iam, destination) == theirs
    assert apigateway.get_account()["cloudwatchRoleArn"] == theirs
    with pytest.raises(ClientError) as absent:
        iam.get_role(RoleName=deploy.LOGS_ROLE_NAME)
    assert absent.value.response["Error"]["Code"] == "NoSuchEntity"


def refuse_account_updates(apigateway: Any, times: int) -> None:
    """Answer UpdateAccount as AWS does while a new role is not assumable yet, `times` times."""
    refused: list[int] = []

    def not_yet(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if len(refused) >= times:
            return None
        refused.append(1)
        error = {"Code": "BadRequestException", "Message": "The role ARN is not assumable yet."}
        return AWSResponse("", 400, HTTPHeaders(), None), {
            "Error": error,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }

    apigateway.meta.events.register("before-call.apigateway.UpdateAccount", not_yet)


def test_a_new_logging_role_is_set_once_iam_lets_api_gateway_assume_it(
    aws: Queues, outputs: dict[str, str]
) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    refuse_account_updates(apigateway, times=2)
    slept: list[float] = []
    role_arn = deploy.ensure_api_gateway_logs_role(
        apigateway, iam, outputs["ApiAccessLogGroupArn"], sleep=slept.append
    )
    assert slept == [5.0, 5.0]
    assert apigateway.get_account()["cloudwatchRoleArn"] == role_arn


def test_a_logging_role_refused_for_too_long_stops_the_deploy(
    aws: Queues, outputs: dict[str, str]
) -> None:
    apigateway = boto3.client("apigateway", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    refuse_account_updates(apigateway, times=100)
    slept: list[float] = []
    with pytest.raises(ClientError) as refused:
        deploy.ensure_api_gateway_logs_role(
            apigateway, iam, outputs["ApiAccessLogGroupArn"], settle_seconds=10, sleep=slept.append
        )
    assert refused.value.response["Error"]["Code"] == "BadRequestException"
    assert sum(slept) == 10
    assert not apigateway.get_account().get("cloudwatchRoleArn")


def test_the_routes_with_a_key_go_through_the_authorizer_in_chalices_swagger() -> None:
    """API Gateway reads a route's `security` from the Swagger document Chalice imports:
    each must name the custom authorizer, never Chalice's `api_key` (an API Gateway usage
    plan key, `api_key_required`), which an authorizer of that name would be replaced by."""
    from chalice.deploy.swagger import SwaggerGenerator

    from app import app

    arn = "arn:aws:lambda:us-east-1:123456789012:function:media-pipeline-test-"
    deployed = {
        "api_handler_arn": f"{arn}api_handler",
        "api_handler_name": "media-pipeline-test",
        "lambda_functions": {
            f"media-pipeline-test-{policies.AUTHORIZER}": {"arn": f"{arn}{policies.AUTHORIZER}"}
        },
    }
    swagger = SwaggerGenerator(REGION, deployed).generate_swagger(app)
    secured = {
        (path, method): operation["security"]
        for path, operations in swagger["paths"].items()
        for method, operation in operations.items()
        if "security" in operation
    }
    assert set(secured) == {
        (operation.path, operation.method.lower())
        for operation in openapi.OPERATIONS
        if operation.secured
    }
    assert ("/webhooks/{endpoint_id}", "delete") in secured
    assert all(security == [{policies.AUTHORIZER: []}] for security in secured.values())
    definition = swagger["securityDefinitions"][policies.AUTHORIZER]
    assert definition["x-amazon-apigateway-authtype"] == "custom"
    assert definition["name"] == "Authorization"
    authorizer = definition["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "token"
    assert authorizer["authorizerUri"].endswith(f"{arn}{policies.AUTHORIZER}/invocations")
    assert authorizer["authorizerResultTtlInSeconds"] == 60


def test_destroy_deletes_the_log_groups_of_the_stages_functions_only() -> None:
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        ours = deploy.function_log_groups(STAGE)
        others = [
            f"/aws/lambda/media-pipeline-{STAGE}2-{policies.WORKER}",  # stage test2
            f"/aws/lambda/media-pipeline-{STAGE}2",
            "/aws/lambda/another-app",
        ]
        for name in [*ours, *others]:
            logs.create_log_group(logGroupName=name)
        assert f"/aws/lambda/media-pipeline-{STAGE}" in ours  # the REST API's, Lambda's name
        assert f"/aws/lambda/media-pipeline-{STAGE}-{policies.API}" in ours  # Chalice's name
        assert deploy.delete_log_groups(logs, ours) == ours
        left = [group["logGroupName"] for group in logs.describe_log_groups()["logGroups"]]
        assert sorted(left) == sorted(others)
        assert deploy.delete_log_groups(logs, ours) == []  # nothing left to delete


def test_the_rest_apis_function_keeps_its_logs_as_long_as_the_others(project: Path) -> None:
    """Chalice names the REST API's function <app>-<stage> but gives the retention to a
    log group named after `api_handler`: the group Lambda writes to gets it too."""
    days = deploy.api_handler_log_retention(project, STAGE)
    assert days == 30
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        name = deploy.retain_api_handler_logs(logs, STAGE, days)
        assert name == f"/aws/lambda/media-pipeline-{STAGE}"
        assert deploy.retain_api_handler_logs(logs, STAGE, days) == name  # again: no error
        (group,) = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
        assert (group["logGroupName"], group["retentionInDays"]) == (name, days)
