"""The local stack's emulator (devstack.emulator_server) refuses what S3 refuses.

A browser-form upload is checked against its presigned POST policy as S3 checks it, each
refusal with S3's status and error code, and nothing stored; the genuine form works,
from a browser too (Origin, CORS). Unsigned requests are refused as a private bucket
refuses them; signed calls and presigned downloads still work.

One emulator serves the module, in a subprocess on a free port, as in test_devstack.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import tracemalloc
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from devstack import bucket_cors, emulator, emulator_server, post_policy
from devstack.launch import running_emulator
from devstack.post_policy import PostForm
from devstack.s3_guard import S3Guard

REPO = Path(__file__).resolve().parents[1]
BUCKET = "uploads-bucket"
OTHER_BUCKET = "other-bucket"
ORIGIN = "https://app.example.com"
MAX_BYTES = 4096
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with running_emulator() as url:
        s3 = client(url)
        for bucket in (BUCKET, OTHER_BUCKET):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_cors(
            Bucket=BUCKET,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedMethods": ["POST"],
                        "AllowedOrigins": ["*"],
                        "AllowedHeaders": ["Content-Type"],
                        "ExposeHeaders": ["ETag", "Location"],
                        "MaxAgeSeconds": 3000,
                    }
                ]
            },
        )
        yield url


def client(url: str, key_id: str | None = None, secret: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=emulator.REGION,
        aws_access_key_id=key_id or emulator.ACCESS_KEY_ID,
        aws_secret_access_key=secret or emulator.SECRET_ACCESS_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def presign(
    url: str,
    key: str,
    content_type: str = "image/jpeg",
    expires_in: int = 60,
    bucket: str = BUCKET,
    s3: Any = None,
    max_bytes: int = MAX_BYTES,
) -> dict[str, Any]:
    """A form as chalicelib.storage.presign_upload makes it: one key, one content type,
    1 byte to `max_bytes`."""
    post: dict[str, Any] = (s3 or client(url)).generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": content_type},
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires_in,
    )
    return post


def send(post: dict[str, Any], data: bytes = JPEG, **headers: str) -> requests.Response:
    return requests.post(
        post["url"],
        data=post["fields"],
        files={"file": ("photo.jpg", data, "image/jpeg")},
        headers=headers,
        timeout=30,
    )


def error(response: requests.Response) -> tuple[int, str, str]:
    """Status, S3 error code and message of an S3 error answer."""
    root = ET.fromstring(response.content)
    return response.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def versions(url: str, key: str, bucket: str = BUCKET) -> list[Any]:
    listed = client(url).list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listed.get("Versions", []) if v["Key"] == key]


def stored(url: str, key: str) -> tuple[bytes, str]:
    got = client(url).get_object(Bucket=BUCKET, Key=key)
    return got["Body"].read(), got["ContentType"]


# --- the genuine form ------------------------------------------------------------------


def test_the_genuine_form_stores_the_bytes_sent(endpoint: str) -> None:
    post = presign(endpoint, "uploads/acme/genuine/photo.jpg")
    response = send(post)
    assert response.status_code == 204, response.text
    assert stored(endpoint, "uploads/acme/genuine/photo.jpg") == (JPEG, "image/jpeg")


def test_a_browser_post_gets_the_bucket_s_cors_headers(endpoint: str) -> None:
    post = presign(endpoint, "uploads/acme/browser/photo.jpg")
    response = send(post, Origin=ORIGIN)
    assert response.status_code == 204, response.text
    assert response.headers["Access-Control-Allow-Origin"] in (ORIGIN, "*")
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]
    assert stored(endpoint, "uploads/acme/browser/photo.jpg") == (JPEG, "image/jpeg")


def test_the_largest_and_smallest_files_the_policy_allows_are_stored(endpoint: str) -> None:
    for name, data in (("largest", b"x" * MAX_BYTES), ("smallest", b"x")):
        key = f"uploads/acme/{name}/photo.jpg"
        assert send(presign(endpoint, key), data).status_code == 204
        assert stored(endpoint, key)[0] == data


def test_a_file_of_megabytes_is_stored_whole_and_one_byte_more_refused(endpoint: str) -> None:
    """Past the emulator's in-memory spool (1 MiB), the body goes through a file."""
    data = os.urandom(3 << 20)
    key = "uploads/acme/megabytes/photo.jpg"
    assert send(presign(endpoint, key, max_bytes=len(data)), data).status_code == 204
    assert stored(endpoint, key) == (data, "image/jpeg")
    over = "uploads/acme/megabytes-over/photo.jpg"
    response = send(presign(endpoint, over, max_bytes=len(data) - 1), data)
    assert refused(endpoint, response, over)[:2] == (400, "EntityTooLarge")


