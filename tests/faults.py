"""Fault injection at botocore's own seam: a `before-call` hook that answers an operation
with an AWS error response, so the code under test meets a real ClientError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders

Predicate = Callable[[dict[str, Any]], bool]


@contextmanager
def aws_fault(
    client: Any,
    operation: str,
    *,
    code: str = "SlowDown",
    status: int = 503,
    times: int | None = None,
    when: Predicate | None = None,
) -> Iterator[list[int]]:
    """Fail `operation` on `client` with `code`, at most `times` times (None: always).

    Yields a one-item list holding how many calls were failed so far.
    """
    failed = [0]
    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if times is not None and failed[0] >= times:
            return None
        if when is not None and not when(params):
            return None
        failed[0] += 1
        response = AWSResponse(params.get("url", ""), status, HTTPHeaders(), None)
        parsed = {
            "Error": {"Code": code, "Message": "injected fault"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return response, parsed

    client.meta.events.register(event, answer)
    try:
        yield failed
    finally:
        client.meta.events.unregister(event, answer)


def url_contains(fragment: str) -> Predicate:
    return lambda params: fragment in str(params.get("url_path", "")) + str(params.get("url", ""))
