"""`make deploy` rehearsed end to end, against `make emulator` instead of AWS.

A copy of the project (its git files, so the real tree's .chalice/ is never written) is
deployed as stage `rehearsal` with `make deploy STAGE=rehearsal`, exactly as to AWS, with
only AWS_ENDPOINT_URL and the emulator's credentials set. Everything the deploy made is then
read back through the AWS APIs and compared with where it is declared: .chalice/config.json
(memory, timeout, reserved concurrency, architecture, environment), infra.package.RUNTIME,
the stack's outputs, infra/policies.py, app.py's decorators, infra/deploy.py (gateway
responses, throttling, access logs) and every alarm of infra/template.yaml. A second deploy
must change nothing of it; `make destroy` must leave nothing of the stage.

The emulator is `make emulator`'s process (`python -m devstack.run --emulator`) on a free
127.0.0.1 port, stopped by its pid; the same emulator answers `chalice local --stage local`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config as BotoConfig
from chalice.app import S3EventConfig, SQSEventConfig
from chalice.config import Config

from devstack import launch
from infra import deploy, package, policies, stack

REPO = Path(__file__).resolve().parents[1]
STAGE = "rehearsal"
TENANT, KEY = "acme", "rehearsal-key-0123456789"
READY_SECONDS = 120
DEPLOY_SECONDS = 600

# --- the copy and the emulator ----------------------------------------------------------


def copy_project(destination: Path) -> Path:
    """The project's git files (tracked, and new ones not ignored) copied with their times,
    the real tree's wheelhouse shared (a download cache of target wheels)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    wheelhouse = REPO / ".cache" / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    (destination / ".cache").mkdir()
    (destination / ".cache" / "wheelhouse").symlink_to(wheelhouse)
    return destination


@dataclass
class Emulator:
    aws: dict[str, str]  # its first export line: what any AWS client needs
    app: dict[str, str]  # its second: stage local's resource names, for chalice local
    banner: str


def exported(line: str) -> dict[str, str]:
    words = shlex.split(line)
    assert words[0] == "export"
    return dict(word.split("=", 1) for word in words[1:])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("rehearsal"))


@pytest.fixture(scope="module")
def emulator(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """`make emulator`'s command, in the copy, on a free port; stopped by its pid."""
    environment = launch.user_environment() | {
        "EMULATOR_PORT": str(launch.free_ports(1)[0]),
        "DEV_API_KEYS": f"{TENANT}:{KEY}",
    }
    command = (sys.executable, "-m", "devstack.run", "--emulator")
    log = tmp_path_factory.mktemp("make-emulator") / "output.log"
    with launch.launched(
        command, environment, launch.printed_ready, log=log, cwd=project, timeout=READY_SECONDS
    ) as running:
        banner = running.log_text()
        exports = [exported(line) for line in banner.splitlines() if line.startswith("export ")]
        assert len(exports) == 2, banner
        yield Emulator(exports[0], exports[1], banner)


def aws_environment(emulator: Emulator) -> dict[str, str]:
    """A deploying shell: no AWS settings of its own, none of the app's variables, and the
    emulator's first export line pasted."""
    app_variables = set(stack.ENVIRONMENT_OUTPUTS)
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in app_variables
    }
    return environment | emulator.aws


def make(project: Path, emulator: Emulator, *arguments: str) -> str:
    """`make ARGUMENTS STAGE=rehearsal` in the copy with the project's own .venv, never
    installing anything."""
    venv = REPO / ".venv"
    stamp = next(venv.glob(".installed-*"))
    done = subprocess.run(
        ["make", "-o", str(stamp), *arguments, f"STAGE={STAGE}", f"VENV={venv}"],
        cwd=project,
        env=aws_environment(emulator),
        capture_output=True,
        text=True,
        timeout=DEPLOY_SECONDS,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


# --- reading a stage back -----------------------------------------------------------------


def clients(emulator: Emulator) -> dict[str, Any]:
    session = boto3.session.Session(
        aws_access_key_id=emulator.aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=emulator.aws["AWS_SECRET_ACCESS_KEY"],
        region_name=emulator.aws["AWS_DEFAULT_REGION"],
    )
    config = BotoConfig(s3={"addressing_style": "path"})
    endpoint = emulator.aws["AWS_ENDPOINT_URL"]
    services = "lambda iam s3 events apigateway cloudwatch cloudformation logs sqs dynamodb sns"
    return {
        service: session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]
        for service in services.split()
    }