def test_a_virtual_host_style_form_is_checked_too(endpoint: str) -> None:
    key = "uploads/acme/virtual/photo.jpg"
    post = presign(endpoint, key)
    post["url"] = f"{endpoint}/"
    host = f"{BUCKET}.s3.amazonaws.com"
    assert send(post, Host=host).status_code == 204
    assert stored(endpoint, key) == (JPEG, "image/jpeg")
    post["fields"]["key"] = victim = "uploads/globex/virtual/photo.jpg"
    assert refused(endpoint, send(post, Host=host), victim)[:2] == (403, "AccessDenied")


def test_a_form_signed_with_a_session_token_is_stored(endpoint: str) -> None:
    key = "uploads/acme/token/photo.jpg"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=emulator.REGION,
        aws_access_key_id=emulator.ACCESS_KEY_ID,
        aws_secret_access_key=emulator.SECRET_ACCESS_KEY,
        aws_session_token="left-in-the-shell",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    post = presign(endpoint, key, s3=s3)
    assert "x-amz-security-token" in post["fields"]
    assert send(post).status_code == 204


def test_x_ignore_fields_need_no_condition(endpoint: str) -> None:
    post = presign(endpoint, "uploads/acme/ignored/photo.jpg")
    post["fields"]["x-ignore-note"] = "anything"
    assert send(post).status_code == 204


# --- refusals ----------------------------------------------------------------------------


def refused(
    endpoint: str, response: requests.Response, key: str, bucket: str = BUCKET
) -> tuple[int, str, str]:
    """The refusal's status, code and message, once checked that nothing was stored."""
    assert versions(endpoint, key, bucket) == [], f"{key} was stored"
    return error(response)


def test_a_form_re_targeted_to_another_key_is_refused(endpoint: str) -> None:
    victim = "uploads/globex/victim/photo.jpg"
    post = presign(endpoint, "uploads/acme/mine/photo.jpg")
    post["fields"]["key"] = victim
    status, code, message = refused(endpoint, send(post), victim)
    assert (status, code) == (403, "AccessDenied")
    assert message.startswith("Invalid according to Policy: Policy Condition failed:")
    assert '"$key"' in message


def test_a_form_sent_to_another_bucket_is_refused(endpoint: str) -> None:
    key = "uploads/acme/elsewhere/photo.jpg"
    post = presign(endpoint, key)
    post["url"] = post["url"].replace(BUCKET, OTHER_BUCKET)
    status, code, message = refused(endpoint, send(post), key, OTHER_BUCKET)
    assert (status, code) == (403, "AccessDenied")
    assert '"$bucket"' in message


def test_a_changed_content_type_is_refused(endpoint: str) -> None:
    key = "uploads/acme/type/photo.jpg"
    post = presign(endpoint, key)
    post["fields"]["Content-Type"] = "text/html"
    status, code, message = refused(endpoint, send(post), key)
    assert (status, code) == (403, "AccessDenied")
    assert '"$content-type"' in message


