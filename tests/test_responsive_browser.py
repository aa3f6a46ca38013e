"""A responsive set end to end on `make run`: a phone photo uploaded with its own output
of four widths in three formats gets all twelve, and the job's <picture> snippet, pasted
into a page in headless Chromium, loads an image at each of two viewport widths.

Chromium and chromedriver are Debian's (/usr/bin); selenium downloads nothing.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.local_stack import HTTP_TIMEOUT, LocalStack
from tests.samples import phone_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TENANT = "acme"
WIDTHS = (320, 640, 1024, 1600)
FORMATS = ("AVIF", "WEBP", "JPEG")
HERO = {
    "name": "hero",
    "width": 1600,
    "height": 1200,
    "fit": "contain",
    "format": "JPEG",
    "widths": list(WIDTHS),
    "formats": list(FORMATS),
}
# Viewport widths, and the output each should load: the smallest at least 100vw wide.
VIEWPORTS = ((400, 640), (1400, 1600))
LOADED = """
const image = document.querySelector("picture img");
return image.complete && image.naturalWidth > 0
  ? {src: image.currentSrc, natural: [image.naturalWidth, image.naturalHeight]}
  : null;
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for program in (CHROMIUM, CHROMEDRIVER):
        assert os.access(program, os.X_OK), f"{program} is missing"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-dev-shm-usage", "--force-device-scale-factor=1",
                     f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"):  # fmt: skip
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def api(stack: LocalStack, method: str, path: str, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {stack.keys[TENANT]}"}
    response = requests.request(
        method, f"{stack.api}{path}", headers=headers, timeout=HTTP_TIMEOUT, **options
    )
    assert response.ok, response.text
    return response.json()


def completed_job(stack: LocalStack) -> Any:
    body = {"contentType": "image/jpeg", "filename": "phone.jpg", "outputs": [HERO]}
    created = api(stack, "POST", "/uploads", json=body)
    form = created["upload"]
    sent = requests.post(
        form["url"],
        data=form["fields"],
        files={"file": ("phone.jpg", phone_photo(), "image/jpeg")},
        timeout=HTTP_TIMEOUT,
    )
    assert sent.ok, sent.text
    for _ in range(6):
        job = api(stack, "GET", f"/jobs/{created['jobId']}", params={"wait": "20"})
        if job["status"] in ("COMPLETED", "FAILED"):
            break
    assert job["status"] == "COMPLETED", f"{job}\n{stack.log_tail()}"
    return job


def test_a_phone_photos_set_loads_in_chromium_at_two_viewport_widths(
    stack: LocalStack, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    job = completed_job(stack)
    made = {(o["format"], o["width"], o["height"]) for o in job["outputs"]}
    assert made == {(f, w, w * 3 // 4) for f in FORMATS for w in WIDTHS}
    by_url = {output["url"]: output for output in job["outputs"]}
    [entry] = job["responsive"]
    page = tmp_path / "page.html"
    page.write_text(
        '<!doctype html><html><head><meta name="viewport" content="width=device-width">'
        f"<style>body{{margin:0}} img{{width:100%;height:auto}}</style></head><body>"
        f"{entry['picture']}</body></html>"
    )
    loaded = []
    for viewport, expected_width in VIEWPORTS:
        browser.set_window_size(viewport, 900)
        browser.get(page.as_uri())
        shown = WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(LOADED))
        output = by_url[shown["src"]]
        assert output["format"] == "AVIF"  # the first <source> Chromium can decode
        assert output["width"] == expected_width
        # naturalWidth is in CSS pixels (the width descriptor over the density); the bytes
        # the page loaded are the output's own.
        fetched = requests.get(shown["src"], timeout=HTTP_TIMEOUT)
        with Image.open(io.BytesIO(fetched.content)) as image:
            assert (image.format, image.size) == ("AVIF", (output["width"], output["height"]))
        loaded.append(output["name"])
    assert loaded == ["hero-640w", "hero-1600w"]
