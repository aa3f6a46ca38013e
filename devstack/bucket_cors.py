"""A bucket's CORS rules read as S3 reads them, for the emulator's S3 (devstack.s3_guard).

S3 takes the first rule that matches the request: its Origin is one of the rule's
AllowedOrigins (each may hold one `*`), its method (a preflight's
Access-Control-Request-Method) one of the AllowedMethods, and every header a preflight
names in Access-Control-Request-Headers one of the AllowedHeaders (case-insensitive,
each may hold one `*`). The rule's answer: Access-Control-Allow-Origin `*` for a rule that
allows any origin, else the Origin itself with Access-Control-Allow-Credentials; Vary;
the rule's methods; the requested headers (lower case); its exposed headers and max age.
A preflight no rule matches is refused 403 AccessForbidden, one without an Origin 400.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from devstack.post_policy import Refusal

VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = (
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution "
    "of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)


@dataclass(frozen=True)
class CorsRule:
    allowed_methods: Sequence[str]
    allowed_origins: Sequence[str]
    allowed_headers: Sequence[str] = ()
    exposed_headers: Sequence[str] = ()
    max_age_seconds: int | None = None


@dataclass(frozen=True)
class CorsRequest:
    """What of a request S3's CORS reads: Origin, the method (a preflight's requested
    one) and a preflight's Access-Control-Request-Headers, lower case."""

    origin: str
    method: str
    requested_headers: tuple[str, ...] = ()


def cors_request(origin: str, method: str, requested_headers: str | None) -> CorsRequest:
    names = (name.strip().lower() for name in (requested_headers or "").split(","))
    return CorsRequest(origin, method, tuple(name for name in names if name))


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    expression = re.escape(pattern).replace(r"\*", ".*")
    flags = re.IGNORECASE if ignore_case else 0
    return re.fullmatch(expression, value, flags) is not None


def matching_rule(rules: Sequence[CorsRule], request: CorsRequest) -> CorsRule | None:
    for rule in rules:
        if request.method not in rule.allowed_methods:
            continue
        if not any(_matches(allowed, request.origin) for allowed in rule.allowed_origins):
            continue
        if all(
            any(_matches(allowed, name, ignore_case=True) for allowed in rule.allowed_headers)
            for name in request.requested_headers
        ):
            return rule
    return None


def answer_headers(rule: CorsRule, request: CorsRequest) -> dict[str, str]:
    """The CORS headers S3 answers a request `rule` matched with."""
    headers: dict[str, str] = {}
    if "*" in rule.allowed_origins:
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = request.origin
        headers["Access-Control-Allow-Credentials"] = "true"
    headers["Vary"] = VARY
    headers["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if request.requested_headers:
        headers["Access-Control-Allow-Headers"] = ", ".join(request.requested_headers)
    if rule.exposed_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.exposed_headers)
    if rule.max_age_seconds is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    return headers


def request_headers(rules: Sequence[CorsRule] | None, request: CorsRequest) -> dict[str, str]:
    """The CORS headers of S3's answer to a cross-origin request (none if no rule allows it)."""
    rule = matching_rule(rules or (), request)
    return {} if rule is None else answer_headers(rule, request)


def preflight_headers(
    rules: Sequence[CorsRule] | None, origin: str | None, method: str, requested: str | None
) -> dict[str, str]:
    """The headers of S3's 200 answer to a preflight; raises S3's refusal instead.
    `rules` is None when the bucket has no CORS configuration."""
    if not origin:
        raise Refusal("BadRequest", "Insufficient information. Origin request header needed.")
    details = {"Method": method, "ResourceType": "BUCKET"}
    if rules is None:
        raise Refusal(
            "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", details
        )
    request = cors_request(origin, method, requested)
    rule = matching_rule(rules, request)
    if rule is None:
        raise Refusal("AccessForbidden", NOT_ALLOWED, details)
    return answer_headers(rule, request)