def test_an_oversized_file_is_refused(endpoint: str) -> None:
    key = "uploads/acme/large/photo.jpg"
    status, code, _ = refused(endpoint, send(presign(endpoint, key), b"x" * (MAX_BYTES + 1)), key)
    assert (status, code) == (400, "EntityTooLarge")


def test_an_empty_file_is_refused(endpoint: str) -> None:
    key = "uploads/acme/empty/photo.jpg"
    status, code, _ = refused(endpoint, send(presign(endpoint, key), b""), key)
    assert (status, code) == (400, "EntityTooSmall")


def test_an_expired_form_is_refused(endpoint: str) -> None:
    key = "uploads/acme/expired/photo.jpg"
    status, code, message = refused(endpoint, send(presign(endpoint, key, expires_in=-1)), key)
    assert (status, code, message) == (
        403,
        "AccessDenied",
        "Invalid according to Policy: Policy expired.",
    )


def test_a_tampered_policy_is_refused(endpoint: str) -> None:
    key = "uploads/acme/tampered/photo.jpg"
    post = presign(endpoint, key)
    policy = json.loads(base64.b64decode(post["fields"]["policy"]))
    for condition in policy["conditions"]:
        if isinstance(condition, list) and condition[0] == "content-length-range":
            condition[2] = 10 * MAX_BYTES
    post["fields"]["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    status, code, _ = refused(endpoint, send(post, b"x" * (MAX_BYTES + 1)), key)
    assert (status, code) == (403, "SignatureDoesNotMatch")


def test_a_form_signed_with_another_secret_or_key_is_refused(endpoint: str) -> None:
    key = "uploads/acme/forged/photo.jpg"
    forged = presign(endpoint, key, s3=client(endpoint, secret="not-the-emulator-s"))
    assert refused(endpoint, send(forged), key)[:2] == (403, "SignatureDoesNotMatch")
    stranger = presign(endpoint, key, s3=client(endpoint, key_id="AKIDSTRANGER"))
    assert refused(endpoint, send(stranger), key)[:2] == (403, "InvalidAccessKeyId")


def test_a_signature_that_is_not_ascii_is_refused(endpoint: str) -> None:
    key = "uploads/acme/non-ascii/photo.jpg"
    post = presign(endpoint, key)
    post["fields"]["x-amz-signature"] = "é" * 64
    assert refused(endpoint, send(post), key)[:2] == (403, "SignatureDoesNotMatch")


def test_a_field_the_policy_does_not_cover_is_refused(endpoint: str) -> None:
    key = "uploads/acme/extra/photo.jpg"
    post = presign(endpoint, key)
    post["fields"]["x-amz-meta-owner"] = "globex"
    status, code, message = refused(endpoint, send(post), key)
    assert (status, code) == (403, "AccessDenied")
    assert message == "Invalid according to Policy: Extra input fields: x-amz-meta-owner"


def test_an_unsigned_form_is_refused(endpoint: str) -> None:
    key = "uploads/acme/unsigned/photo.jpg"
    form = {"key": key, "Content-Type": "image/jpeg"}
    post = {"url": f"{endpoint}/{BUCKET}", "fields": form}
    assert refused(endpoint, send(post), key)[:2] == (403, "AccessDenied")


def test_a_form_that_is_not_multipart_is_refused(endpoint: str) -> None:
    key = "uploads/acme/urlencoded/photo.jpg"
    post = presign(endpoint, key)
    response = requests.post(post["url"], data={**post["fields"], "file": "x"}, timeout=30)
    assert refused(endpoint, response, key)[:2] == (412, "PreconditionFailed")


def test_a_form_without_a_file_is_refused(endpoint: str) -> None:
    key = "uploads/acme/nofile/photo.jpg"
    post = presign(endpoint, key)
    response = requests.post(
        post["url"],
        files={name: (None, value) for name, value in post["fields"].items()},
        timeout=30,
    )
    assert refused(endpoint, response, key)[:2] == (400, "IncorrectNumberOfFilesInPostRequest")


def test_a_refusal_to_a_browser_carries_the_cors_headers(endpoint: str) -> None:
    key = "uploads/acme/browser-refused/photo.jpg"
    response = send(presign(endpoint, key, expires_in=-1), Origin=ORIGIN)
    assert refused(endpoint, response, key)[:2] == (403, "AccessDenied")
    assert response.headers["Access-Control-Allow-Origin"] in (ORIGIN, "*")


Part = tuple[str, str | None, bytes]  # name, filename (None for a field), value


def multipart(parts: list[Part], boundary: str, closing: bool = True) -> bytes:
    """A multipart/form-data body of `parts`, with its closing boundary if `closing`."""
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        + (f'; filename="{filename}"'.encode() if filename else b"")
        + b"\r\n\r\n"
        + value
        + b"\r\n"
        for name, filename, value in parts
    )
    return body + f"--{boundary}--\r\n".encode() if closing else body


