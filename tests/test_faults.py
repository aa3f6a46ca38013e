"""Faults injected into every AWS call the pipeline makes, and what must hold regardless.

Errors (throttling, 5xx, connection failures, responses lost after the call took effect)
are injected at botocore's seam (tests/faults.py) into S3, DynamoDB and SQS calls of the
dispatcher, the worker and the dead-letter handler; invocations are killed mid-batch
(nothing after the kill runs, the batch stays in flight until its visibility timeout);
S3 events and SQS messages are duplicated and reordered. Lambda's event sources are
reproduced in-process: the dispatcher's asynchronous invocation is tried 3 times, SQS
batches are deleted on success and redelivered on failure, with the queue's redrive
policy (maxReceiveCount 3) leading to the dead-letter handler; the scheduled sweeper
is run (its clock moved on) where an event was lost for good.

After the queues are driven until empty, every test checks the same invariants:
every job created is listed and terminal (COMPLETED, or FAILED with a code and a
message), its statuses only moved forward, both queues are empty, a COMPLETED job's
objects in the derived bucket are exactly those of a clean run of the same source, byte
for byte, a FAILED job exposes no outputs and left nothing beyond its presets, and no
output of a job was written once that job had been COMPLETED (a finished job is never
rendered again).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from chalicelib import auth, clients, dead_letters, sweeper
from chalicelib.config import reset_settings
from chalicelib.config import settings as app_settings
from devstack.lambda_events import SqsPoller
from infra.policies import DEAD_LETTERS, DISPATCHER, WORKER
from tests.faults import (
    ErrorFactory,
    Fault,
    InvocationKilled,
    JobHistory,
    KillSwitch,
    OutputWrites,
    body_contains,
    connection_refused,
    connection_reset,
    killed,
    read_timeout,
    url_contains,
)
from tests.harness import Harness, app_clients
from tests.job_errors import assert_fixed_message
from tests.pipeline import Pipeline, bearer
from tests.resources import REGION, Deployed, provision
from tests.samples import jpeg, png

REPO = Path(__file__).resolve().parents[1]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
COMPLETED = "COMPLETED"
TERMINAL = frozenset({"COMPLETED", "FAILED"})
STATUS_ORDER = ("PENDING", "QUEUED", "PROCESSING", "COMPLETED", "FAILED")
PROCESSING_FAILED = "processing_failed"
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries
SETTLE_ROUNDS = 200
SWEEPS_LATER = (timedelta(days=1), timedelta(days=15))


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    name: str
    data: bytes
    content_type: str
    expected: str  # COMPLETED, or the job's failure code

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


SOURCES = {
    source.name: source
    for source in (
        Source("red", jpeg(640, 480, (200, 40, 40)), "image/jpeg", COMPLETED),
        Source("tall", jpeg(300, 700, (20, 90, 200)), "image/jpeg", COMPLETED),
        Source("alpha", png(300, 200), "image/png", COMPLETED),
        Source(
            "text", b"this is a text file, not an image\n" * 10, "image/png", "unsupported_format"
        ),
        Source("truncated", jpeg(1200, 900)[:3000], "image/jpeg", "corrupt_image"),
    )
}
GOOD = [name for name, source in SOURCES.items() if source.expected == COMPLETED]

# What a clean run writes for each good source: {object name: bytes}. Rendering is
# deterministic, so one fault-free run per source serves every test in the session.
_CLEAN_RUNS: dict[str, dict[str, bytes]] = {}


@dataclass
class Submitted:
    job_id: str
    key: str
    source: Source
    event: dict[str, Any]  # S3's notification of the upload, to deliver (again and again)


# --- Lambda's event sources, with their failure semantics -------------------------------------


class LastReceived:
    """The last batch a poller received (from the event source's own SQS client): what a
    killed invocation leaves in flight."""

    def __init__(self, sqs: Any) -> None:
        self.queue_url = ""
        self.receipts: list[str] = []
        sqs.meta.events.register("before-parameter-build.sqs.ReceiveMessage", self._queue)
        sqs.meta.events.register("after-call.sqs.ReceiveMessage", self._received)

    def _queue(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["faults:queue"] = params["QueueUrl"]

    def _received(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.queue_url = context.get("faults:queue", "")
        self.receipts = [message["ReceiptHandle"] for message in parsed.get("Messages", [])]


class EventSources:
    """S3's notifications to the dispatcher, and the SQS event sources of the worker and the
    dead-letter handler (polling with the test's own SQS client)."""

    def __init__(self, harness: Harness, pipeline: Pipeline, batch_size: int) -> None:
        self.harness = harness
        self.pipeline = pipeline
        self.last_received = LastReceived(pipeline.sqs)
        self.worker = self.worker_poller(batch_size)
        self.dead_letters = harness.poller(DEAD_LETTERS, pipeline.queues.dlq_url, sqs=pipeline.sqs)
        self.kills = 0
        self.dropped_events = 0

    def worker_poller(self, batch_size: int) -> SqsPoller:
        jobs_url = self.pipeline.queues.jobs_url
        return self.harness.poller(WORKER, jobs_url, batch_size, sqs=self.pipeline.sqs)

    def deliver(self, event: dict[str, Any]) -> None:
        """S3's notification: an asynchronous invocation of the dispatcher, tried 3 times,
        then dropped (no on-failure destination is configured)."""
        for _ in range(ASYNC_ATTEMPTS):
            try:
                self.harness.invoke(DISPATCHER, event)
            except (Exception, InvocationKilled):
                continue
            return
        self.dropped_events += 1

    def sweeps_later(self) -> None:
        """The scheduled sweeper, run a day later (its PENDING rule is due, its stuck rule
        not yet), the queues settled, then again later than any SQS retention (14 days at
        most) and every margin. Writes carry the real clock, so a run far ahead would find
        even a job it had just dispatched overdue: hence the two steps."""
        for later in SWEEPS_LATER:
            sweeper.sweep(now=datetime.now(UTC) + later)
            self.settle()

    def settle(self) -> None:
        """Poll the jobs queue and the dead-letter queue until neither gives anything back."""
        for _ in range(SETTLE_ROUNDS):
            if self.poll_worker() + self.poll_dead_letters() == 0:
                return
        raise AssertionError(f"the queues were still busy after {SETTLE_ROUNDS} rounds")

    def poll_worker(self) -> int:
        return self._poll(self.worker.poll_once)

    def poll_dead_letters(self) -> int:
        return self._poll(self.dead_letters.poll_once)

    def _poll(self, poll_once: Any) -> int:
        try:
            return int(poll_once().received)
        except InvocationKilled:
            self.kills += 1
            self._visibility_timeout_passes()
            return 1

    def _visibility_timeout_passes(self) -> None:
        for receipt in self.last_received.receipts:
            with suppress(ClientError):  # deleted by the function before it died
                self.pipeline.sqs.change_message_visibility(
                    QueueUrl=self.last_received.queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=0,
                )


class SentMessages:
    """Bodies of the job messages the code sends (SQS may deliver any of them twice)."""

    def __init__(self, sqs: Any) -> None:
        self.bodies: list[str] = []
        sqs.meta.events.register("before-parameter-build.sqs.SendMessage", self._sent)

    def _sent(self, params: dict[str, Any], **_: Any) -> None:
        self.bodies.append(str(params["MessageBody"]))

    def redriven(self) -> list[tuple[str, int]]:
        """(job id, redrives) of each message the dead-letter handler sent back, in order."""
        payloads = [json.loads(body) for body in self.bodies]
        return [(p["jobId"], p["redrives"]) for p in payloads if "redrives" in p]


# --- the harness ------------------------------------------------------------------------------


class FaultHarness(Harness):
    """The shared harness (tests/harness.py) with the pipeline's sources, the event
    sources' failure semantics, and the invariants every test checks."""

    def __init__(self, pipeline: Pipeline, tenant: str, batch_size: int = 5) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.tenant = tenant
        self.derived_bucket = app_settings().derived_bucket
        self.jobs_table = app_settings().jobs_table
        self._dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.history = JobHistory(self.job_status)
        self.writes = OutputWrites(self.derived_bucket, self._was_completed)
        self.sent = SentMessages(clients.sqs())
        self.sources = EventSources(self, pipeline, batch_size)

    def _was_completed(self, job_id: str) -> bool:
        return self.job_status(job_id) == COMPLETED or self.history.reached(job_id, COMPLETED)

    def use_batch_size(self, batch_size: int) -> None:
        self.sources.worker = self.sources.worker_poller(batch_size)

    # --- driving ---

    def submit(self, name: str, *, notify: bool = True) -> Submitted:
        source = SOURCES[name]
        assert source.expected != COMPLETED or source.digest in _CLEAN_RUNS, name
        upload = self.pipeline.request_upload(contentType=source.content_type)
        self.pipeline.post_file(upload, source.data)
        key = self.pipeline.source_key(upload)
        submitted = Submitted(upload["jobId"], key, source, self.pipeline.upload_event(key))
        self.history.watch(submitted.job_id)
        if notify:
            self.sources.deliver(submitted.event)
        return submitted

    def duplicate_sent_messages(self) -> None:
        for body in list(self.sent.bodies):
            self.pipeline.sqs.send_message(QueueUrl=self.pipeline.queues.jobs_url, MessageBody=body)

    # --- observing, from outside the code under test ---

    def job_status(self, job_id: str) -> str | None:
        item = self._dynamodb.get_item(
            TableName=self.jobs_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
        ).get("Item")
        return item["status"]["S"] if item else None

    def job_attempts(self, job_id: str) -> int:
        """How many times the worker claimed the job."""
        item = self._dynamodb.get_item(
            TableName=self.jobs_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
        )["Item"]
        return int(item["attempts"]["N"])

    def derived_objects(self, job: Submitted) -> dict[str, bytes]:
        prefix = f"{self.tenant}/{job.job_id}/"
        listing = self.pipeline.s3.list_objects_v2(Bucket=self.derived_bucket, Prefix=prefix)
        return {
            item["Key"].removeprefix(prefix): self.pipeline.s3.get_object(
                Bucket=self.derived_bucket, Key=item["Key"]
            )["Body"].read()
            for item in listing.get("Contents", [])
        }

    def queue_depth(self, url: str) -> int:
        attributes = self.pipeline.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def listed_job_ids(self) -> set[str]:
        found: set[str] = set()
        path = "/jobs?limit=100"
        while True:
            response = self.pipeline.client.http.get(path, headers=bearer(self.pipeline.api_key))
            assert response.status_code == 200, response.body
            page = response.json_body
            found.update(job["jobId"] for job in page["jobs"])
            if not page["nextCursor"]:
                return found
            path = f"/jobs?limit=100&cursor={page['nextCursor']}"

    # --- the invariants ---

    def assert_settled(
        self, submitted: list[Submitted], *, exact: bool = True, rendered_once: bool = True
    ) -> dict[str, str]:
        """Every invariant; returns each job's outcome (COMPLETED or its failure code).

        `exact`: each job ends as its source dictates; otherwise a job may also have been
        given up (FAILED processing_failed) after its retries. `rendered_once`: no output
        was written twice (only true when no fault struck between the outputs' writes and
        the job's completion)."""
        pipeline = self.pipeline
        assert self.queue_depth(pipeline.queues.jobs_url) == 0, "the jobs queue is not empty"
        assert self.queue_depth(pipeline.queues.dlq_url) == 0, "the dead-letter queue is not empty"
        listed = self.listed_job_ids()
        outcomes = {}
        for job in submitted:
            view = pipeline.job(job.job_id)
            assert job.job_id in listed, f"job {job.job_id} is missing from GET /jobs"
            assert view["status"] in TERMINAL, f"job {job.job_id} is stuck in {view['status']}"
            outcome = self._outcome(job, view)
            self._assert_forward_only(job)
            allowed = {job.source.expected} if exact else {job.source.expected, PROCESSING_FAILED}
            assert outcome in allowed, f"{job.source.name} job ended {outcome}: {view}"
            outcomes[job.job_id] = outcome
        assert self.writes.after_completion() == [], "a COMPLETED job was rendered again"
        if rendered_once:
            twice = {key: n for key, n in self.writes.count().items() if n > 1}
            assert twice == {}, f"outputs written more than once: {twice}"
        return outcomes

    def _assert_forward_only(self, job: Submitted) -> None:
        statuses = self.history.statuses[job.job_id]
        ranks = [STATUS_ORDER.index(status) for status in statuses]
        assert ranks == sorted(ranks), f"job {job.job_id} went backwards: {statuses}"
        assert len([s for s in statuses if s in TERMINAL]) <= 1, f"ended twice: {statuses}"

    def _outcome(self, job: Submitted, view: dict[str, Any]) -> str:
        stored = self.derived_objects(job)
        clean = _CLEAN_RUNS.get(job.source.digest, {})
        if view["status"] == COMPLETED:
            assert view["error"] is None
            assert stored == clean, f"{job.source.name}: outputs differ from a clean run"
            assert len(view["outputs"]) == len(clean)
            return COMPLETED
        error = view["error"]
        assert_fixed_message(error)
        assert view["outputs"] == [], view
        assert set(stored) <= set(clean), f"a FAILED job left foreign objects: {sorted(stored)}"
        return str(error["code"])


def record_clean_runs(pipeline: Pipeline, tenant: str) -> None:
    for name in GOOD:
        source = SOURCES[name]
        if source.digest in _CLEAN_RUNS:
            continue
        job = pipeline.process(source.data, contentType=source.content_type)
        assert job["status"] == COMPLETED, job
        prefix = f"{tenant}/{job['jobId']}/"
        listing = pipeline.s3.list_objects_v2(Bucket=app_settings().derived_bucket, Prefix=prefix)
        _CLEAN_RUNS[source.digest] = {
            item["Key"].removeprefix(prefix): pipeline.s3.get_object(
                Bucket=app_settings().derived_bucket, Key=item["Key"]
            )["Body"].read()
            for item in listing["Contents"]
        }
        assert len(_CLEAN_RUNS[source.digest]) == len(job["outputs"]) == 3


@pytest.fixture
def tenant() -> str:
    return f"faults-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployed]:
    """One moto stack for the module: provisioning it is most of a test's cost, and every
    test here makes jobs of its own and leaves both queues empty."""
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in CREDENTIALS.items():
            patch.setenv(variable, value)
        with mock_aws():
            yield provision()


@pytest.fixture
def pipeline(
    deployment: Deployed, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    for variable, value in deployment.environment().items():
        monkeypatch.setenv(variable, value)
    reset_settings()
    clients.reset_clients()
    from app import app

    with Client(app, stage_name="test", project_dir=str(REPO)) as client:
        # A tenant of its own per test: GET /jobs then lists only this test's jobs.
        pipeline = Pipeline(client, deployment, auth.create_api_key(tenant))
        yield pipeline
    for url in (deployment.jobs_url, deployment.dlq_url):  # whatever a failed test left
        while messages := pipeline.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            for message in messages:
                pipeline.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def harness(pipeline: Pipeline, tenant: str) -> Iterator[FaultHarness]:
    record_clean_runs(pipeline, tenant)
    harness = FaultHarness(pipeline, tenant)
    with harness.history.recording(clients.dynamodb()), harness.writes.recording(clients.s3()):
        yield harness


# --- fault kinds --------------------------------------------------------------------------------

SERVICE_OF = {
    "GetObject": "s3",
    "PutObject": "s3",
    "DeleteObject": "s3",
    "GetItem": "dynamodb",
    "UpdateItem": "dynamodb",
    "SendMessage": "sqs",
    "DeleteMessage": "sqs",
}
THROTTLED = {
    "s3": ("SlowDown", 503),
    "dynamodb": ("ProvisionedThroughputExceededException", 400),
    "sqs": ("ThrottlingException", 400),
}
SERVER_ERROR = {
    "s3": ("InternalError", 500),
    "dynamodb": ("InternalServerError", 500),
    "sqs": ("InternalError", 500),
}
RAISED: dict[str, ErrorFactory] = {
    "connection_refused": connection_refused,
    "connection_reset": connection_reset,
    "read_timeout": read_timeout,
}
KINDS = ("throttled", "server_error", *RAISED, "lost_response")


def fault(operation: str, kind: str, *, times: int | None = 1, skip: int = 0, **more: Any) -> Fault:
    """`operation` failing the `kind` way: an AWS error answer, a connection failure, or a
    call that took effect but whose response never came back."""
    if kind == "lost_response":
        return Fault(operation, times=times, skip=skip, applied=True, **more)
    if kind in RAISED:
        return Fault(operation, times=times, skip=skip, raises=RAISED[kind], **more)
    code, status = (THROTTLED if kind == "throttled" else SERVER_ERROR)[SERVICE_OF[operation]]
    return Fault(operation, code=code, status=status, times=times, skip=skip, **more)


# --- transient errors in the worker -------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "kind", "times", "skip", "rendered_once"),
    [
        ("GetObject", "throttled", 2, 0, True),
        ("PutObject", "server_error", 2, 1, False),  # after a job's first output is stored
        ("PutObject", "connection_refused", 1, 5, False),  # mid-way through a sibling's outputs
        ("PutObject", "lost_response", 1, 2, False),  # the last output stored, reply lost
        ("UpdateItem", "throttled", 2, 0, True),
        ("UpdateItem", "lost_response", 2, 1, False),  # a status written, reply lost
        ("GetObject", "lost_response", 1, 0, True),
        ("DeleteObject", "server_error", 2, 0, True),  # a finished job's source, if deleted
    ],
)
def test_transient_worker_errors_are_retried_to_the_right_end(
    harness: FaultHarness, operation: str, kind: str, times: int, skip: int, rendered_once: bool
) -> None:
    jobs = [harness.submit(name) for name in ("red", "text", "tall", "alpha", "truncated")]
    injected = fault(operation, kind, times=times, skip=skip)
    with harness.faulty(injected):
        harness.sources.settle()
    if operation in ("GetObject", "PutObject", "UpdateItem"):  # calls every job must make
        assert injected.failed == times
    harness.assert_settled(jobs, rendered_once=rendered_once)


def test_the_same_errors_on_every_operation_at_once_still_end_every_job(
    harness: FaultHarness,
) -> None:
    jobs = [harness.submit(name) for name in ("red", "tall", "text", "alpha")]
    faults = [
        fault(operation, kind, times=1, skip=skip)
        for skip, (operation, kind) in enumerate(
            [
                ("DeleteObject", "throttled"),
                ("UpdateItem", "connection_reset"),
                ("GetObject", "server_error"),
                ("PutObject", "lost_response"),
            ]
        )
    ]
    with harness.faulty(*faults):
        harness.sources.settle()
    # Four failed receives may fall on one message: it may have been given up, never stuck.
    harness.assert_settled(jobs, exact=False, rendered_once=False)


# --- the dispatcher -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "kind", "times"),
    [
        ("SendMessage", "server_error", 2),
        ("SendMessage", "connection_refused", 1),
        ("SendMessage", "lost_response", 2),  # sent, but the dispatcher does not know it
        ("UpdateItem", "throttled", 2),
        ("UpdateItem", "lost_response", 1),  # QUEUED written, reply lost
        ("UpdateItem", "connection_reset", 2),
    ],
)
def test_the_dispatcher_recovers_through_its_retries(
    harness: FaultHarness, operation: str, kind: str, times: int
) -> None:
    jobs = [harness.submit(name, notify=False) for name in ("red", "tall")]
    injected = fault(operation, kind, times=times)
    with harness.faulty(injected):
        for job in jobs:
            harness.sources.deliver(job.event)
    assert injected.failed == times
    assert harness.sources.dropped_events == 0
    harness.sources.settle()
    harness.assert_settled(jobs)


@pytest.mark.parametrize(
    ("operation", "outcomes"),
    [
        # The job stays PENDING with its upload stored: the sweeper dispatches it.
        ("UpdateItem", {COMPLETED}),
        # QUEUED, but no message was ever sent: past Lambda's maximum event age the
        # sweeper sends it again, and the job completes.
        ("SendMessage", {COMPLETED}),
    ],
)
def test_a_job_whose_dispatch_keeps_failing_is_ended_by_the_sweeper(
    harness: FaultHarness, operation: str, outcomes: set[str]
) -> None:
    lost = harness.submit("red", notify=False)
    with harness.faulty(fault(operation, "server_error", times=ASYNC_ATTEMPTS)):
        harness.sources.deliver(lost.event)
    healthy = harness.submit("tall")
    assert harness.sources.dropped_events == 1
    harness.sources.settle()
    assert harness.job_status(lost.job_id) not in TERMINAL
    harness.sources.sweeps_later()
    assert harness.assert_settled([healthy, lost], exact=False)[lost.job_id] in outcomes


# --- the worker's explicit deletes ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["server_error", "connection_reset", "lost_response"])
def test_failing_to_delete_finished_siblings_replays_them_harmlessly(
    harness: FaultHarness, kind: str
) -> None:
    jobs = [harness.submit(name) for name in ("red", "tall", "alpha", "text")]
    unlucky = jobs[1].job_id
    flaky_read = Fault("GetObject", code="InternalError", status=500, times=1,
                       when=url_contains(unlucky))  # fmt: skip
    deletes = fault("DeleteMessage", kind, times=1)
    with harness.faulty(flaky_read, deletes):
        harness.sources.settle()
    assert flaky_read.failed == 1
    assert deletes.failed == 1
    harness.assert_settled(jobs)


# --- invocations killed mid-batch -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kill",
    [
        pytest.param(lambda: Fault("PutObject", raises=killed, skip=3, times=1), id="after-job-1"),
        pytest.param(lambda: Fault("PutObject", raises=killed, skip=1, times=1), id="mid-outputs"),
        pytest.param(lambda: Fault("UpdateItem", raises=killed, times=1), id="first-status"),
        pytest.param(lambda: Fault("GetObject", raises=killed, skip=2, times=1), id="third-read"),
        pytest.param(
            lambda: Fault("DeleteMessage", raises=killed, times=1), id="while-deleting-siblings"
        ),
    ],
)
def test_a_worker_killed_mid_batch_loses_nothing(harness: FaultHarness, kill: Any) -> None:
    jobs = [harness.submit(name) for name in ("red", "tall", "alpha", "truncated")]
    # A read failing once makes the worker delete the finished siblings explicitly.
    flaky_read = Fault("GetObject", code="SlowDown", times=1, when=url_contains(jobs[2].job_id))
    killer = kill()
    faults = (killer, flaky_read) if killer.operation == "DeleteMessage" else (killer,)
    with harness.faulty(*faults):
        harness.sources.settle()
    assert killer.failed == 1
    assert harness.sources.kills == 1
    harness.assert_settled(jobs, rendered_once=False)


