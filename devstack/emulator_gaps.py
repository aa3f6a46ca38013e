"""What AWS does and moto (5.2.5) does not, filled in the emulator's process.

`make deploy` runs against the emulator exactly as against AWS (infra/deploy.py has no
emulator branch): where moto answers a call of the deploy differently from AWS, the
emulator is taught AWS's answer here. Each gap has a name; tests/test_emulator_gaps.py
shows, for every one, that plain moto still lacks it (when moto fills one, that test fails:
drop the gap) and that the emulator answers as AWS does.

Applied by devstack.emulator_server before moto serves, never in any other process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gap:
    name: str
    summary: str
    fill: Callable[[], None]


# --- S3: notification filter rules of any case -------------------------------------------

_FILTER_RULE_NAME = re.compile(rb"<Name>\s*(prefix|suffix)\s*</Name>", re.IGNORECASE)
# S3 answers GetBucketNotificationConfiguration with these spellings, whatever was sent.
FILTER_RULE_NAMES = {"prefix": "Prefix", "suffix": "Suffix"}


def lowercase_filter_rule_names(body: bytes | str) -> bytes:
    """A PutBucketNotificationConfiguration body with its filter rule names in lower case
    (a notification configuration has no other <Name> element)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return _FILTER_RULE_NAME.sub(lambda match: b"<Name>" + match[1].lower() + b"</Name>", data)