def test_fields_after_the_file_are_ignored_as_s3_ignores_them(endpoint: str) -> None:
    key = "uploads/acme/trailing/photo.jpg"
    post = presign(endpoint, key)
    boundary = "b0undary"
    parts: list[Part] = [(name, None, value.encode()) for name, value in post["fields"].items()]
    parts += [("file", "photo.jpg", JPEG), ("key", None, b"uploads/globex/victim/x.jpg")]
    parts += [("x-amz-meta-owner", None, b"globex")]
    response = requests.post(
        post["url"],
        data=multipart(parts, boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.status_code == 204, response.text
    assert stored(endpoint, key) == (JPEG, "image/jpeg")
    head = client(endpoint).head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {}
    assert versions(endpoint, "uploads/globex/victim/x.jpg") == []


def test_the_connection_goes_on_after_a_form_followed_by_junk(endpoint: str) -> None:
    """The guard stops reading at the end of the file; the server skips the rest."""
    key = "uploads/acme/junk/photo.jpg"
    body = multipart(form_parts(key), "b0undary") + os.urandom(2 << 20)
    connection = http.client.HTTPConnection(endpoint.removeprefix("http://"), timeout=30)
    try:
        connection.request(
            "POST",
            f"/{BUCKET}",
            body,
            {"Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        response = connection.getresponse()
        assert response.status == 204, response.read()
        response.read()
        sock = connection.sock
        connection.request("GET", f"/{BUCKET}")
        listing = connection.getresponse()
        assert listing.status == 403
        assert ET.fromstring(listing.read()).findtext("Code") == "AccessDenied"
        assert connection.sock is sock
    finally:
        connection.close()
    assert stored(endpoint, key) == (JPEG, "image/jpeg")


# --- unsigned requests -----------------------------------------------------------------


def test_anonymous_requests_are_refused_as_a_private_bucket_refuses_them(endpoint: str) -> None:
    key = "uploads/acme/listed/photo.jpg"
    assert send(presign(endpoint, key)).status_code == 204
    for method, path in (
        ("GET", f"/{BUCKET}"),
        ("GET", f"/{BUCKET}?list-type=2"),
        ("GET", f"/{BUCKET}?versions"),
        ("GET", "/"),
        ("GET", f"/{BUCKET}/{key}"),
        ("PUT", f"/{BUCKET}/uploads/acme/put/photo.jpg"),
        ("DELETE", f"/{BUCKET}/{key}"),
        ("POST", f"/{BUCKET}?delete"),
    ):
        response = requests.request(method, f"{endpoint}{path}", data=b"x", timeout=30)
        assert error(response)[:2] == (403, "AccessDenied"), (method, path, response.text)
        assert key.encode() not in response.content
    assert requests.head(f"{endpoint}/{BUCKET}/{key}", timeout=30).status_code == 403
    assert versions(endpoint, "uploads/acme/put/photo.jpg") == []
    assert stored(endpoint, key)[0] == JPEG


def test_signed_calls_and_presigned_downloads_still_work(endpoint: str) -> None:
    s3 = client(endpoint)
    key = "uploads/acme/signed/photo.jpg"
    s3.put_object(Bucket=BUCKET, Key=key, Body=JPEG, ContentType="image/jpeg")
    assert key in [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    link = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    download = requests.get(link, timeout=30)
    assert (download.status_code, download.content) == (200, JPEG)
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}]})


def preflight(endpoint: str, bucket: str = BUCKET, **headers: str) -> requests.Response:
    return requests.options(f"{endpoint}/{bucket}", headers=headers, timeout=30)


def test_a_cors_preflight_is_answered_as_s3_answers_it(endpoint: str) -> None:
    response = preflight(
        endpoint,
        Origin=ORIGIN,
        **{
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
    )
    assert response.status_code == 200
    assert response.content == b""
    cors = {name: value for name, value in response.headers.items() if name != "Date"}
    assert {
        name: value for name, value in cors.items() if name.lower().startswith(("acc", "vary"))
    } == {
        "Access-Control-Allow-Origin": "*",  # the rule allows any origin
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type",
        "Access-Control-Expose-Headers": "ETag, Location",
        "Access-Control-Max-Age": "3000",
    }


@pytest.mark.parametrize(
    ("bucket", "headers", "status", "code", "message"),
    [
        pytest.param(
            BUCKET,
            {"Origin": ORIGIN, "Access-Control-Request-Method": "PUT"},
            403,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed.",
            id="method-not-allowed",
        ),
        pytest.param(
            BUCKET,
            {
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-custom",
            },
            403,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed.",
            id="header-not-allowed",
        ),
        pytest.param(
            OTHER_BUCKET,
            {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            403,
            "AccessForbidden",
            "CORSResponse: CORS is not enabled for this bucket.",
            id="no-cors-configuration",
        ),
        pytest.param(
            BUCKET,
            {"Access-Control-Request-Method": "POST"},
            400,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
            id="no-origin",
        ),
    ],
)
def test_a_preflight_no_rule_allows_is_refused_as_s3_refuses_it(
    endpoint: str, bucket: str, headers: dict[str, str], status: int, code: str, message: str
) -> None:
    response = preflight(endpoint, bucket, **headers)
    assert error(response)[:2] == (status, code)
    assert error(response)[2].startswith(message)
    assert "Access-Control-Allow-Origin" not in response.headers


RULES = [
    bucket_cors.CorsRule(
        allowed_methods=["GET"], allowed_origins=["https://*.example.com"], max_age_seconds=60
    ),
    bucket_cors.CorsRule(
        allowed_methods=["POST"],
        allowed_origins=["https://app.example.com"],
        allowed_headers=["Content-Type", "x-amz-*"],
    ),
]


@pytest.mark.parametrize(
    ("origin", "method", "requested", "expected"),
    [
        ("https://a.example.com", "GET", None, 0),
        ("https://example.com", "GET", None, None),  # no "." before example.com
        ("https://app.example.com", "POST", "content-type, X-Amz-Date", 1),
        ("https://app.example.com", "POST", "x-other", None),
        ("https://other.example.org", "POST", None, None),
        ("https://app.example.com", "GET", "content-type", None),  # the GET rule allows none
    ],
)
def test_the_first_rule_that_allows_everything_asked_is_the_one(
    origin: str, method: str, requested: str | None, expected: int | None
) -> None:
    request = bucket_cors.cors_request(origin, method, requested)
    rule = bucket_cors.matching_rule(RULES, request)
    assert rule is (None if expected is None else RULES[expected])


def test_a_rule_for_named_origins_answers_with_the_origin_and_credentials() -> None:
    request = bucket_cors.cors_request("https://app.example.com", "POST", "Content-Type")
    assert bucket_cors.answer_headers(RULES[1], request) == {
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Allow-Credentials": "true",
        "Vary": bucket_cors.VARY,
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "content-type",
    }


# --- the guard's reading, in this process ----------------------------------------------


class Body:
    """A request body made as it is read (`head`, then `size` bytes of `fill`), counting
    what the guard reads of it."""

    def __init__(self, head: bytes, size: int = 0, fill: bytes = b"x") -> None:
        self.head = head
        self.left = size
        self.fill = fill
        self.taken = 0

    def read(self, size: int) -> bytes:
        if self.taken < len(self.head):
            chunk = self.head[self.taken : self.taken + size]
        else:
            chunk = self.fill * min(size, self.left)
            self.left -= len(chunk)
        self.taken += len(chunk)
        return chunk


def through_guard(body: Body, boundary: str = "b0undary") -> tuple[int, str, bytes, int]:
    """The guard's answer to a form posted to BUCKET (status, S3 error code), what it
    passed on to moto, and the peak of the memory allocated meanwhile."""
    passed: list[bytes] = []

    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        passed.append(environ["wsgi.input"].read())
        start_response("204 No Content", [])
        return [b""]

    guard = S3Guard(
        moto, emulator_server.emulator_secret, emulator.REGION, lambda _: True, lambda _: None
    )
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/{BUCKET}",
        "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        "wsgi.input": body,
    }
    statuses: list[str] = []
    tracemalloc.start()
    try:
        result = guard(environ, lambda status, *_: statuses.append(status))
        content = b"".join(result)
        if hasattr(result, "close"):
            result.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    code = (ET.fromstring(content).findtext("Code") or "") if content else ""
    return int(statuses[0].split()[0]), code, b"".join(passed), peak


def form_parts(key: str, *extra: Part) -> list[Part]:
    """A genuine form's fields (signed for now), `extra` fields, then the file."""
    fields = presign("http://127.0.0.1:9", key)["fields"].items()
    return [(name, None, value.encode()) for name, value in fields] + [
        *extra,
        ("file", "photo.jpg", JPEG),
    ]


JUNK = 16 << 20
PRE_FILE_BODIES: dict[str, Callable[[], Body]] = {
    "no boundary": lambda: Body(b"", JUNK),
    "an endless part header": lambda: Body(
        b'--b0undary\r\nContent-Disposition: form-data; name="key"\r\nX: ', JUNK
    ),
    "900 parts of 2 KB names": lambda: Body(
        multipart(
            form_parts("k", *[(f"x-ignore-{i:03}-{'n' * 2048}", None, b"") for i in range(900)]),
            "b0undary",
        )
    ),
}


@pytest.mark.parametrize("make_body", PRE_FILE_BODIES.values(), ids=PRE_FILE_BODIES)
def test_what_precedes_the_file_is_bounded_as_s3_bounds_the_fields(
    make_body: Callable[[], Body],
) -> None:
    """werkzeug's decoder buffers a preamble and a part's headers whole: the guard reads
    no more than S3's 20 KB of fields and their headers before the file."""
    body = make_body()
    status, code, passed, peak = through_guard(body)
    assert (status, code, passed) == (400, "MaxPostPreDataLengthExceededError", b"")
    assert body.taken < 512 << 10
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "after",
    [b"--b0undary--\r\n", b"--b0undary\r\nX: "],
    ids=["after the closing boundary", "in a later part's header"],
)
def test_what_follows_the_file_is_not_even_read(after: bytes) -> None:
    body = Body(multipart(form_parts("k"), "b0undary", closing=False) + after, JUNK)
    status, _, passed, peak = through_guard(body)
    assert status == 204
    assert JPEG in passed
    assert body.taken < 512 << 10
    assert peak < 1 << 20


def test_fields_of_nearly_20_kb_are_read() -> None:
    body = Body(multipart(form_parts("k", ("x-ignore-note", None, b"n" * 19_000)), "b0undary"))
    status, _, passed, _ = through_guard(body)
    assert status == 204
    assert JPEG in passed


# --- the policy check on its own ---------------------------------------------------------


def signed_form(policy: dict[str, Any] | bytes, **fields: str) -> PostForm:
    """A form whose policy is signed with the emulator's own key, as boto3 signs it."""
    text = policy if isinstance(policy, bytes) else json.dumps(policy).encode()
    encoded = base64.b64encode(text).decode()
    day = "20261204"
    signature = post_policy.sign_policy(encoded, emulator.SECRET_ACCESS_KEY, day, emulator.REGION)
    signing = {
        "policy": encoded,
        "x-amz-algorithm": post_policy.ALGORITHM,
        "x-amz-credential": f"{emulator.ACCESS_KEY_ID}/{day}/{emulator.REGION}/s3/aws4_request",
        "x-amz-date": f"{day}T120000Z",
        "x-amz-signature": signature,
    }
    return PostForm(bucket=BUCKET, fields={**signing, **fields})


def check(form: PostForm) -> post_policy.SizeRange | None:
    return post_policy.check(
        form,
        lambda key: emulator.SECRET_ACCESS_KEY if key == emulator.ACCESS_KEY_ID else None,
        emulator.REGION,
        now=datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC),
    )


