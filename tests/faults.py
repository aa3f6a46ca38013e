"""Fault injection at botocore's own seam, so the code under test meets what AWS gives it.

- `Fault` answers an operation with an AWS error response (a real ClientError), raises a
  botocore exception instead (a connection error: the request never arrived), or lets the
  call reach AWS and then fails it (`applied`: the write happened, its response was lost).
- `InvocationKilled` is a Lambda invocation dying where it stands (timeout, out of memory,
  SIGKILL): it derives from BaseException, so no `except Exception` of the code sees it and
  nothing after it runs; an event source treats it as a failed invocation.
- `KillSwitch` kills the invocation at its n-th AWS call, whatever the call is.
- `JobHistory` records the statuses each job's writes left, read from outside the code;
  `OutputWrites` records every object written to a bucket, and whether its job had been
  COMPLETED by then: a finished job must never be rendered again.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

Predicate = Callable[[dict[str, Any]], bool]
ErrorFactory = Callable[[], BaseException]

INJECTED_URL = "https://injected.invalid"
_REQUEST = "faults:request"


class InvocationKilled(BaseException):
    """The function's runtime died mid-invocation; nothing in the function may catch it."""


def connection_refused() -> BaseException:
    return EndpointConnectionError(endpoint_url=INJECTED_URL)


def connection_reset() -> BaseException:
    return ConnectionClosedError(endpoint_url=INJECTED_URL)


def read_timeout() -> BaseException:
    return ReadTimeoutError(endpoint_url=INJECTED_URL)


def killed() -> BaseException:
    return InvocationKilled("the invocation was killed")


