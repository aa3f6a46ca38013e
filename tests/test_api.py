"""The REST contract: shapes, validation codes, authentication and tenant isolation."""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from chalice.local import LambdaContext
from chalice.test import Client

from chalicelib import auth, clients, models
from chalicelib.config import settings
from tests.faults import aws_fault, body_contains
from tests.pipeline import Pipeline, bearer
from tests.resources import REGION, Names

# A well-formed job id no job has; fixed, so every test process collects the same ids.
SOME_JOB_ID = "32845d09-7aea-4a6d-9d84-815d9717ccba"


def post_upload(client: Client, key: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.http.post("/uploads", headers=bearer(key), body=raw)


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.body
    error = response.json_body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]


def test_health_needs_no_key(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 200
    assert response.json_body == {"status": "ok"}


def test_create_upload_answers_a_pinned_presigned_post(client: Client, acme_key: str) -> None:
    response = post_upload(
        client,
        acme_key,
        {"filename": "beach.jpg", "contentType": "image/jpeg", "presets": ["thumb"]},
    )
    assert response.status_code == 201, response.body
    body = response.json_body
    assert uuid.UUID(body["jobId"])
    assert body["status"] == "PENDING"
    upload = body["upload"]
    assert upload["method"] == "POST"
    assert upload["maxBytes"] == 25 * 1024 * 1024
    assert datetime.fromisoformat(upload["expiresAt"]) > datetime.now(UTC)
    fields = upload["fields"]
    assert fields["key"] == f"uploads/acme/{body['jobId']}/beach.jpg"
    assert fields["Content-Type"] == "image/jpeg"
    policy = json.loads(__import__("base64").b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert {"key": fields["key"]} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, 25 * 1024 * 1024] in conditions


def test_presets_default_to_every_configured_preset(client: Client, acme_key: str) -> None:
    job_id = post_upload(client, acme_key, {"contentType": "image/png"}).json_body["jobId"]
    job = client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key)).json_body
    assert job["presets"] == ["thumb", "small", "large"]
    assert job["status"] == "PENDING"
    assert job["filename"] is None
    assert job["outputs"] == []
    assert job["error"] is None
    assert job["source"]["contentType"] == "image/png"


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd", "a/b\\c.jpg", "ça va? *.jpg", "....", "x" * 250 + ".jpg", "%2e%2e/x.jpg"],
)
def test_filenames_never_reach_a_key_unsanitized(
    client: Client, acme_key: str, filename: str
) -> None:
    body = post_upload(client, acme_key, {"filename": filename, "contentType": "image/jpeg"})
    key = body.json_body["upload"]["fields"]["key"]
    job_id = body.json_body["jobId"]
    prefix = f"uploads/acme/{job_id}/"
    assert key.startswith(prefix)
    last = key[len(prefix) :]
    assert re.fullmatch(r"[A-Za-z0-9 ._-]{1,100}", last)
    assert ".." not in last.strip(".") or last == "source"
    # The original name is kept for display only.
    job = client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key)).json_body
    assert job["filename"] == filename


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "invalid_request"),
        (b"not json", 400, "invalid_request"),
        (b"[1, 2]", 400, "invalid_request"),
        ({"filename": "a.jpg"}, 400, "invalid_request"),
        ({"contentType": 7}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "extra": 1}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "filename": ""}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "filename": "a\nb"}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "presets": []}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "presets": "thumb"}, 400, "invalid_request"),
        ({"contentType": "image/jpeg", "presets": ["thumb", "thumb"]}, 400, "invalid_request"),
        (b"{" + b" " * 20000 + b"}", 413, "payload_too_large"),
        ({"contentType": "application/pdf"}, 400, "unsupported_content_type"),
        ({"contentType": "image/svg+xml"}, 400, "unsupported_content_type"),
        ({"contentType": "image/jpeg", "presets": ["thumb", "huge"]}, 400, "unknown_preset"),
    ],
)
def test_bad_upload_requests_get_clear_codes(
    client: Client, acme_key: str, body: Any, status: int, code: str
) -> None:
    assert_error(post_upload(client, acme_key, body), status, code)


