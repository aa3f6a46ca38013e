"""API keys: random bearer tokens stored only as SHA-256 hashes, each mapped to a tenant.

Keys carry 256 bits of randomness, so a plain SHA-256 is a sound one-way store (a slow
password hash buys nothing against brute force of random keys and costs every request).

The authorizer only *identifies* the caller: it passes the tenant (or none) to the route
in the request context, and the route refuses a caller without one through the same
error mapping as every other API error. That keeps the 401 body in the documented
``{"error": {...}}`` shape; an authorizer's own denial would answer with API Gateway's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import TypedDict

from chalicelib import clients
from chalicelib.config import settings
from chalicelib.errors import InvalidRequest, Unauthorized
from chalicelib.timestamps import now_iso

KEY_PREFIX = "mpk_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_BEARER = re.compile(r"^Bearer ([A-Za-z0-9_-]{16,128})$")
ANONYMOUS = ""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequest(f"tenant must match {TENANT_PATTERN.pattern}")
    return tenant


def create_api_key(tenant: str, *, key: str | None = None) -> str:
    """Store a new key for `tenant` and return it: the only time it exists in clear."""
    validate_tenant(tenant)
    key = key or KEY_PREFIX + secrets.token_urlsafe(32)
    if not _BEARER.match(f"Bearer {key}"):
        raise InvalidRequest("API keys are 16 to 128 characters of A-Z, a-z, 0-9, _ and -")
    with clients.aws_errors("store API key"):
        clients.dynamodb().put_item(
            TableName=settings().api_keys_table,
            Item={
                "keyHash": {"S": hash_key(key)},
                "tenant": {"S": tenant},
                "createdAt": {"S": now_iso()},
                "revoked": {"BOOL": False},
            },
        )
    return key


def revoke_api_key(key: str) -> None:
    with clients.aws_errors("revoke API key"):
        clients.dynamodb().update_item(
            TableName=settings().api_keys_table,
            Key={"keyHash": {"S": hash_key(key)}},
            UpdateExpression="SET revoked = :true",
            ConditionExpression="attribute_exists(keyHash)",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )


def tenant_for_authorization(header: str | None) -> str:
    """The tenant an ``Authorization: Bearer <key>`` header belongs to, or ANONYMOUS."""
    match = _BEARER.match(header or "")
    if match is None:
        return ANONYMOUS
    presented_hash = hash_key(match.group(1))
    with clients.aws_errors("look up API key"):
        item = (
            clients.dynamodb()
            .get_item(
                TableName=settings().api_keys_table,
                Key={"keyHash": {"S": presented_hash}},
                ConsistentRead=True,
            )
            .get("Item")
        )
    if not item or item.get("revoked", {}).get("BOOL", False):
        return ANONYMOUS
    # The lookup already matched on the hash; comparing again in constant time keeps a
    # store that matched loosely (or a future index) from ever leaking timing.
    if not hmac.compare_digest(item["keyHash"]["S"], presented_hash):
        return ANONYMOUS
    return item["tenant"]["S"]


class AuthorizerContext(TypedDict):
    """What the authorizer hands API Gateway (chalice's AuthResponse fields)."""

    principal_id: str
    context: dict[str, str]


def authorizer_context(header: str | None) -> AuthorizerContext:
    """What the authorizer hands API Gateway: the caller's identity, never a denial."""
    tenant = tenant_for_authorization(header)
    return {"principal_id": tenant or "anonymous", "context": {"tenant": tenant}}


def require_tenant(request_context: Mapping[str, object]) -> str:
    """The authenticated tenant of a request, or Unauthorized."""
    authorizer = request_context.get("authorizer")
    tenant = authorizer.get("tenant", ANONYMOUS) if isinstance(authorizer, dict) else ANONYMOUS
    if not tenant:
        raise Unauthorized("A valid API key is required: Authorization: Bearer <key>.")
    return str(tenant)
