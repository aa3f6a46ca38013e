"""`make run`'s API server (devstack.local_api) answers as the deployed stage does where
Chalice's local server would not: unknown routes, methods no route serves, refused keys
and malformed requests all answer in the API's error shape, as JSON, and never quote the
request (a recognisable fake key is sent with each, and looked for in the answer).

The server runs in this process, on a free port, with the app's own routes; nothing here
reaches AWS (every request is answered before a view would call it).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from chalice.config import Config

from devstack import local_api

FAKE_KEY = "FAKEKEY-do-not-echo-0123456789"
TIMEOUT = 10


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    from app import app

    original_class = app.__class__
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = local_api.create_server(app, Config(chalice_stage="local"), "127.0.0.1", port)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server.server_close()
        app.__class__ = original_class


def call(api: str, method: str, path: str, **headers: str) -> requests.Response:
    return requests.request(
        method,
        api + path,
        headers={"Authorization": f"Bearer {FAKE_KEY}", "x-api-key": FAKE_KEY, **headers},
        timeout=TIMEOUT,
    )


def error_of(response: requests.Response) -> dict[str, Any]:
    """The answer's error, once checked that it is the API's JSON and quotes nothing."""
    assert response.headers["Content-Type"] == "application/json", response.text
    assert FAKE_KEY not in response.text
    assert FAKE_KEY not in str(response.headers)
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "TRACE", "OPTIONS", "BREW"])
def test_an_unknown_route_answers_404_not_found(api: str, method: str) -> None:
    response = call(api, method, "/admin/<script>?q=<b>")
    assert response.status_code == 404
    assert error_of(response) == {"code": "not_found", "message": "No such route."}
    assert "script" not in response.text


def test_head_of_an_unknown_route_answers_404_without_a_body(api: str) -> None:
    response = call(api, "HEAD", "/admin")
    assert (response.status_code, response.content) == (404, b"")
    assert response.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/health", "GET"),
        ("TRACE", "/jobs", "GET"),
        ("CONNECT", "/uploads", "POST"),
        ("OPTIONS", "/jobs", "GET"),
        ("OPTIONS", "/uploads", "POST"),
        ("BREW", "/jobs/00000000-0000-4000-8000-000000000000", "GET"),
        ("DELETE", "/uploads", "POST"),
    ],
)
def test_a_method_the_route_does_not_serve_answers_405(
    api: str, method: str, path: str, allow: str
) -> None:
    response = call(api, method, path)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response.headers["Allow"] == allow


def test_a_missing_key_answers_401_unauthorized(api: str) -> None:
    response = requests.get(f"{api}/jobs", headers={"x-api-key": FAKE_KEY}, timeout=TIMEOUT)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


def test_a_malformed_request_answers_400_as_json(api: str) -> None:
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET /health {FAKE_KEY} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), head
    assert b"Content-Type: application/json" in head
    assert FAKE_KEY.encode() not in received
    assert body.startswith(b'{"error": {"code": "invalid_request"')


def test_the_routes_still_answer(api: str) -> None:
    response = call(api, "GET", "/health")
    assert response.status_code == 200, response.text


def raw_exchange(api: str, request: bytes) -> bytes:
    """What the server answers `request` with, up to its closing the connection."""
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("POST", "/admin", b"404"), ("DELETE", "/uploads", b"405")],
)
@pytest.mark.parametrize("length", ["abc", "100000000"])
def test_a_refusal_reads_no_body_and_closes(
    api: str, method: str, path: str, status: bytes, length: str
) -> None:
    """Not even an announced 100 MB is read (nor waited for) before the answer."""
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nxyz"
    head, _, body = raw_exchange(api, request.encode()).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), head
    assert b"Connection: close" in head
    assert body.startswith(b'{"error": {"code": ')


def test_a_refusal_without_a_body_keeps_the_connection(api: str) -> None:
    request = (
        b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n" * 2
        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    received = raw_exchange(api, request)
    assert received.count(b"HTTP/1.1 404") == 2
    assert b"HTTP/1.1 200" in received
