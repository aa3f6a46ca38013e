"""The browser console: one page (`GET /console`) and its static files (`GET /console/{asset}`).

Plain HTML, CSS and JavaScript from `console_assets/`, no build step and no third-party
code. The page loads without a key: a person pastes one into it, and the page calls the
API with it. It sends files straight to the uploads bucket with the presigned POST, so
its Content-Security-Policy names the buckets' origins, taken from the stage's own
presigned URLs (presigning makes no network call).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from chalice.app import Request, Response

from chalicelib import storage
from chalicelib.api import checked_query, present
from chalicelib.errors import NotFound
from chalicelib.http import json_api

ASSETS_DIR = Path(__file__).with_name("console_assets")
PAGE = "console.html"
# The files the page loads, by the name in their URL, with their media types.
ASSET_TYPES = MappingProxyType(
    {
        "app.js": "text/javascript; charset=utf-8",
        "upload.js": "text/javascript; charset=utf-8",
        "console.css": "text/css; charset=utf-8",
        "icon.svg": "image/svg+xml",
    }
)
HTML_TYPE = "text/html; charset=utf-8"
# Any key will do: only the origin of the presigned URLs is used.
ORIGIN_PROBE_KEY = "console/origin"
SECURITY_HEADERS = MappingProxyType(
    {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
)


@json_api
def page(current: Request | None) -> Response:
    checked_query(present(current))
    return _static(PAGE, HTML_TYPE)


@json_api
def asset(current: Request | None, name: str) -> Response:
    checked_query(present(current))
    media_type = ASSET_TYPES.get(name)
    if media_type is None:
        raise NotFound("No such console file.")
    return _static(name, media_type)


def _static(name: str, media_type: str) -> Response:
    headers: dict[str, str | list[str]] = {
        "Content-Type": media_type,
        "Content-Security-Policy": content_security_policy(),
        **SECURITY_HEADERS,
    }
    return Response(body=_read(name), status_code=200, headers=headers)


@cache
def _read(name: str) -> str:
    return (ASSETS_DIR / name).read_text(encoding="utf-8")


def content_security_policy() -> str:
    """Scripts, styles and the icon from the API itself; API calls to it and uploads to the
    uploads bucket; outputs shown from the derived bucket; nothing else, no inline code and
    no HTML sinks (Trusted Types with no policy), no forms, no framing."""
    upload_origin = origin(str(storage.presign_upload(ORIGIN_PROBE_KEY, "image/jpeg")["url"]))
    download_origin = origin(storage.presign_download(ORIGIN_PROBE_KEY))
    directives = (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src 'self' {download_origin}",
        f"connect-src 'self' {upload_origin}",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
    return "; ".join(directives)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
