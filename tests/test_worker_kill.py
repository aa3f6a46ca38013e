"""A worker process that dies is replaced, as Lambda replaces a dead execution environment.

End to end: `make run` with one worker and a 5 s visibility timeout on the jobs queue;
phone photos uploaded; the worker frozen while a job is PROCESSING and killed with SIGKILL
(what the kernel's OOM killer sends). A new `worker-0` must take its place, the batch it
held must come back after the visibility timeout, and every job must end COMPLETED with
its outputs written once per preset. The stack must then still stop cleanly.

The supervisor on its own: a child that keeps dying at once is restarted after a growing
back-off, and stopping the pool during a back-off leaves nothing running.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from multiprocessing.synchronize import Semaphore
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from PIL import Image

from devstack import runner
from devstack.launch import Proc, Settings, descendants
from tests.local_stack import (
    EXPECTED_OUTPUTS,
    HTTP_TIMEOUT,
    JOB_POLL,
    REGION,
    LocalStack,
    make_run,
    output_key_name,
)
from tests.samples import phone_photo

VISIBILITY_SECONDS = 5
TENANT = "acme"
PHOTOS = ("BytheWater.jpg", "Kite.jpg")  # phone photos made from these samples
UPLOADS = 6
WORKER = "worker-0"
RESTARTED = "process died; restarting it"
# A frozen worker's request already on the wire still lands; then the job's status is final.
SETTLE_SECONDS = 0.5
REPLACEMENT_TIMEOUT = 30.0
KILL_ATTEMPTS = 3


# --- the stack, with one worker and a short visibility timeout --------------------------------


@dataclass(frozen=True)
class Running:
    stack: LocalStack
    make: subprocess.Popen[bytes]


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """`make run` as tests/test_local_stack.py starts it, stopped the same way."""
    local = LocalStack(
        Settings(
            keys={TENANT: secrets.token_urlsafe(30)},
            queue_visibility_seconds=VISIBILITY_SECONDS,
        ),
        log=tmp_path / "make-run.log",
    )
    with make_run(local, request) as make:
        yield Running(stack=local, make=make)


def emulator_session() -> boto3.session.Session:
    """Any credentials: the emulator takes them all."""
    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )


def stack_outputs(stack: LocalStack) -> dict[str, str]:
    (described,) = (
        emulator_session()
        .client("cloudformation", endpoint_url=stack.endpoint)
        .describe_stacks()["Stacks"]
    )
    return {item["OutputKey"]: item["OutputValue"] for item in described["Outputs"]}


# --- processes by name ----------------------------------------------------------------------


def process_name(pid: int) -> str | None:
    """The name a process gave itself (the stack's children name themselves, see
    devstack.runner._child_process), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def named(root: int, name: str) -> list[Proc]:
    return [
        proc for proc in descendants(root) if proc.state != "Z" and process_name(proc.pid) == name
    ]


def the_worker(root: int) -> Proc:
    found = named(root, WORKER)
    assert len(found) == 1, f"expected one {WORKER} under pid {root}: {found}"
    return found[0]


def replacement(root: int, dead: Proc, stack: LocalStack) -> Proc:
    deadline = time.monotonic() + REPLACEMENT_TIMEOUT
    while time.monotonic() < deadline:
        found = [p for p in named(root, WORKER) if (p.pid, p.started) != (dead.pid, dead.started)]
        if found:
            assert len(found) == 1, f"more than one {WORKER}: {found}"
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"no new {WORKER} {REPLACEMENT_TIMEOUT:.0f} s after the kill\n{stack.log_tail()}")


def restart_records(log: Path) -> list[dict[str, Any]]:
    """The supervisor's log lines about processes that died, as JSON."""
    lines = log.read_text(errors="replace").splitlines()
    return [json.loads(line[line.index("{") :]) for line in lines if RESTARTED in line]


# --- killing the worker mid-job -------------------------------------------------------------


def processing_job(stack: LocalStack, job_ids: list[str], deadline: float) -> str:
    """The first job GET /jobs/{id} shows PROCESSING (claimed by the worker, not finished)."""
    while time.monotonic() < deadline:
        for job_id in job_ids:
            status = stack.job(TENANT, job_id)["status"]
            assert status != "FAILED", f"{stack.job(TENANT, job_id)}\n{stack.log_tail()}"
            if status == "PROCESSING":
                return job_id
        time.sleep(JOB_POLL)
    pytest.fail(f"no job was PROCESSING in time\n{stack.log_tail()}")


def kill_mid_job(stack: LocalStack, worker: Proc, job_ids: list[str]) -> str:
    """SIGKILL the worker while it processes a job; returns that job's id.

    The worker is frozen (SIGSTOP) first and the job read again: only a job still
    PROCESSING once nothing more can come from the worker proves the kill lands mid-job.
    If the job finished in between, the worker is let go and the next job awaited."""
    deadline = time.monotonic() + 60
    for _ in range(KILL_ATTEMPTS):
        job_id = processing_job(stack, job_ids, deadline)
        os.kill(worker.pid, signal.SIGSTOP)
        time.sleep(SETTLE_SECONDS)
        if stack.job(TENANT, job_id)["status"] == "PROCESSING":
            os.kill(worker.pid, signal.SIGKILL)
            return job_id
        os.kill(worker.pid, signal.SIGCONT)
    pytest.fail(f"the worker finished each job before it could be frozen\n{stack.log_tail()}")


# --- the test -------------------------------------------------------------------------------