@dataclass(eq=False)
class Fault:
    """Fail `operation` (after letting `skip` matching calls through) at most `times` times
    (None: always), on every client it is attached to; the counts are shared.

    By default the call is answered with the AWS error `code` / `status`; with `raises` the
    factory's exception is raised instead. With `applied` the call reaches AWS first and
    fails only on its way back."""

    operation: str
    _: KW_ONLY
    code: str = "SlowDown"
    status: int = 503
    times: int | None = None
    when: Predicate | None = None
    skip: int = 0
    raises: ErrorFactory | None = None
    applied: bool = False
    calls: int = field(default=0, init=False)  # matching calls seen
    failed: int = field(default=0, init=False)
    # The worker writes a job's outputs on several threads at once: counting is atomic.
    _counting: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def attach(self, client: Any) -> None:
        client.meta.events.register(self._event(client, "before-call"), self._before)
        if self.applied:
            client.meta.events.register(self._event(client, "after-call"), self._after)

    def detach(self, client: Any) -> None:
        client.meta.events.unregister(self._event(client, "before-call"), self._before)
        if self.applied:
            client.meta.events.unregister(self._event(client, "after-call"), self._after)

    def _event(self, client: Any, stage: str) -> str:
        return f"{stage}.{client.meta.service_model.service_id.hyphenize()}.{self.operation}"

    def _strikes(self, request: dict[str, Any]) -> bool:
        with self._counting:
            if self.times is not None and self.failed >= self.times:
                return False
            if self.when is not None and not self.when(request):
                return False
            self.calls += 1
            if self.calls <= self.skip:
                return False
            self.failed += 1
            return True

    def _before(
        self, params: dict[str, Any], context: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if self.applied:
            context[_REQUEST] = params
            return None
        if not self._strikes(params):
            return None
        if self.raises is not None:
            raise self.raises()
        return self._error_response(params)

    def _after(self, http_response: AWSResponse, context: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300 or not self._strikes(context.get(_REQUEST, {})):
            return
        raise (self.raises or read_timeout)()

    def _error_response(self, params: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        response = AWSResponse(params.get("url", ""), self.status, HTTPHeaders(), None)
        parsed = {
            "Error": {"Code": self.code, "Message": "injected fault"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        return response, parsed


@contextmanager
def aws_fault(client: Any, operation: str, **options: Any) -> Iterator[Fault]:
    """Fail `operation` on `client` while the block runs (`options`: Fault's); yields the
    fault, which counts."""
    fault = Fault(operation, **options)
    fault.attach(client)
    try:
        yield fault
    finally:
        fault.detach(client)


@contextmanager
def attached(faults: Iterable[Fault], clients: Iterable[Any]) -> Iterator[None]:
    """Every fault on every client (each fault on the clients of its own service only)."""
    pairs = [
        (fault, client)
        for fault in faults
        for client in clients
        if fault.operation in client.meta.service_model.operation_names
    ]
    for fault, client in pairs:
        fault.attach(client)
    try:
        yield
    finally:
        for fault, client in pairs:
            fault.detach(client)


def url_contains(fragment: str) -> Predicate:
    return lambda params: fragment in str(params.get("url_path", "")) + str(params.get("url", ""))


def body_contains(fragment: str) -> Predicate:
    """Requests whose body names `fragment` (a DynamoDB key or an SQS message's job)."""

    def matches(params: dict[str, Any]) -> bool:
        body = params.get("body", b"")
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
        return fragment in text

    return matches


class KillSwitch:
    """Kill the invocation at the (`after` + 1)-th AWS call made on the attached clients,
    once; `fired` says whether it did."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.calls = 0
        self.fired = False

    @contextmanager
    def armed(self, clients: Iterable[Any]) -> Iterator[None]:
        armed = list(clients)
        for client in armed:
            client.meta.events.register("before-call", self._count)
        try:
            yield
        finally:
            for client in armed:
                client.meta.events.unregister("before-call", self._count)

    def _count(self, **_: Any) -> None:
        if self.fired:
            return
        self.calls += 1
        if self.calls > self.after:
            self.fired = True
            raise killed()


class JobHistory:
    """Each watched job's statuses in the order the code's writes left them: after every
    call the code makes to DynamoDB that names a watched job, that job's status is read
    from outside (`job_status`, a client of its own, with no faults)."""

    def __init__(self, job_status: Callable[[str], str | None]) -> None:
        self.job_status = job_status
        self.statuses: dict[str, list[str]] = {}

    def watch(self, job_id: str) -> None:
        self.statuses.setdefault(job_id, [])

    def reached(self, job_id: str, status: str) -> bool:
        return status in self.statuses.get(job_id, [])

    @contextmanager
    def recording(self, dynamodb: Any) -> Iterator[JobHistory]:
        dynamodb.meta.events.register("before-call.dynamodb", self._request)
        dynamodb.meta.events.register("after-call.dynamodb", self._observe)
        try:
            yield self
        finally:
            dynamodb.meta.events.unregister("before-call.dynamodb", self._request)
            dynamodb.meta.events.unregister("after-call.dynamodb", self._observe)

    def _request(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        body = params.get("body", b"")
        context["faults:body"] = body.decode() if isinstance(body, bytes) else str(body)

    def _observe(self, context: dict[str, Any], **_: Any) -> None:
        body = context.get("faults:body", "")
        for job_id, seen in self.statuses.items():
            if job_id not in body:
                continue
            status = self.job_status(job_id)
            if status is not None and (not seen or seen[-1] != status):
                seen.append(status)


@dataclass(frozen=True)
class Write:
    key: str
    job_was_completed: bool


class OutputWrites:
    """Successful PutObjects into `bucket` made by the attached client, in order, and
    whether the object's job had already been COMPLETED (`completed(job_id)`) when it was
    written. A key's job is its second segment (``<tenant>/<jobId>/<name>``)."""

    def __init__(self, bucket: str, completed: Callable[[str], bool]) -> None:
        self.bucket = bucket
        self.completed = completed
        self.writes: list[Write] = []

    @contextmanager
    def recording(self, client: Any) -> Iterator[OutputWrites]:
        events = client.meta.events
        # First: an injected fault's own after-call handler may raise after a write landed.
        events.register_first("before-parameter-build.s3.PutObject", self._before)
        events.register_first("after-call.s3.PutObject", self._after)
        try:
            yield self
        finally:
            events.unregister("before-parameter-build.s3.PutObject", self._before)
            events.unregister("after-call.s3.PutObject", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") != self.bucket:
            return
        key = str(params["Key"])
        context["faults:write"] = Write(key, self.completed(job_of(key)))

    def _after(self, http_response: AWSResponse, context: dict[str, Any], **_: Any) -> None:
        write = context.get("faults:write")
        if write is not None and http_response.status_code < 300:
            self.writes.append(write)

    def count(self) -> Counter[str]:
        return Counter(write.key for write in self.writes)

    def after_completion(self) -> list[str]:
        return [write.key for write in self.writes if write.job_was_completed]


def job_of(output_key: str) -> str:
    parts = output_key.split("/")
    return parts[1] if len(parts) == 3 else ""


@contextmanager
def aws_calls() -> Iterator[list[str]]:
    """Every AWS call the app's clients make in the block, in order ("S3.GetObject")."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(f"{model.service_model.service_id}.{model.name}")

    from chalicelib import clients

    watched = (clients.s3(), clients.sqs(), clients.dynamodb())
    for client in watched:
        client.meta.events.register("before-call", record)
    try:
        yield calls
    finally:
        for client in watched:
            client.meta.events.unregister("before-call", record)