def deployed_resources(project: Path) -> list[dict[str, Any]]:
    recorded = project / ".chalice" / "deployed" / f"{STAGE}.json"
    resources: list[dict[str, Any]] = json.loads(recorded.read_text())["resources"]
    return resources


def chalice_config(project: Path, function: str) -> Config:
    return Config(
        chalice_stage=STAGE,
        function_name=function,
        config_from_disk=json.loads((project / ".chalice" / "config.json").read_text()),
    )


def read_function(aws: Mapping[str, Any], arn: str) -> dict[str, Any]:
    got = aws["lambda"].get_function(FunctionName=arn)
    configuration = got["Configuration"]
    role = configuration["Role"].rsplit("/", 1)[-1]
    names = aws["iam"].list_role_policies(RoleName=role)["PolicyNames"]
    return {
        "runtime": configuration["Runtime"],
        "architectures": configuration["Architectures"],
        "memory": configuration["MemorySize"],
        "timeout": configuration["Timeout"],
        "tracing": configuration["TracingConfig"]["Mode"],
        "reserved concurrency": got.get("Concurrency", {}).get("ReservedConcurrentExecutions"),
        "environment": configuration.get("Environment", {}).get("Variables", {}),
        "role": role,
        "role policies": {
            name: aws["iam"].get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in names
        },
        "code sha256": configuration["CodeSha256"],
        "log retention": log_retention(aws, f"/aws/lambda/{configuration['FunctionName']}"),
    }


def log_retention(aws: Mapping[str, Any], name: str) -> int | None:
    """The retention of the log group Lambda writes the function's logs to (None: the
    group is absent, or keeps them forever)."""
    groups = aws["logs"].describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next((g.get("retentionInDays") for g in groups if g["logGroupName"] == name), None)


def read_event_sources(aws: Mapping[str, Any], arn: str) -> list[dict[str, Any]]:
    mappings = aws["lambda"].list_event_source_mappings(FunctionName=arn)["EventSourceMappings"]
    return [
        {
            "uuid": mapping["UUID"],
            "queue": mapping["EventSourceArn"],
            "batch size": mapping["BatchSize"],
            "maximum concurrency": mapping.get("ScalingConfig", {}).get("MaximumConcurrency"),
            "state": mapping["State"],
        }
        for mapping in mappings
    ]


def read_schedules(aws: Mapping[str, Any], arn: str) -> list[dict[str, Any]]:
    rules = aws["events"].list_rule_names_by_target(TargetArn=arn)["RuleNames"]
    described = [aws["events"].describe_rule(Name=rule) for rule in rules]
    return [
        {"rule": rule["Name"], "schedule": rule["ScheduleExpression"], "state": rule["State"]}
        for rule in described
    ]


def read_rest_api(aws: Mapping[str, Any], api_id: str, api_stage: str) -> dict[str, Any]:
    apigateway = aws["apigateway"]
    authorizers = apigateway.get_authorizers(restApiId=api_id)["items"]
    names = {authorizer["id"]: authorizer["name"] for authorizer in authorizers}
    routes = {}
    for resource in apigateway.get_resources(restApiId=api_id, embed=["methods"])["items"]:
        for verb, method in resource.get("resourceMethods", {}).items():
            integration = method.get("methodIntegration", {})
            routes[f"{verb} {resource['path']}"] = {
                "authorization": method.get("authorizationType"),
                "authorizer": names.get(method.get("authorizerId") or ""),
                "api key required": method.get("apiKeyRequired", False),
                "integration": [integration.get("type"), integration.get("uri")],
            }
    stage = apigateway.get_stage(restApiId=api_id, stageName=api_stage)
    every_method = stage.get("methodSettings", {}).get("*/*", {})
    return {
        "name": apigateway.get_rest_api(restApiId=api_id)["name"],
        "routes": routes,
        "authorizers": authorizers,
        "gateway responses": {
            item["responseType"]: [item.get("statusCode"), item.get("responseTemplates")]
            for item in apigateway.get_gateway_responses(restApiId=api_id)["items"]
        },
        "throttling": [
            every_method.get("throttlingRateLimit"),
            every_method.get("throttlingBurstLimit"),
        ],
        "access logs": stage.get("accessLogSettings"),
    }


