"""The sweeper ends every job an event or a message left open: lost S3 events are
dispatched, uploads that never came end `upload_expired`, a QUEUED job whose message was
never sent gets it within hours, jobs whose message can no longer arrive end
`processing_failed`. A job that moves meanwhile wins; a run's work is bounded; a second
run does nothing the first did not.

Time is the sweeper's injectable clock (`sweep(now=...)`), or the jobs' own timestamps
moved back (`Pipeline.backdate`) where the scheduled handler runs on the real clock.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import clients, jobs, sweeper
from chalicelib.config import reset_settings, settings
from chalicelib.errors import SweepIncomplete, TransientError
from chalicelib.jobs import JobStatus
from chalicelib.timestamps import now_iso
from devstack import runner
from infra import stack
from tests.faults import aws_fault
from tests.pipeline import Pipeline, claim_job, new_job, queue_job
from tests.resources import Queues
from tests.samples import jpeg

TEMPLATE = stack.load_template()
EXPIRED = sweeper.UPLOAD_EXPIRED
STUCK = sweeper.STUCK
REQUEUED = sweeper.REQUEUED
ASYNC_ATTEMPTS = 3  # Lambda's asynchronous invocation: the first try and two retries


def pending_age() -> timedelta:
    config = settings()
    return timedelta(seconds=config.upload_url_ttl_seconds + config.sweep_pending_grace_seconds)


def stuck_age() -> timedelta:
    config = settings()
    return timedelta(
        seconds=config.jobs_queue_retention_seconds
        + config.jobs_queue_visibility_timeout_seconds
        + config.sweep_stuck_margin_seconds
    )


def requeue_age() -> timedelta:
    return timedelta(seconds=settings().sweep_requeue_after_seconds)


def after(age: timedelta, slack: timedelta = timedelta(minutes=1)) -> datetime:
    """The clock `age` + `slack` from now (a negative `slack`: just before)."""
    return datetime.now(UTC) + age + slack


def current(job_id: str) -> jobs.Job:
    job = jobs.get_job(job_id)
    assert job is not None
    return job


def index_members() -> dict[str, str]:
    """jobId -> openShard of every entry of the open-jobs index (a test may scan it)."""
    response = clients.dynamodb().scan(
        TableName=settings().jobs_table, IndexName=jobs.OPEN_JOBS_INDEX
    )
    return {item["jobId"]["S"]: item["openShard"]["S"] for item in response["Items"]}


def messages(queues: Queues) -> int:
    attributes = clients.sqs().get_queue_attributes(
        QueueUrl=queues.jobs_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(count) for count in attributes.values())


def lose_messages(queues: Queues) -> None:
    clients.sqs().purge_queue(QueueUrl=queues.jobs_url)


def take_messages(queues: Queues) -> list[str]:
    """Receive and delete every message on the jobs queue; the job ids they name."""
    sqs = clients.sqs()
    taken: list[str] = []
    while True:
        received = sqs.receive_message(QueueUrl=queues.jobs_url, MaxNumberOfMessages=10)
        batch = received.get("Messages", [])
        if not batch:
            return taken
        for message in batch:
            taken.append(json.loads(message["Body"])["jobId"])
            sqs.delete_message(QueueUrl=queues.jobs_url, ReceiptHandle=message["ReceiptHandle"])


def unsent_upload(pipeline: Pipeline) -> tuple[str, str]:
    """An upload whose event failed on every attempt after the write that queued its job:
    the job is QUEUED on the upload's version and no message was sent. Its id and key."""
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    version = pipeline.post_file(upload, jpeg(640, 480))
    with aws_fault(clients.sqs(), "SendMessage", code="InternalError", status=500) as fault:
        for _ in range(ASYNC_ATTEMPTS):
            with pytest.raises(TransientError):
                pipeline.notify_upload(key)
    assert fault.failed == ASYNC_ATTEMPTS
    job = current(upload["jobId"])
    assert (job.status, job.source_version, job.requeues) == (JobStatus.QUEUED, version, 0)
    assert messages(pipeline.queues) == 0
    return job.job_id, key


@contextmanager
def meanwhile(client: Any, event: str, action: Callable[[], object]) -> Iterator[None]:
    """Run `action` once, at the first `event` (botocore's "before-call.<service>.<Op>" or
    "after-call..."), on `client`: another function doing its work at that very moment."""
    done = False

    def hook(**_: Any) -> None:
        nonlocal done
        if not done:
            done = True  # first: `action` may make the same call on the same client
            action()

    client.meta.events.register(event, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event, hook)