SIGNING_CONDITIONS: list[Any] = [
    ["starts-with", "$x-amz-algorithm", ""],
    ["starts-with", "$x-amz-credential", ""],
    ["starts-with", "$x-amz-date", ""],
]


def test_starts_with_on_content_type_applies_to_each_value() -> None:
    policy = {
        "expiration": "2026-12-04T12:05:00Z",
        "conditions": [
            {"bucket": BUCKET},
            {"key": "k"},
            ["starts-with", "$Content-Type", "image/"],
            ["content-length-range", 1, 10],
            *SIGNING_CONDITIONS,
        ],
    }
    size_range = check(signed_form(policy, key="k", **{"content-type": "image/png, image/jpeg"}))
    assert size_range == post_policy.SizeRange(1, 10)
    with pytest.raises(post_policy.Refusal) as refused:
        check(signed_form(policy, key="k", **{"content-type": "image/png, text/html"}))
    assert (refused.value.status, refused.value.code) == (403, "AccessDenied")


@pytest.mark.parametrize(
    ("policy", "fields", "status", "code"),
    [
        (b"not json", {"key": "k"}, 400, "InvalidPolicyDocument"),
        ({"conditions": []}, {"key": "k"}, 400, "InvalidPolicyDocument"),
        (
            {"expiration": "2026-12-04T12:05:00Z", "conditions": {}},
            {"key": "k"},
            400,
            "InvalidPolicyDocument",
        ),
        (
            {"expiration": "2026-12-04T12:05:00Z", "conditions": [{"a": "1", "b": "2"}]},
            {"key": "k"},
            400,
            "InvalidPolicyDocument",
        ),
        ({"expiration": "2026-12-04T12:05:00Z", "conditions": []}, {}, 400, "InvalidArgument"),
        (
            {"expiration": "2026-12-04T12:00:00Z", "conditions": []},
            {"key": "k"},
            403,
            "AccessDenied",
        ),
    ],
)
def test_broken_policies_and_forms_are_refused_as_s3_refuses_them(
    policy: dict[str, Any] | bytes, fields: dict[str, str], status: int, code: str
) -> None:
    with pytest.raises(post_policy.Refusal) as refused:
        check(signed_form(policy, **fields))
    assert (refused.value.status, refused.value.code) == (status, code)


