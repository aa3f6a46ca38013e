"""The emulator's S3 refuses what a private bucket on S3 refuses, before moto sees it.

moto stores any browser-form POST to a bucket and answers any request, signed or not. In
front of its S3 application (a WSGI middleware, in the emulator's process) this module:

- checks every form POST to a bucket as S3 does (devstack.post_policy: signature, expiry,
  bucket, key, content type, size range, every field covered by the policy), reading the
  body once, in chunks, into a spooled temporary file that moto then reads instead: the
  fields before the file part (at most 20 KB, as on S3), the file part's bytes, nothing
  after it (S3 ignores fields after the file; moto would not): that is not even read.
  Nothing is stored unless the form passes; the file's bytes are never held in memory
  whole by this check.
- refuses any other request that carries no signature (no Authorization header, no
  presigned query string) with 403 AccessDenied, as S3 answers a stranger for a private
  bucket: listing, reading, writing. CORS preflights (OPTIONS) still pass, as on S3.
- answers CORS preflights to a bucket as S3 does (devstack.bucket_cors: the first rule
  that allows the origin, method and headers, or 403 AccessForbidden), and gives a form
  upload from a browser, or its refusal, the CORS headers S3 gives it. moto answers a
  preflight whatever its method and headers, and with other headers.

Signed requests other than form POSTs pass unchecked, as before: moto accepts any
credentials, and so does the emulator for them.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import IO, Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.wsgi import ClosingIterator

from devstack import bucket_cors, post_policy
from devstack.bucket_cors import CorsRule
from devstack.post_policy import PostForm, Refusal, SizeRange

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_BYTES = 256 << 10
SPOOLED_IN_MEMORY = 1 << 20  # a larger body goes to a temporary file
# S3 refuses a form whose fields before the file add up to more than 20 KB.
MAX_FIELD_BYTES = 20 << 10
# What may come before the file part: the fields and the parts' headers (werkzeug's
# decoder buffers a preamble and a part's headers whole, however long).
MAX_PRE_FILE_BYTES = MAX_FIELD_BYTES + (64 << 10)
MAX_PARTS = 1000
PRESIGNED_QUERY = ("X-Amz-Signature", "X-Amz-Credential", "Signature", "AWSAccessKeyId")
CORS_NAMES = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-allow-credentials",
        "vary",
    }
)
_PATH_BUCKET = re.compile(r"^/([^/]+)/?$")
_PATH_FIRST_SEGMENT = re.compile(r"^/([^/]+)")


def malformed() -> Refusal:
    message = "The body of your POST request is not well-formed multipart/form-data."
    return Refusal("MalformedPOSTRequest", message)


def fields_too_large() -> Refusal:
    message = "Your POST request fields preceding the upload file were too large."
    return Refusal("MaxPostPreDataLengthExceededError", message)


def not_multipart() -> Refusal:
    return Refusal(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        {"Condition": "Bucket POST must be of the enclosure-type multipart/form-data"},
    )


def no_single_file() -> Refusal:
    message = "POST requires exactly one file upload per request."
    return Refusal("IncorrectNumberOfFilesInPostRequest", message)


@dataclass(frozen=True)
class S3Guard:
    """WSGI middleware in front of moto's S3 application (see the module's docstring).

    `secret_for(access_key_id)` gives the secret of the emulator's access key (None for
    any other); `is_path_style(environ)` tells path-style requests from virtual-host ones
    as moto's S3 does; `cors_rules(bucket)` the bucket's CORS rules (None when it has no
    CORS configuration, or does not exist)."""

    app: WSGIApp
    secret_for: Callable[[str], str | None]
    region: str
    is_path_style: Callable[[dict[str, Any]], bool]
    cors_rules: Callable[[str], Sequence[CorsRule] | None]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        bucket = self.posted_bucket(environ)
        try:
            if environ["REQUEST_METHOD"] == "OPTIONS":
                addressed = self.addressed_bucket(environ)
                if addressed is not None:
                    return self.preflight(environ, start_response, addressed)
            if bucket is not None:
                return self.form_upload(environ, start_response, bucket)
            if is_anonymous(environ) and environ["REQUEST_METHOD"] != "OPTIONS":
                raise post_policy.access_denied()
        except Refusal as refusal:
            headers = self.cors_headers(environ, bucket) if bucket else {}
            return refuse(refusal, start_response, headers)
        return self.app(environ, start_response)

    def posted_bucket(self, environ: dict[str, Any]) -> str | None:
        """The bucket a browser-form upload (a POST to the bucket's own URL, not a
        DeleteObjects `?delete`) is sent to; None for any other request."""
        if environ["REQUEST_METHOD"] != "POST":
            return None
        if "delete" in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            return None
        path = environ.get("PATH_INFO", "")
        if self.is_path_style(environ):
            match = _PATH_BUCKET.match(path)
            return match[1] if match else None
        host = environ.get("HTTP_HOST", "")
        return host.split(".", 1)[0] if path in ("", "/") else None

    def addressed_bucket(self, environ: dict[str, Any]) -> str | None:
        """The bucket a request is addressed to, from its path or its host name."""
        if self.is_path_style(environ):
            match = _PATH_FIRST_SEGMENT.match(environ.get("PATH_INFO", ""))
            return match[1] if match else None
        host = environ.get("HTTP_HOST", "")
        return host.split(".", 1)[0] if "." in host else None

    def preflight(
        self, environ: dict[str, Any], start_response: Callable[..., Any], bucket: str
    ) -> list[bytes]:
        headers = bucket_cors.preflight_headers(
            self.cors_rules(bucket),
            environ.get("HTTP_ORIGIN"),
            environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "OPTIONS"),
            environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"),
        )
        request_id = uuid.uuid4().hex[:16].upper()
        start_response(
            "200 OK",
            [("Content-Length", "0"), ("x-amz-request-id", request_id), *headers.items()],
        )
        return []

    def cors_headers(self, environ: dict[str, Any], bucket: str) -> dict[str, str]:
        """The CORS headers S3 adds to its answer to the request (none without an Origin)."""
        origin = environ.get("HTTP_ORIGIN")
        if not origin:
            return {}
        request = bucket_cors.cors_request(origin, environ["REQUEST_METHOD"], None)
        return bucket_cors.request_headers(self.cors_rules(bucket), request)

    def form_upload(
        self, environ: dict[str, Any], start_response: Callable[..., Any], bucket: str
    ) -> Any:
        mimetype, options = parse_options_header(environ.get("CONTENT_TYPE", ""))
        if mimetype != "multipart/form-data" or not options.get("boundary"):
            raise not_multipart()
        boundary = options["boundary"].encode("latin-1")
        with contextlib.ExitStack() as on_refusal:
            spool = on_refusal.enter_context(tempfile.SpooledTemporaryFile(SPOOLED_IN_MEMORY))
            FormReader(self, bucket, boundary, spool).read(environ["wsgi.input"])
            on_refusal.pop_all()  # passed: closed once moto's answer is sent
        length = spool.tell()
        spool.seek(0)
        environ["wsgi.input"] = spool
        environ["CONTENT_LENGTH"] = str(length)
        environ.pop("wsgi.input_terminated", None)
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        cors = self.cors_headers(environ, bucket)

        def with_cors(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            # moto answers a form upload without the bucket's CORS rule (its global CORS
            # adds only Access-Control-Allow-Origin); S3 answers with the rule's headers.
            kept = [(name, value) for name, value in headers if name.lower() not in CORS_NAMES]
            return start_response(status, [*kept, *cors.items()], *args)

        return ClosingIterator(self.app(environ, with_cors), spool.close)


def is_anonymous(environ: dict[str, Any]) -> bool:
    if environ.get("HTTP_AUTHORIZATION"):
        return False
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return not any(name in query for name in PRESIGNED_QUERY)


class FormReader:
    """Reads a form upload once, checks it, and writes what moto is to read: the fields
    before the file (less `x-ignore-*`), the file, the closing boundary."""

    def __init__(self, guard: S3Guard, bucket: str, boundary: bytes, out: IO[bytes]) -> None:
        self.guard = guard
        self.bucket = bucket
        self.boundary = boundary
        self.out = out
        self.fields: dict[str, str] = {}
        self.field_bytes = 0
        self.size_range: SizeRange | None = None
        self.file_size = 0
        self.file_seen = False
        self.file_done = False

    def read(self, body: Any) -> None:
        decoder = MultipartDecoder(self.boundary, max_parts=MAX_PARTS)
        part: Field | File | None = None
        value = bytearray()
        received = 0
        try:
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    if decoder.complete:
                        raise malformed()  # the body ended inside the form
                    wanted = READ_BYTES
                    if not self.file_seen:
                        if received > MAX_PRE_FILE_BYTES:
                            raise fields_too_large()
                        wanted = min(wanted, MAX_PRE_FILE_BYTES + 1 - received)
                    chunk = body.read(wanted)
                    received += len(chunk)
                    decoder.receive_data(chunk or None)
                    continue
                if isinstance(event, Epilogue):
                    break
                if isinstance(event, Field | File):
                    part = event
                    value.clear()
                    if event.name.lower() == "file":
                        self.start_file(event)
                elif isinstance(event, Data) and part is not None:
                    if self.file_seen:
                        self.file_data(event)
                        if self.file_done:
                            # S3 ignores whatever follows the file: left unread, for the
                            # server to skip (or to close the connection).
                            break
                    else:
                        self.field_data(part.name, value, event)
        except (ValueError, UnicodeDecodeError) as exc:
            raise malformed() from exc
        except RequestEntityTooLarge as exc:
            raise fields_too_large() from exc
        if not self.file_seen:
            self.check_policy()
            raise no_single_file()
        post_policy.check_size(self.file_size, self.size_range)
        self.out.write(b"\r\n--" + self.boundary + b"--\r\n")

    def field_data(self, name: str, value: bytearray, event: Data) -> None:
        self.field_bytes += len(event.data)
        if self.field_bytes > MAX_FIELD_BYTES:
            raise fields_too_large()
        value.extend(event.data)
        if event.more_data:
            return
        lowered = name.lower()
        if lowered in self.fields:
            raise malformed()  # which of two values S3 would take is not documented
        self.fields[lowered] = value.decode("utf-8")
        if not lowered.startswith(post_policy.IGNORED_PREFIX):
            self.write_part(name, value)
            self.out.write(b"\r\n")

    def check_policy(self) -> None:
        self.size_range = post_policy.check(
            PostForm(bucket=self.bucket, fields=self.fields),
            self.guard.secret_for,
            self.guard.region,
        )

    def start_file(self, part: Field | File) -> None:
        self.check_policy()
        self.file_seen = True
        filename = part.filename if isinstance(part, File) else ""
        self.write_part("file", None, filename)

    def file_data(self, event: Data) -> None:
        self.file_size += len(event.data)
        if self.size_range is not None and self.file_size > self.size_range.most:
            post_policy.check_size(self.file_size, self.size_range)
        self.out.write(event.data)
        if not event.more_data:
            self.file_done = True

    def write_part(
        self, name: str, value: bytes | bytearray | None, filename: str | None = None
    ) -> None:
        disposition = f'form-data; name="{quoted(name)}"'
        if filename is not None:
            disposition += f'; filename="{quoted(filename)}"'
        self.out.write(b"--" + self.boundary + b"\r\nContent-Disposition: ")
        self.out.write(disposition.encode("utf-8") + b"\r\n\r\n")
        if value is not None:
            self.out.write(value)


def quoted(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise malformed()
    return text.replace("\\", "\\\\").replace('"', '\\"')


def refuse(
    refusal: Refusal, start_response: Callable[..., Any], extra_headers: Mapping[str, str]
) -> list[bytes]:
    """S3's XML error document for `refusal`."""
    request_id = uuid.uuid4().hex[:16].upper()
    details = "".join(
        f"<{name}>{escape(value)}</{name}>" for name, value in refusal.details.items()
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{refusal.code}</Code><Message>{escape(refusal.message)}</Message>"
        f"{details}<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()
    status = f"{refusal.status} {HTTPStatus(refusal.status).phrase}"
    headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(body))),
        ("x-amz-request-id", request_id),
        *extra_headers.items(),
    ]
    start_response(status, headers)
    return [body]