@contextmanager
def counting(client: Any, operation: str) -> Iterator[Counter[str]]:
    counts: Counter[str] = Counter()

    def count(**_: Any) -> None:
        counts[operation] += 1

    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event, count)
    try:
        yield counts
    finally:
        client.meta.events.unregister(event, count)


# --- the open-jobs index --------------------------------------------------------------------


def test_open_jobs_are_in_the_index_under_their_status_ended_ones_until_announced(
    aws: Queues,
) -> None:
    job = new_job()
    shard = jobs.open_shard(job.job_id, JobStatus.PENDING).split("#")[1]
    assert index_members()[job.job_id] == f"PENDING#{shard}"
    queue_job(job.job_id, size=10)
    assert index_members()[job.job_id] == f"QUEUED#{shard}"
    claim_job(job.job_id)
    assert index_members()[job.job_id] == f"PROCESSING#{shard}"
    completed = jobs.complete(job.job_id, source={"bytes": 10}, outputs=[]).job
    assert completed is not None
    assert completed.event_id is not None
    # Ended, the job waits in an event shard until its event is handed over.
    assert index_members()[job.job_id] == f"{jobs.EVENT_SHARD}#{shard}"
    assert jobs.mark_announced(job.job_id, completed.event_id)
    assert job.job_id not in index_members()
    assert not jobs.mark_announced(job.job_id, completed.event_id)

    failed = new_job()
    ended = jobs.fail(failed.job_id, code="corrupt_image", message="broken").job
    assert ended is not None
    assert ended.event_id is not None
    assert not jobs.mark_announced(failed.job_id, "evt_another")
    assert jobs.mark_announced(failed.job_id, ended.event_id)
    item = clients.dynamodb().get_item(
        TableName=settings().jobs_table, Key={"jobId": {"S": failed.job_id}}
    )["Item"]
    assert jobs.OPEN_SHARD not in item
    assert item["status"]["S"] == JobStatus.FAILED
    assert item["eventId"]["S"] == ended.event_id


def test_open_jobs_spread_over_the_shards(aws: Queues) -> None:
    shards = {jobs.open_shard(jobs.new_job_id(), JobStatus.PENDING) for _ in range(200)}
    assert shards == {f"PENDING#{i}" for i in range(jobs.OPEN_SHARDS)}


def test_the_query_finds_only_jobs_older_than_the_cutoff(aws: Queues) -> None:
    before = [new_job().job_id, new_job().job_id]
    cutoff = now_iso()
    newer = new_job()
    found = {job.job_id for job in jobs.open_jobs_before(JobStatus.PENDING, cutoff, per_shard=10)}
    assert found == set(before)
    assert newer.job_id not in found
    assert jobs.open_jobs_before(JobStatus.QUEUED, cutoff, per_shard=10) == []


# --- PENDING: a lost upload event, or no upload -------------------------------------------