@pytest.mark.parametrize("calls", [0, 5, 11, 17])
def test_a_killed_batch_comes_back_after_its_visibility_timeout(
    harness: FaultHarness, calls: int
) -> None:
    jobs = [harness.submit(name) for name in ("red", "text", "tall", "alpha")]
    switch = KillSwitch(after=calls)
    with switch.armed(app_clients()):
        harness.sources.settle()
    assert switch.fired
    harness.assert_settled(jobs, rendered_once=False)


def test_a_job_that_kills_its_worker_every_time_is_given_up(harness: FaultHarness) -> None:
    harness.use_batch_size(1)
    poison, *others = [harness.submit(name) for name in ("red", "tall", "alpha")]
    deadly = Fault("GetObject", raises=killed, when=url_contains(poison.job_id))
    with harness.faulty(deadly):
        harness.sources.settle()
    assert deadly.failed == 3  # the queue's maxReceiveCount
    outcomes = harness.assert_settled([poison, *others], exact=False)
    assert outcomes == {
        poison.job_id: PROCESSING_FAILED,
        **{job.job_id: COMPLETED for job in others},
    }


def test_a_job_that_kills_its_worker_does_not_take_its_batch_down(harness: FaultHarness) -> None:
    poison, *siblings = [harness.submit(name) for name in ("red", "tall", "alpha", "red")]
    deadly = Fault("GetObject", raises=killed, when=url_contains(poison.job_id))
    with harness.faulty(deadly):
        harness.sources.settle()
    # Killed on each of its receives, and no more: it was not sent back.
    assert deadly.failed == dead_letters.MAX_RECEIVE_COUNT
    outcomes = harness.assert_settled([poison, *siblings], exact=False)
    assert outcomes[poison.job_id] == PROCESSING_FAILED
    # The siblings never ran while the poison came first in their batch: the dead-letter
    # handler sent each back once, and each then rendered exactly what a clean run does.
    assert [outcomes[job.job_id] for job in siblings] == [COMPLETED] * len(siblings)
    assert sorted(harness.sent.redriven()) == sorted((job.job_id, 1) for job in siblings)
    for job in siblings:
        assert harness.derived_objects(job) == _CLEAN_RUNS[job.source.digest]
        assert harness.job_attempts(job.job_id) == 1
    assert harness.job_attempts(poison.job_id) == dead_letters.MAX_RECEIVE_COUNT