def test_a_worker_killed_mid_batch_is_replaced_and_no_job_is_lost(running: Running) -> None:
    stack = running.stack
    outputs = stack_outputs(stack)
    # The queue and the app (its sweeper reads the output) agree on the shortened timeout.
    assert outputs["JobsQueueVisibilityTimeoutSeconds"] == str(VISIBILITY_SECONDS)
    sqs = emulator_session().client("sqs", endpoint_url=stack.endpoint)
    queue_url = sqs.get_queue_url(QueueName=outputs["JobsQueue"])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
    assert attributes["Attributes"]["VisibilityTimeout"] == str(VISIBILITY_SECONDS)

    worker = the_worker(running.make.pid)
    job_ids = [
        stack.upload(
            TENANT,
            phone_photo(PHOTOS[i % len(PHOTOS)]),
            filename=f"photo-{i}.jpg",
            content_type="image/jpeg",
        ).job_id
        for i in range(UPLOADS)
    ]
    interrupted = kill_mid_job(stack, worker, job_ids)
    print(f"\nkilled {WORKER} (pid {worker.pid}) while job {interrupted} was PROCESSING")

    new_worker = replacement(running.make.pid, worker, stack)
    assert new_worker.pid != worker.pid
    finished = {job_id: stack.wait(TENANT, job_id)[0] for job_id in job_ids}
    for job in finished.values():
        assert job["status"] == "COMPLETED", f"{job}\n{stack.log_tail()}"
    assert_outputs_once_per_preset(stack, outputs["DerivedBucket"], finished)

    # The one restart, logged once: the worker, the signal, the count.
    (record,) = restart_records(stack.log)
    assert (record["process"], record["pid"]) == (WORKER, worker.pid), record
    assert (record["signal"], record["exitCode"], record["restarts"]) == ("SIGKILL", None, 1)
    # The replacement is the only worker; the frozen one did not come back.
    assert the_worker(running.make.pid).pid == new_worker.pid


def assert_outputs_once_per_preset(
    stack: LocalStack, bucket: str, finished: dict[str, Any]
) -> None:
    s3 = emulator_session().client("s3", endpoint_url=stack.endpoint)
    listed: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            assert item["Key"] not in listed, f"{item['Key']} listed twice"
            listed[item["Key"]] = item["Size"]
    expected: dict[str, int] = {}
    for job_id, job in finished.items():
        by_preset = {output["preset"]: output for output in job["outputs"]}
        assert sorted(by_preset) == sorted(EXPECTED_OUTPUTS), job
        for preset, (width, height, fmt, content_type, _) in EXPECTED_OUTPUTS.items():
            output = by_preset[preset]
            assert (output["width"], output["height"]) == (width, height), output
            assert (output["format"], output["contentType"]) == (fmt, content_type), output
            expected[f"{TENANT}/{job_id}/{output_key_name(preset)}"] = output["bytes"]
            downloaded = requests.get(output["url"], timeout=HTTP_TIMEOUT)
            assert downloaded.status_code == 200, output["url"]
            assert len(downloaded.content) == output["bytes"]
            image = Image.open(io.BytesIO(downloaded.content))
            assert (image.format, image.size) == (fmt, (width, height))
    assert listed == expected


# --- the supervisor on its own --------------------------------------------------------------


def exit_at_once(stop: ProcessEvent, ready: Semaphore) -> None:
    """A child that cannot run: it dies as soon as it has started."""
    del stop
    ready.release()
    raise SystemExit(3)


def spawned_children() -> list[Proc]:
    """This process's live children started by multiprocessing's spawn context (not those of
    a stack another test of this process started, which are further down)."""
    return [
        proc
        for proc in descendants(os.getpid())
        if proc.ppid == os.getpid() and proc.state != "Z" and "spawn_main" in proc.command
    ]


def test_a_child_that_keeps_dying_is_restarted_with_a_growing_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="devstack")
    pool = runner.ProcessPool(runner.RestartPolicy(first_delay=0.1, max_delay=0.4, stable_after=60))
    pool.add("crash-loop", exit_at_once)
    assert spawned_children() == []
    pool.start()
    deaths = 5
    deadline = time.monotonic() + 60
    try:
        while len(death_records(caplog)) < deaths and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pool.stop()
    records = death_records(caplog)
    assert len(records) >= deaths, records
    assert [r["restartInSeconds"] for r in records[:deaths]] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert [r["restarts"] for r in records] == list(range(1, len(records) + 1))
    assert {(r["process"], r["exitCode"], r["signal"]) for r in records} == {
        ("crash-loop", 3, None)
    }
    assert len({r["pid"] for r in records}) == len(records), "a pid died twice"
    # Stopped during a back-off: nothing runs, and nothing is started afterwards.
    time.sleep(0.6)
    assert spawned_children() == []
    assert len(death_records(caplog)) == len(records)


def test_the_restart_policy() -> None:
    policy = runner.RestartPolicy(first_delay=1, max_delay=30, stable_after=30)
    assert [policy.delay(n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert policy.quick_deaths(previous=3, uptime=29.9) == 4
    assert policy.quick_deaths(previous=3, uptime=30) == 0


def death_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "devstack" and RESTARTED in record.getMessage()
    ]


# --- LOCAL_QUEUE_VISIBILITY_SECONDS ---------------------------------------------------------


def test_the_visibility_timeout_variable_is_checked_before_anything_starts() -> None:
    from devstack.run import parse_visibility_seconds

    assert parse_visibility_seconds(None) is None  # the template's production value
    assert parse_visibility_seconds("") is None
    assert parse_visibility_seconds("5") == 5
    assert parse_visibility_seconds("0") == 0
    assert parse_visibility_seconds("43200") == 43200  # SQS's (and the template's) maximum
    for wrong in ("-1", "43201", "5s", "2.5", "five"):
        with pytest.raises(SystemExit, match="LOCAL_QUEUE_VISIBILITY_SECONDS"):
            parse_visibility_seconds(wrong)