@pytest.mark.parametrize(
    "body",
    [
        # Each of these answered 500 before: recursion, an unpaired surrogate reaching
        # DynamoDB and the logs.
        b"[" * 5000 + b"]" * 5000,
        b'{"contentType": "image/jpeg", "filename": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"contentType": "image/jpeg", "filename": "\\ud800.jpg"}',
        b'{"contentType": "image/jpeg", "filename": "a\\udfff"}',
        b'{"contentType": "image/jpeg", "presets": ["\\ud83d"]}',
        b'{"contentType": "image/jpeg", "\\udc00": 1}',
        # Not UTF-8, or not JSON as RFC 8259 has it.
        b'{"contentType": "image/jpeg", "filename": "\xff\xfe.jpg"}',
        '{"contentType": "image/jpeg"}'.encode("utf-16"),
        b'\xef\xbb\xbf{"contentType": "image/jpeg"}',
        b'{"contentType": NaN}',
        b'{"contentType": "image/jpeg", "filename": Infinity}',
        b'{"contentType": "image/jpeg", "contentType": "image/png"}',
        b'{"contentType": ' + b"9" * 5000 + b"}",
        b'{"contentType": 1e999}',
        b"null",
        b"true",
        b"17",
        b'"image/jpeg"',
        b'{"contentType": "image/jpeg"} trailing',
        # Wrong types and values, field by field.
        b'{"contentType": null}',
        b'{"contentType": ["image/jpeg"]}',
        b'{"contentType": "image/jpeg", "filename": 7}',
        b'{"contentType": "image/jpeg", "filename": null}',
        b'{"contentType": "image/jpeg", "filename": "a\\u007fb"}',
        b'{"contentType": "image/jpeg", "filename": "a\\u0085b"}',
        b'{"contentType": "image/jpeg", "filename": "' + b"x" * 256 + b'"}',
        b'{"contentType": "image/jpeg", "presets": [1]}',
        b'{"contentType": "image/jpeg", "presets": [null]}',
        b'{"contentType": "image/jpeg", "presets": {"thumb": true}}',
        b'{"contentType": "image/jpeg", "presets": null}',
    ],
)
def test_hostile_bodies_are_invalid_requests(client: Client, acme_key: str, body: bytes) -> None:
    assert_error(post_upload(client, acme_key, body), 400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"contentType": 7}, "contentType"),
        ({"filename": "a.jpg"}, "contentType"),
        ({"contentType": "image/jpeg", "filename": 5}, "filename"),
        ({"contentType": "image/jpeg", "filename": "x" * 300}, "filename"),
        ({"contentType": "image/jpeg", "presets": ["thumb", 3]}, "presets[1]"),
        ({"contentType": "image/jpeg", "presets": []}, "presets"),
        ({"contentType": "image/jpeg", "colour": "red"}, "colour"),
        ({"contentType": "IMAGE/JPEG"}, "contentType"),
        ({"contentType": "image/jpeg", "presets": ["thumb", "huge"]}, "huge"),
    ],
)
def test_messages_name_the_field(client: Client, acme_key: str, body: Any, named: str) -> None:
    response = post_upload(client, acme_key, body)
    assert response.status_code == 400, response.body
    assert named in response.json_body["error"]["message"]


def test_content_types_are_matched_exactly(client: Client, acme_key: str) -> None:
    for spelled in ("IMAGE/JPEG", " image/jpeg", "image/jpeg; q=1"):
        response = post_upload(client, acme_key, {"contentType": spelled})
        assert_error(response, 400, "unsupported_content_type")


def test_filenames_may_be_any_printable_text(client: Client, acme_key: str) -> None:
    printable = (
        "   ",
        "famille 👨👩👧.jpg",
        "poisson 🐠.png",  # its UTF-16 low surrogate is a tag's: read as code points
        "x" * 255,
        "\u00a0nbsp.jpg",
        "صورة.jpg",
        "写真 №1.jpg",
        "e\u0301te\u0301.jpg",  # combining accents
        "\U0001d518\U0001d52b.gif",  # mathematical letters, outside the BMP
    )
    for filename in printable:
        response = post_upload(
            client, acme_key, {"contentType": "image/jpeg", "filename": filename}
        )
        assert response.status_code == 201, (filename, response.body)
        job_id = response.json_body["jobId"]
        job = client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key)).json_body
        assert job["filename"] == filename