def test_a_poison_behind_another_in_its_batch_is_still_given_up(harness: FaultHarness) -> None:
    """The second poison is collateral damage of the first at first; sent back, it kills
    its worker on every receive of its own, and ends FAILED like the first."""
    first, sibling, second = [harness.submit(name) for name in ("red", "tall", "alpha")]
    deadly = [
        Fault("GetObject", raises=killed, when=url_contains(job.job_id)) for job in (first, second)
    ]
    with harness.faulty(*deadly):
        harness.sources.settle()
    outcomes = harness.assert_settled([first, sibling, second], exact=False)
    assert outcomes == {
        first.job_id: PROCESSING_FAILED,
        sibling.job_id: COMPLETED,
        second.job_id: PROCESSING_FAILED,
    }
    assert [fault.failed for fault in deadly] == [dead_letters.MAX_RECEIVE_COUNT] * 2
    assert [harness.job_attempts(job.job_id) for job in (first, second)] == [
        dead_letters.MAX_RECEIVE_COUNT
    ] * 2
    assert sorted(harness.sent.redriven()) == sorted([(sibling.job_id, 1), (second.job_id, 1)])


def test_a_message_that_keeps_coming_back_to_the_dead_letter_queue_ends(
    harness: FaultHarness,
) -> None:
    """A job whose invocation dies before it is ever claimed looks like collateral damage
    every time: it is sent back MAX_REDRIVES times, then given up."""
    job = harness.submit("red")
    dies_at_claim = Fault("UpdateItem", raises=killed, when=body_contains(job.job_id))
    for _ in range(dead_letters.MAX_REDRIVES + 1):
        with harness.faulty(dies_at_claim):
            while harness.sources.poll_worker():
                pass
        assert harness.queue_depth(harness.pipeline.queues.dlq_url) == 1
        assert harness.job_status(job.job_id) == "QUEUED"
        harness.sources.poll_dead_letters()
    assert dies_at_claim.failed == dead_letters.MAX_RECEIVE_COUNT * (dead_letters.MAX_REDRIVES + 1)
    assert harness.sent.redriven() == [
        (job.job_id, n) for n in range(1, dead_letters.MAX_REDRIVES + 1)
    ]
    assert harness.assert_settled([job], exact=False) == {job.job_id: PROCESSING_FAILED}
    assert harness.job_attempts(job.job_id) == 0