def test_a_lost_upload_event_is_dispatched_and_the_job_completes(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    first = pipeline.post_file(upload, jpeg(640, 480))
    second = pipeline.post_file(upload, jpeg(320, 240))  # both events lost
    assert pipeline.versions(key) == [second, first]
    pipeline.backdate(upload["jobId"], (pending_age() + timedelta(minutes=1)).total_seconds())

    pipeline.sweep()

    queued = current(upload["jobId"])
    assert (queued.status, queued.source_version) == (JobStatus.QUEUED, first)
    assert pipeline.versions(key) == [first], "the later upload was kept"
    pipeline.worker().drain()
    done = pipeline.job(upload["jobId"])
    assert done["status"] == "COMPLETED"
    assert (done["source"]["width"], done["source"]["height"]) == (640, 480)
    assert {output["preset"] for output in done["outputs"]} == {"thumb", "small", "large"}
    assert pipeline.versions(key) == []


def test_a_later_upload_left_behind_does_not_fail_the_dispatch(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    first = pipeline.post_file(upload, jpeg(640, 480))
    second = pipeline.post_file(upload, jpeg(320, 240))

    with aws_fault(clients.s3(), "DeleteObject", code="InternalError", status=500):
        report = sweeper.sweep(now=after(pending_age()))

    assert report.counts == Counter({sweeper.DISPATCHED: 1})
    assert current(upload["jobId"]).source_version == first
    assert pipeline.versions(key) == [second, first]  # the lifecycle rule expires it


def test_an_upload_that_never_came_ends_upload_expired(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    pipeline.backdate(upload["jobId"], (pending_age() + timedelta(minutes=1)).total_seconds())

    pipeline.sweep()

    job = pipeline.job(upload["jobId"])
    assert job["status"] == "FAILED"
    assert job["error"] == {"code": "upload_expired", "message": sweeper.UPLOAD_EXPIRED_MESSAGE}
    assert upload["jobId"] not in index_members()
    # An upload that still arrives changes nothing and is not kept.
    key = pipeline.source_key(upload)
    pipeline.post_file(upload, jpeg())
    pipeline.notify_upload(key)
    assert pipeline.job(upload["jobId"]) == job
    assert pipeline.versions(key) == []


def test_pending_jobs_are_left_alone_until_the_upload_url_expires_and_the_grace(
    pipeline: Pipeline,
) -> None:
    waiting = pipeline.request_upload()
    uploaded = pipeline.request_upload()
    pipeline.post_file(uploaded, jpeg())  # its event is still on its way

    report = sweeper.sweep(now=after(pending_age(), -timedelta(minutes=1)))

    assert report.counts == Counter()
    assert current(waiting["jobId"]).status == JobStatus.PENDING
    assert current(uploaded["jobId"]).status == JobStatus.PENDING
    assert messages(pipeline.queues) == 0


# --- QUEUED: a message never sent is sent again ----------------------------------------------


def test_a_job_whose_message_was_never_sent_is_sent_again_and_completes(
    pipeline: Pipeline,
) -> None:
    job_id, key = unsent_upload(pipeline)
    assert sweeper.sweep(now=after(requeue_age(), -timedelta(minutes=1))).counts == Counter()
    pipeline.backdate(job_id, (requeue_age() + timedelta(minutes=1)).total_seconds())
    backdated = current(job_id)

    pipeline.sweep()

    requeued = current(job_id)
    assert (requeued.status, requeued.requeues) == (JobStatus.QUEUED, 1)
    assert requeued.updated_at > backdated.updated_at
    assert messages(pipeline.queues) == 1
    pipeline.worker().drain()
    done = pipeline.job(job_id)
    assert done["status"] == "COMPLETED"
    assert (done["source"]["width"], done["source"]["height"]) == (640, 480)
    assert {output["preset"] for output in done["outputs"]} == {"thumb", "small", "large"}
    assert pipeline.versions(key) == []


def test_only_a_job_still_queued_is_sent_again(pipeline: Pipeline) -> None:
    unsent, _ = unsent_upload(pipeline)
    claimed = new_job()
    queue_job(claimed.job_id, size=10)
    claim_job(claimed.job_id)
    lose_messages(pipeline.queues)

    report = sweeper.sweep(now=after(requeue_age()))

    assert report.counts == Counter({REQUEUED: 1})
    assert take_messages(pipeline.queues) == [unsent]
    still = current(claimed.job_id)
    assert (still.status, still.attempts, still.requeues) == (JobStatus.PROCESSING, 1, 0)


def test_a_worker_claiming_the_job_during_the_sweep_wins(aws: Queues) -> None:
    job = new_job()
    upload = jobs.Upload(job.job_id, job.tenant, job.source_key, "v1")
    jobs.queue_upload(upload, size=10, etag="e")

    # The worker's claim lands between the sweeper's query and its requeue write.
    with meanwhile(
        clients.dynamodb(), "before-call.dynamodb.UpdateItem", lambda: jobs.claim(upload)
    ):
        report = sweeper.sweep(now=after(requeue_age()))

    assert report.counts == Counter({sweeper.SKIPPED: 1})
    final = current(job.job_id)
    assert (final.status, final.attempts, final.requeues) == (JobStatus.PROCESSING, 1, 0)
    assert messages(aws) == 0


def test_overlapping_runs_send_the_message_once(pipeline: Pipeline) -> None:
    job_id, _ = unsent_upload(pipeline)
    now = after(requeue_age())

    with meanwhile(
        clients.dynamodb(), "before-call.dynamodb.UpdateItem", lambda: sweeper.sweep(now=now)
    ):
        report = sweeper.sweep(now=now)

    assert report.counts == Counter({sweeper.SKIPPED: 1})
    assert current(job_id).requeues == 1
    assert take_messages(pipeline.queues) == [job_id]


def test_a_failed_resend_spends_its_turn_and_the_next_interval_sends_it(
    pipeline: Pipeline,
) -> None:
    job_id, _ = unsent_upload(pipeline)

    with (
        aws_fault(clients.sqs(), "SendMessage", code="InternalError", status=500, times=1),
        pytest.raises(SweepIncomplete),
    ):
        sweeper.sweep(now=after(requeue_age()))

    assert (current(job_id).requeues, messages(pipeline.queues)) == (1, 0)
    # Writes carry the real clock: the recorded attempt starts a new interval.
    assert sweeper.sweep(now=after(requeue_age(), -timedelta(minutes=1))).counts == Counter()
    assert sweeper.sweep(now=after(requeue_age())).counts == Counter({REQUEUED: 1})
    assert take_messages(pipeline.queues) == [job_id]
    assert current(job_id).requeues == 2


def test_after_its_requeues_a_job_ends_processing_failed_at_the_old_threshold(
    pipeline: Pipeline,
) -> None:
    job_id, _ = unsent_upload(pipeline)
    allowed = settings().sweep_max_requeues
    assert allowed == 3
    for requeues in range(1, allowed + 1):
        assert sweeper.sweep(now=after(requeue_age())).counts == Counter({REQUEUED: 1})
        assert current(job_id).requeues == requeues
        assert take_messages(pipeline.queues) == [job_id]  # and lost again

    with counting(clients.sqs(), "SendMessage") as sends:
        for now in (after(requeue_age()), after(stuck_age(), -timedelta(minutes=1))):
            assert sweeper.sweep(now=now).counts == Counter({sweeper.REQUEUES_SPENT: 1})
    assert sends["SendMessage"] == 0
    assert (current(job_id).status, current(job_id).requeues) == (JobStatus.QUEUED, allowed)

    # The stuck rule counts from the last write: the last message sent.
    assert sweeper.sweep(now=after(stuck_age())).counts == Counter({STUCK: 1})
    failed = current(job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.error == {"code": "processing_failed", "message": sweeper.STUCK_MESSAGE}
    assert job_id not in index_members()


def test_only_the_requeue_write_keeps_a_job_queued(aws: Queues) -> None:
    job = new_job()
    queue_job(job.job_id, size=10)
    assert not queue_job(job.job_id, size=10).moved  # QUEUED -> QUEUED is none
    (seen,) = jobs.open_jobs_before(JobStatus.QUEUED, now_iso(), per_shard=10)

    requeued = jobs.requeue_unchanged(seen, max_requeues=1)
    assert requeued.moved
    assert requeued.job is not None
    assert (requeued.job.status, requeued.job.requeues) == (JobStatus.QUEUED, 1)
    assert index_members()[job.job_id] == jobs.open_shard(job.job_id, JobStatus.QUEUED)
    # Read before that write: refused, and the job comes back as it stands.
    assert jobs.requeue_unchanged(seen, max_requeues=5) == jobs.Transition(False, requeued.job)
    (again,) = jobs.open_jobs_before(JobStatus.QUEUED, now_iso(), per_shard=10)
    assert not jobs.requeue_unchanged(again, max_requeues=1).moved  # its requeues are spent
    claim_job(job.job_id)
    assert not jobs.requeue_unchanged(again, max_requeues=5).moved  # claimed since
    (claimed,) = jobs.open_jobs_before(JobStatus.PROCESSING, now_iso(), per_shard=10)
    assert not jobs.requeue_unchanged(claimed, max_requeues=5).moved  # only QUEUED stays
    final = current(job.job_id)
    assert (final.status, final.requeues) == (JobStatus.PROCESSING, 1)


# --- QUEUED and PROCESSING: the message can no longer arrive --------------------------------


def test_jobs_whose_message_was_lost_end_processing_failed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_MAX_REQUEUES", "0")  # the rule alone, without re-sends
    reset_settings()
    queued = pipeline.request_upload()
    pipeline.post_file(queued, jpeg())
    pipeline.notify_upload(pipeline.source_key(queued))
    claimed = new_job()
    queue_job(claimed.job_id, size=10)
    claim_job(claimed.job_id)
    lose_messages(pipeline.queues)  # dropped at the end of the queue's retention

    assert sweeper.sweep(now=after(stuck_age(), -timedelta(minutes=1))).counts == Counter()
    assert current(queued["jobId"]).status == JobStatus.QUEUED

    report = sweeper.sweep(now=after(stuck_age()))

    assert report.counts == Counter({STUCK: 2})
    for job_id in (queued["jobId"], claimed.job_id):
        job = current(job_id)
        assert job.status == JobStatus.FAILED
        assert job.error == {"code": "processing_failed", "message": sweeper.STUCK_MESSAGE}
    assert pipeline.job(queued["jobId"])["error"]["code"] == "processing_failed"


@pytest.mark.parametrize("move", ["completes", "claims it again"])
def test_a_worker_moving_the_job_at_the_same_moment_wins(aws: Queues, move: str) -> None:
    job = new_job()
    queue_job(job.job_id, size=10)
    claim_job(job.job_id)
    outputs = [{"preset": "thumb", "key": "acme/x/thumb.jpg"}]

    def worker() -> object:
        if move == "completes":
            return jobs.complete(job.job_id, source={"bytes": 10}, outputs=outputs)
        return claim_job(job.job_id)

    # The worker's write lands between the sweeper's query and its own write.
    with meanwhile(clients.dynamodb(), "before-call.dynamodb.UpdateItem", worker):
        report = sweeper.sweep(now=after(stuck_age()))

    assert report.counts == Counter({sweeper.SKIPPED: 1})
    final = current(job.job_id)
    assert final.error is None
    if move == "completes":
        assert (final.status, final.outputs) == (JobStatus.COMPLETED, outputs)
    else:
        assert (final.status, final.attempts) == (JobStatus.PROCESSING, 2)


def test_an_upload_event_arriving_during_the_sweep_wins(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()
    key = pipeline.source_key(upload)
    version = pipeline.post_file(upload, jpeg())

    def late_event() -> None:
        pipeline.notify_upload(key, version)

    with meanwhile(clients.s3(), "before-call.s3.ListObjectVersions", late_event):
        report = sweeper.sweep(now=after(pending_age()))

    assert report.counts == Counter({sweeper.SKIPPED: 1})
    assert current(upload["jobId"]).source_version == version
    pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


def test_an_upload_finishing_during_the_sweep_is_not_expired(pipeline: Pipeline) -> None:
    upload = pipeline.request_upload()

    def upload_arrives() -> None:
        pipeline.post_file(upload, jpeg())
        pipeline.notify_upload(pipeline.source_key(upload))

    # The listing found nothing; the upload and its event land before the sweeper's write.
    with meanwhile(clients.s3(), "after-call.s3.ListObjectVersions", upload_arrives):
        report = sweeper.sweep(now=after(pending_age()))

    assert report.counts == Counter({sweeper.SKIPPED: 1})
    pipeline.worker().drain()
    assert pipeline.job(upload["jobId"])["status"] == "COMPLETED"


# --- bounded, idempotent, resumable ---------------------------------------------------------


def test_a_run_handles_at_most_its_budget_and_the_next_run_goes_on(
    aws: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_MAX_JOBS", "3")
    reset_settings()
    created = [new_job().job_id for _ in range(5)]
    now = after(pending_age())

    with counting(clients.dynamodb(), "UpdateItem") as writes:
        first = sweeper.sweep(now=now)
    assert first.counts == Counter({EXPIRED: 3})
    # Each ended job: its move, then its event's hand-over.
    assert writes["UpdateItem"] == 3 * 2
    assert sorted(current(job_id).status for job_id in created) == ["FAILED"] * 3 + ["PENDING"] * 2

    assert sweeper.sweep(now=now).counts == Counter({EXPIRED: 2})
    with counting(clients.dynamodb(), "Query") as queries:
        assert sweeper.sweep(now=now).counts == Counter()
    # Nothing left: one query per open status and shard, and per event shard.
    assert queries["Query"] == 4 * jobs.OPEN_SHARDS
    assert {current(job_id).error["code"] for job_id in created} == {EXPIRED}  # type: ignore[index]


# --- fair: one tenant's backlog does not delay another's ---------------------------------------


SCHEDULE = timedelta(minutes=5)  # app.py's rate, SWEEP_RATE_MINUTES


def test_a_flood_of_abandoned_uploads_does_not_delay_another_tenants(
    aws: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The case, scaled down: 10 jobs a run; tenant acme abandons 100 uploads (in
    # every shard, more than a run's budget), then globex abandons one.
    monkeypatch.setenv("SWEEP_MAX_JOBS", "10")
    reset_settings()
    flood = [new_job("acme").job_id for _ in range(100)]
    victim = new_job("globex").job_id
    # The first scheduled run after the victim's job is overdue: the documented time.
    first_run = after(pending_age(), slack=SCHEDULE)

    assert sweeper.sweep(now=first_run).counts == Counter({EXPIRED: 10})
    assert current(victim).error == {"code": EXPIRED, "message": sweeper.UPLOAD_EXPIRED_MESSAGE}
    left = [job_id for job_id in flood if current(job_id).status == JobStatus.PENDING]
    assert len(left) == 91  # acme's share: the rest of the run

    # The backlog drains at the run's whole budget once acme waits alone.
    for run in range(1, 11):
        report = sweeper.sweep(now=first_run + run * SCHEDULE)
        assert report.counts == Counter({EXPIRED: min(10, 91 - 10 * (run - 1))}), run
    assert {current(job_id).status for job_id in flood} == {JobStatus.FAILED}


def test_a_run_shares_its_budget_among_the_tenants_waiting(
    aws: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_MAX_JOBS", "6")
    reset_settings()
    waiting = {tenant: [new_job(tenant).job_id for _ in range(5)] for tenant in ("a", "b", "c")}
    late = new_job("d").job_id  # one job, created last

    assert sweeper.sweep(now=after(pending_age())).counts == Counter({EXPIRED: 6})
    ended = {
        tenant: sum(current(job_id).status == JobStatus.FAILED for job_id in ids)
        for tenant, ids in waiting.items()
    }
    assert current(late).status == JobStatus.FAILED
    # Tenants in the order of their oldest job: a, b, c, d, then a and b again.
    assert ended == {"a": 2, "b": 2, "c": 1}
    # Each tenant's oldest first.
    assert [current(job_id).status for job_id in waiting["a"][:3]] == ["FAILED"] * 2 + ["PENDING"]


def test_a_tenants_turns_go_to_each_of_its_overdue_statuses(aws: Queues) -> None:
    pending = [new_job().job_id for _ in range(3)]
    stuck = new_job().job_id
    claim_job(stuck)
    overdue = [
        (sweeper.UPLOAD_EXPIRED, job)
        for job in jobs.open_jobs_before(JobStatus.PENDING, now_iso(), per_shard=10)
    ] + [(STUCK, job) for job in jobs.open_jobs_before(JobStatus.PROCESSING, now_iso(), 10)]
    order = [job.job_id for _, job in sweeper.fair_share(overdue)]
    assert order == [pending[0], stuck, pending[1], pending[2]]


def test_two_runs_do_what_one_does(pipeline: Pipeline) -> None:
    lost = pipeline.request_upload()
    pipeline.post_file(lost, jpeg())
    expired = pipeline.request_upload()
    unsent, _ = unsent_upload(pipeline)
    pipeline.backdate(unsent, requeue_age().total_seconds())
    stuck = new_job()
    queue_job(stuck.job_id, size=10)
    pipeline.backdate(stuck.job_id, stuck_age().total_seconds())
    now = after(pending_age())

    first = sweeper.sweep(now=now)
    statuses = {job_id: current(job_id) for job_id in (lost["jobId"], expired["jobId"], unsent)}
    second = sweeper.sweep(now=now)

    assert first.counts == Counter({sweeper.DISPATCHED: 1, EXPIRED: 1, REQUEUED: 1, STUCK: 1})
    assert second.counts == Counter()
    assert {job_id: current(job_id) for job_id in statuses} == statuses
    assert current(unsent).requeues == 1
    assert current(stuck.job_id).status == JobStatus.FAILED
    assert sorted(take_messages(pipeline.queues)) == sorted([lost["jobId"], unsent])


def test_an_aws_failure_fails_the_run_and_the_next_run_retries(aws: Queues) -> None:
    created = [new_job().job_id for _ in range(2)]
    now = after(pending_age())

    with (
        aws_fault(clients.s3(), "ListObjectVersions", code="InternalError", status=500, times=1),
        pytest.raises(SweepIncomplete),
    ):
        sweeper.sweep(now=now)
    assert sorted(current(job_id).status for job_id in created) == ["FAILED", "PENDING"]

    assert sweeper.sweep(now=now).counts == Counter({EXPIRED: 1})
    assert {current(job_id).status for job_id in created} == {JobStatus.FAILED}


# --- settings, schedule, observability, local stack ------------------------------------------


def test_the_queue_defaults_are_the_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    # No stack: the defaults config.py falls back to (resource names have none).
    for variable in stack.ENVIRONMENT_OUTPUTS:
        monkeypatch.setenv(variable, "unused")
    for variable in ("JOB_TTL_DAYS", "JOBS_QUEUE_RETENTION_SECONDS", "ORIGINALS_RETENTION_DAYS"):
        monkeypatch.delenv(variable)
    monkeypatch.delenv("JOBS_QUEUE_VISIBILITY_TIMEOUT_SECONDS")
    monkeypatch.setenv("JOBS_QUEUE", "unused")
    parameters = TEMPLATE["Parameters"]
    config = settings()
    assert config.jobs_queue_retention_seconds == int(
        parameters["QueueRetentionSeconds"]["Default"]
    )
    visibility = stack.default_parameters("dev")["QueueVisibilityTimeoutSeconds"]
    assert config.jobs_queue_visibility_timeout_seconds == int(visibility)
    assert int(parameters["QueueVisibilityTimeoutSeconds"]["Default"]) == int(visibility)
    queue = TEMPLATE["Resources"]["JobsQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == {"Ref": "QueueRetentionSeconds"}
    assert queue["VisibilityTimeout"] == {"Ref": "QueueVisibilityTimeoutSeconds"}


def test_the_app_reads_the_deployed_queues_settings(aws: Queues) -> None:
    attributes = clients.sqs().get_queue_attributes(
        QueueUrl=aws.jobs_url, AttributeNames=["MessageRetentionPeriod", "VisibilityTimeout"]
    )["Attributes"]
    assert settings().jobs_queue_retention_seconds == int(attributes["MessageRetentionPeriod"])
    assert settings().jobs_queue_visibility_timeout_seconds == int(attributes["VisibilityTimeout"])


def test_the_sweeper_runs_every_five_minutes_by_default() -> None:
    from chalice.app import Rate, ScheduledEventConfig

    from app import app

    (schedule,) = [s for s in app.event_sources if isinstance(s, ScheduledEventConfig)]
    assert schedule.name == "sweep_jobs"
    expression = schedule.schedule_expression
    assert isinstance(expression, Rate)
    assert expression.to_string() == "rate(5 minutes)"


def test_sweeps_log_the_job_and_emit_metrics(
    aws: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    from chalicelib.observability import configure_logging, logger

    configure_logging()  # what importing app.py does
    job = new_job()
    handler: Any = logger.handlers[0]
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        sweeper.sweep(now=after(pending_age()))
    finally:
        handler.setStream(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (ended,) = [line for line in lines if line["message"] == "job ended by the sweeper"]
    assert (ended["jobId"], ended["code"], ended["status"]) == (job.job_id, EXPIRED, "PENDING")
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    names = [(m["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], m) for m in metrics]
    assert [m["action"] for name, m in names if name == "JobsSwept"] == [EXPIRED]
    assert [m["code"] for name, m in names if name == "JobsFailed"] == [EXPIRED]


class Ticks:
    """A stop signal that lets the loop run `count` times without waiting."""

    def __init__(self, count: int) -> None:
        self.left = count
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.left -= 1
        return self.left < 0


def test_the_local_stack_sweeps_every_interval_and_survives_a_failed_run(
    pipeline: Pipeline,
) -> None:
    upload = pipeline.request_upload()
    pipeline.backdate(upload["jobId"], (pending_age() + timedelta(minutes=1)).total_seconds())
    ticks = Ticks(2)

    with aws_fault(clients.dynamodb(), "Query", code="InternalServerError", status=500, times=1):
        runner.sweep_periodically(ticks, 7.5)

    assert ticks.waits == [7.5, 7.5, 7.5]
    assert pipeline.job(upload["jobId"])["error"]["code"] == "upload_expired"