# One or more of each kind: controls (Cc), format characters (Cf), separators (Zl, Zp).
INVISIBLE_OR_CONTROL = {
    "Cc": "\x00\x1b\x7f\x85\x9f",
    "Cf bidi": "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
    "Cf zero-width": "\u200b\u200c\u200d\u2060\ufeff\u180e",
    "Cf other": "\u00ad\u0600\u2061\ufff9\U000110bd\U0001d173",
    "Cf tags": "\U000e0001\U000e0020\U000e0041\U000e007f",
    "Zl": "\u2028",
    "Zp": "\u2029",
}


def test_filenames_with_invisible_or_control_characters_are_refused(
    client: Client, acme_key: str
) -> None:
    for kind, characters in INVISIBLE_OR_CONTROL.items():
        for character in characters:
            for filename in (f"cat{character}gpj.exe", f"{character}a.jpg", f"a.jpg{character}"):
                response = post_upload(
                    client, acme_key, {"contentType": "image/jpeg", "filename": filename}
                )
                assert_error(response, 400, "invalid_request")
                message = response.json_body["error"]["message"]
                assert message.startswith("filename "), (kind, f"U+{ord(character):04X}")
    assert jobs_of(client, acme_key) == []


def test_the_refused_filename_characters_are_unicodes_cc_cf_zl_and_zp() -> None:
    refused = re.compile(models.FILENAME_PATTERN)
    for code_point in range(sys.maxunicode + 1):
        if 0xD800 <= code_point <= 0xDFFF:
            continue  # surrogates: not characters, refused with the JSON
        character = chr(code_point)
        expected = unicodedata.category(character) not in {"Cc", "Cf", "Zl", "Zp"}
        assert (refused.fullmatch(character) is not None) == expected, f"U+{code_point:04X}"


def test_a_body_that_is_not_json_is_unsupported_media(client: Client, acme_key: str) -> None:
    headers = {**bearer(acme_key), "Content-Type": "text/plain"}
    response = client.http.post("/uploads", headers=headers, body=b'{"contentType": "image/jpeg"}')
    assert_error(response, 415, "unsupported_media_type")
    assert "text/plain" not in response.body.decode()
    with_charset = {**bearer(acme_key), "Content-Type": "application/json; charset=utf-8"}
    body = b'{"contentType": "image/jpeg"}'
    assert client.http.post("/uploads", headers=with_charset, body=body).status_code == 201


REFUSED_CONTENT_TYPES = (
    None,
    "",
    "application/json, text/plain",
    "text/plain, application/json",
    "application/json; q=1, text/plain",
    "application/json,application/json",
    "*/*",
    "application/*",
    "application/jsonx",
    "application/json-patch+json",
    "application/json; charset=iso-8859-1",
    "application/json; charset",
    "application/json; charset=utf-8; =x",
    "json",
)


