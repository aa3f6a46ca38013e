"""The emulator's process: moto's server, patched before it starts.

    python -m devstack.emulator_server -H 127.0.0.1 -p 4566 [--data-dir DIR]

moto.server's arguments; with --data-dir, the state is loaded from and saved to DIR
(devstack.persistence).

One patch makes moto more like AWS: DynamoDB calls run one at a time, so that a read never
sees half of an UpdateItem (`one_at_a_time`). `guard_s3` makes its S3 refuse what S3
refuses (devstack.s3_guard), and devstack.emulator_gaps teaches it what `make deploy`
needs of AWS (each gap named and tested).

The others make it cheaper, without changing what a client sees (the same answers, byte
for byte: tests/test_devstack.py): on one machine the emulator shares the cores with the
workers it serves. Each removes a cost profiled during a burst of uploads (bench/README.md):
DynamoDB attribute values are serialized directly, not by walking botocore's shape;
connections are kept open (werkzeug closes each after one response); SQS reads the clock
with time.time() and a queue's retention period without building all its attributes;
what moto recomputes on every request but never changes is computed once; the
per-request access log is off.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import signal
import sys
import threading
import time
from typing import Any

from devstack.bucket_cors import CorsRule

log = logging.getLogger("devstack.emulator")

# --- DynamoDB: AttributeValue written directly ------------------------------------------

ATTRIBUTE_VALUE_MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class NotPlain(Exception):
    """A value the fast path does not write: moto's own serializer takes it."""


def attribute_value_json(value: Any) -> dict[str, Any]:
    """An AttributeValue as moto holds it (`{"S": "x"}`, `{"M": {...}}`, `{"B": b"..."}`)
    written as DynamoDB's JSON protocol writes it, as moto's serializer would."""
    if not isinstance(value, dict) or len(value) != 1:
        raise NotPlain
    ((kind, inner),) = value.items()
    if kind in ("S", "N"):
        return {kind: _string(inner)}
    if kind == "M":
        if not isinstance(inner, dict):
            raise NotPlain
        return {"M": {str(key): attribute_value_json(item) for key, item in inner.items()}}
    if kind == "L":
        return {"L": [attribute_value_json(item) for item in _list(inner)]}
    if kind in ("NULL", "BOOL"):
        if not isinstance(inner, bool):
            raise NotPlain
        return {kind: inner}
    if kind in ("SS", "NS"):
        return {kind: [_string(item) for item in _list(inner)]}
    if kind == "B":
        return {"B": _base64(inner)}
    if kind == "BS":
        return {"BS": [_base64(item) for item in _list(inner)]}
    raise NotPlain


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise NotPlain
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise NotPlain
    return value


def _base64(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise NotPlain
    return base64.b64encode(value).strip().decode("utf-8")


def fast_dynamodb_serializer() -> type[Any]:
    """moto's JSON response serializer, with DynamoDB's AttributeValue written directly."""
    from moto.core.serialize import JSONSerializer

    class DynamoDBJSONSerializer(JSONSerializer):
        def _serialize_type_structure(
            self, serialized: Any, value: Any, shape: Any, key: str
        ) -> None:
            if key and value is not None and shape.name == "AttributeValue":
                try:
                    plain = attribute_value_json(value)
                except NotPlain:
                    pass
                else:
                    self._default_serialize(serialized, plain, shape, key)
                    return
            super()._serialize_type_structure(serialized, value, shape, key)

    return DynamoDBJSONSerializer


def one_at_a_time(call_action: Any) -> Any:
    """`call_action` of moto's DynamoDB, one request at a time.

    DynamoDB applies each write atomically and every read sees whole writes; moto's
    threaded server does not: UpdateItem changes the stored item attribute by attribute,
    in place and unlocked, so a Query running meanwhile in another thread could list a job
    already COMPLETED whose outputs were still empty (seen once in tests/test_local_stack.py
    under load). No DynamoDB action waits on anything, so one lock costs no concurrency
    the GIL did not already take."""
    lock = threading.Lock()

    @functools.wraps(call_action)
    def locked(self: Any) -> Any:
        with lock:
            return call_action(self)

    return locked


# --- HTTP: keep-alive connections -------------------------------------------------------

BODY_SKIP_LIMIT = 64 << 20  # an unread request body larger than this closes the connection


class RequestBody(io.RawIOBase):
    """A request body as the app reads it: never past its Content-Length, and counting,
    so that what the app leaves unread can be skipped before the next request."""

    def __init__(self, stream: Any, length: int) -> None:
        super().__init__()
        self._stream = stream
        self.left = length
        self.ended_early = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.left)
        if wanted <= 0:
            return 0
        count = int(self._stream.readinto(view[:wanted]) or 0)
        if count == 0:  # the client went away mid-body: the app sees the end of its input
            self.ended_early = True
        self.left -= count
        return count

    def readline(self, size: int | None = -1) -> bytes:
        limit = self.left if size is None or size < 0 else min(size, self.left)
        line = bytes(self._stream.readline(limit)) if limit > 0 else b""
        self.left -= len(line)
        return line


