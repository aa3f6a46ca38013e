"""The browser console in headless Chromium against `make run`: a person's key, two photos
and a text file picked at once, each photo's outputs shown, the text file's error code.

The files go from the page (the API's origin) straight to the emulated S3 (another
origin) with the presigned POST; the console watches upload progress, so Chromium sends
a CORS preflight first, which the uploads bucket's CORS rule must answer as S3 does.
Screenshots land in out/test-artifacts/ (kept after the run; on failure too). Chromium and
chromedriver are Debian's (bin/ensure-chromium, run by `make test`): without them the
test fails, it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from devstack import launch
from tests.local_stack import EXPECTED_OUTPUTS, LocalStack

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "out" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1400",
)
TENANT = "console"
PHOTOS = ("BytheWater.jpg", "Kite.jpg")
TEXT_FILE = "notes.txt"
TEXT_FILE_CODE = "unsupported_content_type"  # POST /uploads takes images only
DONE_TIMEOUT = 60.0

# What the page shows of each picked file: each output image's natural size and the size
# the API gave it (its width and height attributes), or the error code; null until then.
PAGE_STATE = """
const state = {};
for (const card of document.querySelectorAll("#uploads [data-filename]")) {
  const error = card.querySelector("[data-error-code]");
  const images = [...card.querySelectorAll("img[data-preset]")];
  state[card.dataset.filename] = error
    ? { error: error.dataset.errorCode }
    : images.length && images.every((image) => image.complete && image.naturalWidth > 0)
      ? { outputs: Object.fromEntries(images.map((image) =>
          [image.dataset.preset, {
            natural: [image.naturalWidth, image.naturalHeight],
            declared: [Number(image.getAttribute("width")), Number(image.getAttribute("height"))],
          }])) }
      : null;
}
return state;
"""

# How many of the selected recent job's outputs are decoded.
SELECTED_SHOWN = """
return [...document.querySelectorAll("#selected img[data-preset]")]
  .filter((image) => image.complete && image.naturalWidth > 0).length;
"""


def chromium_options(profile: Path) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*CHROMIUM_ARGUMENTS, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return options


def descendants(pid: int) -> list[launch.Proc]:
    running = launch.processes()
    children: dict[int, list[launch.Proc]] = {}
    for proc in running:
        children.setdefault(proc.ppid, []).append(proc)
    found: list[launch.Proc] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child.pid)
    return found


def still_running(procs: list[launch.Proc]) -> list[launch.Proc]:
    """Those of `procs` still alive (the same process: same pid, same start time)."""
    alive = {(proc.pid, proc.started) for proc in launch.processes() if proc.state != "Z"}
    return [proc for proc in procs if (proc.pid, proc.started) in alive]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium through Debian's chromedriver (selenium downloads nothing). Quit
    afterwards; the test fails if chromedriver or any Chromium process is left behind."""
    for program in (CHROMIUM, CHROMEDRIVER):
        assert os.access(program, os.X_OK), f"{program} is missing: run bin/ensure-chromium"
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path))
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=chromium_options(profile))
    assert service.process is not None
    started = [proc for proc in launch.processes() if proc.pid == service.process.pid]
    started += descendants(service.process.pid)
    try:
        yield driver
    finally:
        driver.quit()
        left = still_running(started)
        for proc in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        assert left == [], f"left running after quit: {left}"