def test_only_one_json_media_type_is_accepted(client: Client, acme_key: str) -> None:
    for content_type in REFUSED_CONTENT_TYPES:
        headers = {"Authorization": f"Bearer {acme_key}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = b'{"contentType": "image/jpeg"}'
        response = client.http.post("/uploads", headers=headers, body=body)
        assert response.status_code == 415, content_type
        assert_error(response, 415, "unsupported_media_type")
    assert jobs_of(client, acme_key) == []


ACCEPTED_CONTENT_TYPES = (
    "application/json",
    "Application/JSON",
    "application/json;charset=UTF-8",
    'application/json; charset="utf-8"',
    "application/json;",
    "application/json ; odata.metadata=minimal",
)


def test_json_with_parameters_is_accepted(client: Client, acme_key: str) -> None:
    for content_type in ACCEPTED_CONTENT_TYPES:
        headers = {"Authorization": f"Bearer {acme_key}", "Content-Type": content_type}
        body = b'{"contentType": "image/jpeg"}'
        response = client.http.post("/uploads", headers=headers, body=body)
        assert response.status_code == 201, (content_type, response.body)


@pytest.mark.parametrize(
    ("values", "status"),
    [(["application/json"], 201), (["text/plain", "application/json"], 415)],
)
def test_a_repeated_content_type_header_is_unsupported_media(
    client: Client, values: list[str], status: int
) -> None:
    """API Gateway passes every value of a repeated header in multiValueHeaders, and only
    the last one in headers, which is all Chalice looks at."""
    from app import app

    event = {
        "resource": "/uploads",
        "path": "/uploads",
        "httpMethod": "POST",
        "headers": {"Content-Type": values[-1]},
        "multiValueHeaders": {"Content-Type": values},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/uploads",
            "httpMethod": "POST",
            "authorizer": {"tenant": "acme"},
        },
        "body": '{"contentType": "image/jpeg"}',
        "isBase64Encoded": False,
    }
    response = app(event, LambdaContext("api_handler", memory_size=256))
    assert response["statusCode"] == status, response
    if status == 415:
        assert json.loads(response["body"])["error"]["code"] == "unsupported_media_type"


def jobs_of(client: Client, key: str) -> list[Any]:
    listed = client.http.get("/jobs", headers=bearer(key))
    assert listed.status_code == 200, listed.body
    return list(listed.json_body["jobs"])


def test_an_unserved_method_answers_405_in_the_error_shape(client: Client, acme_key: str) -> None:
    response = client.http.delete("/jobs", headers=bearer(acme_key))
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"


@pytest.mark.parametrize(
    "content_type",
    [
        "image/jpeg",
        "image/png",
        "image/webp",
        "image/gif",
        "image/tiff",
        "image/bmp",
        "image/avif",
        "image/heic",
        "image/heif",
    ],
)
def test_every_accepted_content_type_is_accepted(
    client: Client, acme_key: str, content_type: str
) -> None:
    assert post_upload(client, acme_key, {"contentType": content_type}).status_code == 201


@pytest.mark.parametrize(
    "header",
    ["Bearer mpk_not-a-real-key-at-all", "Basic dXNlcjpwYXNz", "Bearer", "mpk_x", "Bearer a b"],
)
def test_bad_keys_are_unauthorized(client: Client, header: str) -> None:
    headers = {"Authorization": header}
    assert_error(client.http.get("/jobs", headers=headers), 401, "unauthorized")
    assert_error(
        client.http.post("/uploads", headers=headers, body=b'{"contentType": "image/jpeg"}'),
        401,
        "unauthorized",
    )
    assert_error(client.http.get(f"/jobs/{uuid.uuid4()}", headers=headers), 401, "unauthorized")


def test_a_missing_key_is_refused_by_the_gateway(client: Client) -> None:
    assert client.http.get("/jobs").status_code == 401


def test_revoked_keys_stop_working(client: Client, acme_key: str) -> None:
    assert client.http.get("/jobs", headers=bearer(acme_key)).status_code == 200
    auth.revoke_api_key(acme_key)
    assert_error(client.http.get("/jobs", headers=bearer(acme_key)), 401, "unauthorized")


def test_keys_are_stored_only_as_hashes(
    client: Client, acme_key: str, aws_environment: Names
) -> None:
    table = boto3.client("dynamodb", region_name=REGION)
    items = table.scan(TableName=aws_environment.api_keys_table)["Items"]
    assert len(items) == 1
    stored = json.dumps(items)
    assert acme_key not in stored
    assert items[0]["keyHash"]["S"] == auth.hash_key(acme_key)
    assert items[0]["tenant"]["S"] == "acme"


def test_unknown_job_is_not_found(client: Client, acme_key: str) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid", str(uuid.uuid4()).upper()):
        assert_error(client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key)), 404, "not_found")