def _filter_rules(configuration: Mapping[str, Any]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for kind in ("Topic", "Queue", "CloudFunction"):
        for notification in configuration.get(f"{kind}Configuration") or []:
            rules += (notification.get("Filter") or {}).get("S3Key", {}).get("FilterRule", [])
    return rules


def filter_rule_names_of_any_case(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """moto's S3Response._notification_config_from_body, taking `Prefix` as S3 does (boto3's
    documentation spells it so, and Chalice sends it so), not only `prefix`: moto asserts
    lower case and answers 500. Rules are kept as S3 answers them: `Prefix`, `Suffix`."""

    @functools.wraps(parse)
    def parse_any_case(self: Any) -> Any:
        self.body = lowercase_filter_rule_names(self.body)
        configuration = parse(self)
        for rule in _filter_rules(configuration):
            rule["Name"] = FILTER_RULE_NAMES[rule["Name"]]
        return configuration

    return parse_any_case


def key_matches(self: Any, key_name: str) -> bool:
    """moto's Notification._key_matches, reading the rule names in any case."""
    if "S3Key" not in self.filters:
        return True
    rules = {rule["Name"].lower(): rule["Value"] for rule in self.filters["S3Key"]["FilterRule"]}
    return key_name.startswith(rules.get("prefix", "")) and key_name.endswith(
        rules.get("suffix", "")
    )


def fill_s3_notification_filter_rule_names() -> None:
    from moto.s3 import models, responses

    parse = responses.S3Response._notification_config_from_body
    responses.S3Response._notification_config_from_body = filter_rule_names_of_any_case(parse)  # type: ignore[assignment, method-assign]
    models.Notification._key_matches = key_matches  # type: ignore[method-assign]


# --- API Gateway: Swagger 2.0 documents, as Chalice sends them ---------------------------

AUTHORIZER_TYPES = {
    "token": "TOKEN",
    "request": "REQUEST",
    "cognito_user_pools": "COGNITO_USER_POOLS",
}
DEFAULT_AUTHORIZER_TTL = 300  # API Gateway's, for an authorizer that names none
API_KEY_HEADER = "x-api-key"
# create_authorizer's arguments that name the authorizer's attribute otherwise.
AUTHORIZER_ATTRIBUTES = {
    "authorizer_type": "type",
    "identiy_validation_expression": "identity_validation_expression",
}


def is_swagger_2(document: Mapping[str, Any]) -> bool:
    return str(document.get("swagger", "")).startswith("2")


def as_openapi_3(document: Mapping[str, Any]) -> dict[str, Any]:
    """What moto's put_rest_api reads of a Swagger 2.0 document (paths, their methods'
    responses and integrations are spelled alike in both), labelled OpenAPI 3, with the
    integrations' enumerations in upper case, as API Gateway stores them whatever the
    document's case (Chalice writes `aws_proxy`, `when_no_match`)."""
    paths: dict[str, Any] = {}
    for path, operations in (document.get("paths") or {}).items():
        paths[path] = {
            verb: _upper_integration(operation) for verb, operation in operations.items()
        }
    converted = {key: value for key, value in document.items() if key != "swagger"}
    return {**converted, "openapi": "3.0.1", "paths": paths}


def _upper_integration(operation: Any) -> Any:
    integration = (
        operation.get("x-amazon-apigateway-integration") if isinstance(operation, Mapping) else None
    )
    if not isinstance(integration, Mapping):
        return operation
    upper = {
        key: str(integration[key]).upper()
        for key in ("type", "passthroughBehavior")
        if key in integration
    }
    return {**operation, "x-amazon-apigateway-integration": {**integration, **upper}}


def authorizer_settings(name: str, definition: Mapping[str, Any]) -> dict[str, Any] | None:
    """An authorizer as API Gateway imports it from a security definition (moto's
    create_authorizer arguments), or None for a definition that is not one."""
    extension = definition.get("x-amazon-apigateway-authorizer")
    if not isinstance(extension, Mapping):
        return None
    kind = AUTHORIZER_TYPES[str(extension.get("type", "token")).lower()]
    identity = extension.get("identitySource")
    if identity is None and kind == "TOKEN":
        identity = f"method.request.header.{definition.get('name', 'Authorization')}"
    ttl = extension.get("authorizerResultTtlInSeconds", DEFAULT_AUTHORIZER_TTL)
    return {
        "name": name,
        "authorizer_type": kind,
        "provider_arns": extension.get("providerARNs"),
        "auth_type": definition.get("x-amazon-apigateway-authtype"),
        "authorizer_uri": extension.get("authorizerUri"),
        "authorizer_credentials": extension.get("authorizerCredentials"),
        "identity_source": identity,
        "identiy_validation_expression": extension.get("identityValidationExpression"),
        "authorizer_result_ttl": int(ttl),
    }


def is_api_key_definition(definition: Mapping[str, Any]) -> bool:
    """The definition API Gateway reads as "an API key is required" (Chalice's
    `api_key_required=True`): an apiKey in the x-api-key header, with no authorizer."""
    return (
        definition.get("type") == "apiKey"
        and str(definition.get("name", "")).lower() == API_KEY_HEADER
        and definition.get("in") == "header"
        and "x-amazon-apigateway-authorizer" not in definition
    )


def import_authorizers(backend: Any, api: Any, document: Mapping[str, Any]) -> dict[str, str]:
    """Create or update the document's authorizers (by name, so their ids last from one
    import to the next), delete the others; returns name -> id."""
    definitions = document.get("securityDefinitions") or {}
    wanted = {
        name: settings
        for name, definition in definitions.items()
        if (settings := authorizer_settings(name, definition)) is not None
    }
    ids: dict[str, str] = {}
    for authorizer in list(api.authorizers.values()):
        settings = wanted.get(authorizer.name)
        if settings is None:
            backend.delete_authorizer(api.id, authorizer.id)
            continue
        for argument, value in settings.items():
            setattr(authorizer, AUTHORIZER_ATTRIBUTES.get(argument, argument), value)
        ids[authorizer.name] = authorizer.id
    for name, settings in wanted.items():
        if name not in ids:
            ids[name] = backend.create_authorizer(api.id, **settings).id
    return ids


def secure_methods(api: Any, document: Mapping[str, Any], authorizers: Mapping[str, str]) -> None:
    """Give each method the authorization its `security` (or the document's) names."""
    definitions = document.get("securityDefinitions") or {}
    default_security = document.get("security") or []
    for path, operations in (document.get("paths") or {}).items():
        resource = api.get_resource_for_path(path)
        for verb, operation in operations.items():
            method = resource.resource_methods.get(verb.upper()) if resource else None
            if method is None or not isinstance(operation, Mapping):
                continue
            method.authorization_type, method.authorizer_id = "NONE", None
            method.api_key_required = False
            for requirement in operation.get("security", default_security):
                for name in requirement:
                    definition = definitions.get(name, {})
                    if name in authorizers:
                        kind = str(
                            definition["x-amazon-apigateway-authorizer"].get("type", "token")
                        )
                        cognito = kind.lower() == "cognito_user_pools"
                        method.authorization_type = "COGNITO_USER_POOLS" if cognito else "CUSTOM"
                        method.authorizer_id = authorizers[name]
                    elif is_api_key_definition(definition):
                        method.api_key_required = True


def import_gateway_responses(backend: Any, api: Any, document: Mapping[str, Any]) -> None:
    """The document's gateway responses, in place of the API's."""
    api.gateway_responses.clear()
    for response_type, response in (
        document.get("x-amazon-apigateway-gateway-responses") or {}
    ).items():
        backend.put_gateway_response(
            api.id,
            response_type,
            status_code=response.get("statusCode"),
            response_parameters=response.get("responseParameters"),
            response_templates=response.get("responseTemplates"),
        )


def put_swagger(
    put_rest_api: Callable[..., Any],
    backend: Any,
    api_id: str,
    document: Mapping[str, Any],
    mode: str,
) -> Any:
    """A Swagger 2.0 document put into an API as API Gateway imports it: moto's own import
    for the routes and integrations, then what it leaves out."""
    api = put_rest_api(backend, api_id, as_openapi_3(document), fail_on_warnings=False, mode=mode)
    info = document.get("info") or {}
    if "version" in info:
        api.version = str(info["version"])
    binary = list(document.get("x-amazon-apigateway-binary-media-types") or [])
    api.binaryMediaTypes = (
        binary if mode == "overwrite" else [*dict.fromkeys([*api.binaryMediaTypes, *binary])]
    )
    authorizers = import_authorizers(backend, api, document)
    secure_methods(api, document, authorizers)
    if mode == "overwrite" or "x-amazon-apigateway-gateway-responses" in document:
        import_gateway_responses(backend, api, document)
    return api


def put_rest_api_of_swagger_2(put_rest_api: Callable[..., Any]) -> Callable[..., Any]:
    """moto's APIGatewayBackend.put_rest_api, taking Swagger 2.0 (refused by moto)."""

    @functools.wraps(put_rest_api)
    def put(
        self: Any,
        function_id: str,
        api_doc: dict[str, Any],
        fail_on_warnings: bool,
        mode: str = "merge",
    ) -> Any:
        if not is_swagger_2(api_doc) or mode not in ("merge", "overwrite"):
            return put_rest_api(
                self, function_id, api_doc, fail_on_warnings=fail_on_warnings, mode=mode
            )
        return put_swagger(put_rest_api, self, function_id, api_doc, mode)

    return put


def import_rest_api_without_description(
    self: Any, api_doc: dict[str, Any], fail_on_warnings: bool
) -> Any:
    """moto's APIGatewayBackend.import_rest_api, where `info.description` is optional (as
    in both OpenAPI versions) rather than a KeyError, answered 500."""
    info = api_doc.get("info") or {}
    api = self.create_rest_api(name=info.get("title"), description=info.get("description"))
    try:
        self.put_rest_api(api.id, api_doc, fail_on_warnings=fail_on_warnings, mode="overwrite")
    except Exception:
        self.delete_rest_api(api.id)  # an import that fails creates nothing
        raise
    return api


def fill_apigateway_swagger_2() -> None:
    from moto.apigateway.models import APIGatewayBackend

    APIGatewayBackend.put_rest_api = put_rest_api_of_swagger_2(APIGatewayBackend.put_rest_api)  # type: ignore[method-assign]


def fill_apigateway_import_without_description() -> None:
    from moto.apigateway.models import APIGatewayBackend

    APIGatewayBackend.import_rest_api = import_rest_api_without_description  # type: ignore[method-assign]


# --- CloudFormation: AWS::CloudWatch::Alarm ---------------------------------------------

# CloudFormation's alarm properties -> moto's put_metric_alarm arguments (a property
# outside these, such as Metrics, fails the stack rather than being dropped).
ALARM_PROPERTIES = {
    "AlarmName": "name",
    "AlarmDescription": "description",
    "Namespace": "namespace",
    "MetricName": "metric_name",
    "Dimensions": "dimensions",
    "Statistic": "statistic",
    "ExtendedStatistic": "extended_statistic",
    "Period": "period",
    "EvaluationPeriods": "evaluation_periods",
    "DatapointsToAlarm": "datapoints_to_alarm",
    "Threshold": "threshold",
    "ThresholdMetricId": "threshold_metric_id",
    "ComparisonOperator": "comparison_operator",
    "TreatMissingData": "treat_missing_data",
    "EvaluateLowSampleCountPercentile": "evaluate_low_sample_count_percentile",
    "Unit": "unit",
    "ActionsEnabled": "actions_enabled",
    "AlarmActions": "alarm_actions",
    "OKActions": "ok_actions",
    "InsufficientDataActions": "insufficient_data_actions",
}
_ALARM_NUMBERS = {
    "period": int,
    "evaluation_periods": int,
    "datapoints_to_alarm": int,
    "threshold": float,
}


def alarm_arguments(name: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """put_metric_alarm's arguments for an AWS::CloudWatch::Alarm's (resolved) properties."""
    unknown = set(properties) - set(ALARM_PROPERTIES)
    if unknown:
        raise NotImplementedError(f"AWS::CloudWatch::Alarm: {sorted(unknown)} not emulated")
    arguments: dict[str, Any] = {"description": None, "dimensions": [], "alarm_actions": []}
    for key, value in properties.items():
        argument = ALARM_PROPERTIES[key]
        arguments[argument] = (
            _ALARM_NUMBERS[argument](value) if argument in _ALARM_NUMBERS else value
        )
    if isinstance(arguments.get("actions_enabled"), str):
        arguments["actions_enabled"] = arguments["actions_enabled"].lower() == "true"
    arguments["name"] = name
    return arguments


def fill_cloudformation_alarms() -> None:
    from moto.cloudformation import parsing
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.common_models import CloudFormationModel

    class CloudFormationAlarm(CloudFormationModel):
        """An alarm a stack created: moto's CloudWatch holds the alarm itself."""

        def __init__(self, name: str, account_id: str, region_name: str) -> None:
            self.name = name
            self.arn = f"arn:aws:cloudwatch:{region_name}:{account_id}:alarm:{name}"

        @property
        def physical_resource_id(self) -> str:
            return self.name

        @staticmethod
        def cloudformation_name_type() -> str:
            return "AlarmName"

        @staticmethod
        def cloudformation_type() -> str:
            return "AWS::CloudWatch::Alarm"

        @classmethod
        def has_cfn_attr(cls, attr: str) -> bool:
            return attr == "Arn"

        def get_cfn_attribute(self, attribute_name: str) -> str:
            return self.arn

        @classmethod
        def create_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
            **kwargs: Any,
        ) -> CloudFormationAlarm:
            backend = cloudwatch_backends[account_id][region_name]
            properties = cloudformation_json.get("Properties", {})
            backend.put_metric_alarm(**alarm_arguments(resource_name, properties))
            return cls(resource_name, account_id, region_name)

        @classmethod
        def update_from_cloudformation_json(
            cls,
            original_resource: Any,
            new_resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
        ) -> CloudFormationAlarm:
            if original_resource.name != new_resource_name:
                cloudwatch_backends[account_id][region_name].delete_alarms([original_resource.name])
            return cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )

        @classmethod
        def delete_from_cloudformation_json(
            cls,
            resource_name: str,
            cloudformation_json: dict[str, Any],
            account_id: str,
            region_name: str,
        ) -> None:
            cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

        def delete(self, account_id: str, region_name: str) -> None:
            cloudwatch_backends[account_id][region_name].delete_alarms([self.name])

        def is_created(self) -> bool:
            return True

    from devstack.persistence import register_class

    register_class(CloudFormationAlarm)
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    if "AWS::CloudWatch::Alarm" not in parsing.get_model_map():
        raise RuntimeError("moto's CloudFormation did not take the alarm model")


# --- all of them --------------------------------------------------------------------------

GAPS = (
    Gap(
        "s3-notification-filter-rule-names",
        "PutBucketNotificationConfiguration takes filter rule names in any case (Chalice "
        "sends `Prefix`); GetBucketNotificationConfiguration answers `Prefix`/`Suffix`",
        fill_s3_notification_filter_rule_names,
    ),
    Gap(
        "apigateway-swagger-2",
        "ImportRestApi and PutRestApi take Swagger 2.0, with its authorizers, method "
        "security, binary media types and gateway responses",
        fill_apigateway_swagger_2,
    ),
    Gap(
        "apigateway-import-without-description",
        "ImportRestApi takes a document without `info.description`",
        fill_apigateway_import_without_description,
    ),
    Gap(
        "cloudformation-cloudwatch-alarms",
        "CloudFormation creates, updates and deletes AWS::CloudWatch::Alarm resources "
        "(moto skips them with a warning)",
        fill_cloudformation_alarms,
    ),
)


def fill_gaps() -> list[str]:
    """Fill every gap, in this process (the emulator's). Returns their names."""
    for gap in GAPS:
        gap.fill()
    return [gap.name for gap in GAPS]
