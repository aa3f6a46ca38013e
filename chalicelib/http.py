"""The one place where errors become HTTP responses.

Every API entry point is wrapped in `json_api`: domain errors answer with their status
and ``{"error": {"code", "message"}}``; anything unexpected is logged with its stack and
answers a bare 500 that reveals nothing of the internals.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, ParamSpec

from chalice.app import Response

from chalicelib.errors import ApiError, TransientError
from chalicelib.observability import logger

P = ParamSpec("P")
JSON_HEADERS = {"Content-Type": "application/json"}


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(body=json.dumps(body), status_code=status, headers={**JSON_HEADERS, **headers})


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers=dict(JSON_HEADERS))


def json_api(view: Callable[P, Response]) -> Callable[P, Response]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return view(*args, **kwargs)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except TransientError:
            logger.exception("dependency unavailable")
            return error_response(
                503,
                "service_unavailable",
                "The service is briefly unavailable; try again.",
                **{"Retry-After": "1"},
            )
        # The last line of defence for the API: log everything, reveal nothing.
        except Exception:  # noqa: BLE001
            logger.exception("unhandled error")
            return error_response(500, "internal_error", "Something went wrong on our side.")

    return wrapper
