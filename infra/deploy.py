"""`make deploy STAGE=...` and `make destroy STAGE=...`.

deploy: the data-plane stack (CloudFormation) -> API Gateway's CloudWatch Logs role for
the account, when it has none -> the stack's outputs into the stage's Chalice config
(environment variables and one IAM policy file per function) -> `chalice deploy` building
from the offline wheelhouse -> API Gateway responses in the API's error shape -> the
stage's throttling limits and access logs.

destroy: `chalice delete`, then the functions' log groups (Chalice only drops their
retention policy), then the buckets are emptied (CloudFormation cannot delete a bucket
with objects in it) and the stack is deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra import policies, stack

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

PROJECT = Path(__file__).resolve().parents[1]
CONFIG = Path(".chalice") / "config.json"

DEFAULT_API_STAGE = "api"

# API Gateway answers these itself, before any function runs; give them the API's shape
# (each code is one of chalicelib.errors' API errors, with that error's status).
GATEWAY_RESPONSES = {
    "UNAUTHORIZED": ("unauthorized", "A valid API key is required: Authorization: Bearer <key>."),
    "ACCESS_DENIED": ("forbidden", "Access denied."),
    "MISSING_AUTHENTICATION_TOKEN": ("not_found", "No such route."),
    "REQUEST_TOO_LARGE": ("payload_too_large", "The request is too large."),
    "THROTTLED": ("throttled", "Too many requests; slow down and retry."),
    "QUOTA_EXCEEDED": ("throttled", "Too many requests; slow down and retry."),
    "DEFAULT_5XX": ("internal_error", "Something went wrong on our side."),
}
# API Gateway answers an unknown route (or method) with 403; it is a 404 to a client.
GATEWAY_STATUS_CODES = {"MISSING_AUTHENTICATION_TOKEN": "404"}


@dataclass(frozen=True)
class Throttling:
    """A stage's API Gateway limits for every method: steady requests per second, burst."""

    rate_limit: float
    burst_limit: int


# For every stage without its own `api_throttling` in .chalice/config.json. Well under the
# account's default (10,000 rps, 5,000 burst), which every API of the account shares.
DEFAULT_THROTTLING = Throttling(rate_limit=50.0, burst_limit=100)


def write_stage_config(project_dir: Path, stage: str, outputs: Mapping[str, str]) -> None:
    """Point `stage` at the stack's resources: environment variables and IAM policies."""
    config_path = project_dir / CONFIG
    config: dict[str, Any] = json.loads(config_path.read_text())
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.setdefault("api_gateway_stage", DEFAULT_API_STAGE)
    stage_config["autogen_policy"] = False
    stage_config.setdefault("environment_variables", {}).update(stack.environment(outputs))
    functions = stage_config.setdefault("lambda_functions", {})
    for function in policies.FUNCTIONS:
        name = policies.policy_file_name(stage, function)
        document = policies.policy_document(function, stage, outputs)
        (project_dir / ".chalice" / name).write_text(json.dumps(document, indent=2) + "\n")
        functions.setdefault(function, {})["iam_policy_file"] = name
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def gateway_response_templates(code: str, message: str) -> dict[str, str]:
    body = json.dumps({"error": {"code": code, "message": message}})
    return {"application/json": body}


def _config(project_dir: Path, stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """.chalice/config.json, and the stage's own part of it."""
    config: dict[str, Any] = json.loads((project_dir / CONFIG).read_text())
    return config, config.get("stages", {}).get(stage, {})


def apply_gateway_responses(apigateway: Any, rest_api_id: str) -> None:
    for response_type, (code, message) in GATEWAY_RESPONSES.items():
        status = GATEWAY_STATUS_CODES.get(response_type)
        apigateway.put_gateway_response(
            restApiId=rest_api_id,
            responseType=response_type,
            responseTemplates=gateway_response_templates(code, message),
            **({"statusCode": status} if status else {}),
        )


def stage_throttling(project_dir: Path, stage: str) -> Throttling:
    """The stage's limits: its `api_throttling` in .chalice/config.json (a top-level one
    applies to every stage), each key falling back to DEFAULT_THROTTLING.

        "stages": {"prod": {"api_throttling": {"rate_limit": 200, "burst_limit": 400}}}
    """
    config, stage_config = _config(project_dir, stage)
    given = {**config.get("api_throttling", {}), **stage_config.get("api_throttling", {})}
    unknown = set(given) - {"rate_limit", "burst_limit"}
    if unknown:
        raise SystemExit(f"api_throttling of stage {stage}: unknown key(s) {sorted(unknown)}")
    rate = given.get("rate_limit", DEFAULT_THROTTLING.rate_limit)
    burst = given.get("burst_limit", DEFAULT_THROTTLING.burst_limit)
    rate_ok = isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate)
    if not (rate_ok and rate > 0):
        raise SystemExit(f"api_throttling of stage {stage}: rate_limit must be > 0, got {rate!r}")
    if not (isinstance(burst, int) and not isinstance(burst, bool) and burst >= 1):
        raise SystemExit(
            f"api_throttling of stage {stage}: burst_limit must be an integer >= 1, got {burst!r}"
        )
    return Throttling(rate_limit=float(rate), burst_limit=burst)