# --- duplicates and reordering ------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 10], ids=["in-two-batches", "in-one-batch"])
def test_duplicated_events_and_messages_render_once(harness: FaultHarness, batch_size: int) -> None:
    harness.use_batch_size(batch_size)
    first = harness.submit("red")
    second = harness.submit("text")
    third = harness.submit("tall")
    harness.sources.deliver(first.event)  # S3 delivers at least once, in any order
    harness.duplicate_sent_messages()  # and so does SQS
    assert harness.queue_depth(harness.pipeline.queues.jobs_url) >= 6
    harness.sources.settle()
    harness.assert_settled([first, second, third])
    for job in (first, third, second):  # late duplicates of every event change nothing
        harness.sources.deliver(job.event)
    harness.duplicate_sent_messages()
    harness.sources.settle()
    harness.assert_settled([first, second, third])


@contextmanager
def dead_lettered(harness: FaultHarness, job: Submitted) -> Iterator[None]:
    """The job's message fails all its receives and lands in the dead-letter queue,
    unhandled until the block ends."""
    failing = Fault("GetObject", code="InternalError", status=500, when=url_contains(job.job_id))
    with harness.faulty(failing):
        while harness.sources.poll_worker():
            pass
    assert failing.failed == 3
    assert harness.queue_depth(harness.pipeline.queues.dlq_url) == 1
    yield
    harness.sources.settle()


