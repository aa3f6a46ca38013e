"""Webhook endpoints: where a tenant wants its job events sent, and the secrets that sign them.

One item per endpoint in the webhooks table, keyed by its tenant ("tenant#<tenant>") and
its id ("endpoint#<id>"), so no read can reach another tenant's endpoint. Beside them, one
counter item per tenant ("endpoints") holds how many it has: creating and deleting an
endpoint move the counter in the same transaction, so MAX_WEBHOOKS_PER_TENANT holds
exactly, however many requests race.

A signing secret is an HMAC key, which a hash cannot replace: it is stored encrypted with
the stage's KMS key, under an encryption context naming its tenant and endpoint, so a
ciphertext copied onto another item does not decrypt. The clear secret is answered once,
when the endpoint is created or its secret rotated. After a rotation the old secret keeps
signing beside the new one for ROTATION_OVERLAP_SECONDS, so a receiver can switch over.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from chalicelib import clients, outbound
from chalicelib.config import settings
from chalicelib.errors import NotFound, TooManyWebhooks
from chalicelib.timestamps import iso_from_epoch, now_iso
from chalicelib.webhook_signature import new_secret

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

JOB_COMPLETED = "job.completed"
JOB_FAILED = "job.failed"
WEBHOOK_TEST = "webhook.test"
JOB_EVENTS = (JOB_COMPLETED, JOB_FAILED)
ROTATION_OVERLAP_SECONDS = 24 * 3600
ENDPOINT_ID_PREFIX = "ep_"
COUNTER = "endpoints"

Item = dict[str, "AttributeValueTypeDef"]


@dataclass(frozen=True)
class SigningSecret:
    ciphertext: bytes
    expires_at: float | None  # Unix seconds; None while it is the current secret


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    endpoint_id: str
    url: str
    events: tuple[str, ...]
    description: str | None
    created_at: str
    updated_at: str
    disabled_reason: str | None
    signing: tuple[SigningSecret, ...]

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    def wants(self, event_type: str) -> bool:
        return self.enabled and (event_type == WEBHOOK_TEST or event_type in self.events)


@dataclass(frozen=True)
class Created:
    """An endpoint and its secret in clear: what creating or rotating answers, once."""

    endpoint: Endpoint
    secret: str


def outbound_policy() -> outbound.OutboundPolicy:
    import ipaddress

    config = settings()
    networks = tuple(ipaddress.ip_network(n) for n in config.webhook_allowed_networks)
    return outbound.OutboundPolicy(
        allow_http=config.webhook_allow_http,
        allowed_networks=networks,
        ca_file=config.webhook_ca_file,
    )


def check_url(url: str, resolve: outbound.Resolver = outbound.system_resolver) -> None:
    """Refuse (EndpointRefused) a URL the stage would never call: its form, or a name
    resolving to an address outside what the stage allows. Checked again at each
    delivery, against the address actually connected to."""
    policy = outbound_policy()
    outbound.resolve_endpoint(outbound.parse_endpoint(url, policy), policy, resolve)


def create(tenant: str, *, url: str, events: Sequence[str], description: str | None) -> Created:
    endpoint_id = ENDPOINT_ID_PREFIX + secrets.token_hex(12)
    secret = new_secret()
    now = now_iso()
    endpoint = Endpoint(
        tenant=tenant,
        endpoint_id=endpoint_id,
        url=url,
        events=tuple(events),
        description=description,
        created_at=now,
        updated_at=now,
        disabled_reason=None,
        signing=(SigningSecret(_encrypt(tenant, endpoint_id, secret), None),),
    )
    limit = settings().max_webhooks_per_tenant
    counter: TransactWriteItemTypeDef = {
        "Update": {
            "TableName": _table(),
            "Key": _key(tenant, COUNTER),
            "UpdateExpression": "ADD endpoints :one",
            "ConditionExpression": "attribute_not_exists(endpoints) OR endpoints < :limit",
            "ExpressionAttributeValues": {":one": {"N": "1"}, ":limit": {"N": str(limit)}},
        }
    }
    put: TransactWriteItemTypeDef = {
        "Put": {
            "TableName": _table(),
            "Item": _to_item(endpoint),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
    if not clients.transact_if(f"create webhook endpoint {endpoint_id}", [counter, put]):
        raise TooManyWebhooks(
            f"You have {limit} webhook endpoints, the most this stage allows. Delete one first."
        )
    return Created(endpoint, secret)


def get(tenant: str, endpoint_id: str) -> Endpoint:
    with clients.aws_errors(f"read webhook endpoint {endpoint_id}"):
        item = clients.dynamodb().get_item(
            TableName=_table(), Key=_key(tenant, _endpoint_sk(endpoint_id)), ConsistentRead=True
        )
    if "Item" not in item:
        raise NotFound("No such webhook endpoint.")
    return _from_item(item["Item"])


def list_for(tenant: str) -> list[Endpoint]:
    """Every endpoint of `tenant`, oldest first."""
    found: list[Endpoint] = []
    request = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :endpoint)",
        "ExpressionAttributeValues": {
            ":pk": {"S": _tenant_pk(tenant)},
            ":endpoint": {"S": _endpoint_sk("")},
        },
        "ConsistentRead": True,
    }
    with clients.aws_errors(f"list webhook endpoints of {tenant}"):
        for page in clients.dynamodb().get_paginator("query").paginate(**request):  # type: ignore[arg-type]
            found.extend(_from_item(item) for item in page["Items"])
    return sorted(found, key=lambda endpoint: endpoint.created_at)


def delete(tenant: str, endpoint_id: str) -> None:
    remove: TransactWriteItemTypeDef = {
        "Delete": {
            "TableName": _table(),
            "Key": _key(tenant, _endpoint_sk(endpoint_id)),
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    counter: TransactWriteItemTypeDef = {
        "Update": {
            "TableName": _table(),
            "Key": _key(tenant, COUNTER),
            "UpdateExpression": "ADD endpoints :minus_one",
            "ExpressionAttributeValues": {":minus_one": {"N": "-1"}},
        }
    }
    if not clients.transact_if(f"delete webhook endpoint {endpoint_id}", [remove, counter]):
        raise NotFound("No such webhook endpoint.")


def rotate(tenant: str, endpoint_id: str, now: float | None = None) -> Created:
    """A new current secret; the previous one signs beside it for ROTATION_OVERLAP_SECONDS
    (secrets already past their overlap are dropped)."""
    moment = time.time() if now is None else now
    endpoint = get(tenant, endpoint_id)
    secret = new_secret()
    kept = [
        SigningSecret(s.ciphertext, moment + ROTATION_OVERLAP_SECONDS)
        if s.expires_at is None
        else s
        for s in endpoint.signing
        if s.expires_at is None or s.expires_at > moment
    ]
    signing = (SigningSecret(_encrypt(tenant, endpoint_id, secret), None), *kept)
    updated = iso_from_epoch(moment)
    changed = _update(
        tenant,
        endpoint_id,
        "SET signing = :signing, updatedAt = :now",
        # Two rotations at once: one wins, the other answers as if the endpoint had
        # changed under it (the caller may rotate again).
        "updatedAt = :before",
        {
            ":signing": _signing_value(signing),
            ":now": {"S": updated},
            ":before": {"S": endpoint.updated_at},
        },
    )
    if not changed:
        raise NotFound("The webhook endpoint changed or was deleted; try again.")
    rotated = Endpoint(**{**endpoint.__dict__, "signing": signing, "updated_at": updated})
    return Created(rotated, secret)


def disable(endpoint: Endpoint, reason: str) -> None:
    """Stop sending to `endpoint` (a receiver answered 410 Gone). Idempotent; a deleted
    endpoint stays deleted."""
    _update(
        endpoint.tenant,
        endpoint.endpoint_id,
        "SET disabledReason = :reason, updatedAt = :now",
        "attribute_exists(pk)",
        {":reason": {"S": reason}, ":now": {"S": now_iso()}},
    )


def active_secrets(endpoint: Endpoint, now: float | None = None) -> list[str]:
    """The secrets that sign a delivery now, in clear: the current one first."""
    moment = time.time() if now is None else now
    return [
        _decrypt(endpoint.tenant, endpoint.endpoint_id, s.ciphertext)
        for s in endpoint.signing
        if s.expires_at is None or s.expires_at > moment
    ]


# --- encryption -----------------------------------------------------------------------


def _context(tenant: str, endpoint_id: str) -> dict[str, str]:
    return {"tenant": tenant, "endpoint": endpoint_id}


def _encrypt(tenant: str, endpoint_id: str, secret: str) -> bytes:
    with clients.aws_errors(f"encrypt the secret of webhook endpoint {endpoint_id}"):
        return clients.kms().encrypt(
            KeyId=settings().webhook_secrets_key,
            Plaintext=secret.encode(),
            EncryptionContext=_context(tenant, endpoint_id),
        )["CiphertextBlob"]


@cache
def _decrypt(tenant: str, endpoint_id: str, ciphertext: bytes) -> str:
    # Cached per process: a warm delivery function pays KMS once per secret.
    with clients.aws_errors(f"decrypt the secret of webhook endpoint {endpoint_id}"):
        plaintext = clients.kms().decrypt(
            CiphertextBlob=ciphertext,
            KeyId=settings().webhook_secrets_key,
            EncryptionContext=_context(tenant, endpoint_id),
        )["Plaintext"]
    return plaintext.decode()


def forget_secrets() -> None:
    """Drop decrypted secrets cached in this process (tests)."""
    _decrypt.cache_clear()


# --- items ----------------------------------------------------------------------------


def _table() -> str:
    return settings().webhooks_table


def _tenant_pk(tenant: str) -> str:
    return f"tenant#{tenant}"


def _endpoint_sk(endpoint_id: str) -> str:
    return f"endpoint#{endpoint_id}"


def _key(tenant: str, sk: str) -> Item:
    return {"pk": {"S": _tenant_pk(tenant)}, "sk": {"S": sk}}


def _update(tenant: str, endpoint_id: str, expression: str, condition: str, values: Item) -> bool:
    """One conditional UpdateItem of an endpoint: False if the condition refused it."""
    return clients.update_if(
        f"update webhook endpoint {endpoint_id}",
        {
            "TableName": _table(),
            "Key": _key(tenant, _endpoint_sk(endpoint_id)),
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        },
    )


def _signing_value(signing: Sequence[SigningSecret]) -> AttributeValueTypeDef:
    values: list[AttributeValueTypeDef] = []
    for s in signing:
        entry: dict[str, AttributeValueTypeDef] = {"ciphertext": {"B": s.ciphertext}}
        if s.expires_at is not None:
            entry["expiresAt"] = {"N": str(int(s.expires_at))}
        values.append({"M": entry})
    return {"L": values}


def _to_item(endpoint: Endpoint) -> Item:
    item: Item = {
        **_key(endpoint.tenant, _endpoint_sk(endpoint.endpoint_id)),
        "tenant": {"S": endpoint.tenant},
        "endpointId": {"S": endpoint.endpoint_id},
        "url": {"S": endpoint.url},
        "events": {"L": [{"S": event} for event in endpoint.events]},
        "createdAt": {"S": endpoint.created_at},
        "updatedAt": {"S": endpoint.updated_at},
        "signing": _signing_value(endpoint.signing),
    }
    if endpoint.description is not None:
        item["description"] = {"S": endpoint.description}
    return item


def _from_item(item: Item) -> Endpoint:
    signing = tuple(
        SigningSecret(
            ciphertext=bytes(entry["M"]["ciphertext"]["B"]),
            expires_at=float(entry["M"]["expiresAt"]["N"]) if "expiresAt" in entry["M"] else None,
        )
        for entry in item["signing"]["L"]
    )
    return Endpoint(
        tenant=item["tenant"]["S"],
        endpoint_id=item["endpointId"]["S"],
        url=item["url"]["S"],
        events=tuple(event["S"] for event in item["events"]["L"]),
        description=item["description"]["S"] if "description" in item else None,
        created_at=item["createdAt"]["S"],
        updated_at=item["updatedAt"]["S"],
        disabled_reason=item["disabledReason"]["S"] if "disabledReason" in item else None,
        signing=signing,
    )


def view(endpoint: Endpoint) -> dict[str, object]:
    """An endpoint as the API shows it: never a secret."""
    return {
        "id": endpoint.endpoint_id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "description": endpoint.description,
        "createdAt": endpoint.created_at,
        "updatedAt": endpoint.updated_at,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
    }