def _replace(values: Mapping[str, str]) -> list[dict[str, str]]:
    """Patch operations replacing each path's value."""
    return [{"op": "replace", "path": path, "value": value} for path, value in values.items()]


def throttling_patch_operations(throttling: Throttling) -> list[dict[str, str]]:
    """update_stage operations setting the limits of every resource and method (`/*/*`)."""
    return _replace(
        {
            "/*/*/throttling/rateLimit": str(throttling.rate_limit),
            "/*/*/throttling/burstLimit": str(throttling.burst_limit),
        }
    )


def update_stage(
    apigateway: Any, rest_api_id: str, api_stage: str, operations: list[dict[str, str]]
) -> None:
    apigateway.update_stage(restApiId=rest_api_id, stageName=api_stage, patchOperations=operations)


# --- access logs ------------------------------------------------------------------------

# One JSON line per request in the stage's access-log group (the stack's ApiAccessLogGroup).
# Every value is quoted, so a line is valid JSON even where API Gateway writes "-" for a
# value it does not have. Never the API key: it travels in the Authorization header, which
# is not logged; the tenant is what the authorizer resolved it to.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "requestTimeEpoch": "$context.requestTimeEpoch",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integration.status",
    "integrationError": "$context.integration.error",
    "errorType": "$context.error.responseType",
    "authorizerStatus": "$context.authorizer.status",
    "authorizerLatency": "$context.authorizer.latency",
    "authorizerError": "$context.authorizer.error",
    "tenant": "$context.authorizer.tenant",
}
ACCESS_LOG_FORMAT = json.dumps(ACCESS_LOG_FIELDS, separators=(",", ":"))


def access_log_patch_operations(
    destination_arn: str, log_format: str = ACCESS_LOG_FORMAT
) -> list[dict[str, str]]:
    """update_stage operations sending the stage's access logs to the log group
    `destination_arn` (the group's own ARN, without the ":*" of its GetAtt) in `log_format`."""
    return _replace(
        {
            "/accessLogSettings/destinationArn": destination_arn,
            "/accessLogSettings/format": log_format,
        }
    )


# API Gateway writes logs with one IAM role per account and region (its account settings'
# cloudwatchRoleArn), shared by every API there. It is not a stage's to own: a stack that
# held the setting (AWS::ApiGateway::Account) would take every other stage's logging down
# with it. `make deploy` leaves a role that is set alone, and sets this one only where none
# is: outside any stack, kept by `make destroy`, one for every stage of the account.
LOGS_ROLE_NAME = "media-pipeline-apigateway-logs"
LOGS_ROLE_POLICY = "write-access-logs"
# How long a new role may take to become assumable by API Gateway (IAM is eventually
# consistent): its account settings refuse it until then.
LOGS_ROLE_SETTLE_SECONDS = 60.0


LOGS_ROLE_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def logs_role_policy(log_group_arn: str) -> dict[str, Any]:
    """What API Gateway needs to write the access logs of every stage of the app, in any
    region of the account: its log groups are the stacks' (it creates none), and it reads
    none of the events it writes. Not AWS's managed AmazonAPIGatewayPushToCloudWatchLogs,
    which grants that on every log group."""
    _, partition, _, _, account, _ = log_group_arn.split(":", 5)
    groups = f"arn:{partition}:logs:*:{account}:log-group:{stack.APP_NAME}-*-api-access"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FindLogGroups",
                "Effect": "Allow",
                "Action": ["logs:DescribeLogGroups"],
                "Resource": [f"arn:{partition}:logs:*:{account}:log-group:*"],
            },
            {
                "Sid": "WriteAccessLogs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                "Resource": [groups, f"{groups}:log-stream:*"],
            },
        ],
    }


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _logs_role(iam: Any, log_group_arn: str) -> str:
    """The app's logging role (created if absent), its policy brought up to date."""
    from botocore.exceptions import ClientError

    try:
        role = iam.get_role(RoleName=LOGS_ROLE_NAME)["Role"]
    except ClientError as exc:
        if _error_code(exc) != "NoSuchEntity":
            raise
        role = iam.create_role(
            RoleName=LOGS_ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(LOGS_ROLE_TRUST_POLICY),
            Description="API Gateway writes the media-pipeline stages' access logs with it.",
        )["Role"]
    iam.put_role_policy(
        RoleName=LOGS_ROLE_NAME,
        PolicyName=LOGS_ROLE_POLICY,
        PolicyDocument=json.dumps(logs_role_policy(log_group_arn)),
    )
    return str(role["Arn"])


