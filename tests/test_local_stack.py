"""The local stack (`make run`) used as a user would: plain HTTP and the AWS CLI, no AWS.

One `make run` serves the whole module, on free ports, in its own session. It must answer
`/health` only once ready, run every job through the emulator, the dispatcher and the
workers, and on SIGTERM stop every process it started, cleanly (the stack exits 0; make
itself then re-raises the signal, as GNU make does for any recipe). Latencies and
throughput are printed and attached to the tests (`record_property`).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from PIL import Image, ImageChops, ImageOps, ImageStat

from infra.stack import ENVIRONMENT_OUTPUTS
from tests.job_errors import assert_fixed_message
from tests.samples import SAMPLES, corpus_photos, phone_name, phone_photo, sample_photo

REPO = Path(__file__).resolve().parents[1]
AWS_CLI = REPO / ".venv" / "bin" / "aws"
REGION = "us-east-1"

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
JOB_TIMEOUT = 60.0
BATCH_TIMEOUT = 120.0
BATCH_SIZE = 20
PHONE_SOURCES = ("BytheWater.jpg", "Kite.jpg")  # phone photos made from these samples
JOB_POLL = 0.02  # one job, polled as tightly as a latency measurement needs
BATCH_POLL = 0.05  # the batch, one listing per poll
HTTP_TIMEOUT = 30.0

TERMINAL = frozenset({"COMPLETED", "FAILED"})
EXPECTED_OUTPUTS = {
    # preset: (width, height, format, content type, key name)
    "thumb": (256, 256, "JPEG", "image/jpeg", "thumb.jpg"),
    "small": (512, 384, "JPEG", "image/jpeg", "small.jpg"),
    "large": (1024, 768, "WEBP", "image/webp", "large.webp"),
}
# Settings a developer's shell (or `make test`) may carry that must not reach the stack:
# it runs with no AWS account and picks its own resource names.
NOT_INHERITED = frozenset(
    {
        *ENVIRONMENT_OUTPUTS,
        "PRESETS",
        "S3_ADDRESSING_STYLE",
        "EMULATOR_PORT",
        "PORT",
        "DEV_API_KEYS",
        "WORKERS",
        "LOCAL_QUEUE_VISIBILITY_SECONDS",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
    }
)


# --- processes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    started: int  # clock ticks after boot: tells a process from a later one with its pid
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} (pgid {self.pgid}, sid {self.sid}, {self.state}): {self.command}"


def processes() -> list[Proc]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:  # it exited while we looked
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is stat's 3rd: state
        found.append(
            Proc(
                pid=int(entry.name),
                ppid=int(fields[1]),
                pgid=int(fields[2]),
                sid=int(fields[3]),
                state=fields[0],
                started=int(fields[19]),
                command=argv.replace(b"\0", b" ").decode(errors="replace").strip() or name,
            )
        )
    return found


def descendants(root: int) -> list[Proc]:
    """Every live process under `root`, including those that left its session."""
    table = processes()
    children: dict[int, list[Proc]] = {}
    for proc in table:
        children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    frontier = [root]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.pid)
    return found


def survivors(leader: int, known: list[Proc]) -> list[Proc]:
    """Processes still alive in the leader's session or group, or started under it.
    Zombies have exited (only their parent's reaping is missing), so they do not count."""
    alive = {(proc.pid, proc.started): proc for proc in processes() if proc.state != "Z"}
    left = {key: proc for key, proc in alive.items() if leader in (proc.sid, proc.pgid)}
    for proc in known:
        key = (proc.pid, proc.started)
        if key in alive:
            left[key] = alive[key]
    return sorted(left.values(), key=lambda proc: proc.pid)


def kill(procs: list[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def user_environment() -> dict[str, str]:
    """The caller's environment without AWS settings or the stack's own variables."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in NOT_INHERITED
    }


# --- the stack, from the outside -------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    job_id: str
    form: dict[str, Any]
    posted_at: float  # time.monotonic() when the file's POST returned


@dataclass(frozen=True)
class LocalStack:
    api_port: int
    emulator_port: int
    keys: dict[str, str]
    log: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log} ---\n{tail}\n--- end of log ---"

    def call(
        self,
        method: str,
        path: str,
        key: str | None,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return requests.request(
            method,
            self.api + path,
            headers=headers,
            json=body,
            params=params,
            timeout=HTTP_TIMEOUT,
        )

    def expect(self, response: requests.Response, status: int) -> Any:
        assert response.status_code == status, (
            f"{response.request.method} {response.url} answered {response.status_code}, "
            f"expected {status}: {response.text[:2000]}\n{self.log_tail()}"
        )
        return response.json()

    def upload(self, tenant: str, data: bytes, *, filename: str, content_type: str) -> Upload:
        """POST /uploads, then the presigned multipart POST of the file, as a browser would."""
        body = {"filename": filename, "contentType": content_type}
        created = self.expect(self.call("POST", "/uploads", self.keys[tenant], body=body), 201)
        assert created["status"] == "PENDING", created
        form = created["upload"]
        assert form["method"] == "POST", form
        response = requests.post(
            form["url"],
            data=form["fields"],
            files={"file": (filename, data, content_type)},
            timeout=HTTP_TIMEOUT,
        )
        posted_at = time.monotonic()
        assert response.status_code in (200, 201, 204), (
            f"upload POST to {form['url']} answered {response.status_code}: "
            f"{response.text[:2000]}\n{self.log_tail()}"
        )
        return Upload(job_id=created["jobId"], form=form, posted_at=posted_at)

    def job(self, tenant: str, job_id: str) -> Any:
        return self.expect(self.call("GET", f"/jobs/{job_id}", self.keys[tenant]), 200)

    def wait(self, tenant: str, job_id: str, timeout: float = JOB_TIMEOUT) -> tuple[Any, float]:
        """Poll until the job is COMPLETED or FAILED: the job, and when a GET first showed it."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(tenant, job_id)
            seen = time.monotonic()
            if job["status"] in TERMINAL:
                return job, seen
            if seen > deadline:
                pytest.fail(
                    f"job {job_id} still {job['status']} after {timeout:.0f} s: {job}\n"
                    + self.log_tail()
                )
            time.sleep(JOB_POLL)

    def jobs(self, tenant: str) -> dict[str, Any]:
        """Every job of the tenant, by id, through GET /jobs and its cursors."""
        found: dict[str, Any] = {}
        params = {"limit": "100"}
        while True:
            page = self.expect(self.call("GET", "/jobs", self.keys[tenant], params=params), 200)
            found.update((job["jobId"], job) for job in page["jobs"])
            if not page["nextCursor"]:
                return found
            params["cursor"] = page["nextCursor"]

    def aws(self, *args: str) -> str:
        """The AWS CLI against the emulator, with dummy credentials and nobody's config."""
        env = user_environment()
        env.update(
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        command = [str(AWS_CLI), "--endpoint-url", self.endpoint, *args]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (
            f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}\n{self.log_tail()}"
        )
        return done.stdout


def batch_photos() -> dict[str, bytes]:
    """The sample photos and phone photos made from two of them, widened by the shared
    corpus's photos where it lies beside the clone."""
    photos = {path.name: path.read_bytes() for path in sorted(SAMPLES.glob("*.jpg"))}
    photos |= {phone_name(source): phone_photo(source) for source in PHONE_SOURCES}
    photos |= {path.name: path.read_bytes() for path in corpus_photos()}
    return dict(sorted(photos.items()))


def wait_until_ready(process: subprocess.Popen[bytes], stack: LocalStack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        code = process.poll()
        if code is not None:
            pytest.fail(f"`make run` exited {code} before it was ready\n{stack.log_tail()}")
        try:
            response = requests.get(stack.api + "/health", timeout=2)
        except requests.RequestException:
            response = None
        if response is not None and response.status_code == 200:
            assert response.json() == {"status": "ok"}, response.text
            break
        if time.monotonic() > deadline:
            answer = "no answer" if response is None else f"{response.status_code}"
            pytest.fail(
                f"/health not 200 after {READY_TIMEOUT:.0f} s ({answer})\n{stack.log_tail()}"
            )
        time.sleep(0.2)
    # The banner ends with `Ready.` before /health answers; a little slack for the write.
    for _ in range(50):
        if "Ready." in stack.log.read_text(errors="replace").splitlines():
            return
        time.sleep(0.1)
    pytest.fail(f"/health answers but no line `Ready.` was printed\n{stack.log_tail()}")


def stop(process: subprocess.Popen[bytes], log: Path) -> list[str]:
    """Ctrl-C's way: the signal to the whole process group. What went wrong, if anything."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        code = process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"`make run` still running {STOP_TIMEOUT:.0f} s after SIGTERM"]
    # GNU make re-raises a fatal signal on itself once its recipe has exited, whatever the
    # recipe's own status, so make's status is the signal's; the stack's own clean end is
    # its last line, written only after everything it started has stopped.
    problems = []
    if code not in (0, -signal.SIGTERM):
        problems.append(f"`make run` exited {code} after SIGTERM")
    output = log.read_text(errors="replace")
    if "stopped." not in output.splitlines():
        problems.append("the stack did not report a clean stop (`stopped.`)")
    # The app logs tracebacks of retried errors while it runs; stopping must add none.
    shutdown = output[output.rfind("stopping (") :] if "stopping (" in output else output
    if "Traceback" in shutdown:
        problems.append(f"the stack's shutdown printed a traceback:\n{shutdown[-3000:]}")
    return problems


@contextlib.contextmanager
def make_run(
    local: LocalStack, env: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    """`make run` started as a user would (its own session, the log to `local.log`), ready
    when the body runs; afterwards stopped with SIGTERM, and the test fails if it stopped
    uncleanly or left any process behind (those are killed with SIGKILL)."""
    failures_before = request.session.testsfailed
    with local.log.open("wb") as log:
        process = subprocess.Popen(
            ["make", "run"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    problems: list[str] = []
    tree: list[Proc] | None = None
    try:
        wait_until_ready(process, local)
        yield process
        tree = descendants(process.pid)
        problems += stop(process, local.log)
    finally:
        # Whatever happened above, nothing this started outlives it.
        if tree is None:
            tree = descendants(process.pid)
        left = survivors(process.pid, tree)
        kill(left)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if request.session.testsfailed > failures_before:
            print(local.log_tail())
    if left:
        problems.append(
            "processes left after `make run` exited (killed with SIGKILL):\n"
            + "\n".join(f"  {proc}" for proc in left)
        )
    if problems:
        pytest.fail("\n".join(problems) + "\n" + local.log_tail())


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalStack]:
    emulator_port, api_port = free_ports(2)
    keys = {tenant: secrets.token_urlsafe(30) for tenant in ("acme", "globex")}  # 40 chars
    local = LocalStack(
        api_port=api_port,
        emulator_port=emulator_port,
        keys=keys,
        log=tmp_path_factory.mktemp("local-stack") / "make-run.log",
    )
    env = user_environment()
    env.update(
        EMULATOR_PORT=str(emulator_port),
        PORT=str(api_port),
        DEV_API_KEYS=",".join(f"{tenant}:{key}" for tenant, key in keys.items()),
        WORKERS="2",
    )
    started = time.monotonic()
    with make_run(local, env, request):
        print(f"\nlocal stack ready in {time.monotonic() - started:.1f} s (log: {local.log})")
        yield local


# --- one photo, end to end -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    upload: Upload
    job: Any
    latency_ms: float


@pytest.fixture(scope="module")
def phone_job(stack: LocalStack) -> Finished:
    upload = stack.upload(
        "acme", phone_photo(), filename="phone photo.jpg", content_type="image/jpeg"
    )
    job, seen = stack.wait("acme", upload.job_id)
    return Finished(upload=upload, job=job, latency_ms=(seen - upload.posted_at) * 1000)


def upright_reference() -> Image.Image:
    """The phone photo as it should look: EXIF orientation applied, decoded at 1/8."""
    source = Image.open(io.BytesIO(phone_photo()))
    source.draft("RGB", (source.width // 8, source.height // 8))
    return ImageOps.exif_transpose(source).convert("RGB")


def difference(reference: Image.Image, output: Image.Image) -> float:
    """Mean absolute difference (0-255) of the two, the reference cropped like the output."""
    size = (32, max(1, round(32 * output.height / output.width)))
    expected = ImageOps.fit(reference, output.size).resize(size, Image.Resampling.BOX)
    actual = output.convert("RGB").resize(size, Image.Resampling.BOX)
    return sum(ImageStat.Stat(ImageChops.difference(expected, actual)).mean) / 3


def test_a_phone_photo_comes_back_upright_and_clean(
    stack: LocalStack, phone_job: Finished, record_property: Any
) -> None:
    form_url = urlsplit(phone_job.upload.form["url"])
    assert (form_url.scheme, form_url.netloc) == ("http", f"127.0.0.1:{stack.emulator_port}")
    assert "-uploads-" in form_url.path.split("/")[1], f"not path style: {form_url.geturl()}"

    job = phone_job.job
    assert job["status"] == "COMPLETED", f"{job}\n{stack.log_tail()}"
    assert job["error"] is None
    assert job["filename"] == "phone photo.jpg"
    assert job["source"] == {
        "contentType": "image/jpeg",
        "bytes": len(phone_photo()),
        "width": 4032,
        "height": 3024,
        "format": "JPEG",
    }
    outputs = {output["preset"]: output for output in job["outputs"]}
    assert sorted(outputs) == sorted(EXPECTED_OUTPUTS)
    reference = upright_reference()
    for preset, (width, height, fmt, content_type, name) in EXPECTED_OUTPUTS.items():
        output = outputs[preset]
        assert (output["width"], output["height"]) == (width, height), output
        assert (output["format"], output["contentType"]) == (fmt, content_type), output
        url = urlsplit(output["url"])
        assert (url.scheme, url.netloc) == ("http", f"127.0.0.1:{stack.emulator_port}")
        bucket, *key = unquote(url.path).lstrip("/").split("/")
        assert "-derived-" in bucket, f"not path style: {output['url']}"
        assert key == ["acme", job["jobId"], name], output["url"]

        downloaded = requests.get(output["url"], timeout=HTTP_TIMEOUT)
        assert downloaded.status_code == 200, f"{output['url']}: {downloaded.text[:500]}"
        assert downloaded.headers["Content-Type"] == content_type
        assert len(downloaded.content) == output["bytes"]
        image = Image.open(io.BytesIO(downloaded.content))
        assert image.format == fmt
        assert image.size == (width, height)
        assert width >= height, "a landscape photo came back portrait"
        assert not image.getexif(), f"{preset} kept metadata: {dict(image.getexif())}"
        assert "exif" not in image.info
        assert b"Exif\x00\x00" not in downloaded.content
        # The pixels are turned, not just the size: the upright photo matches, the
        # photo turned the other way (or mirrored) does not.
        right = difference(reference, image)
        wrong = min(
            difference(reference.transpose(Image.Transpose.ROTATE_180), image),
            difference(reference.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image),
        )
        assert right < 6 < wrong, f"{preset}: differs {right:.1f} from upright, {wrong:.1f}"

    print(f"\nlocal job latency: upload->COMPLETED {phone_job.latency_ms:.0f} ms")
    record_property("local_job_latency_ms", round(phone_job.latency_ms))


def test_the_aws_cli_sees_the_outputs(stack: LocalStack, phone_job: Finished) -> None:
    buckets = [line.split()[-1] for line in stack.aws("s3", "ls").splitlines() if line.strip()]
    derived = [name for name in buckets if re.fullmatch(r"media-pipeline-local-derived-.+", name)]
    assert len(derived) == 1, f"buckets: {buckets}"
    assert re.fullmatch(r"media-pipeline-local-derived-\d{12}-us-east-1", derived[0]), derived

    job_id = phone_job.job["jobId"]
    listing = stack.aws("s3", "ls", f"s3://{derived[0]}/acme/{job_id}/")
    # `2026-11-22 10:00:01      18211 thumb.jpg`
    listed = {line.split()[-1]: int(line.split()[-2]) for line in listing.splitlines() if line}
    sizes = {
        EXPECTED_OUTPUTS[output["preset"]][4]: output["bytes"]
        for output in phone_job.job["outputs"]
    }
    assert listed == sizes, listing


# --- failures --------------------------------------------------------------------------------


def test_bad_sources_fail_with_their_code(stack: LocalStack) -> None:
    cases = {
        "corrupt_image": stack.upload(
            "acme",
            sample_photo("BytheWater.jpg")[:3000],
            filename="cut.jpg",
            content_type="image/jpeg",
        ),
        "unsupported_format": stack.upload(
            "acme",
            b"this is a text file, not an image\n" * 10,
            filename="notes.png",
            content_type="image/png",
        ),
    }
    for code, upload in cases.items():
        job, _ = stack.wait("acme", upload.job_id)
        assert job["status"] == "FAILED", f"expected {code}: {job}\n{stack.log_tail()}"
        assert_fixed_message(job["error"], code)
        assert job["outputs"] == []


# --- a batch ---------------------------------------------------------------------------------


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def test_a_batch_of_photos_all_complete(stack: LocalStack, record_property: Any) -> None:
    photos = list(batch_photos().items())
    assert len(photos) >= 5, [name for name, _ in photos]
    work = [photos[i % len(photos)] for i in range(BATCH_SIZE)]

    uploaded: dict[str, float] = {}  # job id -> when its file's POST returned
    completed: dict[str, float] = {}  # job id -> when a listing first showed it COMPLETED
    lock = threading.Lock()

    def send(name: str, data: bytes) -> None:
        upload = stack.upload("acme", data, filename=name, content_type="image/jpeg")
        with lock:
            uploaded[upload.job_id] = upload.posted_at

    started = time.monotonic()
    deadline = started + BATCH_TIMEOUT
    with ThreadPoolExecutor(max_workers=4) as pool:
        sends: list[Future[None]] = [pool.submit(send, name, data) for name, data in work]
        while len(completed) < BATCH_SIZE:
            for sent in sends:
                if sent.done():
                    sent.result()  # an upload that failed fails the test here
            with lock:
                waiting = set(uploaded) - set(completed)
            if waiting:
                jobs = stack.jobs("acme")
                seen = time.monotonic()
                for job_id in waiting:
                    job = jobs.get(job_id)
                    assert job is not None, f"GET /jobs does not list {job_id}"
                    assert job["status"] != "FAILED", f"{job}\n{stack.log_tail()}"
                    if job["status"] == "COMPLETED":
                        assert len(job["outputs"]) == len(EXPECTED_OUTPUTS), job
                        completed[job_id] = seen
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(completed)} of {BATCH_SIZE} jobs COMPLETED "
                    f"({len(uploaded)} uploaded) after {BATCH_TIMEOUT:.0f} s\n{stack.log_tail()}"
                )
            if len(completed) < BATCH_SIZE:
                time.sleep(BATCH_POLL)

    elapsed = max(completed.values()) - started
    latencies = [(completed[job_id] - uploaded[job_id]) * 1000 for job_id in completed]
    throughput = BATCH_SIZE / elapsed
    p50, p95 = nearest_rank(latencies, 0.50), nearest_rank(latencies, 0.95)
    print(
        f"\nlocal batch: {BATCH_SIZE} jobs in {elapsed:.2f} s = {throughput:.2f} jobs/s; "
        f"upload->COMPLETED p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    )
    record_property("batch_jobs_per_second", round(throughput, 2))
    record_property("batch_latency_p50_ms", round(p50))
    record_property("batch_latency_p95_ms", round(p95))


# --- tenants ---------------------------------------------------------------------------------


def test_tenants_are_isolated_and_keys_checked(stack: LocalStack) -> None:
    body = {"filename": "private.jpg", "contentType": "image/jpeg"}
    job_id = stack.expect(stack.call("POST", "/uploads", stack.keys["acme"], body=body), 201)[
        "jobId"
    ]
    assert stack.job("acme", job_id)["jobId"] == job_id

    hidden = stack.expect(stack.call("GET", f"/jobs/{job_id}", stack.keys["globex"]), 404)
    assert hidden["error"]["code"] == "not_found", hidden
    assert job_id not in stack.jobs("globex")

    wrong = secrets.token_urlsafe(30)
    for method, path, request_body in (
        ("GET", f"/jobs/{job_id}", None),
        ("GET", "/jobs", None),
        ("POST", "/uploads", body),
    ):
        refused = stack.expect(stack.call(method, path, wrong, body=request_body), 401)
        assert refused["error"]["code"] == "unauthorized", refused
