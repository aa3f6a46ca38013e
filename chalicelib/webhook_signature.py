"""Standard Webhooks 1.0 signatures: endpoint secrets and the headers of a delivery attempt.

A secret is ``whsec_`` + the base64 of 24 to 64 random bytes; it is shown to its tenant
once. A delivery is signed with HMAC-SHA256 over ``"<event id>.<timestamp>.<body>"`` and
carries one ``v1,<base64 signature>`` per active secret, space-separated, so a receiver
keeps verifying while a rotated secret and its successor both sign (the specification's
key rotation). The event id is the same on every attempt of one event: receivers use it
to drop duplicates.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from chalicelib.errors import InvalidWebhookSecret

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
SIGNATURE_VERSION = "v1"


def new_secret() -> str:
    """A fresh endpoint secret of SECRET_BYTES random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of `secret`: its base64 part, decoded strictly."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret(f"A webhook secret starts with {SECRET_PREFIX!r}.")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise InvalidWebhookSecret("A webhook secret's key is not base64.") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidWebhookSecret(
            f"A webhook secret's key has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes."
        )
    return key


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of `body` as the event `event_id` sent at `timestamp`."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def delivery_headers(
    active_secrets: Sequence[str], event_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one attempt: the event's id, the attempt's time (Unix seconds), and a
    signature per active secret."""
    if not active_secrets:
        raise InvalidWebhookSecret("A delivery needs at least one active secret.")
    signatures = " ".join(signature(s, event_id, timestamp, body) for s in active_secrets)
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