def read_alarms(aws: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    prefix = f"{stack.stack_name(STAGE)}-"
    alarms = aws["cloudwatch"].describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    ignored = {"AlarmArn", "AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp"}
    ignored |= {"StateReason", "StateReasonData", "StateValue", "StateTransitionedTimestamp"}
    return {
        alarm["AlarmName"]: {key: value for key, value in alarm.items() if key not in ignored}
        for alarm in alarms
    }


def read_stage(project: Path, aws: Mapping[str, Any]) -> dict[str, Any]:
    """Everything of the stage that make deploy set, as the AWS APIs answer it."""
    resources = deployed_resources(project)
    functions = {
        r["name"]: r["lambda_arn"] for r in resources if r["resource_type"] == "lambda_function"
    }
    (api_id,) = [r["rest_api_id"] for r in resources if r["resource_type"] == "rest_api"]
    outputs = stack.outputs(aws["cloudformation"], STAGE)
    uploads = outputs["UploadsBucket"]
    notification = aws["s3"].get_bucket_notification_configuration(Bucket=uploads)
    notification.pop("ResponseMetadata", None)
    for configuration in notification.get("LambdaFunctionConfigurations", []):
        # Chalice puts the dispatcher's back without its Id: S3 names it anew each time.
        configuration.pop("Id", None)
    return {
        "outputs": outputs,
        "functions": {name: read_function(aws, arn) for name, arn in functions.items()},
        "arns": functions,
        "event sources": {name: read_event_sources(aws, arn) for name, arn in functions.items()},
        "schedules": {name: read_schedules(aws, arn) for name, arn in functions.items()},
        "uploads notification": notification,
        "rest api": read_rest_api(aws, api_id, deploy.api_gateway_stage(project, STAGE)),
        "alarms": read_alarms(aws),
    }


# --- what the sources say ------------------------------------------------------------------


def app_event_sources() -> dict[str, Any]:
    from app import app

    return {source.name: source for source in app.event_sources}


def invocation_uri(function_arn: str, region: str) -> str:
    return (
        f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )


class AlarmResolver(stack.Resolver):
    """stack.Resolver, with the Fn::GetAtt the template's alarms use (a queue's name)."""

    def __init__(self, base: stack.Resolver, queue_urls: Mapping[str, str]) -> None:
        self.__dict__.update(base.__dict__)
        self._queue_urls = queue_urls

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute == "QueueName":
                return self._queue_urls[logical_id].rsplit("/", 1)[-1]
            raise NotImplementedError(f"Fn::GetAtt {logical_id}.{attribute}: add it here")
        return super().resolve(value)


# CloudFormation's alarm properties that describe_alarms answers under the same name.
ALARM_PROPERTIES = (
    "AlarmName",
    "AlarmDescription",
    "Namespace",
    "MetricName",
    "Dimensions",
    "Statistic",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
)


def template_alarms(aws: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every AWS::CloudWatch::Alarm the stage's stack created, as the template declares it."""
    template = stack.load_template()
    base = stack.Resolver.for_stack(aws["cloudformation"], STAGE, template)
    queues = {
        logical_id: base.physical_ids[logical_id]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::SQS::Queue"
    }
    resolver = AlarmResolver(base, queues)
    alarms = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm" or logical_id not in base.physical_ids:
            continue
        declared = resolver.resolve(resource["Properties"])
        unknown = set(declared) - set(ALARM_PROPERTIES)
        assert not unknown, f"{logical_id}: compare {sorted(unknown)} too"
        for number in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if number in declared:
                declared[number] = int(declared[number])
        declared["Threshold"] = float(declared["Threshold"])
        alarms[declared["AlarmName"]] = declared
    return alarms


# --- the rehearsal ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(project: Path, emulator: Emulator) -> dict[str, Any]:
    """The stage after `make deploy`, after a second one, and after `make destroy`."""
    aws = clients(emulator)
    started = time.monotonic()
    make(project, emulator, "deploy")
    first = read_stage(project, aws)
    alarms = template_alarms(aws)  # while the stack is there to resolve them
    make(project, emulator, "deploy")
    second = read_stage(project, aws)
    make(project, emulator, "destroy")
    print(f"deploy, deploy again, destroy: {time.monotonic() - started:.0f} s")
    return {"first": first, "second": second, "template alarms": alarms, "aws": aws}


def test_make_emulator_prints_what_aws_clients_and_chalice_local_need(emulator: Emulator) -> None:
    assert emulator.aws["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(emulator.aws)
    assert set(emulator.app) == set(stack.ENVIRONMENT_OUTPUTS)
    assert emulator.app["JOBS_TABLE"] == "media-pipeline-local-jobs"
    assert f"API key    {TENANT}: {KEY}" in emulator.banner
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "install", "emulator"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert recipe.strip().endswith("python -m devstack.run --emulator")


def test_chalice_local_answers_the_whole_api_against_the_emulator(
    project: Path, emulator: Emulator
) -> None:
    """`chalice local --stage local` with make emulator's two export lines: the key make
    emulator seeded is taken, jobs are written to and read from the emulated stage local."""
    port = launch.free_ports(1)[0]
    environment = aws_environment(emulator) | emulator.app
    server = subprocess.Popen(
        [
            *package.chalice_command("local", "--stage", "local", "--port", str(port)),
            "--no-autoreload",
        ],
        cwd=project,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {KEY}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"{api}/health", timeout=2)
                break
            except requests.RequestException:
                assert server.poll() is None, "chalice local exited"
                assert time.monotonic() < deadline, "chalice local did not answer"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        assert requests.get(f"{api}/openapi.json", timeout=10).json()["openapi"].startswith("3.1")
        assert requests.get(f"{api}/jobs", timeout=10).status_code == 401
        created = requests.post(
            f"{api}/uploads",
            json={"filename": "kite.jpg", "contentType": "image/jpeg"},
            headers=bearer,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["jobId"]
        assert emulator.app["UPLOADS_BUCKET"] in created.json()["upload"]["url"]
        job = requests.get(f"{api}/jobs/{job_id}", headers=bearer, timeout=10)
        assert job.json()["status"] == "PENDING"
        listed = requests.get(f"{api}/jobs", headers=bearer, timeout=10).json()
        assert [item["jobId"] for item in listed["jobs"]] == [job_id]
    finally:
        server.terminate()
        server.wait(10)


def test_each_function_is_deployed_as_configured(project: Path, deployed: dict[str, Any]) -> None:
    stage = deployed["first"]
    outputs = stage["outputs"]
    audited = project / "build" / "package" / STAGE / package.DEPLOYMENT_ZIP
    code_sha = base64.b64encode(hashlib.sha256(audited.read_bytes()).digest()).decode()
    assert sorted(stage["functions"]) == sorted(policies.FUNCTIONS)
    for name, function in stage["functions"].items():
        config = chalice_config(project, name)
        assert function["runtime"] == package.RUNTIME, name
        assert function["architectures"] == [config.lambda_architecture], name
        assert function["memory"] == config.lambda_memory_size, name
        assert function["timeout"] == config.lambda_timeout, name
        assert function["reserved concurrency"] == config.reserved_concurrency, name
        assert function["tracing"] == ("Active" if config.xray_enabled else "PassThrough"), name
        assert function["environment"] == config.environment_variables, name
        assert stack.environment(outputs).items() <= function["environment"].items(), name
        assert function["role policies"] == {
            function["role"]: policies.policy_document(name, STAGE, outputs)
        }, name
        assert function["code sha256"] == code_sha, name  # the audited zip, not chalice's
        assert function["log retention"] == config.log_retention_in_days, name
    assert stage["functions"][policies.WORKER]["reserved concurrency"] == 20


def test_the_queues_trigger_their_functions_as_app_py_declares(deployed: dict[str, Any]) -> None:
    stage = deployed["first"]
    outputs = stage["outputs"]
    sources = app_event_sources()
    queues = {
        policies.WORKER: outputs["JobsQueueArn"],
        policies.DEAD_LETTERS: outputs["JobsDlqArn"],
        policies.DELIVERIES: outputs["WebhooksQueueArn"],
        policies.WEBHOOK_DEAD_LETTERS: outputs["WebhooksDlqArn"],
        policies.REPROCESS: outputs["ReprocessQueueArn"],
        policies.REPROCESS_DEAD_LETTERS: outputs["ReprocessDlqArn"],
        policies.BACKFILL_PAGES: outputs["BackfillQueueArn"],
        policies.BACKFILL_DEAD_LETTERS: outputs["BackfillDlqArn"],
    }
    for name, mappings in stage["event sources"].items():
        if name not in queues:
            assert mappings == [], name
            continue
        source = sources[name]
        assert isinstance(source, SQSEventConfig)
        (mapping,) = mappings
        assert mapping["queue"] == queues[name]
        assert mapping["batch size"] == source.batch_size
        assert mapping["maximum concurrency"] == source.maximum_concurrency
        assert mapping["state"] == "Enabled"
    assert stage["event sources"][policies.WORKER][0]["maximum concurrency"] == 20


def test_uploads_notify_the_dispatcher_and_the_sweeper_runs_on_its_schedule(
    deployed: dict[str, Any],
) -> None:
    stage = deployed["first"]
    sources = app_event_sources()
    uploads = sources[policies.DISPATCHER]
    assert isinstance(uploads, S3EventConfig)
    (notification,) = stage["uploads notification"]["LambdaFunctionConfigurations"]
    assert set(stage["uploads notification"]) == {"LambdaFunctionConfigurations"}
    assert notification["LambdaFunctionArn"] == stage["arns"][policies.DISPATCHER]
    assert notification["Events"] == uploads.events
    assert notification["Filter"] == {
        "Key": {"FilterRules": [{"Name": "Prefix", "Value": uploads.prefix}]}
    }
    schedule = sources[policies.SWEEPER].schedule_expression.to_string()
    for name, rules in stage["schedules"].items():
        if name == policies.SWEEPER:
            assert [(rule["schedule"], rule["state"]) for rule in rules] == [(schedule, "ENABLED")]
        else:
            assert rules == [], name


def test_the_rest_api_routes_through_the_authorizer_with_the_stages_settings(
    project: Path, deployed: dict[str, Any]
) -> None:
    from app import app

    stage = deployed["first"]
    api = stage["rest api"]
    region = stage["arns"][policies.API].split(":")[3]
    handler = invocation_uri(stage["arns"][policies.API], region)
    assert api["name"] == chalice_config(project, policies.API).app_name
    expected_routes = {}
    for path, methods in app.routes.items():
        for verb, route in methods.items():
            secured = route.authorizer is not None
            expected_routes[f"{verb} {path}"] = {
                "authorization": "CUSTOM" if secured else "NONE",
                "authorizer": policies.AUTHORIZER if secured else None,
                "api key required": False,
                "integration": ["AWS_PROXY", handler],
            }
    assert api["routes"] == expected_routes
    (authorizer,) = api["authorizers"]
    assert authorizer["name"] == policies.AUTHORIZER
    assert authorizer["type"] == "TOKEN"
    assert authorizer["identitySource"] == "method.request.header.Authorization"
    assert authorizer["authorizerUri"] == invocation_uri(stage["arns"][policies.AUTHORIZER], region)
    assert authorizer["authorizerResultTtlInSeconds"] == 60  # AUTHORIZER_TTL_SECONDS
    assert api["gateway responses"] == {
        response_type: [
            deploy.GATEWAY_STATUS_CODES.get(response_type),
            deploy.gateway_response_templates(code, message),
        ]
        for response_type, (code, message) in deploy.GATEWAY_RESPONSES.items()
    }
    throttling = deploy.stage_throttling(project, STAGE)
    assert api["throttling"] == [throttling.rate_limit, throttling.burst_limit]


def test_the_api_stage_logs_access_as_the_deploy_sets_it(deployed: dict[str, Any]) -> None:
    """The stage writes JSON access logs to the stack's log group, in infra/deploy.py's
    format: one line per request, with its request id and never the caller's key."""
    stage = deployed["first"]
    settings = stage["rest api"]["access logs"]
    assert settings["destinationArn"] == stage["outputs"]["ApiAccessLogGroupArn"]
    assert settings["format"] == deploy.ACCESS_LOG_FORMAT
    fields = json.loads(settings["format"])
    assert fields["requestId"] == "$context.requestId"
    assert not any("authorization" in str(value).lower() for value in fields.values())


def test_every_alarm_of_the_template_is_deployed(deployed: dict[str, Any]) -> None:
    alarms = deployed["first"]["alarms"]
    expected: dict[str, dict[str, Any]] = deployed["template alarms"]
    assert sorted(alarms) == sorted(expected)
    for name, declared in expected.items():
        assert {key: alarms[name].get(key) for key in declared} == declared, name
    assert len(alarms) >= 6
    # ... and each watches what the stage deployed: its functions, its REST API.
    functions = {arn.rsplit(":", 1)[-1] for arn in deployed["first"]["arns"].values()}
    watched = {"FunctionName": functions, "ApiName": {deployed["first"]["rest api"]["name"]}}
    for name, alarm in alarms.items():
        for dimension in alarm["Dimensions"]:
            if dimension["Name"] in watched:
                assert dimension["Value"] in watched[dimension["Name"]], name


def test_a_second_deploy_changes_nothing(deployed: dict[str, Any]) -> None:
    assert deployed["second"] == deployed["first"]


def test_destroy_leaves_nothing_of_the_stage(deployed: dict[str, Any]) -> None:
    aws = deployed["aws"]
    name = stack.stack_name(STAGE)
    ours = re.compile(rf"(^|[/:]){re.escape(name)}($|[-_/])")
    left = {
        "functions": [f["FunctionName"] for f in aws["lambda"].list_functions()["Functions"]],
        "event source mappings": [
            m["EventSourceArn"]
            for m in aws["lambda"].list_event_source_mappings()["EventSourceMappings"]
        ],
        "apis": [a["name"] for a in aws["apigateway"].get_rest_apis()["items"]],
        "roles": [r["RoleName"] for r in aws["iam"].list_roles()["Roles"]],
        "queues": aws["sqs"].list_queues().get("QueueUrls", []),
        "tables": aws["dynamodb"].list_tables()["TableNames"],
        "buckets": [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]],
        "rules": [r["Name"] for r in aws["events"].list_rules()["Rules"]],
        "alarms": [a["AlarmName"] for a in aws["cloudwatch"].describe_alarms()["MetricAlarms"]],
        "dashboards": [
            d["DashboardName"] for d in aws["cloudwatch"].list_dashboards()["DashboardEntries"]
        ],
        "log groups": [g["logGroupName"] for g in aws["logs"].describe_log_groups()["logGroups"]],
        "topics": [t["TopicArn"] for t in aws["sns"].list_topics()["Topics"]],
    }
    assert {
        kind: [item for item in items if ours.search(item)] for kind, items in left.items()
    } == {kind: [] for kind in left}
    # The REST API is named after the app, not the stage: none may be left at all.
    assert left["apis"] == []
    summaries = aws["cloudformation"].list_stacks()["StackSummaries"]
    assert {s["StackStatus"] for s in summaries if s["StackName"] == name} <= {"DELETE_COMPLETE"}
