"""Webhook endpoints through the API: registered, listed, rotated, deleted, per tenant.

Signatures made with the stored secrets are checked with the `standardwebhooks` package,
an implementation this project did not write.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from chalice.test import Client
from standardwebhooks import Webhook, WebhookVerificationError

from chalicelib import webhooks
from chalicelib.config import reset_settings, settings
from chalicelib.webhook_signature import delivery_headers
from tests.pipeline import bearer
from tests.resources import Queues

PUBLIC_URL = "https://93.184.215.14/hooks/media"  # an IP literal: no DNS needed


def register(client: Client, key: str, **body: Any) -> Any:
    fields = {"url": PUBLIC_URL, "events": ["job.completed", "job.failed"], **body}
    return client.http.post(
        "/webhooks",
        headers={**bearer(key), "Content-Type": "application/json"},
        body=json.dumps(fields),
    )


def error_code(response: Any) -> str:
    return str(json.loads(response.body)["error"]["code"])


def signed_by(secrets: list[str], payload: bytes = b'{"type":"job.completed"}') -> dict[str, str]:
    return delivery_headers(secrets, "msg_1", int(time.time()), payload)


def test_an_endpoint_is_created_with_its_secret_shown_once(client: Client, acme_key: str) -> None:
    created = register(client, acme_key, description="orders service")
    assert created.status_code == 201
    body = json.loads(created.body)
    assert body["url"] == PUBLIC_URL
    assert body["events"] == ["job.completed", "job.failed"]
    assert body["description"] == "orders service"
    assert body["enabled"] is True
    assert body["secret"].startswith("whsec_")

    shown = client.http.get(f"/webhooks/{body['id']}", headers=bearer(acme_key))
    assert shown.status_code == 200
    assert "secret" not in json.loads(shown.body)
    listed = json.loads(client.http.get("/webhooks", headers=bearer(acme_key)).body)
    assert [endpoint["id"] for endpoint in listed["webhooks"]] == [body["id"]]
    assert all("secret" not in endpoint for endpoint in listed["webhooks"])

    # What a delivery signs with verifies against the secret the client was shown.
    endpoint = webhooks.get("acme", body["id"])
    payload = b'{"type":"job.completed"}'
    Webhook(body["secret"]).verify(payload, signed_by(webhooks.active_secrets(endpoint), payload))


def test_the_secret_is_stored_encrypted_and_bound_to_its_endpoint(
    client: Client, acme_key: str
) -> None:
    body = json.loads(register(client, acme_key).body)
    key = {"pk": {"S": "tenant#acme"}, "sk": {"S": f"endpoint#{body['id']}"}}
    item = boto3.client("dynamodb").get_item(TableName=settings().webhooks_table, Key=key)
    stored = json.dumps(item["Item"], default=lambda value: bytes(value).hex())
    assert body["secret"] not in stored
    assert body["secret"].removeprefix("whsec_") not in stored
    # A ciphertext moved to another tenant's endpoint does not decrypt.
    ciphertext = item["Item"]["signing"]["L"][0]["M"]["ciphertext"]["B"]
    kms = boto3.client("kms")
    with pytest.raises(kms.exceptions.InvalidCiphertextException):
        kms.decrypt(
            CiphertextBlob=ciphertext,
            EncryptionContext={"tenant": "globex", "endpoint": body["id"]},
        )


def test_rotation_signs_with_both_secrets_for_a_day(client: Client, acme_key: str) -> None:
    old = json.loads(register(client, acme_key).body)
    rotated = client.http.post(f"/webhooks/{old['id']}/rotate", headers=bearer(acme_key))
    assert rotated.status_code == 200
    new_secret = json.loads(rotated.body)["secret"]
    assert new_secret != old["secret"]

    endpoint = webhooks.get("acme", old["id"])
    payload = b'{"type":"job.failed"}'
    during = signed_by(webhooks.active_secrets(endpoint), payload)
    assert len(during["webhook-signature"].split(" ")) == 2
    Webhook(old["secret"]).verify(payload, during)
    Webhook(new_secret).verify(payload, during)

    a_day_later = time.time() + webhooks.ROTATION_OVERLAP_SECONDS + 1
    after = signed_by(webhooks.active_secrets(endpoint, now=a_day_later), payload)
    Webhook(new_secret).verify(payload, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old["secret"]).verify(payload, after)


def test_another_tenants_endpoint_is_not_found_on_every_route(
    client: Client, acme_key: str, globex_key: str
) -> None:
    endpoint_id = json.loads(register(client, acme_key).body)["id"]
    theirs = bearer(globex_key)
    assert client.http.get(f"/webhooks/{endpoint_id}", headers=theirs).status_code == 404
    assert client.http.delete(f"/webhooks/{endpoint_id}", headers=theirs).status_code == 404
    rotate = client.http.post(f"/webhooks/{endpoint_id}/rotate", headers=theirs)
    assert rotate.status_code == 404
    assert client.http.post(f"/webhooks/{endpoint_id}/test", headers=theirs).status_code == 404
    assert json.loads(client.http.get("/webhooks", headers=theirs).body) == {"webhooks": []}
    # And it is untouched for its owner.
    assert client.http.get(f"/webhooks/{endpoint_id}", headers=bearer(acme_key)).status_code == 200


def test_delete_answers_204_then_404(client: Client, acme_key: str) -> None:
    endpoint_id = json.loads(register(client, acme_key).body)["id"]
    deleted = client.http.delete(f"/webhooks/{endpoint_id}", headers=bearer(acme_key))
    assert deleted.status_code == 204
    assert deleted.body == b""
    again = client.http.delete(f"/webhooks/{endpoint_id}", headers=bearer(acme_key))
    assert again.status_code == 404
    assert client.http.get(f"/webhooks/{endpoint_id}", headers=bearer(acme_key)).status_code == 404


def test_the_stage_limit_holds_and_frees_on_delete(
    client: Client, acme_key: str, globex_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_WEBHOOKS_PER_TENANT", "2")
    reset_settings()
    first = json.loads(register(client, acme_key).body)["id"]
    assert register(client, acme_key).status_code == 201
    refused = register(client, acme_key)
    assert refused.status_code == 409
    assert error_code(refused) == "too_many_webhooks"
    assert register(client, globex_key).status_code == 201  # a limit per tenant
    client.http.delete(f"/webhooks/{first}", headers=bearer(acme_key))
    assert register(client, acme_key).status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hook",  # not https on an AWS stage
        "https://127.0.0.1/hook",  # loopback
        "https://10.1.2.3/hook",  # private
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data/",  # the instance metadata service
        "https://[::1]/hook",  # IPv6 loopback
        "https://[fe80::1]/hook",  # IPv6 link-local
        "https://[fd00::1]/hook",  # IPv6 unique local
        "https://[::ffff:10.0.0.1]/hook",  # an IPv4-mapped private address
        "https://localhost/hook",  # a name resolving to loopback
        "https://user:pass@93.184.215.14/hook",  # credentials
        "https://93.184.215.14/hook#part",  # a fragment
        "ftp://93.184.215.14/hook",
    ],
)
def test_urls_the_service_would_never_call_are_refused(
    client: Client, acme_key: str, url: str
) -> None:
    refused = register(client, acme_key, url=url)
    assert refused.status_code == 400
    assert error_code(refused) == "invalid_request"
    assert json.loads(refused.body)["error"]["message"].startswith("url: ")
    assert json.loads(client.http.get("/webhooks", headers=bearer(acme_key)).body) == {
        "webhooks": []
    }


def test_the_local_stage_may_allow_http_to_loopback(
    client: Client, acme_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    reset_settings()
    assert register(client, acme_key, url="http://127.0.0.1:8123/hook").status_code == 201
    assert register(client, acme_key, url="http://10.0.0.1/hook").status_code == 400


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["job.completed"]}, "url"),
        ({"url": PUBLIC_URL}, "events"),
        ({"url": PUBLIC_URL, "events": []}, "events"),
        ({"url": PUBLIC_URL, "events": ["job.started"]}, "events"),
        ({"url": PUBLIC_URL, "events": ["job.failed", "job.failed"]}, "events"),
        ({"url": PUBLIC_URL, "events": ["job.failed"], "description": "a\u202eb"}, "description"),
        ({"url": PUBLIC_URL, "events": ["job.failed"], "secret": "whsec_x"}, "secret"),
    ],
)
def test_a_malformed_registration_names_its_field(
    client: Client, acme_key: str, body: dict[str, Any], field: str
) -> None:
    refused = client.http.post(
        "/webhooks",
        headers={**bearer(acme_key), "Content-Type": "application/json"},
        body=json.dumps(body),
    )
    assert refused.status_code == 400
    assert field in json.loads(refused.body)["error"]["message"]


def test_a_malformed_endpoint_id_is_not_found(client: Client, acme_key: str) -> None:
    for path in ("/webhooks/nope", "/webhooks/ep_%2e%2e", "/webhooks/ep_ZZ/rotate"):
        method = client.http.post if path.endswith("rotate") else client.http.get
        assert method(path, headers=bearer(acme_key)).status_code == 404


def test_routes_need_a_key(client: Client, aws: Queues) -> None:
    assert client.http.get("/webhooks").status_code == 401
    assert client.http.get("/webhooks", headers=bearer("mpk_" + "x" * 40)).status_code == 401