def ensure_api_gateway_logs_role(
    apigateway: Any,
    iam: Any,
    log_group_arn: str,
    *,
    settle_seconds: float = LOGS_ROLE_SETTLE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The account's API Gateway CloudWatch Logs role in this region: one already set is
    left as it is (the app's own gets its policy brought up to date); where none is,
    LOGS_ROLE_NAME, created if need be, and set. Returns the role's ARN."""
    from botocore.exceptions import ClientError

    current = str(apigateway.get_account().get("cloudwatchRoleArn") or "")
    if current and not current.endswith(f":role/{LOGS_ROLE_NAME}"):
        return current
    role_arn = _logs_role(iam, log_group_arn)
    if current == role_arn:
        return role_arn
    operations = _replace({"/cloudwatchRoleArn": role_arn})
    waited = 0.0
    while True:
        try:
            apigateway.update_account(patchOperations=operations)
        except ClientError as exc:
            # A role seconds old may not be assumable yet: API Gateway refuses it for now.
            if _error_code(exc) != "BadRequestException" or waited >= settle_seconds:
                raise
            sleep(5.0)
            waited += 5.0
        else:
            return role_arn


def api_gateway_stage(project_dir: Path, stage: str) -> str:
    """The API Gateway stage Chalice deploys the stage's REST API to."""
    config, stage_config = _config(project_dir, stage)
    return str(
        stage_config.get("api_gateway_stage", config.get("api_gateway_stage", DEFAULT_API_STAGE))
    )


def _deployed(project_dir: Path, stage: str, resource_type: str, key: str) -> list[str]:
    """`key` of each resource of `resource_type` that `chalice deploy` recorded for the stage."""
    deployed = json.loads((project_dir / ".chalice" / "deployed" / f"{stage}.json").read_text())
    return [
        str(resource[key])
        for resource in deployed["resources"]
        if resource.get("resource_type") == resource_type
    ]


def deployed_functions(project_dir: Path, stage: str) -> list[str]:
    """The Lambda functions `chalice deploy` recorded for the stage."""
    return _deployed(project_dir, stage, "lambda_function", "lambda_arn")


def ship_audited_package(lambda_client: Any, functions: list[str], zip_path: Path) -> None:
    """Give every function the zip `make package` built and audited, in place of the one
    `chalice deploy` built: the same sources and wheels, plus the bytecode Lambda's
    read-only task root could never cache (about half of `import app` at a cold start)."""
    code = zip_path.read_bytes()
    settled = lambda_client.get_waiter("function_updated_v2")
    for function in functions:
        settled.wait(FunctionName=function)  # chalice's own update may still be in progress
        lambda_client.update_function_code(FunctionName=function, ZipFile=code)
        settled.wait(FunctionName=function)


def api_handler_log_retention(project_dir: Path, stage: str) -> int | None:
    """The REST API function's log retention in days, as configured for Chalice."""
    from chalice.config import Config

    config, _ = _config(project_dir, stage)
    function = Config(chalice_stage=stage, function_name=policies.API, config_from_disk=config)
    days = function.log_retention_in_days
    return int(days) if days is not None else None


def retain_api_handler_logs(logs: Any, stage: str, days: int) -> str:
    """Give the REST API function's own log group the configured retention. Chalice gives
    it to `/aws/lambda/<app>-<stage>-api_handler`, but names that function `<app>-<stage>`,
    and Lambda logs to `/aws/lambda/<function name>`: without this, its logs are kept
    forever. Returns the group's name."""
    name = f"/aws/lambda/{stack.stack_name(stage)}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=name)
    logs.put_retention_policy(logGroupName=name, retentionInDays=days)
    return name


def _chalice(*arguments: str, env: Mapping[str, str] | None = None) -> None:
    from infra import package

    command = package.chalice_command(*arguments)
    print("+ chalice", " ".join(arguments), flush=True)
    subprocess.run(command, cwd=PROJECT, check=True, env=dict(env) if env else None)  # noqa: S603


def stage_environment(project_dir: Path, stage: str) -> dict[str, str]:
    """The environment variables the stage's functions get (top level, then the stage)."""
    config, stage_config = _config(project_dir, stage)
    return {
        **config.get("environment_variables", {}),
        **stage_config.get("environment_variables", {}),
    }


def chalice_environment(
    wheelhouse: Path, arch: str, stage_variables: Mapping[str, str]
) -> dict[str, str]:
    """The environment `chalice deploy` runs in.

    Besides pip confined to the wheelhouse, the stage's own variables: the decorators in
    app.py read the bucket and queue names (and batch settings) when Chalice imports the
    app to wire its event sources, and Chalice does not apply environment_variables there.
    """
    from infra import package

    return {**package.offline_build_environment(wheelhouse, arch), **stage_variables}


def _forget_local_builds() -> None:
    """Chalice reuses a zip it built before and packs any bytecode it finds: neither may
    reach Lambda, so both go before a deploy."""
    shutil.rmtree(PROJECT / ".chalice" / "deployments", ignore_errors=True)
    for cache in (PROJECT / "chalicelib").rglob("__pycache__"):
        shutil.rmtree(cache)


def deploy(stage: str, parameters: Mapping[str, str] | None = None) -> None:
    import boto3

    from infra import package

    throttling = stage_throttling(PROJECT, stage)  # a bad setting stops the deploy up front
    outputs = stack.deploy(boto3.client("cloudformation"), stage, parameters)
    # Before anything of the stage changes: a deployer who may not set it stops here.
    ensure_api_gateway_logs_role(
        boto3.client("apigateway"), boto3.client("iam"), outputs["ApiAccessLogGroupArn"]
    )
    write_stage_config(PROJECT, stage, outputs)
    # First the build `make package` audits (target wheels only, nothing compiled here):
    # chalice deploy below makes the same zip from the same wheelhouse.
    if package.main(["--stage", stage]) != 0:
        raise SystemExit("the deployment package failed its audit; nothing was deployed")
    arch = package.configured_architecture(PROJECT, stage)
    variables = stage_environment(PROJECT, stage)
    environment = chalice_environment(package.default_wheelhouse(arch), arch, variables)
    _forget_local_builds()
    _chalice("deploy", "--stage", stage, env=environment)
    audited = PROJECT / "build" / "package" / stage / package.DEPLOYMENT_ZIP
    ship_audited_package(boto3.client("lambda"), deployed_functions(PROJECT, stage), audited)
    retention = api_handler_log_retention(PROJECT, stage)
    if retention is not None:
        retain_api_handler_logs(boto3.client("logs"), stage, retention)
    apigateway = boto3.client("apigateway")
    (rest_api_id,) = _deployed(PROJECT, stage, "rest_api", "rest_api_id")
    api_stage = api_gateway_stage(PROJECT, stage)
    apply_gateway_responses(apigateway, rest_api_id)
    apigateway.create_deployment(restApiId=rest_api_id, stageName=api_stage)
    operations = throttling_patch_operations(throttling)
    operations += access_log_patch_operations(outputs["ApiAccessLogGroupArn"])
    update_stage(apigateway, rest_api_id, api_stage, operations)
    print(json.dumps({"stage": stage, **outputs}, indent=2))


def function_log_groups(stage: str) -> list[str]:
    """The log groups of the stage's functions: `/aws/lambda/<function name>`, as Lambda
    names them, and as Chalice names the ones it gives a retention (the same, but for the
    REST API's function, which Chalice names `<app>-<stage>` and its group `...-api_handler`)."""
    prefix = f"/aws/lambda/{stack.stack_name(stage)}"
    return [prefix] + [f"{prefix}-{function}" for function in policies.FUNCTIONS]


def delete_log_groups(logs: Any, names: list[str]) -> list[str]:
    """Delete the log groups of `names` that exist; returns those deleted."""
    deleted = []
    for name in names:
        try:
            logs.delete_log_group(logGroupName=name)
        except logs.exceptions.ResourceNotFoundException:
            continue
        deleted.append(name)
    return deleted


def destroy(stage: str) -> None:
    import boto3

    _chalice("delete", "--stage", stage)
    delete_log_groups(boto3.client("logs"), function_log_groups(stage))
    cloudformation = boto3.client("cloudformation")
    outputs = stack.outputs(cloudformation, stage)
    s3 = boto3.resource("s3")
    for name in (outputs["UploadsBucket"], outputs["DerivedBucket"]):
        s3.Bucket(name).object_versions.delete()
    stack.delete(cloudformation, stage)


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--parameter takes KEY=VALUE, got {pair!r}")
        parameters[key] = value
    return parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy", description=__doc__)
    parser.add_argument("action", choices=("deploy", "destroy"))
    parser.add_argument("--stage", required=True)
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter, e.g. AlarmEmail=ops@example.com (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.action == "deploy":
        deploy(args.stage, parse_parameters(args.parameter))
    else:
        destroy(args.stage)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