POLICY: dict[str, Any] = {
    "expiration": "2026-12-04T12:05:00Z",
    "conditions": [{"bucket": BUCKET}, {"key": "k"}, *SIGNING_CONDITIONS],
}


def test_a_signature_that_is_not_ascii_does_not_match() -> None:
    form = signed_form(POLICY, key="k")
    with pytest.raises(post_policy.Refusal) as refused:
        check(PostForm(BUCKET, {**form.fields, "x-amz-signature": "é" * 64}))
    assert (refused.value.status, refused.value.code) == (403, "SignatureDoesNotMatch")


def test_a_deeply_nested_policy_is_malformed() -> None:
    with pytest.raises(post_policy.Refusal) as refused:
        check(signed_form(b"[" * 5000 + b"]" * 5000, key="k"))
    assert (refused.value.status, refused.value.code) == (400, "InvalidPolicyDocument")


def test_every_content_length_range_applies() -> None:
    narrow, wide = ["content-length-range", 1, 10], ["content-length-range", 0, 100]
    for ranges in ([narrow, wide], [wide, narrow]):
        policy = {**POLICY, "conditions": [*POLICY["conditions"], *ranges]}
        assert check(signed_form(policy, key="k")) == post_policy.SizeRange(1, 10)
    disjoint = [["content-length-range", 1, 10], ["content-length-range", 20, 30]]
    policy = {**POLICY, "conditions": [*POLICY["conditions"], *disjoint]}
    size_range = check(signed_form(policy, key="k"))
    for size in (5, 25):
        with pytest.raises(post_policy.Refusal):
            post_policy.check_size(size, size_range)