@pytest.fixture
def screenshots(browser: webdriver.Chrome, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where this test's screenshots go; one more is taken there if the test failed."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    failures_before = request.session.testsfailed
    yield folder
    if request.session.testsfailed > failures_before:
        browser.save_screenshot(str(folder / "failed.png"))


def browser_problems(entries: list[dict[str, Any]], api: str) -> list[str]:
    """The console's log entries that tell of a fault: any CSP violation, any script error,
    any failed request but POST /uploads' refusal of the text file (a 400)."""
    problems = []
    for entry in entries:
        message = str(entry.get("message", ""))
        expected_refusal = entry.get("source") == "network" and message.startswith(
            f"{api}/uploads - Failed to load resource: the server responded with a status of 400"
        )
        if entry.get("level") in ("SEVERE", "WARNING") and not expected_refusal:
            problems.append(message)
    return problems


def log_entries(driver: webdriver.Chrome, kind: str) -> list[dict[str, Any]]:
    """Chromium's `kind` log ("browser": the console; "performance": DevTools events)."""
    entries: list[dict[str, Any]] = driver.get_log(kind)  # type: ignore[no-untyped-call]
    return entries


def network_events(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [json.loads(entry["message"])["message"] for entry in log_entries(driver, "performance")]


def requests_to(events: list[dict[str, Any]], origin: str, method: str) -> list[dict[str, Any]]:
    """The requests Chromium sent to `origin` with `method`: each with the headers that
    went on the wire and its answer's status and headers."""
    sent = {
        event["params"]["requestId"]: event["params"]["request"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
        and event["params"]["request"]["method"] == method
        and event["params"]["request"]["url"].startswith(origin + "/")
    }
    on_the_wire = {
        event["params"]["requestId"]: event["params"]["headers"]
        for event in events
        if event["method"] == "Network.requestWillBeSentExtraInfo"
    }
    answers = {
        event["params"]["requestId"]: event["params"]["response"]
        for event in events
        if event["method"] == "Network.responseReceived"
    }
    return [
        {
            "url": request["url"],
            "headers": on_the_wire.get(request_id, request["headers"]),
            "status": answers.get(request_id, {}).get("status"),
            "answer": answers.get(request_id, {}).get("headers", {}),
        }
        for request_id, request in sent.items()
    ]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_console_uploads_photos_and_shows_outputs_and_errors(
    stack: LocalStack, browser: webdriver.Chrome, screenshots: Path, tmp_path: Path
) -> None:
    photos = [REPO / "samples" / "photos" / name for name in PHOTOS]
    text_file = tmp_path / TEXT_FILE
    text_file.write_text("not an image\n")

    browser.get(f"{stack.api}/console")
    browser.find_element(By.CSS_SELECTOR, "input[name=api-key]").send_keys(stack.keys[TENANT])
    browser.save_screenshot(str(screenshots / "loaded.png"))
    picker = browser.find_element(By.CSS_SELECTOR, "input[type=file]")
    picker.send_keys("\n".join(str(path) for path in [*photos, text_file]))

    def every_file_done(driver: webdriver.Chrome) -> dict[str, Any] | None:
        state: dict[str, Any] = driver.execute_script(PAGE_STATE)
        done = len(state) == len(PHOTOS) + 1 and all(state.values())
        return state if done else None

    shown = WebDriverWait(browser, DONE_TIMEOUT, poll_frequency=0.2).until(every_file_done)
    browser.save_screenshot(str(screenshots / "done.png"))
    assert shown is not None

    assert set(shown) == {*PHOTOS, TEXT_FILE}
    assert shown[TEXT_FILE] == {"error": TEXT_FILE_CODE}
    for photo in PHOTOS:
        outputs = shown[photo]["outputs"]
        assert set(outputs) == set(EXPECTED_OUTPUTS), (photo, outputs)
        for preset, sizes in outputs.items():
            assert sizes["natural"] == sizes["declared"], (photo, preset, sizes)
        # A thumb is cropped to its box; the others keep the photo's proportions.
        thumb_width, thumb_height, *_ = EXPECTED_OUTPUTS["thumb"]
        assert outputs["thumb"]["natural"] == [thumb_width, thumb_height], (photo, outputs)
    # A recent job, clicked, shows its outputs too.
    first_recent = browser.find_element(By.CSS_SELECTOR, "#recent tbody tr[data-job-id]")
    first_recent.click()
    WebDriverWait(browser, DONE_TIMEOUT, poll_frequency=0.2).until(
        lambda driver: driver.execute_script(SELECTED_SHOWN) == len(EXPECTED_OUTPUTS)
    )
    assert browser_problems(log_entries(browser, "browser"), stack.api) == []
    # The key stays in this tab's sessionStorage, nowhere else the page could keep it.
    storage = browser.execute_script(
        "return [JSON.stringify(sessionStorage), JSON.stringify(localStorage), document.cookie]"
    )
    assert stack.keys[TENANT] in storage[0]
    assert stack.keys[TENANT] not in storage[1] + storage[2]

    # Each photo went from the page's origin to the emulator's, after a preflight S3's way.
    page_origin = origin(browser.current_url)
    assert origin(stack.endpoint) != page_origin
    events = network_events(browser)
    (screenshots / "network.json").write_text(json.dumps(events, indent=1))
    posts = requests_to(events, stack.endpoint, "POST")
    assert len(posts) == len(PHOTOS), posts
    # The stack's rule allows any origin (UploadOrigins' default), so S3 answers "*".
    for post in posts:
        assert post["headers"]["Origin"] == page_origin, post
        assert (post["status"], post["answer"]["Access-Control-Allow-Origin"]) == (204, "*"), post
    # Chromium caches the answer (Access-Control-Max-Age): one preflight may serve both.
    preflights = requests_to(events, stack.endpoint, "OPTIONS")
    assert preflights, "no CORS preflight reached the emulated S3"
    for preflight in preflights:
        assert preflight["headers"]["Access-Control-Request-Method"] == "POST", preflight
        assert preflight["status"] == 200, preflight
        assert preflight["answer"]["Access-Control-Allow-Origin"] == "*", preflight
        assert preflight["answer"]["Access-Control-Allow-Methods"] == "POST", preflight


def test_a_refused_key_is_said_plainly(
    stack: LocalStack, browser: webdriver.Chrome, screenshots: Path
) -> None:
    browser.get(f"{stack.api}/console")
    browser.find_element(By.CSS_SELECTOR, "input[name=api-key]").send_keys("x" * 40)
    picker = browser.find_element(By.CSS_SELECTOR, "input[type=file]")
    picker.send_keys(str(REPO / "samples" / "photos" / PHOTOS[0]))
    error = WebDriverWait(browser, DONE_TIMEOUT, poll_frequency=0.2).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, "#uploads [data-error-code]")
    )
    browser.save_screenshot(str(screenshots / "refused.png"))
    assert error.get_attribute("data-error-code") == "unauthorized"
    notice = browser.find_element(By.ID, "notice")
    assert notice.is_displayed()
    assert "API key was refused" in notice.text


# The selected job's reprocess form: each preset offered, and which are checked.
REPROCESS_OFFER = """
return Object.fromEntries([...document.querySelectorAll("#selected input[name=preset]")]
  .map((box) => [box.value, box.checked]));
"""
REPROCESS_LABELS = """
return [...document.querySelectorAll("#selected form.reprocess label")]
  .map((label) => label.textContent.trim());
"""


def test_a_selected_job_gets_its_missing_presets_made_again(
    stack: LocalStack, browser: webdriver.Chrome, screenshots: Path
) -> None:
    client = stack.client(TENANT)
    photo = REPO / "samples" / "photos" / PHOTOS[1]
    created = client.create_upload(photo.name, "image/jpeg", presets=["thumb"])
    client.send_file(created, photo.read_bytes(), photo.name, "image/jpeg")
    job, _ = stack.wait(TENANT, created.job_id)
    assert [output["preset"] for output in job["outputs"]] == ["thumb"], job

    browser.get(f"{stack.api}/console")
    browser.find_element(By.CSS_SELECTOR, "input[name=api-key]").send_keys(stack.keys[TENANT])
    browser.find_element(By.ID, "refresh").click()
    row = f"#recent tbody tr[data-job-id='{created.job_id}']"

    def click_its_row(driver: webdriver.Chrome) -> bool:
        driver.find_element(By.CSS_SELECTOR, row).click()  # the list may be redrawn meanwhile
        return True

    WebDriverWait(
        browser,
        DONE_TIMEOUT,
        poll_frequency=0.2,
        ignored_exceptions=[StaleElementReferenceException],
    ).until(click_its_row)
    offered = WebDriverWait(browser, DONE_TIMEOUT, poll_frequency=0.2).until(
        lambda driver: driver.execute_script(REPROCESS_OFFER) or None
    )
    # The presets the job lacks are checked; its thumb, at the current version, is not.
    assert offered == {"thumb": False, "small": True, "large": True}
    assert browser.execute_script(REPROCESS_LABELS) == [
        f"{preset['name']} {preset['version']}"
        + ("" if preset["name"] == "thumb" else " (missing)")
        for preset in client.presets()
    ]
    browser.save_screenshot(str(screenshots / "offered.png"))
    browser.find_element(By.CSS_SELECTOR, "#selected form.reprocess button").click()

    WebDriverWait(browser, DONE_TIMEOUT, poll_frequency=0.2).until(
        lambda driver: driver.execute_script(SELECTED_SHOWN) == len(EXPECTED_OUTPUTS)
    )
    browser.save_screenshot(str(screenshots / "made-again.png"))
    assert browser.execute_script(REPROCESS_OFFER) == {
        "thumb": False,
        "small": False,
        "large": False,
    }
    status = browser.find_element(By.CSS_SELECTOR, "#selected > .status").text
    assert "revision 1" in status, status
    after = client.job(created.job_id)
    assert (after["revision"], after["reprocessing"], after["reprocessError"]) == (1, False, None)
    assert sorted(output["preset"] for output in after["outputs"]) == sorted(EXPECTED_OUTPUTS)
    assert browser_problems(log_entries(browser, "browser"), stack.api) == []