def skip_rest(body: Any, limit: int = BODY_SKIP_LIMIT) -> bool:
    """Read and drop what the app left of a request body. False if that cannot be done
    (too much, or a broken stream): then the connection must close."""
    try:
        if isinstance(body, RequestBody):
            if body.left > limit:
                return False
            while body.left and not body.ended_early:
                body.read(min(body.left, 1 << 20))
            return not body.ended_early
        skipped = 0  # a chunked body: up to its last chunk
        while chunk := body.read(1 << 20):
            skipped += len(chunk)
            if skipped > limit:
                return False
    except (OSError, ValueError):
        return False
    return True


def keep_alive_handler(base: type[Any]) -> type[Any]:
    """`base` (werkzeug's WSGIRequestHandler, or moto's subclass of it) serving any number
    of requests per connection, as HTTP/1.1 allows.

    Every response is framed with Content-Length (never `Connection: close`); whatever the
    app did not read of a request body is skipped before the next request is read; the
    connection closes when the client asks for it (`Connection: close`, HTTP/1.0), when a
    request body cannot be skipped, or after an unhandled error. Responses to HEAD, 1xx,
    204 and 304 have no body, as before."""

    class KeepAliveRequestHandler(base):  # type: ignore[misc]
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait

        def run_wsgi(self) -> None:
            # `Expect: 100-continue` was answered by http.server (werkzeug answers it twice)
            environ = self.environ = self.make_environ()
            body = environ["wsgi.input"]
            if not environ.get("wsgi.input_terminated"):  # not chunked: Content-Length
                try:
                    length = max(0, int(environ.get("CONTENT_LENGTH") or 0))
                except ValueError:
                    length, self.close_connection = 0, True
                body = environ["wsgi.input"] = RequestBody(self.rfile, length)
            status, headers, content = self._call_app(environ)
            code, _, reason = status.partition(" ")
            self.send_response(int(code), reason)
            for name, value in headers:
                lower = name.lower()
                if lower in ("connection", "transfer-encoding"):
                    continue
                if lower == "content-length" and self.command != "HEAD":
                    continue  # written below, from the body itself
                self.send_header(name, value)
            has_body = self.command != "HEAD" and int(code) >= 200 and int(code) not in (204, 304)
            if has_body:
                self.send_header("Content-Length", str(len(content)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if has_body:
                self.wfile.write(content)
            self.wfile.flush()
            if not self.close_connection and not skip_rest(body):
                self.close_connection = True

        def _call_app(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
            started: list[Any] = []

            def start_response(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                started[:] = [status, list(headers)]
                return lambda _data: None  # the legacy write(): moto never calls it

            try:
                result = self.server.app(environ, start_response)
                try:
                    content = b"".join(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception:
                log.exception("error on request %s %s", self.command, self.path)
                started.clear()
            if not started:
                self.close_connection = True
                return "500 Internal Server Error", [("Content-Type", "text/plain")], b"error"
            return started[0], started[1], content

    return KeepAliveRequestHandler


# --- SQS: the clock and the retention period --------------------------------------------


def unix_time(dt: Any = None) -> float:
    """moto's `unix_time()`: now, in seconds since the epoch (time.time()); with a
    datetime, moto's own conversion."""
    if dt is None:
        return time.time()
    from moto.core import utils

    return float(utils.unix_time(dt))


def unix_time_millis(dt: Any = None) -> float:
    return unix_time(dt) * 1000.0


def is_message_retained(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's `SQSBackend.is_message_valid_based_on_retention_period`, reading the
    queue's retention period instead of building all of the queue's attributes."""
    retention = int(backend.get_queue(queue_name).message_retention_period)
    return bool(retention + message.sent_timestamp / 1000 > unix_time())


# --- putting it together ----------------------------------------------------------------


def apply_speedups() -> list[str]:
    """Patch moto, in this process only (the emulator's); call it before moto serves
    anything. Returns what was patched; a patch whose target a moto upgrade removed is
    left out (and logged), leaving that part as moto has it."""
    from moto import backends, server
    from moto.core import responses, serialize
    from moto.core.utils import get_service_model
    from moto.dynamodb.responses import DynamoHandler
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from moto.sqs import models as sqs
    from werkzeug.serving import WSGIRequestHandler

    applied: list[str] = []

    def replace(owner: Any, name: str, value: Any) -> None:
        if not hasattr(owner, name):
            log.warning("moto has no %s.%s any more: not patched", owner.__name__, name)
            return
        setattr(owner, name, value)
        applied.append(f"{owner.__name__}.{name}")

    # Only while botocore's model is what the fast path writes: should AttributeValue gain
    # a member, moto's own serializer keeps the job.
    shape: Any = get_service_model("dynamodb").shape_for("AttributeValue")
    if set(shape.members) == ATTRIBUTE_VALUE_MEMBERS:
        serializers = serialize.SERVICE_SPECIFIC_SERIALIZERS.setdefault("dynamodb", {})
        serializers["json"] = fast_dynamodb_serializer()
        applied.append("dynamodb AttributeValue serializer")

    replace(DynamoHandler, "call_action", one_at_a_time(DynamoHandler.call_action))
    replace(server, "MotoRequestHandler", keep_alive_handler(MotoRequestHandler))
    replace(WSGIRequestHandler, "log_request", lambda *_args, **_kwargs: None)

    replace(sqs, "unix_time", unix_time)
    replace(sqs, "unix_time_millis", unix_time_millis)
    replace(sqs.SQSBackend, "is_message_valid_based_on_retention_period", is_message_retained)

    names_of = getattr(responses, "method_names_from_class", None)
    if names_of is not None:
        action_names = functools.cache(lambda cls: tuple(names_of(cls)))
        replace(responses, "method_names_from_class", lambda cls: list(action_names(cls)))
    modules = tuple(backends.list_of_moto_modules())
    replace(backends, "list_of_moto_modules", lambda: modules)
    return applied


# --- S3: what a private bucket refuses -------------------------------------------------


def emulator_secret(access_key_id: str) -> str | None:
    from devstack.emulator import ACCESS_KEY_ID, SECRET_ACCESS_KEY

    return SECRET_ACCESS_KEY if access_key_id == ACCESS_KEY_ID else None


def is_path_style(environ: dict[str, Any]) -> bool:
    """Whether moto's S3 reads the bucket from the path (as for 127.0.0.1 and localhost)
    rather than from the host name."""
    from moto.s3.responses import S3Response
    from werkzeug.wrappers import Request

    return not S3Response.subdomain_based_buckets(Request(environ))


def bucket_cors_rules(bucket_name: str) -> list[CorsRule] | None:
    """The bucket's CORS rules as moto stores them; None when it has no CORS
    configuration, or does not exist."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.exceptions import S3ClientError
    from moto.s3.models import s3_backends

    try:
        bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(bucket_name)
    except S3ClientError:
        return None
    if not bucket.cors:
        return None
    return [
        CorsRule(
            allowed_methods=as_list(rule.allowed_methods),
            allowed_origins=as_list(rule.allowed_origins),
            allowed_headers=as_list(rule.allowed_headers),
            exposed_headers=as_list(rule.exposed_headers),
            max_age_seconds=None if rule.max_age_seconds is None else int(rule.max_age_seconds),
        )
        for rule in bucket.cors
    ]


def as_list(value: Any) -> list[str]:
    """moto keeps a rule's one-item lists as the item alone."""
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def guard_s3() -> None:
    """Put devstack.s3_guard in front of moto's S3 application. Not optional: should a
    moto upgrade move what this patches, the emulator must not start without its checks."""
    from moto import server
    from moto.moto_server.werkzeug_app import create_backend_app

    from devstack.emulator import REGION
    from devstack.s3_guard import S3Guard

    def create_guarded_app(service: Any) -> Any:
        app = create_backend_app(service)
        if service == "s3":
            app.wsgi_app = S3Guard(  # type: ignore[method-assign]
                app.wsgi_app, emulator_secret, REGION, is_path_style, bucket_cors_rules
            )
        return app

    server.create_backend_app = create_guarded_app  # type: ignore[attr-defined]


# --- stopping: the first signal counts ----------------------------------------------------


def stop_once(signum: Any, frame: Any) -> None:
    """moto's SIGTERM and SIGINT handler (it raises SystemExit), once. A later signal must
    not raise again inside the last snapshot and abandon it: the parent-death signal comes
    again each time the emulator is re-parented, and when `make run` is killed its threads
    end one after another, the emulator passing from one to the next."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    apply_speedups()
    guard_s3()
    # S3 events from a versioned bucket name the version; moto's leave it out.
    from devstack.emulator import add_version_ids_to_s3_events

    add_version_ids_to_s3_events()
    # What AWS does and moto does not, for `make deploy` against the emulator.
    from devstack.emulator_gaps import fill_gaps

    fill_gaps()
    import argparse
    from pathlib import Path

    from moto import server

    from devstack import persistence

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", type=Path, default=None)
    options, moto_argv = parser.parse_known_args(argv)
    store = None
    if options.data_dir is not None:
        store = persistence.Store(options.data_dir, persistence.Gate())
        try:
            store.open()
        except persistence.PersistenceError as exc:
            print(f"emulator: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    persistence.install(store)
    # moto's main() installs its module's handler by name, when it starts
    server.signal_handler = stop_once
    try:
        server.main(moto_argv)
    finally:
        if store is not None:
            store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
