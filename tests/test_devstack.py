"""The local stack's emulator (devstack.emulator_server) answers as moto does, only
cheaper: DynamoDB answers are the same JSON, kept-alive connections frame every request
and response correctly, SQS keeps its clock and retention period; and DynamoDB writes
are atomic, as on AWS.

Nothing here patches moto in the test process (the other tests use moto in-process):
the patched server runs in a subprocess, the rest is tested on its own.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws
from moto.core.serialize import JSONSerializer, XFormedAttributePicker
from moto.core.utils import get_service_model
from moto.core.utils import unix_time as moto_unix_time
from werkzeug.serving import WSGIRequestHandler, make_server

from devstack import emulator_server, launch
from devstack.emulator_server import (
    fast_dynamodb_serializer,
    is_message_retained,
    keep_alive_handler,
    unix_time,
    unix_time_millis,
)

REPO = Path(__file__).resolve().parents[1]
REGION = "us-east-1"

# --- DynamoDB: the same JSON as moto's own serializer -----------------------------------

EVERY_KIND = {
    "s": {"S": "text ü 😀"},
    "empty": {"S": ""},
    "n": {"N": "-12.50"},
    "b": {"B": b"\x00\xffbinary"},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "null": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"x", b"\x00y"]},
    "l": {"L": []},
    "m": {"M": {}},
    "deep": {
        "M": {
            "outputs": {
                "L": [
                    {"M": {"key": {"S": "t/1/thumb.jpg"}, "bytes": {"N": "18211"}}},
                    {"M": {"blob": {"B": b"zz"}, "none": {"NULL": True}}},
                ]
            },
            "sets": {"L": [{"SS": ["x"]}, {"NS": ["3"]}, {"BS": [b"q"]}]},
        }
    },
}

RESULTS: list[tuple[str, dict[str, Any]]] = [
    ("GetItem", {"Item": EVERY_KIND}),
    ("GetItem", {}),
    ("PutItem", {}),
    ("PutItem", {"Attributes": EVERY_KIND}),
    ("UpdateItem", {"Attributes": EVERY_KIND}),
    ("DeleteItem", {"Attributes": {"k": {"S": "v"}}}),
    (
        "Query",
        {
            "Items": [EVERY_KIND, {"jobId": {"S": "j"}}],
            "Count": 2,
            "ScannedCount": 3,
            "LastEvaluatedKey": {"jobId": {"S": "j"}, "createdAt": {"S": "2026"}},
            "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5},
        },
    ),
    ("Scan", {"Items": [], "Count": 0, "ScannedCount": 0}),
    (
        "BatchGetItem",
        {"Responses": {"t": [EVERY_KIND]}, "UnprocessedKeys": {}, "ConsumedCapacity": []},
    ),
    # Values the fast path does not know are left to moto's serializer.
    ("GetItem", {"Item": {"odd": {"S": 5}, "two": {"S": "a", "N": "1"}, "nokind": {}}}),
]


@pytest.mark.parametrize(("operation", "result"), RESULTS)
def test_dynamodb_answers_are_the_json_moto_writes(operation: str, result: dict[str, Any]) -> None:
    model = get_service_model("dynamodb").operation_model(operation)

    def body(serializer: type[Any]) -> Any:
        written = serializer(operation_model=model, value_picker=XFormedAttributePicker())
        return written.serialize(result)

    fast, moto = body(fast_dynamodb_serializer()), body(JSONSerializer)
    assert fast == moto
    assert json.loads(fast["body"]) == json.loads(moto["body"])


def test_the_fast_path_is_for_the_attribute_value_moto_knows() -> None:
    shape: Any = get_service_model("dynamodb").shape_for("AttributeValue")
    assert set(shape.members) == emulator_server.ATTRIBUTE_VALUE_MEMBERS


# --- HTTP: kept-alive connections --------------------------------------------------------


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers what it was asked; reads the body only if told to (`?read`)."""
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("boom")
    read = environ["wsgi.input"].read() if "read" in environ["QUERY_STRING"] else b""
    if path == "/empty":
        start_response("204 No Content", [("Content-Length", "0")])
        return []
    payload = json.dumps({"method": environ["REQUEST_METHOD"], "read": read.decode()}).encode()
    # A wrong Content-Length from the app is corrected; HEAD keeps the app's.
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "7")])
    return [payload[:5], payload[5:]]


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    handler = keep_alive_handler(WSGIRequestHandler)
    wsgi = make_server("127.0.0.1", 0, app, threaded=True, request_handler=handler)
    thread = threading.Thread(target=wsgi.serve_forever, daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", wsgi.server_port
    finally:
        wsgi.shutdown()
        wsgi.server_close()


def answer(connection: http.client.HTTPConnection) -> tuple[int, dict[str, str], bytes]:
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_one_connection_serves_many_requests(server: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*server, timeout=5)
    for _ in range(3):
        connection.request("GET", "/")
        status, headers, body = answer(connection)
        assert status == 200
        assert json.loads(body) == {"method": "GET", "read": ""}
        assert headers["Content-Length"] == str(len(body))
        assert "Connection" not in headers
        assert "Transfer-Encoding" not in headers
    sock = connection.sock
    connection.request("GET", "/")
    answer(connection)
    assert connection.sock is sock, "the connection was not kept"


def test_an_unread_body_does_not_reach_the_next_request(server: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*server, timeout=5)
    connection.request("POST", "/", body=b"x" * 300_000)  # the app reads none of it
    assert json.loads(answer(connection)[2]) == {"method": "POST", "read": ""}
    connection.request("POST", "/?read", body=b"second")
    assert json.loads(answer(connection)[2]) == {"method": "POST", "read": "second"}


def test_a_chunked_body_is_read_or_skipped_to_its_end(server: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*server, timeout=5)
    connection.request("PUT", "/?read", body=iter([b"ab", b"cd"]), encode_chunked=True)
    assert json.loads(answer(connection)[2]) == {"method": "PUT", "read": "abcd"}
    connection.request("PUT", "/", body=iter([b"unread"]), encode_chunked=True)
    assert answer(connection)[0] == 200
    connection.request("GET", "/")
    assert answer(connection)[0] == 200


def test_bodiless_answers_stay_bodiless(server: tuple[str, int]) -> None:
    connection = http.client.HTTPConnection(*server, timeout=5)
    connection.request("HEAD", "/")
    status, headers, body = answer(connection)
    assert (status, headers["Content-Length"], body) == (200, "7", b"")
    connection.request("DELETE", "/empty")
    status, headers, body = answer(connection)
    assert (status, body) == (204, b"")
    assert "Content-Length" not in headers
    connection.request("GET", "/")
    assert answer(connection)[0] == 200


def test_expect_100_continue_is_answered(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(
            b"PUT /?read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        received = b""
        while b"}" not in received:  # headers and body may come in two reads
            received += sock.recv(10_000)
        assert received.startswith(b"HTTP/1.1 200 "), "one 100 Continue, then the answer"
        assert received.endswith(b'{"method": "PUT", "read": "data"}')


def test_the_client_may_close_and_errors_close(server: tuple[str, int]) -> None:
    for path, headers, status in [("/", {"Connection": "close"}, 200), ("/fail", {}, 500)]:
        with socket.create_connection(server, timeout=5) as sock:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
            received = b""
            while chunk := sock.recv(10_000):  # ends only when the server closes
                received += chunk
            assert received.startswith(f"HTTP/1.1 {status} ".encode())
            assert b"\r\nConnection: close\r\n" in received


# --- SQS: the same clock and retention ---------------------------------------------------


def test_the_clock_is_moto_s() -> None:
    assert abs(unix_time() - moto_unix_time()) < 0.05
    assert abs(unix_time_millis() - moto_unix_time() * 1000) < 50
    some_time = moto_unix_time.__globals__["utcfromtimestamp"](1_700_000_000)
    assert unix_time(some_time) == moto_unix_time(some_time) == 1_700_000_000


def test_retention_is_read_as_moto_reads_it() -> None:
    from moto.sqs.models import sqs_backends

    with mock_aws():
        backend = sqs_backends["123456789012"][REGION]
        backend.create_queue("q", MessageRetentionPeriod="60")
        message: Any = backend.send_message("q", "body")
        for age_seconds in (0, 59, 61, 3600):
            message.sent_timestamp = int((time.time() - age_seconds) * 1000)
            expected = backend.is_message_valid_based_on_retention_period("q", message)
            assert is_message_retained(backend, "q", message) is expected
            assert expected is (age_seconds < 60)


# --- the emulator, patched, in its own process ------------------------------------------


def test_every_speedup_applies_to_this_moto() -> None:
    """A moto upgrade that moves what apply_speedups patches would silently make the local
    stack slow again; this says so."""
    code = "from devstack.emulator_server import apply_speedups as a; print(*a(), sep='\\n')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "dynamodb AttributeValue serializer",
        "DynamoHandler.call_action",
        "moto.server.MotoRequestHandler",
        "WSGIRequestHandler.log_request",
        "moto.sqs.models.unix_time",
        "moto.sqs.models.unix_time_millis",
        "SQSBackend.is_message_valid_based_on_retention_period",
        "moto.core.responses.method_names_from_class",
        "moto.backends.list_of_moto_modules",
    ], done.stderr


def aws(endpoint: str, service: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=1,
            retries={"mode": "standard", "max_attempts": 1},
        ),
    )


def test_the_emulator_answers_boto_over_one_connection(emulator: str) -> None:
    s3, dynamodb, sqs = aws(emulator, "s3"), aws(emulator, "dynamodb"), aws(emulator, "sqs")
    created = s3.create_bucket(Bucket="bucket-a")
    assert "connection" not in created["ResponseMetadata"]["HTTPHeaders"]
    (connection,) = s3._endpoint.http_session._manager.connection_from_url(emulator).pool.queue
    sock = connection.sock
    s3.put_object(Bucket="bucket-a", Key="k", Body=b"x" * 2_000_000, ContentType="image/jpeg")
    head = s3.head_object(Bucket="bucket-a", Key="k")
    assert (head["ContentLength"], head["ContentType"]) == (2_000_000, "image/jpeg")
    assert s3.get_object(Bucket="bucket-a", Key="k")["Body"].read() == b"x" * 2_000_000
    s3.delete_object(Bucket="bucket-a", Key="k")
    with pytest.raises(s3.exceptions.ClientError, match="404"):
        s3.head_object(Bucket="bucket-a", Key="k")

    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"id": {"S": "1"}, "b": {"B": b"\x00\x01"}, "l": {"L": [{"N": "2"}, {"NULL": True}]}}
    dynamodb.put_item(TableName="t", Item=item)
    assert dynamodb.get_item(TableName="t", Key={"id": {"S": "1"}})["Item"] == item
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(id)")
    assert dynamodb.scan(TableName="t")["Items"] == [item]

    queue = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="hello")
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == "hello"
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    assert connection.sock is sock, "S3's calls did not all use one connection"


