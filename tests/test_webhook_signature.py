"""Standard Webhooks 1.0 signatures, verified by the scheme's own reference library
(`standardwebhooks` on PyPI), as a receiver would verify them."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chalicelib import webhook_signature
from chalicelib.errors import InvalidWebhookSecret

BODY = json.dumps({"type": "job.completed", "data": {"jobId": "j-1"}}).encode()
EVENT_ID = "evt_2f1c0c6e5d0b4f0e9a55b8f7a1c2d3e4"


def test_a_new_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    first, second = webhook_signature.new_secret(), webhook_signature.new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert webhook_signature.secret_key(first) == base64.b64decode(first[6:])


def test_a_delivery_verifies_with_the_reference_library() -> None:
    secret = webhook_signature.new_secret()
    timestamp = int(time.time())
    headers = webhook_signature.delivery_headers([secret], EVENT_ID, timestamp, BODY)
    assert headers["webhook-id"] == EVENT_ID
    assert headers["webhook-timestamp"] == str(timestamp)
    assert headers["content-type"] == "application/json"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_during_a_rotation_both_secrets_sign_and_each_verifies() -> None:
    old, new = webhook_signature.new_secret(), webhook_signature.new_secret()
    headers = webhook_signature.delivery_headers([new, old], EVENT_ID, int(time.time()), BODY)
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    "tamper",
    ["body", "event id", "timestamp", "another secret"],
)
def test_a_changed_delivery_does_not_verify(tamper: str) -> None:
    secret = webhook_signature.new_secret()
    timestamp = int(time.time())
    headers = webhook_signature.delivery_headers([secret], EVENT_ID, timestamp, BODY)
    body = BODY
    verifier = Webhook(secret)
    if tamper == "body":
        body = BODY.replace(b"j-1", b"j-2")
    elif tamper == "event id":
        headers["webhook-id"] = EVENT_ID + "x"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(timestamp - 1)
    else:
        verifier = Webhook(webhook_signature.new_secret())
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body, headers)


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body() -> None:
    """The scheme's own test vector (standard-webhooks spec, Python library tests)."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert webhook_signature.signature(
        secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body
    ) == (expected)


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(bytes(23)).decode(),  # too short
        "whsec_" + base64.b64encode(bytes(65)).decode(),  # too long
    ],
)
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(InvalidWebhookSecret):
        webhook_signature.signature(secret, EVENT_ID, 1, BODY)


def test_a_delivery_needs_a_secret() -> None:
    with pytest.raises(InvalidWebhookSecret):
        webhook_signature.delivery_headers([], EVENT_ID, 1, BODY)
