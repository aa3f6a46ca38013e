"""The emulator's gaps (devstack.emulator_gaps): for each, plain moto still answers
otherwise than AWS (when it stops, drop the gap), and the emulator answers as AWS does.

Both run as servers, as `make emulator` runs: plain `moto.server` and
`devstack.emulator_server`, each on a free 127.0.0.1 port, stopped by pid afterwards.
Every probe makes its own resources, so it can run against either server, in any order.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.emulator_gaps import GAPS
from devstack.launch import MOTO_SERVER, running_emulator
from tests.resources import REGION

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gap-probe"
URI = f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{FUNCTION_ARN}/invocations"
AUTHORIZER_URI = URI.replace("gap-probe", "gap-probe-authorizer")


@pytest.fixture(scope="module")
def plain() -> Iterator[str]:
    with running_emulator(command=MOTO_SERVER) as endpoint:
        yield endpoint


def client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def answered(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or exc.response["ResponseMetadata"])


# --- s3-notification-filter-rule-names ---------------------------------------------------


def s3_notification_filter_rule_names(endpoint: str) -> Any:
    """Chalice's spelling of a filter rule (`Prefix`), and a lower-case one: what S3 keeps,
    and which uploads it then notifies."""
    s3, sqs = client(endpoint, "s3"), client(endpoint, "sqs")
    bucket = unique("gap-notifications")
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=unique("gap-notifications"))["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    rules = [{"Name": "Prefix", "Value": "uploads/"}, {"Name": "suffix", "Value": ".jpg"}]
    notification = {
        "QueueArn": attributes["Attributes"]["QueueArn"],
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": rules}},
    }
    try:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [notification]}
        )
    except ClientError as exc:
        return answered(exc)
    (kept,) = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    for key in ("uploads/a.jpg", "elsewhere/b.jpg", "uploads/c.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
    notified = [  # keys come URL-encoded (moto encodes "/" too)
        unquote_plus(record["s3"]["object"]["key"])
        for message in messages.get("Messages", [])
        for record in json.loads(message["Body"]).get("Records", [])
    ]
    return {"rules": kept["Filter"]["Key"]["FilterRules"], "notified": sorted(notified)}


S3_NOTIFICATION_FILTER_RULE_NAMES = {
    "rules": [{"Name": "Prefix", "Value": "uploads/"}, {"Name": "Suffix", "Value": ".jpg"}],
    "notified": ["uploads/a.jpg"],
}


# --- apigateway-swagger-2 ----------------------------------------------------------------


def integration(uri: str = URI) -> dict[str, Any]:
    return {
        "responses": {"default": {"statusCode": "200"}},
        "uri": uri,
        "passthroughBehavior": "when_no_match",
        "httpMethod": "POST",
        "contentHandling": "CONVERT_TO_TEXT",
        "type": "aws_proxy",
    }


def operation(*security: str) -> dict[str, Any]:
    """A method as Chalice writes one, secured by the named definitions."""
    written: dict[str, Any] = {
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "responses": {"200": {"description": "200 response"}},
        "x-amazon-apigateway-integration": integration(),
    }
    if security:
        written["security"] = [{name: []} for name in security]
    return written


def swagger(ttl: int, paths: dict[str, Any]) -> dict[str, Any]:
    """A Swagger 2.0 document as Chalice writes it (with an `info.description`, which
    Chalice leaves out: that is the next gap's)."""
    return {
        "swagger": "2.0",
        "info": {"version": "1.0", "title": "gap-api", "description": "probe"},
        "schemes": ["https"],
        "paths": paths,
        "definitions": {"Empty": {"type": "object", "title": "Empty Schema"}},
        "x-amazon-apigateway-binary-media-types": ["application/octet-stream", "image/png"],
        "securityDefinitions": {
            "bearer": {
                "in": "header",
                "type": "apiKey",
                "name": "Authorization",
                "x-amazon-apigateway-authtype": "custom",
                "x-amazon-apigateway-authorizer": {
                    "type": "token",
                    "authorizerUri": AUTHORIZER_URI,
                    "authorizerResultTtlInSeconds": ttl,
                },
            },
            "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"},
        },
        "x-amazon-apigateway-gateway-responses": {
            "UNAUTHORIZED": {
                "statusCode": "401",
                "responseTemplates": {"application/json": '{"message": "no"}'},
            }
        },
    }


