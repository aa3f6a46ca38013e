"""The data-plane stack: deploy `infra/template.yaml` to CloudFormation, read its outputs.

The same template is deployed to AWS (`make deploy`) and to an emulator (the tests, the
local stack), so local and cloud cannot drift. An emulator's CloudFormation does not
apply every property, though: `apply_emulator_gaps` applies the ones moto accepts but
ignores, through the service APIs, with the values written in the template.

Clients come from the caller (a boto3 CloudFormation client, or a session), so the code
is the same against AWS, moto's in-process mock and an emulator behind an endpoint URL.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from boto3.session import Session

# boto3-stubs is installed without its cloudformation extra: the client is untyped.
CloudFormationClient = Any

APP_NAME = "media-pipeline"
WORKER_FUNCTION = "make_thumbnails"
# AWS recommends a queue visibility timeout of at least 6 times the timeout of the
# function its event source invokes: a batch can be retried within one timeout.
VISIBILITY_TIMEOUT_FACTOR = 6

PROJECT_DIR = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = Path(__file__).resolve().with_name("template.yaml")
CHALICE_CONFIG_PATH = PROJECT_DIR / ".chalice" / "config.json"

# The app's environment variables (chalicelib/config.py, app.py) <- the stack's outputs.
ENVIRONMENT_OUTPUTS = {
    "UPLOADS_BUCKET": "UploadsBucket",
    "DERIVED_BUCKET": "DerivedBucket",
    "JOBS_TABLE": "JobsTable",
    "API_KEYS_TABLE": "ApiKeysTable",
    "WEBHOOKS_TABLE": "WebhooksTable",
    "WEBHOOK_SECRETS_KEY": "WebhookSecretsKey",
    "WEBHOOKS_QUEUE": "WebhooksQueue",
    "WEBHOOKS_DLQ": "WebhooksDlq",
    "JOBS_QUEUE": "JobsQueue",
    "JOBS_DLQ": "JobsDlq",
    "REPROCESS_QUEUE": "ReprocessQueue",
    "REPROCESS_DLQ": "ReprocessDlq",
    "BACKFILLS_TABLE": "BackfillsTable",
    "BACKFILL_QUEUE": "BackfillQueue",
    "BACKFILL_DLQ": "BackfillDlq",
    # One retention for job records and their outputs (the derived bucket's lifecycle).
    "JOB_TTL_DAYS": "JobTtlDays",
    # How long originals are kept for reprocessing (the uploads bucket's lifecycle).
    "ORIGINALS_RETENTION_DAYS": "OriginalsKeptDays",
    # What the sweeper must know of the jobs queue (chalicelib/sweeper.py).
    "JOBS_QUEUE_RETENTION_SECONDS": "JobsQueueRetentionSeconds",
    "JOBS_QUEUE_VISIBILITY_TIMEOUT_SECONDS": "JobsQueueVisibilityTimeoutSeconds",
}


NO_UPDATES = "No updates are to be performed"


def stack_name(stage: str) -> str:
    return f"{APP_NAME}-{stage}"


# --- the template -------------------------------------------------------------------------


@cache
def template_body() -> str:
    """The template as written (YAML with CloudFormation's short tags), sent as is."""
    return TEMPLATE_PATH.read_text()


@cache
def _template_json() -> str:
    # cfn-lint's decoder reads CloudFormation's YAML dialect (!Sub, !Ref, !GetAtt a.b, ...)
    # into the long form ({"Fn::Sub": ...}); its nodes are dict/str subclasses carrying
    # line marks, flattened here to plain JSON once per process.
    from cfnlint.decode import decode_str  # type: ignore[import-untyped]

    template, errors = decode_str(template_body())
    if errors or not isinstance(template, dict):
        messages = "; ".join(str(error) for error in errors or [])
        raise ValueError(f"{TEMPLATE_PATH} does not parse: {messages or 'not a mapping'}")
    return json.dumps(template)


def load_template() -> dict[str, Any]:
    """The template in long form (plain dicts and lists), a fresh copy on every call."""
    template: dict[str, Any] = json.loads(_template_json())
    return template


# --- parameters ---------------------------------------------------------------------------


def _chalice_config(stage: str, **params: Any) -> Any:
    from chalice.config import Config

    on_disk = json.loads(CHALICE_CONFIG_PATH.read_text())
    return Config(chalice_stage=stage, config_from_disk=on_disk, **params)


def worker_timeout_seconds(stage: str) -> int:
    """The worker's Lambda timeout on `stage`, as Chalice resolves it from its config."""
    from chalice.constants import DEFAULT_LAMBDA_TIMEOUT

    default = {"lambda_timeout": DEFAULT_LAMBDA_TIMEOUT}
    config = _chalice_config(stage, function_name=WORKER_FUNCTION, default_params=default)
    return int(config.lambda_timeout)


def log_retention_days(stage: str) -> int:
    """The stage's log retention, as Chalice resolves it (log_retention_in_days) for the
    functions' log groups; 0 when none is set, which Chalice leaves to never expire."""
    return int(_chalice_config(stage).log_retention_in_days or 0)


def default_parameters(stage: str) -> dict[str, str]:
    """The parameters every deploy passes: the stage, and what follows from Chalice's config."""
    visibility = VISIBILITY_TIMEOUT_FACTOR * worker_timeout_seconds(stage)
    return {
        "Stage": stage,
        "QueueVisibilityTimeoutSeconds": str(visibility),
        "LogRetentionDays": str(log_retention_days(stage)),
    }


# --- deploy, read, delete -------------------------------------------------------------------


def deploy(
    cloudformation: CloudFormationClient,
    stage: str,
    parameters: Mapping[str, str] | None = None,
    *,
    poll_seconds: int = 5,
) -> dict[str, str]:
    """Create or update the stage's stack, wait until it settles, and return its outputs.

    `parameters` override `default_parameters(stage)`; the others take the template's
    defaults (an update does not keep a previous deploy's values: the template and the
    parameters given are the whole truth). A deploy that changes nothing succeeds.
    """
    from botocore.exceptions import ClientError

    values = {**default_parameters(stage), **(parameters or {})}
    if values["Stage"] != stage:
        raise ValueError(f"parameter Stage={values['Stage']!r} contradicts stage {stage!r}")
    name = stack_name(stage)
    request: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": template_body(),
        "Parameters": [
            {"ParameterKey": key, "ParameterValue": value} for key, value in sorted(values.items())
        ],
    }
    status = _status(cloudformation, name)
    if status == "ROLLBACK_COMPLETE":
        # A stack whose creation failed can only be deleted, then created again.
        delete(cloudformation, stage, poll_seconds=poll_seconds)
        status = None
    if status is None:
        cloudformation.create_stack(**request)
        _wait(cloudformation, "stack_create_complete", name, poll_seconds)
    elif status.endswith("_IN_PROGRESS"):
        raise RuntimeError(f"stack {name} is busy ({status}); deploy again once it settles")
    else:
        try:
            cloudformation.update_stack(**request)
        except ClientError as exc:
            if NO_UPDATES not in str(exc.response.get("Error", {}).get("Message", "")):
                raise
        else:
            _wait(cloudformation, "stack_update_complete", name, poll_seconds)
    return outputs(cloudformation, stage)


