"""`make run` for the tests that use the local stack as a user would: started on free
ports by devstack.launch, used through plain HTTP and the AWS CLI, and stopped with
SIGTERM; a test fails if the stack stopped uncleanly or left any process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack import launch

REPO = Path(__file__).resolve().parents[1]
AWS_CLI = REPO / ".venv" / "bin" / "aws"
REGION = "us-east-1"
JOB_TIMEOUT = 60.0
JOB_POLL = 0.02  # one job, polled as tightly as a latency measurement needs
HTTP_TIMEOUT = 30.0
TERMINAL = frozenset({"COMPLETED", "FAILED"})
EXPECTED_OUTPUTS = {
    # preset: (width, height, format, content type, key name)
    "thumb": (256, 256, "JPEG", "image/jpeg", "thumb.jpg"),
    "small": (512, 384, "JPEG", "image/jpeg", "small.jpg"),
    "large": (1024, 768, "WEBP", "image/webp", "large.webp"),
}


@dataclass(frozen=True)
class Upload:
    job_id: str
    form: dict[str, Any]
    posted_at: float  # time.monotonic() when the file's POST returned


@dataclass(frozen=True)
class LocalStack:
    """`make run`'s stack (started by `make_run`), from the outside: plain HTTP and the
    AWS CLI."""

    settings: launch.Settings
    log: Path

    @property
    def api(self) -> str:
        return self.settings.api

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    @property
    def emulator_port(self) -> int:
        return self.settings.emulator_port

    @property
    def keys(self) -> Mapping[str, str]:
        return self.settings.keys

    def log_tail(self, lines: int = 80) -> str:
        return launch.log_tail(self.log, lines)

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
        env = launch.user_environment()
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


def stop_problems(stopped: launch.Stopped | None, log: Path) -> list[str]:
    """What went wrong when `make run` was stopped (Ctrl-C's way), if anything."""
    if stopped is None:
        return ["`make run` was never stopped"]
    if stopped.code is None:
        problems = [f"`make run` still running {launch.STOP_TIMEOUT:.0f} s after SIGTERM"]
    # GNU make re-raises a fatal signal on itself once its recipe has exited, whatever the
    # recipe's own status, so make's status is the signal's; the stack's own clean end is
    # its last line, written only after everything it started has stopped.
    elif stopped.code not in (0, -signal.SIGTERM):
        problems = [f"`make run` exited {stopped.code} after SIGTERM"]
    else:
        problems = []
    output = log.read_text(errors="replace")
    if "stopped." not in output.splitlines():
        problems.append("the stack did not report a clean stop (`stopped.`)")
    # The app logs tracebacks of retried errors while it runs; stopping must add none.
    shutdown = output[output.rfind("stopping (") :] if "stopping (" in output else output
    if "Traceback" in shutdown:
        problems.append(f"the stack's shutdown printed a traceback:\n{shutdown[-3000:]}")
    if stopped.left:
        problems.append(
            "processes left after `make run` exited (killed with SIGKILL):\n"
            + "\n".join(f"  {proc}" for proc in stopped.left)
        )
    return problems


@contextlib.contextmanager
def make_run(
    local: LocalStack, request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    """`make run` started as a user would (its own session, the log to `local.log`), ready
    when the body runs (/health answers and `Ready.` was printed); afterwards stopped with
    SIGTERM, and the test fails if it stopped uncleanly or left any process behind (those
    are killed with SIGKILL)."""
    failures_before = request.session.testsfailed
    running: launch.Launched | None = None
    try:
        with launch.local_stack(local.settings, local.log, ("make", "run")) as running:
            health = requests.get(local.api + "/health", timeout=HTTP_TIMEOUT)
            assert health.json() == {"status": "ok"}, health.text
            yield running.process
    finally:
        if request.session.testsfailed > failures_before:
            print(local.log_tail())
    problems = stop_problems(running.stopped if running else None, local.log)
    if problems:
        pytest.fail("\n".join(problems) + "\n" + local.log_tail())