def rest_api_as_read(apigateway: Any, api_id: str) -> dict[str, Any]:
    api = apigateway.get_rest_api(restApiId=api_id)
    authorizers = {
        item["id"]: item for item in apigateway.get_authorizers(restApiId=api_id)["items"]
    }
    routes = {}
    for resource in apigateway.get_resources(restApiId=api_id, embed=["methods"])["items"]:
        for verb, method in resource.get("resourceMethods", {}).items():
            called = method.get("methodIntegration", {})
            authorizer = authorizers.get(method.get("authorizerId", ""), {})
            routes[f"{verb} {resource['path']}"] = {
                "authorizationType": method.get("authorizationType"),
                "authorizer": authorizer.get("name"),
                "apiKeyRequired": method.get("apiKeyRequired"),
                "integration": [called.get(key) for key in ("type", "uri", "httpMethod")],
                "passthroughBehavior": called.get("passthroughBehavior"),
            }
    return {
        "name": api["name"],
        "version": api.get("version"),
        "binaryMediaTypes": api.get("binaryMediaTypes"),
        "authorizers": {
            item["name"]: {key: value for key, value in item.items() if key != "id"}
            for item in authorizers.values()
        },
        "routes": routes,
        "gatewayResponses": {
            item["responseType"]: [item.get("statusCode"), item.get("responseTemplates")]
            for item in apigateway.get_gateway_responses(restApiId=api_id)["items"]
        },
    }


def apigateway_swagger_2(endpoint: str) -> Any:
    """Chalice's import (ImportRestApi), then its update (PutRestApi, overwrite)."""
    apigateway = client(endpoint, "apigateway")
    first = swagger(60, {"/open": {"get": operation()}, "/jobs/{id}": {"get": operation("bearer")}})
    try:
        api_id = apigateway.import_rest_api(
            body=json.dumps(first), parameters={"endpointConfigurationTypes": "EDGE"}
        )["id"]
    except ClientError as exc:
        return answered(exc)
    imported = rest_api_as_read(apigateway, api_id)
    authorizer_ids = [item["id"] for item in apigateway.get_authorizers(restApiId=api_id)["items"]]
    second = swagger(
        30, {"/jobs/{id}": {"get": operation("bearer")}, "/keyed": {"post": operation("api_key")}}
    )
    apigateway.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(second))
    updated = rest_api_as_read(apigateway, api_id)
    kept_ids = [item["id"] for item in apigateway.get_authorizers(restApiId=api_id)["items"]]
    return {"imported": imported, "updated": updated, "authorizer kept": kept_ids == authorizer_ids}


def expected_route(authorizer: str | None = None, api_key: bool = False) -> dict[str, Any]:
    return {
        "authorizationType": "CUSTOM" if authorizer else "NONE",
        "authorizer": authorizer,
        "apiKeyRequired": api_key,
        "integration": ["AWS_PROXY", URI, "POST"],
        "passthroughBehavior": "WHEN_NO_MATCH",
    }


def expected_api(ttl: int, routes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "gap-api",
        "version": "1.0",
        "binaryMediaTypes": ["application/octet-stream", "image/png"],
        "authorizers": {
            "bearer": {
                "name": "bearer",
                "type": "TOKEN",
                "authType": "custom",
                "authorizerUri": AUTHORIZER_URI,
                "identitySource": "method.request.header.Authorization",
                "authorizerResultTtlInSeconds": ttl,
            }
        },
        "routes": routes,
        "gatewayResponses": {
            "UNAUTHORIZED": ["401", {"application/json": '{"message": "no"}'}],
        },
    }


APIGATEWAY_SWAGGER_2 = {
    "imported": expected_api(
        60, {"GET /open": expected_route(), "GET /jobs/{id}": expected_route("bearer")}
    ),
    "updated": expected_api(
        30,
        {"GET /jobs/{id}": expected_route("bearer"), "POST /keyed": expected_route(api_key=True)},
    ),
    "authorizer kept": True,
}


# --- apigateway-import-without-description ------------------------------------------------


def apigateway_import_without_description(endpoint: str) -> Any:
    apigateway = client(endpoint, "apigateway")
    document = {
        "openapi": "3.0.1",
        "info": {"title": "gap-openapi", "version": "1"},
        "paths": {"/health": {"get": {"responses": {"200": {"description": "ok"}}}}},
    }
    try:
        api_id = apigateway.import_rest_api(body=json.dumps(document))["id"]
    except ClientError as exc:
        return answered(exc)
    api = apigateway.get_rest_api(restApiId=api_id)
    paths = [item["path"] for item in apigateway.get_resources(restApiId=api_id)["items"]]
    return {"name": api["name"], "description": api.get("description"), "paths": sorted(paths)}