def outputs(cloudformation: CloudFormationClient, stage: str) -> dict[str, str]:
    """The stack's outputs, {OutputKey: OutputValue}."""
    stack = cloudformation.describe_stacks(StackName=stack_name(stage))["Stacks"][0]
    return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}


def delete(cloudformation: CloudFormationClient, stage: str, *, poll_seconds: int = 5) -> None:
    """Delete the stage's stack (if there is one) and wait until it is gone."""
    name = stack_name(stage)
    if _status(cloudformation, name) is None:
        return
    cloudformation.delete_stack(StackName=name)
    _wait(cloudformation, "stack_delete_complete", name, poll_seconds)


def environment(stack_outputs: Mapping[str, str]) -> dict[str, str]:
    """The app's environment variables (see chalicelib/config.py) from the stack's outputs."""
    return {variable: stack_outputs[key] for variable, key in ENVIRONMENT_OUTPUTS.items()}


def use_stage_output(stage: str | None, variable: str) -> None:
    """Set the app's `variable` (one of ENVIRONMENT_OUTPUTS) from the stage's stack; without
    a stage, it must be set already (the local stack's)."""
    if stage is not None:
        import boto3

        stack_outputs = outputs(boto3.client("cloudformation"), stage)
        os.environ[variable] = stack_outputs[ENVIRONMENT_OUTPUTS[variable]]
    elif not os.environ.get(variable):
        raise SystemExit(f"give --stage, or set {variable}")