def test_a_dead_letter_after_a_duplicate_completed_the_job_changes_nothing(
    harness: FaultHarness,
) -> None:
    job = harness.submit("red")
    with dead_lettered(harness, job):
        harness.duplicate_sent_messages()
        while harness.sources.poll_worker():
            pass
        assert harness.job_status(job.job_id) == COMPLETED
    assert harness.assert_settled([job]) == {job.job_id: COMPLETED}


def test_a_duplicate_after_the_dead_letter_failed_the_job_changes_nothing(
    harness: FaultHarness,
) -> None:
    job = harness.submit("red")
    with dead_lettered(harness, job):
        harness.sources.poll_dead_letters()
        harness.duplicate_sent_messages()
        harness.sources.deliver(job.event)
    assert harness.assert_settled([job], exact=False) == {job.job_id: PROCESSING_FAILED}
    assert harness.writes.count() == {}


def test_the_dead_letter_handler_retries_its_own_transient_errors(harness: FaultHarness) -> None:
    job = harness.submit("tall")
    sibling = harness.submit("red")
    with (
        dead_lettered(harness, job),
        harness.faulty(fault("UpdateItem", "throttled", times=2, when=body_contains(job.job_id))),
    ):
        harness.sources.poll_dead_letters()
        harness.sources.poll_dead_letters()
    outcomes = harness.assert_settled([job, sibling], exact=False)
    assert outcomes == {job.job_id: PROCESSING_FAILED, sibling.job_id: COMPLETED}


