"""`media-pipeline`, the command line, run as a user runs it: the console script that
`make install` puts in .venv/bin, with no terminal attached (stdin from /dev/null, stdout
and stderr to pipes), against the shared `make run` (tenant `cli`) or, for retries and
error answers, a small HTTP server of the test's own."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageOps
from standardwebhooks import Webhook

from chalicelib.formats import ACCEPTED_CONTENT_TYPES
from devstack.webhooks import receiver
from media_pipeline import cli
from tests.local_stack import EXPECTED_OUTPUTS, LocalStack
from tests.samples import SAMPLES, sample_photo

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / ".venv" / "bin" / "media-pipeline"
TENANT = "cli"
CLI_TIMEOUT = 120.0
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PHOTOS = ("BytheWater.jpg", "ColorfulCups.jpg", "Kite.jpg")
SAMPLE_SIZE = (2560, 1600)  # each of PHOTOS, upright
# The default presets' outputs of a 16:10 photo: name -> size, format (thumb covers its
# 256x256 box; small and large fit inside 512x512 and 1024x1024).
SAMPLE_OUTPUTS = {
    "thumb.jpg": ((256, 256), "JPEG"),
    "small.jpg": ((512, 320), "JPEG"),
    "large.webp": ((1024, 640), "WEBP"),
}


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    assert CLI.exists(), f"{CLI} is missing: `make install` installs it"


def cli_environment(api: str, key: str | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if "MEDIA_PIPELINE" not in name}
    env["MEDIA_PIPELINE_API"] = api
    if key is not None:
        env["MEDIA_PIPELINE_KEY"] = key
    return env


def media_pipeline(
    *args: str, api: str, key: str | None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The console script run with no terminal, the API and key from the environment."""
    return subprocess.run(
        [str(CLI), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=cli_environment(api, key),
        cwd=cwd,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def on_stack(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return media_pipeline(*args, api=stack.api, key=stack.keys[TENANT])


def corrupt_jpeg() -> bytes:
    """A JPEG cut short: the pipeline fails it corrupt_image."""
    return sample_photo("BytheWater.jpg")[:3000]


def assert_outputs(folder: Path) -> None:
    """`folder` holds exactly a sample photo's outputs, each of its preset's size and format."""
    names = {output[4] for output in EXPECTED_OUTPUTS.values()}  # the presets' file names
    assert sorted(path.name for path in folder.iterdir()) == sorted(names), folder
    for name in names:
        with Image.open(folder / name) as output:
            assert (output.size, output.format) == SAMPLE_OUTPUTS[name], name


def test_the_sample_photos_are_16_by_10() -> None:
    for name in PHOTOS:
        with Image.open(SAMPLES / name) as photo:
            assert ImageOps.exif_transpose(photo).size == SAMPLE_SIZE, name


def no_terminal_codes(done: subprocess.CompletedProcess[str]) -> None:
    assert "\x1b" not in done.stdout + done.stderr, done.stderr


# --- uploads on `make run` -------------------------------------------------------------------


def test_a_folder_with_a_corrupt_file_saves_every_output_and_names_the_failure(
    stack: LocalStack, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    (photos / "nested" / "deeper").mkdir(parents=True)
    for name in PHOTOS[:2]:
        (photos / name).write_bytes(sample_photo(name))
    (photos / "nested" / "deeper" / PHOTOS[2]).write_bytes(sample_photo(PHOTOS[2]))
    (photos / "nested" / "broken.jpg").write_bytes(corrupt_jpeg())
    (photos / "notes.txt").write_text("not an image: a folder's other files are left out\n")
    out = tmp_path / "out"

    done = on_stack(stack, "upload", str(photos), "--wait", "--out", str(out))

    assert done.returncode == 1, done.stderr
    failures = [line for line in done.stderr.splitlines() if "broken.jpg" in line]
    assert len(failures) == 1, done.stderr
    assert "corrupt_image" in failures[0]
    assert "notes.txt" not in done.stdout + done.stderr
    assert len(done.stdout.splitlines()) == 4, done.stdout
    no_terminal_codes(done)
    assert sorted(path.name for path in out.iterdir()) == sorted(Path(p).stem for p in PHOTOS)
    for name in PHOTOS:
        assert_outputs(out / Path(name).stem)


def test_json_gives_one_parsable_line_per_file_and_nothing_else(
    stack: LocalStack, tmp_path: Path
) -> None:
    (tmp_path / "Kite.jpg").write_bytes(sample_photo("Kite.jpg"))
    (tmp_path / "broken.jpg").write_bytes(corrupt_jpeg())

    done = on_stack(stack, "upload", str(tmp_path), "--json", "--wait", "--presets", "thumb")

    assert done.returncode == 1, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    by_file = {Path(record["file"]).name: record for record in records}
    assert sorted(by_file) == ["Kite.jpg", "broken.jpg"], done.stdout
    assert all(JOB_ID.fullmatch(record["jobId"]) for record in records), records
    kite, broken = by_file["Kite.jpg"], by_file["broken.jpg"]
    assert (kite["status"], kite["error"]) == ("COMPLETED", None), kite
    assert [output["preset"] for output in kite["outputs"]] == ["thumb"]
    assert (broken["status"], broken["error"]["code"]) == ("FAILED", "corrupt_image"), broken
    assert "broken.jpg: corrupt_image" in done.stderr
    no_terminal_codes(done)


def test_get_saves_a_jobs_outputs_and_jobs_lists_by_status(
    stack: LocalStack, tmp_path: Path
) -> None:
    sent = on_stack(stack, "upload", str(SAMPLES / "Kite.jpg"), "--json")
    assert sent.returncode == 0, sent.stderr
    (record,) = [json.loads(line) for line in sent.stdout.splitlines()]
    job_id = record["jobId"]

    got = on_stack(stack, "get", job_id, "--wait", "--out", str(tmp_path))

    assert got.returncode == 0, got.stderr
    job = json.loads(got.stdout)
    assert (job["jobId"], job["status"]) == (job_id, "COMPLETED")
    assert_outputs(tmp_path / "Kite")
    assert sorted(output["path"] for output in job["outputs"]) == sorted(
        str(path) for path in (tmp_path / "Kite").iterdir()
    )

    listed = on_stack(stack, "jobs", "--status", "COMPLETED", "--limit", "1", "--json")
    assert listed.returncode == 0, listed.stderr
    (newest,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (newest["jobId"], newest["status"]) == (job_id, "COMPLETED")
    table = on_stack(stack, "jobs", "--limit", "100")
    assert any(line.split()[:2] == [job_id, "COMPLETED"] for line in table.stdout.splitlines())


def test_on_a_terminal_progress_bars_are_drawn_on_stderr_only(stack: LocalStack) -> None:
    controller, terminal = pty.openpty()
    drawn = bytearray()

    def read_terminal() -> None:
        with contextlib.suppress(OSError):  # EIO once the last writer has closed it
            while chunk := os.read(controller, 65536):
                drawn.extend(chunk)

    reading = threading.Thread(target=read_terminal)
    reading.start()
    try:
        done = subprocess.run(
            [str(CLI), "upload", str(SAMPLES / "Kite.jpg"), "--wait"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=cli_environment(stack.api, stack.keys[TENANT]) | {"TERM": "xterm-256color"},
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
    finally:
        os.close(terminal)
        reading.join(timeout=10)
        os.close(controller)
    screen = drawn.decode(errors="replace")
    assert done.returncode == 0, screen
    for shown in ("Kite.jpg", "━", "1 files", "COMPLETED"):  # the file's bar, the total's
        assert shown in screen, screen
    (line,) = done.stdout.splitlines()
    assert line.split()[:2] == [str(SAMPLES / "Kite.jpg"), "COMPLETED"], done.stdout


def test_webhooks_add_list_test_and_remove(stack: LocalStack) -> None:
    with receiver([200]) as listening:
        added = on_stack(stack, "webhooks", "add", listening.url, "--json")
        assert added.returncode == 0, added.stderr
        endpoint = json.loads(added.stdout)
        listed = on_stack(stack, "webhooks", "list", "--json")
        assert endpoint["id"] in [json.loads(line)["id"] for line in listed.stdout.splitlines()]

        tested = on_stack(stack, "webhooks", "test", endpoint["id"])
        assert tested.returncode == 0, tested.stderr
        event = _first_event(listening.received, endpoint["secret"])

        removed = on_stack(stack, "webhooks", "rm", endpoint["id"])
        again = on_stack(stack, "webhooks", "rm", endpoint["id"])
    assert event["type"] == "webhook.test"
    assert removed.returncode == 0, removed.stderr
    listed = on_stack(stack, "webhooks", "list")
    assert endpoint["id"] not in listed.stdout
    assert again.returncode == 1
    (explained,) = again.stderr.splitlines()
    assert "not_found" in explained


def _first_event(received: list[Any], secret: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received, "no delivery of the test event"
    event: dict[str, Any] = Webhook(secret).verify(received[0].body, received[0].headers)
    return event


# --- reprocess on `make run` ----------------------------------------------------------------


@contextlib.contextmanager
def messages_held(stack: LocalStack, queue_suffix: str) -> Iterator[None]:
    """Every message sent meanwhile to the queue named `...<queue_suffix>` is held back by
    it (SQS's longest delay, 15 min): what it asks for stays undone."""
    queues = json.loads(stack.aws("sqs", "list-queues"))["QueueUrls"]
    (url,) = [url for url in queues if url.endswith(queue_suffix)]
    stack.aws("sqs", "set-queue-attributes", "--queue-url", url, "--attributes", "DelaySeconds=900")
    try:
        yield
    finally:
        stack.aws(
            "sqs", "set-queue-attributes", "--queue-url", url, "--attributes", "DelaySeconds=0"
        )


def uploaded_with_thumb_only(stack: LocalStack) -> str:
    sent = on_stack(stack, "upload", str(SAMPLES / "Kite.jpg"), "--presets", "thumb", "--wait")
    assert sent.returncode == 0, sent.stderr
    (job_id,) = JOB_ID.findall(sent.stdout)
    return str(job_id)


def test_presets_lists_each_with_the_version_its_outputs_carry(stack: LocalStack) -> None:
    job_id = uploaded_with_thumb_only(stack)
    (thumb,) = stack.job(TENANT, job_id)["outputs"]

    shown = on_stack(stack, "presets")
    as_json = on_stack(stack, "presets", "--json")

    assert (shown.returncode, as_json.returncode) == (0, 0), shown.stderr + as_json.stderr
    presets = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [preset["name"] for preset in presets] == ["thumb", "small", "large"]
    assert presets[0]["version"] == thumb["version"]
    lines = [line.split("  ") for line in shown.stdout.splitlines()]
    assert lines == [
        [p["name"], p["version"], f"{p['width']}x{p['height']}", p["fit"], p["format"]]
        for p in presets
    ]


def test_reprocess_wait_adds_a_preset_keeps_the_others_and_a_second_costs_nothing(
    stack: LocalStack,
) -> None:
    job_id = uploaded_with_thumb_only(stack)
    (thumb,) = stack.job(TENANT, job_id)["outputs"]
    thumb_file = urlsplit(thumb["url"]).path

    done = on_stack(stack, "reprocess", job_id, "--presets", "small", "--wait", "--json")

    assert done.returncode == 0, done.stderr
    no_terminal_codes(done)
    job = json.loads(done.stdout)
    assert (job["revision"], job["reprocessing"], job["reprocessError"]) == (1, False, None)
    assert [output["preset"] for output in job["outputs"]] == ["thumb", "small"]
    kept, small = job["outputs"]
    assert (urlsplit(kept["url"]).path, kept["version"]) == (thumb_file, thumb["version"])
    assert (small["width"], small["height"]) == SAMPLE_OUTPUTS["small.jpg"][0]

    asked = on_stack(stack, "reprocess", job_id, "--presets", "small,thumb", "--json")
    assert asked.returncode == 0, asked.stderr
    request = json.loads(asked.stdout)
    assert (request["jobId"], request["presets"]) == (job_id, ["small", "thumb"])
    assert request["requestId"].startswith("rpr_"), request
    again = stack.client(TENANT).wait_reprocessed(job_id, timeout=60)
    assert again["revision"] == 1  # every preset already current: nothing made again
    files = [(urlsplit(output["url"]).path, output["version"]) for output in job["outputs"]]
    assert [(urlsplit(output["url"]).path, output["version"]) for output in again["outputs"]] == (
        files
    )


def test_reprocess_names_a_lost_original_an_unknown_preset_and_a_timeout(
    stack: LocalStack,
) -> None:
    job_id = uploaded_with_thumb_only(stack)
    stack.aws(
        "s3", "rm", f"s3://{uploads_bucket(stack)}/originals/{TENANT}/{job_id}/", "--recursive"
    )
    lost = on_stack(stack, "reprocess", job_id, "--presets", "small", "--wait", "--json")
    assert lost.returncode == 1, lost.stderr
    assert json.loads(lost.stdout)["reprocessError"]["code"] == "original_expired"
    (said,) = lost.stderr.splitlines()
    assert said.startswith(f"media-pipeline: {job_id}: original_expired: "), said

    unknown = on_stack(stack, "reprocess", job_id, "--presets", "nope")
    assert (unknown.returncode, unknown.stdout) == (1, ""), unknown.stderr
    (said,) = unknown.stderr.splitlines()
    assert said.startswith("media-pipeline: unknown_preset: "), said

    other = uploaded_with_thumb_only(stack)
    with messages_held(stack, "-reprocess"):
        late = on_stack(
            stack, "reprocess", other, "--presets", "small", "--wait", "--timeout", "1", "--json"
        )
    assert late.returncode == 1, late.stderr
    assert json.loads(late.stdout)["reprocessing"] is True
    assert late.stderr.startswith("media-pipeline: timeout: "), late.stderr


def uploads_bucket(stack: LocalStack) -> str:
    buckets = json.loads(stack.aws("s3api", "list-buckets"))["Buckets"]
    (name,) = [bucket["Name"] for bucket in buckets if "-uploads-" in bucket["Name"]]
    return str(name)


# --- backfills on `make run` ----------------------------------------------------------------


def test_backfill_start_wait_gives_a_past_job_a_preset_and_show_prints_it(
    stack: LocalStack,
) -> None:
    sent = on_stack(stack, "upload", str(SAMPLES / "Kite.jpg"), "--presets", "thumb", "--wait")
    assert sent.returncode == 0, sent.stderr
    (job_id,) = JOB_ID.findall(sent.stdout)
    created = stack.job(TENANT, job_id)["createdAt"]  # the range is this one job

    range_ = ("--after", created, "--before", created)
    started = on_stack(
        stack, "backfill", "start", "--presets", "small", *range_, "--wait", "--json"
    )

    assert started.returncode == 0, started.stderr
    backfill = json.loads(started.stdout)
    assert backfill["status"] == "completed", backfill
    counts = backfill["counts"]
    assert (counts["matched"], counts["toReprocess"], counts["done"]) == (1, 1, 1), counts
    assert (counts["alreadyCurrent"], counts["failed"], counts["pending"]) == (0, 0, 0), counts
    no_terminal_codes(started)
    job = stack.job(TENANT, job_id)
    assert sorted(output["preset"] for output in job["outputs"]) == ["small", "thumb"]
    (small,) = [output for output in job["outputs"] if output["preset"] == "small"]
    assert (small["width"], small["height"]) == SAMPLE_OUTPUTS["small.jpg"][0]

    shown = on_stack(stack, "backfill", "show", backfill["backfillId"], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == backfill
    finished = on_stack(stack, "backfill", "cancel", backfill["backfillId"])
    assert (finished.returncode, finished.stdout) == (1, ""), finished.stderr
    (explained,) = finished.stderr.splitlines()
    assert explained.startswith("media-pipeline: backfill_finished: "), explained


def test_backfill_show_wait_times_out_and_cancel_stops_a_running_backfill(
    stack: LocalStack,
) -> None:
    with messages_held(stack, "-backfill"):  # its first page stays unread
        started = on_stack(stack, "backfill", "start", "--presets", "thumb", "--json")
    assert started.returncode == 0, started.stderr
    backfill_id = json.loads(started.stdout)["backfillId"]

    waited = on_stack(stack, "backfill", "show", backfill_id, "--wait", "--timeout", "1")
    assert waited.returncode == 1, waited.stderr
    assert json.loads(waited.stdout)["status"] == "running"
    assert waited.stderr.startswith("media-pipeline: timeout: "), waited.stderr

    cancelled = on_stack(stack, "backfill", "cancel", backfill_id, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    shown = json.loads(cancelled.stdout)
    assert (shown["status"], shown["pagesRead"], shown["counts"]["matched"]) == (
        "cancelled",
        0,
        0,
    )
    again = on_stack(stack, "backfill", "cancel", backfill_id, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "cancelled"
    after = on_stack(stack, "backfill", "show", backfill_id, "--wait", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["status"] == "cancelled"


def test_another_tenants_backfill_is_not_found_and_left_alone(stack: LocalStack) -> None:
    started = on_stack(stack, "backfill", "start", "--presets", "thumb", "--dry-run", "--json")
    assert started.returncode == 0, started.stderr
    backfill_id = json.loads(started.stdout)["backfillId"]
    for action in ("show", "cancel"):
        done = media_pipeline(
            "backfill", action, backfill_id, api=stack.api, key=stack.keys["acme"]
        )
        assert (done.returncode, done.stdout) == (1, ""), (action, done.stderr)
        (explained,) = done.stderr.splitlines()
        assert explained.startswith("media-pipeline: not_found: "), explained
    shown = on_stack(stack, "backfill", "show", backfill_id, "--wait", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"


# --- usage errors ----------------------------------------------------------------------------


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    api = "http://127.0.0.1:9"  # never reached: each command stops before any request
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    cases = {
        "MEDIA_PIPELINE_KEY": (["jobs"], None),
        "invalid choice": (["nothing"], "key"),
        "not above 0": (["jobs", "--limit", "0"], "key"),
        "no such file": (["upload", str(tmp_path / "missing.jpg")], "key"),
        "no image to upload": (["upload", str(tmp_path / "empty")], "key"),
        "would both save": (["upload", str(tmp_path), "--out", str(tmp_path / "o")], "key"),
    }
    for expected, (args, key) in cases.items():
        done = media_pipeline(*args, api=api, key=key)
        assert (done.returncode, done.stdout) == (2, ""), (args, done.stderr)
        assert expected in done.stderr, (args, done.stderr)


# --- retries and error answers, from a server of the test's own ------------------------------


@dataclass
class Scripted:
    """An HTTP server answering each request with the next of `answers` (the last one
    repeats): (status, headers, JSON body)."""

    answers: list[tuple[int, dict[str, str], Any]]
    requests: list[tuple[str, str, float]] = field(default_factory=list)  # method, path, when
    url: str = ""


@contextlib.contextmanager
def scripted_api(*answers: tuple[int, dict[str, str], Any]) -> Iterator[Scripted]:
    script = Scripted(list(answers))

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            script.requests.append((self.command, self.path, time.monotonic()))
            status, headers, body = script.answers[min(len(script.requests), len(answers)) - 1]
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


A_JOB_ID = "0b5c8f6e-1f2a-4c3d-9e8f-7a6b5c4d3e2f"
A_JOB = {
    "jobId": A_JOB_ID,
    "status": "COMPLETED",
    "createdAt": "2026-01-01T00:00:00Z",
    "filename": "kite.jpg",
    "error": None,
}


def test_transient_failures_are_retried_after_retry_after() -> None:
    unavailable = error("service_unavailable", "The service is briefly unavailable; try again.")
    with scripted_api(
        (503, {"Retry-After": "1"}, unavailable),
        (502, {}, {"message": "Bad Gateway"}),
        (200, {}, {"jobs": [A_JOB], "nextCursor": None}),
    ) as api:
        done = media_pipeline("jobs", "--json", api=api.url, key="k" * 20)

    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["jobId"] for line in done.stdout.splitlines()] == [A_JOB["jobId"]]
    assert [method for method, _, _ in api.requests] == ["GET"] * 3
    first, second, _ = (when for _, _, when in api.requests)
    assert second - first >= 1.0  # Retry-After: 1


def test_a_create_is_not_repeated_after_a_lost_answer() -> None:
    unavailable = error("service_unavailable", "The service is briefly unavailable; try again.")
    with scripted_api((503, {"Retry-After": "0"}, unavailable)) as api:
        done = media_pipeline("webhooks", "add", "https://example.com/", api=api.url, key="k" * 20)
    assert done.returncode == 1
    assert [method for method, _, _ in api.requests] == ["POST"]
    assert done.stderr.splitlines() == [
        "media-pipeline: service_unavailable: the service was still unavailable after retries:"
        " try again later"
    ]


@pytest.mark.parametrize(
    ("status", "code", "says"),
    [
        (401, "unauthorized", "check --key or MEDIA_PIPELINE_KEY"),
        (404, "not_found", "no such job, webhook endpoint or backfill"),
        (400, "invalid_request", "cursor must not be empty"),  # the API's own specifics
        (418, "teapot", "I am a teapot"),  # a code the CLI does not know: the API's words
    ],
)
def test_an_error_answer_is_explained_in_one_line(status: int, code: str, says: str) -> None:
    with scripted_api((status, {}, error(code, "I am a teapot" if status == 418 else says))) as api:
        done = media_pipeline("get", A_JOB_ID, api=api.url, key="k" * 20)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"media-pipeline: {code}: "), line
    assert says in line
    assert len(api.requests) == 1


def test_a_folder_upload_finds_every_type_the_api_accepts(tmp_path: Path) -> None:
    """The CLI keeps its own list of accepted types (it runs without chalicelib): it must
    be the API's, and a folder's images are found by every extension of those types, in
    either case; other files are left out."""
    assert cli.ACCEPTED_TYPES == ACCEPTED_CONTENT_TYPES
    expected = {}
    for content_type in sorted(ACCEPTED_CONTENT_TYPES):
        extensions = cli.MEDIA_TYPES.guess_all_extensions(content_type, strict=False)
        assert extensions, f"no file extension maps to {content_type}"
        for extension in extensions:
            for name in (f"a{extension}", f"B{extension.upper()}"):
                (tmp_path / name).write_bytes(b"")
                expected[name] = content_type
    (tmp_path / "notes.txt").write_text("not an image")
    found = {source.path.name: source.content_type for source in cli.sources([tmp_path])}
    assert found == expected
