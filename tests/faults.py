"""Fault injection at botocore's own seam: a `before-call` hook that answers an operation
with an AWS error response, so the code under test meets a real ClientError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

Predicate = Callable[[dict[str, Any]], bool]


class Fault:
    """Fail `operation` with `code`, at most `times` times (None: always), on every client
    it is attached to; the count is shared."""

    def __init__(
        self,
        operation: str,
        *,
        code: str = "SlowDown",
        status: int = 503,
        times: int | None = None,
        when: Predicate | None = None,
    ) -> None:
        self.operation = operation
        self.code = code
        self.status = status
        self.times = times
        self.when = when
        self.failed = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register(self._event(client), self._answer)

    def detach(self, client: Any) -> None:
        client.meta.events.unregister(self._event(client), self._answer)

    def _event(self, client: Any) -> str:
        return f"before-call.{client.meta.service_model.service_id.hyphenize()}.{self.operation}"

    def _answer(
        self, params: dict[str, Any], **_: Any
    ) -> tuple[AWSResponse, dict[str, Any]] | None:
        if self.times is not None and self.failed >= self.times:
            return None
        if self.when is not None and not self.when(params):
            return None
        self.failed += 1
        response = AWSResponse(params.get("url", ""), self.status, HTTPHeaders(), None)
        parsed = {
            "Error": {"Code": self.code, "Message": "injected fault"},
            "ResponseMetadata": {"HTTPStatusCode": self.status},
        }
        return response, parsed


@contextmanager
def aws_fault(
    client: Any,
    operation: str,
    *,
    code: str = "SlowDown",
    status: int = 503,
    times: int | None = None,
    when: Predicate | None = None,
) -> Iterator[Fault]:
    """Fail `operation` on `client` while the block runs; yields the fault, which counts."""
    fault = Fault(operation, code=code, status=status, times=times, when=when)
    fault.attach(client)
    try:
        yield fault
    finally:
        fault.detach(client)


def url_contains(fragment: str) -> Predicate:
    return lambda params: fragment in str(params.get("url_path", "")) + str(params.get("url", ""))