# --- a drawn fault schedule ---------------------------------------------------------------------

WORKER_OPERATIONS = (
    "GetObject", "PutObject", "DeleteObject", "GetItem", "UpdateItem", "DeleteMessage",
)  # fmt: skip
DISPATCH_OPERATIONS = ("GetItem", "UpdateItem", "SendMessage", "DeleteObject")


@dataclass(frozen=True)
class FaultSpec:
    operation: str
    kind: str
    skip: int
    times: int

    def build(self) -> Fault:
        return fault(self.operation, self.kind, times=self.times, skip=self.skip)


@dataclass(frozen=True)
class Schedule:
    sources: list[str]
    batch_size: int
    dispatch_faults: list[FaultSpec]
    worker_faults: list[FaultSpec]
    kill_after: int | None
    duplicate_events: list[int]
    duplicate_messages: bool
    late_events: bool = field(default=False)


def fault_specs(operations: tuple[str, ...], max_times: int) -> st.SearchStrategy[FaultSpec]:
    return st.builds(
        FaultSpec,
        operation=st.sampled_from(operations),
        kind=st.sampled_from(KINDS),
        skip=st.integers(0, 6),
        times=st.integers(1, max_times),
    )


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    sources = draw(st.lists(st.sampled_from(sorted(SOURCES)), min_size=1, max_size=4))
    return Schedule(
        sources=sources,
        batch_size=draw(st.sampled_from([1, 2, 5])),
        # At most 2 failed dispatches in all: each S3 event has 3 asynchronous attempts.
        dispatch_faults=draw(st.lists(fault_specs(DISPATCH_OPERATIONS, 1), max_size=2)),
        worker_faults=draw(st.lists(fault_specs(WORKER_OPERATIONS, 2), max_size=3)),
        kill_after=draw(st.none() | st.integers(0, 40)),
        duplicate_events=draw(st.lists(st.integers(0, len(sources) - 1), max_size=2)),
        duplicate_messages=draw(st.booleans()),
        late_events=draw(st.booleans()),
    )