def test_no_read_sees_half_an_update(emulator: str) -> None:
    """DynamoDB applies an UpdateItem whole; moto's threaded server changes the item
    attribute by attribute, unlocked, unless the emulator serializes DynamoDB calls."""
    setup = aws(emulator, "dynamodb")
    setup.create_table(
        TableName="jobs",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ids = [str(i) for i in range(20)]
    for job in ids:
        setup.put_item(
            TableName="jobs", Item={"id": {"S": job}, "status": {"S": "A"}, "outputs": {"L": []}}
        )
    outputs = {"L": [{"M": {"key": {"S": "k" * 40}, "n": {"N": str(n)}}} for n in range(3)]}
    deadline = time.monotonic() + 3
    torn: list[Any] = []

    def write() -> None:
        client = aws(emulator, "dynamodb")
        while time.monotonic() < deadline:
            for job in ids:
                for status, values in (("B", outputs), ("A", {"L": []})):
                    client.update_item(
                        TableName="jobs",
                        Key={"id": {"S": job}},
                        UpdateExpression="SET #s = :s, updatedAt = :t, #o = :o",
                        ExpressionAttributeNames={"#s": "status", "#o": "outputs"},
                        ExpressionAttributeValues={
                            ":s": {"S": status},
                            ":t": {"S": "t"},
                            ":o": values,
                        },
                    )

    def read() -> None:
        client = aws(emulator, "dynamodb")
        while time.monotonic() < deadline:
            for item in client.scan(TableName="jobs")["Items"]:
                if (item["status"]["S"] == "B") != bool(item["outputs"]["L"]):
                    torn.append(item)

    threads = [threading.Thread(target=work) for work in (write, write, read, read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not torn, f"{len(torn)} half-applied updates read, e.g. {torn[0]}"


def test_the_launcher_gives_the_stack_its_settings_and_none_of_the_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "PRESETS": "[]",
        "AWS_PROFILE": "production",
        "JOBS_TABLE": "someone-elses-table",
        "WORKERS": "9",
        "BENCH_KEPT": "yes",
    }.items():
        monkeypatch.setenv(name, value)
    settings = launch.Settings(keys={"acme": "k" * 20}, emulator_port=4001, api_port=4002)
    environment = settings.environment()
    assert not {"PRESETS", "AWS_PROFILE", "JOBS_TABLE"} & set(environment)
    assert environment["BENCH_KEPT"] == "yes"
    assert environment["WORKERS"] == "1"
    assert (environment["EMULATOR_PORT"], environment["PORT"]) == ("4001", "4002")
    assert environment["DEV_API_KEYS"] == "acme:" + "k" * 20
    assert "LOCAL_QUEUE_VISIBILITY_SECONDS" not in environment
    assert settings.api == "http://127.0.0.1:4002"
