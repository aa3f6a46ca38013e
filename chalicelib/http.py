"""The one place where errors become HTTP responses.

Every API entry point is wrapped in `json_api`: domain errors answer with their status
and ``{"error": {"code", "message"}}``; anything unexpected is logged with its stack and
answers a bare 500 that reveals nothing of the internals. `in_api_error_shape` gives the
answers Chalice itself makes before a view runs (wrong media type, wrong method) the
same shape.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec

from chalice.app import Request, Response

from chalicelib.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ServiceUnavailable,
    TransientError,
    UnsupportedMediaType,
)
from chalicelib.observability import logger

P = ParamSpec("P")
JSON_HEADERS = {"Content-Type": "application/json"}
RETRY_AFTER_SECONDS = 1

# Chalice's own error answers carry {"Code", "Message"}; their codes, ours, and what we say.
FRAMEWORK_ERRORS: Mapping[str, ApiError] = {
    "UnsupportedMediaType": UnsupportedMediaType(
        "Send the request body as JSON, with Content-Type: application/json."
    ),
    "MethodNotAllowedError": MethodNotAllowed("This route does not answer that method."),
    "BadRequest": InvalidRequest("The request cannot be answered as sent."),
    "InternalServerError": InternalError("Something went wrong on our side."),
}


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(body=json.dumps(body), status_code=status, headers={**JSON_HEADERS, **headers})


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers=dict(JSON_HEADERS))


def api_error_response(error: ApiError, **headers: str) -> Response:
    return error_response(error.status, error.code, error.message, **headers)


def json_api(view: Callable[P, Response]) -> Callable[P, Response]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return view(*args, **kwargs)
        except ApiError as exc:
            return api_error_response(exc)
        except TransientError:
            logger.exception("dependency unavailable")
            return api_error_response(
                ServiceUnavailable("The service is briefly unavailable; try again."),
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        # The last line of defence for the API: log everything, reveal nothing.
        except Exception:  # noqa: BLE001
            logger.exception("unhandled error")
            return api_error_response(InternalError("Something went wrong on our side."))

    return wrapper


def in_api_error_shape(request: Request, get_response: Callable[[Request], Response]) -> Response:
    """HTTP middleware: Chalice's own error answers in the API's error shape.

    Chalice refuses a request whose Content-Type a route does not consume (415) or whose
    method it does not serve (405) before any view runs, with a body of its own.
    """
    response = get_response(request)
    body = response.body
    if not (isinstance(body, dict) and set(body) == {"Code", "Message"}):
        return response
    error = FRAMEWORK_ERRORS.get(str(body["Code"]))
    if error is None:
        error = InternalError("Something went wrong on our side.")
    logger.info("framework error", extra={"status": response.status_code, "code": error.code})
    kept = {name: str(value) for name, value in response.headers.items() if name.lower() == "allow"}
    return api_error_response(error, **kept)