EXPLORE = int(os.environ.get("FAULT_EXAMPLES", "0"))  # more, and random, when asked


@settings(
    max_examples=EXPLORE or 20,
    derandomize=not EXPLORE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schedule=schedules())
def test_any_fault_schedule_keeps_the_invariants(harness: FaultHarness, schedule: Schedule) -> None:
    harness.use_batch_size(schedule.batch_size)
    harness.sent.bodies.clear()
    harness.sources.dropped_events = 0
    jobs = [harness.submit(name, notify=False) for name in schedule.sources]
    dispatch_faults = [spec.build() for spec in schedule.dispatch_faults]
    with harness.faulty(*dispatch_faults):
        for job in jobs:
            harness.sources.deliver(job.event)
        for index in schedule.duplicate_events:  # again, after the others: out of order
            harness.sources.deliver(jobs[index].event)
    assert harness.sources.dropped_events == 0
    if schedule.duplicate_messages:
        harness.duplicate_sent_messages()
    worker_faults = [spec.build() for spec in schedule.worker_faults]
    switch = KillSwitch(after=schedule.kill_after if schedule.kill_after is not None else 10**9)
    with harness.faulty(*worker_faults), switch.armed(app_clients()):
        harness.sources.settle()
    # Each failed invocation costs each message in its batch at most one receive: with at
    # most 2 of them no message can reach the dead-letter queue (maxReceiveCount 3).
    failures = sum(f.failed for f in worker_faults) + switch.fired
    harness.assert_settled(jobs, exact=failures <= 2, rendered_once=False)
    if schedule.late_events:
        for job in jobs:
            harness.sources.deliver(job.event)
        harness.sources.settle()
        harness.assert_settled(jobs, exact=failures <= 2, rendered_once=False)