@pytest.mark.parametrize(
    ("day", "date"),
    [
        ("", "20261204T120000Z"),
        ("2026120", "20261204T120000Z"),
        ("20261203", "20261204T120000Z"),
        ("2026120٤", "2026120٤T120000Z"),
    ],
)
def test_the_credential_s_date_is_x_amz_date_s_day(day: str, date: str) -> None:
    form = signed_form(POLICY, key="k")
    credential = f"{emulator.ACCESS_KEY_ID}/{day}/{emulator.REGION}/s3/aws4_request"
    signature = post_policy.sign_policy(
        form.fields["policy"], emulator.SECRET_ACCESS_KEY, day, emulator.REGION
    )
    fields = {
        **form.fields,
        "x-amz-credential": credential,
        "x-amz-date": date,
        "x-amz-signature": signature,
    }
    with pytest.raises(post_policy.Refusal) as refused:
        check(PostForm(BUCKET, fields))
    assert (refused.value.status, refused.value.code) == (400, "InvalidArgument")


@pytest.mark.parametrize(
    "expiration",
    [
        "2026-12-04T12:05:00+00:00",
        "2026-12-04 12:05:00Z",
        "2026-12-04T12:05Z",
        "20261204T120500Z",
        "2026-12-04T12:05:00.000001Z",
        "2026-12-04T12:05:00,000Z",
        "2026-12-04T12:05:00.000Z\n",
        "2026-12-04T25:05:00Z",
        "\uff12\uff10\uff12\uff16-12-04T12:05:00Z",
        1796385900,
    ],
)
def test_an_expiration_s3_does_not_read_is_malformed(expiration: Any) -> None:
    with pytest.raises(post_policy.Refusal) as refused:
        check(signed_form({**POLICY, "expiration": expiration}, key="k"))
    assert (refused.value.status, refused.value.code) == (400, "InvalidPolicyDocument")


@pytest.mark.parametrize("expiration", ["2026-12-04T12:05:00Z", "2026-12-04T12:05:00.000Z"])
def test_both_forms_of_expiration_boto3_writes_are_read(expiration: str) -> None:
    check(signed_form({**POLICY, "expiration": expiration}, key="k"))


def test_a_refusal_takes_notes_and_context() -> None:
    def refuse() -> None:
        raise post_policy.access_denied()

    def refuse_while_unwinding() -> None:
        with contextlib.ExitStack() as stack:
            stack.callback(refuse)
            raise ValueError("first")

    refusal = post_policy.access_denied()
    refusal.add_note("seen in a test")
    assert refusal.__notes__ == ["seen in a test"]
    with pytest.raises(post_policy.Refusal) as raised:
        refuse_while_unwinding()
    assert isinstance(raised.value.__context__, ValueError)
