"""`make run` for the tests that use the local stack as a user would: started on free
ports by devstack.launch, used through media_pipeline.client and the AWS CLI, and stopped with
SIGTERM; a test fails if the stack stopped uncleanly or left any process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from chalicelib.presets import load_presets, preset_version
from devstack import launch
from media_pipeline.client import Client, Job, Upload

REPO = Path(__file__).resolve().parents[1]
AWS_CLI = REPO / ".venv" / "bin" / "aws"
REGION = "us-east-1"
JOB_TIMEOUT = 60.0
JOB_POLL = 0.02  # one job, polled as tightly as a latency measurement needs
HTTP_TIMEOUT = 30.0
EXPECTED_OUTPUTS = {
    # preset: (width, height, format, content type, file name as the CLI saves it)
    "thumb": (256, 256, "JPEG", "image/jpeg", "thumb.jpg"),
    "small": (512, 384, "JPEG", "image/jpeg", "small.jpg"),
    "large": (1024, 768, "WEBP", "image/webp", "large.webp"),
}


def output_key_name(preset: str) -> str:
    """The last segment of a default preset's output key: `<preset>.<version>.<ext>`."""
    name, extension = EXPECTED_OUTPUTS[preset][4].rsplit(".", 1)
    return f"{name}.{preset_version(load_presets(None)[preset])}.{extension}"


@dataclass(frozen=True)
class LocalStack:
    """`make run`'s stack (started by `make_run`), from the outside: a client of the API
    for each tenant, and the AWS CLI. An API error raises media_pipeline.client.ApiError, a job
    not ended in time JobTimeout; the stack's log is printed when a test failed."""

    settings: launch.Settings
    log: Path
    clients: dict[str, Client] = field(default_factory=dict, compare=False)

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

    def client(self, tenant: str) -> Client:
        if tenant not in self.clients:
            self.clients[tenant] = Client(self.api, self.keys[tenant], timeout=HTTP_TIMEOUT)
        return self.clients[tenant]

    def upload(self, tenant: str, data: bytes, *, filename: str, content_type: str) -> Upload:
        """POST /uploads, then the presigned multipart POST of the file, as a browser would."""
        upload = self.client(tenant).upload(data, filename, content_type)
        assert (upload.answer["status"], upload.form["method"]) == ("PENDING", "POST"), upload
        return upload

    def job(self, tenant: str, job_id: str) -> Job:
        return self.client(tenant).job(job_id)

    def wait(self, tenant: str, job_id: str) -> tuple[Job, float]:
        """The job once COMPLETED or FAILED, and when a GET first showed it (time.time())."""
        job = self.client(tenant).wait(job_id, JOB_TIMEOUT, JOB_POLL)
        return job, time.time()

    def jobs(self, tenant: str) -> dict[str, Job]:
        """Every job of the tenant, by id."""
        return self.client(tenant).jobs()

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


def kill_everything(running: launch.Launched) -> None:
    """A crash of the whole stack: SIGKILL to every process it started (the emulator, in a
    session of its own, first) and then to the stack itself; nothing gets to clean up."""
    leader = running.process.pid
    tree = launch.descendants(leader)
    launch.kill(tree)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)
    running.process.wait(10)