@pytest.mark.parametrize(
    "job_id",
    [
        "not-a-uuid",
        SOME_JOB_ID.upper(),
        "{" + SOME_JOB_ID + "}",
        "urn:uuid:" + SOME_JOB_ID,
        SOME_JOB_ID.replace("-", ""),
        SOME_JOB_ID + "%0A",
        "%00",
        "%F0%9F%98%80",
        "%ED%A0%80",
        "a" * 2000,
    ],
)
def test_malformed_job_ids_are_not_found_without_a_lookup(
    client: Client, acme_key: str, job_id: str
) -> None:
    lookups: list[dict[str, Any]] = []

    def job_lookup(params: dict[str, Any]) -> bool:
        if body_contains('"jobId"')(params):
            lookups.append(params)
        return False  # watch, never fail

    with aws_fault(clients.dynamodb(), "GetItem", when=job_lookup):
        response = client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key))
        assert_error(response, 404, "not_found")
        assert lookups == []
        wellformed = client.http.get(f"/jobs/{uuid.uuid4()}", headers=bearer(acme_key))
        assert_error(wellformed, 404, "not_found")
        assert len(lookups) == 1


def test_another_tenants_job_is_not_found(client: Client, acme_key: str, globex_key: str) -> None:
    job_id = post_upload(client, acme_key, {"contentType": "image/jpeg"}).json_body["jobId"]
    assert client.http.get(f"/jobs/{job_id}", headers=bearer(acme_key)).status_code == 200
    assert_error(client.http.get(f"/jobs/{job_id}", headers=bearer(globex_key)), 404, "not_found")
    listed = client.http.get("/jobs", headers=bearer(globex_key)).json_body
    assert listed == {"jobs": [], "nextCursor": None}


