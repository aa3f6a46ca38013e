"""The browser console's page and files as the API serves them: no key, a strict
Content-Security-Policy naming the stage's own bucket origins, the right media types, the
stable hooks; no inline code and no HTML sinks in its scripts; README's upload snippet is
the console's own (tests/test_console_browser.py runs it in Chromium)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
from chalice.test import Client

from chalicelib import console
from chalicelib.clients import reset_clients
from chalicelib.config import settings

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "chalicelib" / "console_assets"
EMULATOR = "http://127.0.0.1:4566"


def expected_policy(uploads_origin: str, derived_origin: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' {derived_origin}; connect-src 'self' {uploads_origin}; "
        "form-action 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "require-trusted-types-for 'script'; trusted-types 'none'"
    )


def s3_origin(bucket: str) -> str:
    return f"https://{bucket}.s3.amazonaws.com"


class Page(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_in: dict[str, str] = {}
        self._open: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag

    def handle_data(self, data: str) -> None:
        if self._open in ("script", "style") and data.strip():
            self.text_in[self._open] = data

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def having(self, tag: str, **attributes: str) -> list[dict[str, str | None]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(key) == value for key, value in attributes.items())
        ]


def test_the_page_loads_without_a_key_with_a_strict_policy(client: Client) -> None:
    response = client.http.get("/console")
    assert response.status_code == 200, response.body
    config = settings()
    assert response.headers == {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": expected_policy(
            s3_origin(config.uploads_bucket), s3_origin(config.derived_bucket)
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def test_the_policy_follows_the_stages_s3_endpoint(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the emulator the presigned URLs, and so the policy, name the emulator."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", EMULATOR)
    reset_clients()
    policy = console.content_security_policy()
    assert policy == expected_policy(EMULATOR, EMULATOR)


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("upload.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_each_file_is_served_with_its_media_type(
    client: Client, name: str, media_type: str
) -> None:
    response = client.http.get(f"/console/{name}")
    assert response.status_code == 200, response.body
    assert response.headers["Content-Type"] == media_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none';")
    assert response.body == (ASSETS / name).read_bytes()


def test_every_file_in_the_folder_is_served_and_no_other(client: Client) -> None:
    assert {path.name for path in ASSETS.iterdir()} == {console.PAGE, *console.ASSET_TYPES}


@pytest.mark.parametrize(
    "name", ["nope.js", "console.html", "..%2Fconsole.py", "APP.JS", "app.js%00", "%2e%2e"]
)
def test_an_unknown_file_answers_the_apis_404(client: Client, name: str) -> None:
    response = client.http.get(f"/console/{name}")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json_body["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/console", "/console/app.js"])
def test_unknown_query_parameters_are_refused(client: Client, path: str) -> None:
    response = client.http.get(f"{path}?colour=red")
    assert response.status_code == 400
    assert response.json_body["error"]["code"] == "invalid_request"


def test_the_page_has_the_stable_hooks_and_no_inline_code(client: Client) -> None:
    html = client.http.get("/console").body.decode()
    page = Page(html)
    assert len(page.having("input", name="api-key")) == 1
    (picker,) = page.having("input", type="file")
    assert "multiple" in picker
    assert page.text_in == {}  # no inline script or style
    for _, attrs in page.tags:
        assert not any(name.startswith("on") or name == "style" for name in attrs), attrs
    app_js = (ASSETS / "app.js").read_text()
    assert "dataset.preset" in app_js  # each finished output: img[data-preset]
    assert "dataset.errorCode" in app_js  # each failed job: [data-error-code]
    assert "sessionStorage.setItem(KEY_STORAGE" in app_js
    assert "localStorage" not in app_js
    assert "document.cookie" not in app_js


def test_the_page_refers_to_its_files_relatively_and_each_is_served(client: Client) -> None:
    """Relative URLs: the page works at /console locally and at /<stage>/console on AWS."""
    page = Page(client.http.get("/console").body.decode())
    linked = [attrs["href"] for attrs in page.having("link")]
    linked += [attrs["src"] for attrs in page.having("script")]
    assert linked
    for reference in linked:
        assert reference is not None
        assert not reference.startswith(("/", "http:", "https:")), reference
        path = urljoin("/console", reference)
        assert client.http.get(path).status_code == 200, path


def test_the_scripts_use_no_html_sink() -> None:
    for script in ASSETS.glob("*.js"):
        text = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, (script.name, sink)


def test_the_readme_shows_the_consoles_own_upload_function() -> None:
    readme = (REPO / "README.md").read_text()
    snippets = re.findall(r"```js\n(.*?)```", readme, flags=re.DOTALL)
    assert (ASSETS / "upload.js").read_text() in snippets