APIGATEWAY_IMPORT_WITHOUT_DESCRIPTION = {
    "name": "gap-openapi",
    "description": None,
    "paths": ["/", "/health"],
}


# --- cloudformation-cloudwatch-alarms ----------------------------------------------------


# The probe alarm's metric properties, as CloudFormation takes them and describe_alarms
# answers them; the name, threshold and actions are set per stack.
PROBE_ALARM: dict[str, Any] = {
    "AlarmDescription": "probe",
    "Namespace": "AWS/Lambda",
    "MetricName": "Errors",
    "Dimensions": [{"Name": "FunctionName", "Value": "gap-probe"}],
    "Statistic": "Sum",
    "Period": 60,
    "EvaluationPeriods": 5,
    "DatapointsToAlarm": 3,
    "ComparisonOperator": "GreaterThanThreshold",
    "TreatMissingData": "notBreaching",
}


def alarm_template(name: str, threshold: int) -> str:
    properties = {
        **PROBE_ALARM,
        "AlarmName": name,
        "Threshold": threshold,
        "AlarmActions": [{"Ref": "Topic"}],
        "OKActions": [{"Ref": "Topic"}],
    }
    return json.dumps(
        {
            "Resources": {
                "Topic": {"Type": "AWS::SNS::Topic"},
                "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": properties},
            }
        }
    )


def alarm_as_read(cloudwatch: Any, name: str) -> dict[str, Any] | None:
    alarms = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    if not alarms:
        return None
    (alarm,) = alarms
    read = {key: alarm.get(key) for key in [*PROBE_ALARM, "Threshold"]}
    read["actions"] = [len(alarm["AlarmActions"]), alarm["AlarmActions"] == alarm["OKActions"]]
    return read


def cloudformation_cloudwatch_alarms(endpoint: str) -> Any:
    """A stack's alarm after its creation, an update of its threshold, and its deletion."""
    cloudformation, cloudwatch = client(endpoint, "cloudformation"), client(endpoint, "cloudwatch")
    stack, name = unique("gap-alarms"), unique("gap-alarm")
    cloudformation.create_stack(StackName=stack, TemplateBody=alarm_template(name, 0))
    created = alarm_as_read(cloudwatch, name)
    cloudformation.update_stack(StackName=stack, TemplateBody=alarm_template(name, 2))
    updated = alarm_as_read(cloudwatch, name)
    cloudformation.delete_stack(StackName=stack)
    return {"created": created, "updated": updated, "deleted": alarm_as_read(cloudwatch, name)}


def expected_alarm(threshold: float) -> dict[str, Any]:
    return {**PROBE_ALARM, "Threshold": threshold, "actions": [1, True]}


CLOUDFORMATION_CLOUDWATCH_ALARMS = {
    "created": expected_alarm(0.0),
    "updated": expected_alarm(2.0),
    "deleted": None,
}


# --- every gap ---------------------------------------------------------------------------

# gap name -> (what a client sees of it, what AWS shows that client)
PROBES: dict[str, tuple[Callable[[str], Any], Any]] = {
    "s3-notification-filter-rule-names": (
        s3_notification_filter_rule_names,
        S3_NOTIFICATION_FILTER_RULE_NAMES,
    ),
    "apigateway-swagger-2": (apigateway_swagger_2, APIGATEWAY_SWAGGER_2),
    "apigateway-import-without-description": (
        apigateway_import_without_description,
        APIGATEWAY_IMPORT_WITHOUT_DESCRIPTION,
    ),
    "cloudformation-cloudwatch-alarms": (
        cloudformation_cloudwatch_alarms,
        CLOUDFORMATION_CLOUDWATCH_ALARMS,
    ),
}


def test_every_gap_has_a_probe() -> None:
    assert sorted(PROBES) == sorted(gap.name for gap in GAPS)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_plain_moto_still_lacks_the_gap(name: str, plain: str) -> None:
    probe, aws = PROBES[name]
    assert probe(plain) != aws, f"moto now does {name}: drop it from devstack.emulator_gaps"


@pytest.mark.parametrize("name", sorted(PROBES))
def test_the_emulator_answers_as_aws(name: str, emulator: str) -> None:
    probe, aws = PROBES[name]
    assert probe(emulator) == aws
