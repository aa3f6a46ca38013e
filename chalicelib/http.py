"""The one place where errors become HTTP responses.

Every API entry point is wrapped in `json_api`: domain errors answer with their status
and ``{"error": {"code", "message"}}``; a transient AWS failure answers 503 with
Retry-After; anything unexpected (an AWS error no retry cures among it) is logged with its
stack and answers a bare 500 that reveals nothing of the internals. `in_api_error_shape` gives the
answers Chalice itself makes before a view runs (wrong media type, wrong method) the
same shape.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping

from chalice.app import Request, Response

from chalicelib.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ServiceUnavailable,
    TransientError,
    UnexpectedAwsError,
    UnsupportedMediaType,
)
from chalicelib.observability import logger

JSON_HEADERS = {"Content-Type": "application/json"}
RETRY_AFTER_SECONDS = 1

JSON_ONLY = "Send the request body as JSON, with Content-Type: application/json."

# Chalice's own error answers carry {"Code", "Message"}; their codes, ours, and what we say.
FRAMEWORK_ERRORS: Mapping[str, ApiError] = {
    "UnsupportedMediaType": UnsupportedMediaType(JSON_ONLY),
    "MethodNotAllowedError": MethodNotAllowed("This route does not answer that method."),
    "BadRequest": InvalidRequest("The request cannot be answered as sent."),
    "InternalServerError": InternalError("Something went wrong on our side."),
}


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(body=json.dumps(body), status_code=status, headers={**JSON_HEADERS, **headers})


def json_response(body: object, status: int = 200) -> Response:
    return Response(body=json.dumps(body), status_code=status, headers=dict(JSON_HEADERS))


def api_error_response(error: ApiError, **headers: str) -> Response:
    return error_response(error.status, error.code, error.message, **headers)


def json_api[**P](view: Callable[P, Response]) -> Callable[P, Response]:
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
        except UnexpectedAwsError as exc:
            fields = {"awsErrorCode": exc.aws_code, "operation": exc.operation}
            logger.exception("AWS call failed", extra=fields)
            return api_error_response(InternalError("Something went wrong on our side."))
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


# --- the body's media type -----------------------------------------------------------------
# RFC 9110: media-type = type "/" subtype *( OWS ";" OWS [ parameter ] ), each parameter a
# token "=" (token / quoted-string).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def require_json_content_type(request: Request) -> None:
    """Raise UnsupportedMediaType unless the request has exactly one Content-Type, and it is
    application/json (any case), with parameters at most, a charset only utf-8.

    Chalice's own check, run before any view, takes a missing header for JSON and accepts
    any list that names it (``application/json, text/plain``); API Gateway passes every
    value of a repeated header in ``multiValueHeaders`` and only the last in ``headers``.
    """
    values = _header_values(request, "content-type")
    if len(values) != 1 or not _is_json_media_type(values[0]):
        raise UnsupportedMediaType(JSON_ONLY)


def _header_values(request: Request, name: str) -> list[str]:
    multi = request.to_original_event().get("multiValueHeaders") or {}
    for given, values in multi.items():
        if given.lower() == name and values:
            return [str(value) for value in values]
    value = request.headers.get(name)
    return [] if value is None else [value]


def _is_json_media_type(value: str) -> bool:
    media_type, *parameters = value.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in filter(None, (each.strip() for each in parameters)):
        name, equals, given = parameter.partition("=")
        if not (equals and _TOKEN.fullmatch(name)):
            return False
        if not (_TOKEN.fullmatch(given) or _QUOTED.fullmatch(given)):
            return False
        if name.lower() == "charset" and given.strip('"').lower() != "utf-8":
            return False
    return True
