"""Chalice's local API server, answering as the deployed stage does where Chalice's local
answers differ (an unknown route: 403 quoting the Authorization header; a refused key:
`{"message": "Unauthorized"}`; OPTIONS without CORS: empty 200; TRACE and other methods
without a handler: http.server's 501 HTML page). Here:

- an unknown route answers as the stage's MISSING_AUTHENTICATION_TOKEN response does
  (infra.deploy.GATEWAY_RESPONSES: 404 `not_found`), whatever the method; the
  authorizer's refusals as its UNAUTHORIZED, ACCESS_DENIED and DEFAULT_5XX responses do;
- a method the route does not serve answers 405 `method_not_allowed` with `Allow`;
- http.server's own errors (a malformed request line, headers too long) are JSON too.

No answer made here quotes anything of the request.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from socketserver import BaseServer
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    ForbiddenError,
    InvalidAuthorizerError,
    LocalChalice,
    LocalDevServer,
    LocalGatewayException,
    NotAuthorizedError,
    RouteMatcher,
)

from chalicelib.http import FRAMEWORK_ERRORS
from infra.deploy import GATEWAY_RESPONSES, GATEWAY_STATUS_CODES

NO_SUCH_ROUTE = "MISSING_AUTHENTICATION_TOKEN"
# Which of API Gateway's responses the deployed stage gives where the local gateway
# raises each of its errors (their statuses are API Gateway's defaults).
GATEWAY_RESPONSE_FOR: dict[type[LocalGatewayException], str] = {
    NotAuthorizedError: "UNAUTHORIZED",
    ForbiddenError: "ACCESS_DENIED",
    InvalidAuthorizerError: "DEFAULT_5XX",
}


def create_server(app: Chalice, config: Config, host: str, port: int) -> LocalDevServer:
    """chalice.local.create_local_server, serving with GatewayRequestHandler."""
    CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
    app.__class__ = CustomLocalChalice
    return LocalDevServer(app, config, host, port, handler_cls=GatewayRequestHandler)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class GatewayRequestHandler(ChaliceRequestHandler):
    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: BaseServer,
        app_object: Chalice,
        config: Config,
    ) -> None:
        self.routes: dict[str, Any] = app_object.routes
        self.route_matcher = RouteMatcher(list(self.routes))
        super().__init__(request, client_address, server, app_object, config)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>; every method is answered, none with its 501 page.
        if name.startswith("do_"):
            return self._generic_handle
        raise AttributeError(name)

    def _generic_handle(self) -> None:
        try:
            route = self.route_matcher.match_route(self.path).route
        except ValueError:
            code, message = GATEWAY_RESPONSES[NO_SUCH_ROUTE]
            status = int(GATEWAY_STATUS_CODES.get(NO_SUCH_ROUTE, HTTPStatus.FORBIDDEN))
            self.answer(status, error_body(code, message), **self.body_unread())
            return
        served = self.routes[route]
        if self.command not in served and not (self.command == "OPTIONS" and self.cors(served)):
            error = FRAMEWORK_ERRORS["MethodNotAllowedError"]
            allow = ", ".join(sorted(served))
            body = error_body(error.code, error.message)
            self.answer(error.status, body, Allow=allow, **self.body_unread())
            return
        super()._generic_handle()

    def body_unread(self) -> dict[str, str]:
        """The headers of an answer that leaves the request's body unread (it may be of any
        size, or its Content-Length not even a number): if one was announced, the
        connection closes after the answer."""
        length = self.headers.get("Content-Length")
        if (length is None or length.strip() == "0") and "Transfer-Encoding" not in self.headers:
            return {}
        self.close_connection = True
        return {"Connection": "close"}

    # ChaliceRequestHandler binds these to its own _generic_handle.
    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    @staticmethod
    def cors(served: dict[str, Any]) -> bool:
        """Whether Chalice (locally) and API Gateway (deployed) answer the route's CORS
        preflight: some method of the route has CORS configured."""
        return any(entry.cors is not None for entry in served.values())

    def _send_error_response(self, error: LocalGatewayException) -> None:
        response_type = GATEWAY_RESPONSE_FOR.get(type(error), "DEFAULT_5XX")
        code, message = GATEWAY_RESPONSES[response_type]
        self.answer(error.CODE, error_body(code, message))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, before any route is looked at: JSON, not HTML."""
        error = FRAMEWORK_ERRORS["BadRequest" if code < 500 else "InternalServerError"]
        self.close_connection = True
        self.answer(code, error_body(error.code, error.message), Connection="close")

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)