def _status(cloudformation: CloudFormationClient, name: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
            return None
        raise
    status = str(stacks[0]["StackStatus"])
    return None if status == "DELETE_COMPLETE" else status


def _wait(cloudformation: CloudFormationClient, waiter: str, name: str, poll_seconds: int) -> None:
    from botocore.exceptions import WaiterError

    try:
        cloudformation.get_waiter(waiter).wait(
            StackName=name,
            WaiterConfig={"Delay": poll_seconds, "MaxAttempts": max(1, 3600 // poll_seconds)},
        )
    except WaiterError as exc:
        raise RuntimeError(
            f"stack {name}: {waiter} failed: {_failures(cloudformation, name)}"
        ) from exc


def _failures(cloudformation: CloudFormationClient, name: str) -> str:
    try:
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
    except Exception:  # noqa: BLE001 - only decorates the error being raised
        return "(no stack events)"
    reasons = [
        f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
        for event in events
        if str(event.get("ResourceStatus", "")).endswith("FAILED")
    ]
    return "; ".join(reasons[:5]) or "(no failed resources reported)"


# --- emulator gaps --------------------------------------------------------------------------

# Properties moto's CloudFormation (5.2) accepts and does not apply, each with the service
# call `apply_emulator_gaps` applies it with instead (the value goes to the parameter of the
# same name, in the API's spelling). Measured, not guessed:
# tests/test_infra.py fails when moto starts applying one of them (then drop it here).
#
# Gaps nothing can fill, checked statically in the template instead:
# - AWS::SQS::Queue RedriveAllowPolicy: moto's queues have no such attribute at all.
# - AWS::DynamoDB::Table SSESpecification: moto reads only the API's spelling ("Enabled",
#   not "SSEEnabled") and its UpdateTable ignores SSE. DynamoDB encrypts at rest anyway.
# - AWS::S3::BucketPolicy and AWS::CloudWatch::Alarm: resources moto skips with a warning.
#   Deliberately not created either: the bucket policies only deny requests without TLS,
#   which an emulator served over plain HTTP receives; alarms have nothing to watch locally.
#   (The emulator's server creates the alarms itself, devstack.emulator_gaps, so that a
#   deploy rehearsed against it shows them; moto in-process, as the tests use it, does not.)
# Everything else the app relies on moto does apply: the queues' visibility timeout,
# retention, redrive policy and SSE; the tables' keys and index; bucket encryption.
EMULATOR_GAPS: dict[str, dict[str, str]] = {
    "AWS::S3::Bucket": {
        "PublicAccessBlockConfiguration": "put_public_access_block",
        "CorsConfiguration": "put_bucket_cors",
        "LifecycleConfiguration": "put_bucket_lifecycle_configuration",
        "OwnershipControls": "put_bucket_ownership_controls",
        "VersioningConfiguration": "put_bucket_versioning",
    },
    "AWS::DynamoDB::Table": {
        "TimeToLiveSpecification": "update_time_to_live",
        "PointInTimeRecoverySpecification": "update_continuous_backups",
    },
}
# The service of each resource type, and the parameter naming the resource.
_SERVICES = {"AWS::S3::Bucket": ("s3", "Bucket"), "AWS::DynamoDB::Table": ("dynamodb", "TableName")}
# CloudFormation's names -> the APIs', where they differ.
_API_NAMES = {
    "CorsConfiguration": "CORSConfiguration",
    "CorsRules": "CORSRules",
    "Id": "ID",
    "ExposedHeaders": "ExposeHeaders",
    "MaxAge": "MaxAgeSeconds",
}


def apply_emulator_gaps(session: Session, stage: str) -> list[str]:
    """Apply the EMULATOR_GAPS properties of the stage's stack through the service APIs.

    Values are the template's, resolved with the stack's own parameters and physical
    resource ids as CloudFormation reports them, so the emulator ends up with what AWS
    would have created. Idempotent, and harmless against AWS (which already applied them).
    A property the API cannot take as translated fails botocore's validation, never is
    dropped. Returns the "LogicalId.Property" names applied.
    """
    template = load_template()
    resolver = Resolver.for_stack(session.client("cloudformation"), stage, template)
    applied: list[str] = []
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        calls = EMULATOR_GAPS.get(resource["Type"], {})
        gaps = [gap for gap in calls if gap in properties]
        physical_id = resolver.physical_ids.get(logical_id)
        if not gaps or physical_id is None:  # e.g. a resource whose Condition is false
            continue
        service, resource_parameter = _SERVICES[resource["Type"]]
        client = session.client(service)  # type: ignore[call-overload]
        for gap in gaps:
            parameter = _API_NAMES.get(gap, gap)
            value = _api_value(client, calls[gap], parameter, resolver.resolve(properties[gap]))
            if gap != "TimeToLiveSpecification" or _ttl_differs(client, physical_id, value):
                getattr(client, calls[gap])(**{resource_parameter: physical_id, parameter: value})
            applied.append(f"{logical_id}.{gap}")
    return applied


def _renamed(value: Any) -> Any:
    if isinstance(value, dict):
        return {_API_NAMES.get(key, key): _renamed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item) for item in value]
    return value


def _lifecycle_rule(rule: Mapping[str, Any]) -> Any:
    """In the API, a rule's prefix is a filter and its expiration a structure."""
    moved = ("Prefix", "ExpirationInDays", "ExpiredObjectDeleteMarker")
    api = {key: value for key, value in rule.items() if key not in moved}
    api["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "ExpiredObjectDeleteMarker" in rule:
        api["Expiration"] = {"ExpiredObjectDeleteMarker": rule["ExpiredObjectDeleteMarker"]}
    return api


def _api_value(client: Any, method: str, parameter: str, value: Any) -> Any:
    """`value` in the API's spelling, with the types it takes for `parameter`: CloudFormation
    passes numbers and booleans as strings too (a parameter's value always is one)."""
    if parameter == "LifecycleConfiguration":
        value = {**value, "Rules": [_lifecycle_rule(rule) for rule in value["Rules"]]}
    operation = client.meta.service_model.operation_model(client.meta.method_to_api_mapping[method])
    return _typed(_renamed(value), operation.input_shape.members[parameter])


def _typed(value: Any, shape: Any) -> Any:
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: _typed(v, members[k]) if k in members else v for k, v in value.items()}
    if shape.type_name == "list" and isinstance(value, list):
        return [_typed(item, shape.member) for item in value]
    if shape.type_name in ("integer", "long"):
        return int(value)
    if shape.type_name == "boolean" and not isinstance(value, bool):
        return {"true": True, "false": False}[str(value).lower()]
    return value


def _ttl_differs(dynamodb: Any, table: str, value: Mapping[str, Any]) -> bool:
    """AWS refuses to enable TTL twice, or to disable it when it is not enabled."""
    current = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    status = current.get("TimeToLiveStatus", "DISABLED")
    if value["Enabled"]:
        return (
            status not in ("ENABLED", "ENABLING")
            or current.get("AttributeName") != value["AttributeName"]
        )
    return status not in ("DISABLED", "DISABLING")


def _list_parameter(value: str) -> list[str]:
    """A list parameter's value as CloudFormation reports it: "a, b" (AWS trims each item),
    or the Python rendering of a list, "['a', ' b']", which is how moto reports one."""
    if value.startswith("["):
        try:
            items = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            items = None
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return [item.strip() for item in items]
    return [item.strip() for item in value.split(",")]


class Resolver:
    """Resolves template values the way CloudFormation did for one deployed stack: Ref and
    Fn::Sub of its parameters (as the stack reports them, defaults included), pseudo
    parameters and resources' physical ids, and Fn::If on the template's conditions
    (Fn::Equals, Fn::Not, Fn::And, Fn::Or), AWS::NoValue dropping the value. Any other
    intrinsic function raises: better than applying a value that is not the template's."""

    _SUB = re.compile(r"\$\{([^}]+)\}")
    # What Ref AWS::NoValue resolves to: the value is left out where it stands.
    _NO_VALUE = object()

    @classmethod
    def for_stack(
        cls,
        cloudformation: CloudFormationClient,
        stage: str,
        template: Mapping[str, Any] | None = None,
    ) -> Resolver:
        name = stack_name(stage)
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        resources = cloudformation.describe_stack_resources(StackName=name)["StackResources"]
        # (moto lists the resources it skipped as entries without ids: they are left out.)
        physical = {
            resource["LogicalResourceId"]: resource["PhysicalResourceId"]
            for resource in resources
            if resource.get("LogicalResourceId") and resource.get("PhysicalResourceId")
        }
        return cls(template if template is not None else load_template(), stack, physical)

    def __init__(
        self, template: Mapping[str, Any], stack: Mapping[str, Any], physical: Mapping[str, str]
    ) -> None:
        self.physical_ids = dict(physical)
        self._conditions: Mapping[str, Any] = template.get("Conditions", {})
        _, partition, _, region, account, _ = str(stack["StackId"]).split(":", 5)
        declared = template.get("Parameters", {})
        self._values: dict[str, Any] = {}
        for parameter in stack.get("Parameters", []):
            key, value = parameter["ParameterKey"], str(parameter["ParameterValue"])
            kind = declared.get(key, {}).get("Type", "String")
            is_list = kind == "CommaDelimitedList" or kind.startswith("List<")
            self._values[key] = _list_parameter(value) if is_list else value
        self._values.update(
            {
                "AWS::AccountId": account,
                "AWS::Region": region,
                "AWS::Partition": partition,
                "AWS::StackName": stack["StackName"],
                "AWS::StackId": stack["StackId"],
                "AWS::URLSuffix": "amazonaws.com",
            }
        )
        self._values.update(physical)

    def resolve(self, value: Any) -> Any:
        """`value` resolved; an AWS::NoValue inside a list or object is left out."""
        if isinstance(value, list):
            items = (self.resolve(item) for item in value)
            return [item for item in items if item is not self._NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._NO_VALUE if argument == "AWS::NoValue" else self._ref(argument)
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self._holds(condition) else when_false)
            if function.startswith("Fn::") or function == "Condition":
                raise NotImplementedError(f"{function} is not resolved for emulators")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not self._NO_VALUE}

    def _holds(self, condition: Any) -> bool:
        """Whether a condition (a name in the template's Conditions, or an expression)
        holds for this stack."""
        if isinstance(condition, str):
            return self._holds(self._conditions[condition])
        ((function, argument),) = condition.items()
        if function == "Condition":
            return self._holds(argument)
        if function == "Fn::Equals":
            left, right = (str(self.resolve(item)) for item in argument)
            return left == right
        if function == "Fn::Not":
            return not self._holds(argument[0])
        if function == "Fn::And":
            return all(self._holds(item) for item in argument)
        if function == "Fn::Or":
            return any(self._holds(item) for item in argument)
        raise NotImplementedError(f"{function} is not evaluated for emulators")

    def _ref(self, name: str) -> Any:
        if name not in self._values:
            raise KeyError(f"cannot resolve Ref {name}")
        return self._values[name]

    def _sub(self, text: Any) -> str:
        if not isinstance(text, str):
            raise NotImplementedError("Fn::Sub with variables is not resolved for emulators")

        def substitute(match: re.Match[str]) -> str:
            value = self._ref(match.group(1))
            if not isinstance(value, str):
                raise TypeError(f"{match.group(0)} is not a string")
            return value

        return self._SUB.sub(substitute, text)