@pytest.mark.parametrize("query", ["", "?status=PENDING"])
def test_a_job_past_its_retention_is_gone_before_dynamodb_deletes_it(
    client: Client, acme_key: str, query: str
) -> None:
    # DynamoDB's TTL deletes an expired item up to days late; the derived bucket's
    # lifecycle rule has removed its outputs by then, so the API must not show it.
    kept, expired = (
        post_upload(client, acme_key, {"contentType": "image/jpeg"}).json_body["jobId"]
        for _ in range(2)
    )
    clients.dynamodb().update_item(
        TableName=settings().jobs_table,
        Key={"jobId": {"S": expired}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    assert_error(client.http.get(f"/jobs/{expired}", headers=bearer(acme_key)), 404, "not_found")
    assert client.http.get(f"/jobs/{kept}", headers=bearer(acme_key)).status_code == 200
    listed = client.http.get(f"/jobs{query}", headers=bearer(acme_key)).json_body
    assert [job["jobId"] for job in listed["jobs"]] == [kept]


def test_listing_is_newest_first_and_pages_with_a_cursor(client: Client, acme_key: str) -> None:
    created = [
        post_upload(client, acme_key, {"contentType": "image/jpeg"}).json_body["jobId"]
        for _ in range(5)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.http.get(query, headers=bearer(acme_key)).json_body
        seen.extend(job["jobId"] for job in page["jobs"])
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))
    assert pages == 3


def test_listing_filters_by_status(pipeline: Pipeline) -> None:
    from tests.samples import jpeg

    done = pipeline.process(jpeg(), presets=["thumb"])
    waiting = pipeline.request_upload()
    headers = bearer(pipeline.api_key)
    completed = pipeline.client.http.get("/jobs?status=COMPLETED", headers=headers).json_body
    pending = pipeline.client.http.get("/jobs?status=PENDING", headers=headers).json_body
    assert [job["jobId"] for job in completed["jobs"]] == [done["jobId"]]
    assert [job["jobId"] for job in pending["jobs"]] == [waiting["jobId"]]
    assert completed["jobs"][0]["outputs"][0]["url"].startswith("http")


@pytest.mark.parametrize(
    "query",
    [
        "status=DONE",
        "status=pending",
        "status=",
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=",
        "limit=+5",
        "limit=1e1",
        "limit=%205",
        "limit=99999999999999999999999",
        "limit=%C2%B2",  # a superscript two: str.isdigit() is true, int() refuses (was a 500)
        "limit=%D9%A1",  # an Arabic-Indic one, which int() reads as 1
        "limit=1&limit=2",
        "cursor=%%%",
        "cursor=e30",
        "cursor=",
        "cursor=a.b",
        "cursor=" + "A" * 513,
        "colour=red",
    ],
)
def test_bad_listing_queries_are_invalid(client: Client, acme_key: str, query: str) -> None:
    assert_error(
        client.http.get(f"/jobs?{query}", headers=bearer(acme_key)), 400, "invalid_request"
    )


@pytest.mark.parametrize(
    "route", ["POST /uploads", "GET /jobs/{id}", "GET /health", "GET /openapi.json"]
)
def test_every_route_refuses_unknown_query_parameters(
    client: Client, acme_key: str, route: str
) -> None:
    method, path = route.split(" ")
    if "{id}" in path:
        job = post_upload(client, acme_key, {"contentType": "image/jpeg"}).json_body
        path = path.replace("{id}", job["jobId"])
    body = b'{"contentType": "image/jpeg"}' if method == "POST" else b""
    for query in ("colour=red", "colour=", "colour", "status=PENDING", "a=1&b=2"):
        url = f"{path}?{query}"
        response = client.http.request(method, url, headers=bearer(acme_key), body=body)
        assert response.status_code == 400, url
        assert_error(response, 400, "invalid_request")
        first = query.split("=")[0].split("&")[0]
        assert first in response.json_body["error"]["message"]
    if method == "POST":
        assert len(jobs_of(client, acme_key)) == 0


def test_another_tenants_cursor_is_refused(client: Client, acme_key: str, globex_key: str) -> None:
    for _ in range(3):
        post_upload(client, acme_key, {"contentType": "image/jpeg"})
    cursor = client.http.get("/jobs?limit=1", headers=bearer(acme_key)).json_body["nextCursor"]
    assert cursor
    response = client.http.get(f"/jobs?cursor={cursor}", headers=bearer(globex_key))
    assert_error(response, 400, "invalid_request")


def test_internal_failures_reveal_nothing(
    client: Client, acme_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBS_TABLE", "no-such-table")
    from chalicelib.config import reset_settings

    reset_settings()
    response = client.http.get(f"/jobs/{uuid.uuid4()}", headers=bearer(acme_key))
    assert_error(response, 500, "internal_error")
    assert "Retry-After" not in response.headers
    body = response.json_body
    assert set(body) == {"error"}
    text = json.dumps(body)
    for leak in ("Traceback", "no-such-table", "botocore", "ResourceNotFound", ".py"):
        assert leak not in text


def test_a_denied_aws_call_is_an_internal_error_not_a_retry(client: Client, acme_key: str) -> None:
    # skip=1: the authorizer's own GetItem (of the API key) goes through.
    denied = {"code": "AccessDeniedException", "status": 400, "skip": 1}
    with aws_fault(clients.dynamodb(), "GetItem", **denied):
        response = client.http.get(f"/jobs/{uuid.uuid4()}", headers=bearer(acme_key))
    assert_error(response, 500, "internal_error")
    assert "Retry-After" not in response.headers
    for leak in ("AccessDenied", "GetItem", "botocore"):
        assert leak not in response.body.decode()


def test_a_throttled_aws_call_asks_the_client_to_retry(client: Client, acme_key: str) -> None:
    with aws_fault(clients.dynamodb(), "GetItem", code="ThrottlingException", status=400, skip=1):
        response = client.http.get(f"/jobs/{uuid.uuid4()}", headers=bearer(acme_key))
    assert_error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"


def test_broken_configuration_is_a_plain_500(
    client: Client, acme_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRESETS", '[{"name": "oops"')
    from chalicelib.config import reset_settings

    reset_settings()
    response = post_upload(client, acme_key, {"contentType": "image/jpeg"})
    assert_error(response, 500, "internal_error")
    assert "oops" not in response.body.decode()
    assert "JSON" not in response.body.decode()
