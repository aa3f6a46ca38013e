"""Webhook deliveries end to end in moto: a job ends, its event reaches a receiver on
127.0.0.1, signed (checked with the `standardwebhooks` package), retried on schedule,
logged, replayed; 410 disables the endpoint; a receiver that never answers is given up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks import Webhook

from chalicelib import (
    clients,
    deliveries,
    delivery_log,
    delivery_message,
    job_events,
    jobs,
    webhooks,
)
from chalicelib.config import reset_settings, settings
from chalicelib.delivery_log import DeliveryState
from chalicelib.webhook_schedule import JITTER, RETRY_WAITS_SECONDS
from devstack.lambda_events import SqsPoller
from devstack.webhooks import Receiver, receiver
from tests.faults import (
    Fault,
    InvocationKilled,
    KillSwitch,
    attached,
    body_contains,
    connection_reset,
)
from tests.harness import app_clients
from tests.images import encode, solid
from tests.pipeline import Pipeline, bearer

SCHEDULE = (0, 0, 0)  # WEBHOOK_RETRY_SCHEDULE: four attempts, no waiting


@pytest.fixture
def local_stage(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The pipeline with the local stage's outbound rules and a short retry schedule."""
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", ",".join(map(str, SCHEDULE)))
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "1")
    reset_settings()
    return pipeline


@pytest.fixture
def listening(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    script = getattr(request, "param", [200])
    with receiver(script) as running:
        yield running


def register(pipeline: Pipeline, url: str, key: str | None = None, **body: Any) -> Any:
    fields = {"url": url, "events": ["job.completed", "job.failed"], **body}
    response = pipeline.client.http.post(
        "/webhooks", headers=bearer(key or pipeline.api_key), body=json.dumps(fields)
    )
    assert response.status_code == 201, response.body
    return json.loads(response.body)


def webhooks_poller(pipeline: Pipeline) -> SqsPoller:
    url = clients.queue_url(settings().webhooks_queue)
    return pipeline._poller(url, "deliver_webhooks", 1)


def deliver(pipeline: Pipeline) -> None:
    webhooks_poller(pipeline).drain()


def photo() -> bytes:
    return encode(solid((30, 120, 200), (48, 32)), "JPEG")


def attempts(pipeline: Pipeline, job_id: str, key: str | None = None) -> list[dict[str, Any]]:
    response = pipeline.client.http.get(
        f"/jobs/{job_id}/deliveries", headers=bearer(key or pipeline.api_key)
    )
    assert response.status_code == 200, response.body
    return list(json.loads(response.body)["deliveries"])


def verify(secret: str, received: Any) -> dict[str, Any]:
    payload: dict[str, Any] = Webhook(secret).verify(received.body, received.headers)
    return payload


@pytest.mark.parametrize("listening", [[500, 503, 200]], indirect=True)
def test_a_receiver_failing_twice_gets_one_success_with_one_event_id(
    local_stage: Pipeline, listening: Receiver
) -> None:
    endpoint = register(local_stage, listening.url)
    job = local_stage.process(photo())
    assert job["status"] == "COMPLETED"
    deliver(local_stage)

    assert len(listening.received) == 3
    ids = {received.headers["webhook-id"] for received in listening.received}
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert ids == {stored.event_id}
    for received in listening.received:
        event = verify(endpoint["secret"], received)
        assert event["type"] == "job.completed"
        assert event["data"]["jobId"] == job["jobId"]
        assert event["data"]["status"] == "COMPLETED"
        # The job as GET /jobs/{id} shows it, without presigned URLs.
        assert [o["preset"] for o in event["data"]["outputs"]] == [
            o["preset"] for o in job["outputs"]
        ]
        assert all("url" not in output for output in event["data"]["outputs"])
        assert event["data"]["placeholder"] == job["placeholder"] is not None
    log = attempts(local_stage, job["jobId"])
    assert [(a["attempt"], a["status"]) for a in log] == [(1, 500), (2, 503), (3, 200)]
    assert all(a["endpointId"] == endpoint["id"] for a in log)
    assert all(a["latencyMs"] is not None and a["latencyMs"] >= 0 for a in log)
    assert log[0]["answer"] == "receiver says no"
    assert log[2]["answer"] == '{"ok": true}'


def test_a_failed_job_sends_job_failed(local_stage: Pipeline, listening: Receiver) -> None:
    endpoint = register(local_stage, listening.url)
    job = local_stage.process(b"this is not an image")
    assert job["status"] == "FAILED"
    deliver(local_stage)
    (received,) = listening.received
    event = verify(endpoint["secret"], received)
    assert event["type"] == "job.failed"
    assert event["data"]["error"]["code"] == job["error"]["code"]


def test_only_subscribed_endpoints_get_an_event(local_stage: Pipeline, listening: Receiver) -> None:
    register(local_stage, listening.url, events=["job.failed"])
    local_stage.process(photo())
    deliver(local_stage)
    assert listening.received == []


def test_a_redirect_is_an_answer_never_followed(local_stage: Pipeline) -> None:
    with (
        receiver([200]) as elsewhere,
        receiver([302, 307, 200], redirect_to=elsewhere.url) as listening,
    ):
        register(local_stage, listening.url)
        job = local_stage.process(photo())
        deliver(local_stage)
    # A 3xx is a failed attempt, retried at the registered URL; its Location is ignored.
    assert [a["status"] for a in attempts(local_stage, job["jobId"])] == [302, 307, 200]
    assert len(listening.received) == 3
    assert elsewhere.received == []


@pytest.mark.parametrize("listening", [[410]], indirect=True)
def test_410_gone_disables_the_endpoint(local_stage: Pipeline, listening: Receiver) -> None:
    endpoint = register(local_stage, listening.url)
    first = local_stage.process(photo())
    deliver(local_stage)
    assert len(listening.received) == 1
    shown = local_stage.client.http.get(
        f"/webhooks/{endpoint['id']}", headers=bearer(local_stage.api_key)
    )
    assert json.loads(shown.body)["enabled"] is False
    assert [a["status"] for a in attempts(local_stage, first["jobId"])] == [410]
    # Nothing more is sent to it.
    local_stage.process(photo())
    deliver(local_stage)
    assert len(listening.received) == 1


@pytest.mark.parametrize("listening", [[None]], indirect=True)
def test_a_receiver_that_never_answers_is_retried_then_given_up(
    local_stage: Pipeline, listening: Receiver
) -> None:
    register(local_stage, listening.url)
    job = local_stage.process(photo())
    deliver(local_stage)
    log = attempts(local_stage, job["jobId"])
    assert [a["attempt"] for a in log] == [1, 2, 3, 4]
    assert {a["error"] for a in log} == {"delivery_unreachable"}
    assert {a["status"] for a in log} == {None}
    assert len(listening.received) == 1 + len(SCHEDULE)
    assert _delivery_state(job["jobId"]) == DeliveryState.FAILED


def test_a_receiver_that_refuses_connections_is_logged(local_stage: Pipeline) -> None:
    with receiver([200]) as stopped:
        url = stopped.url
    register(local_stage, url)
    job = local_stage.process(photo())
    deliver(local_stage)
    log = attempts(local_stage, job["jobId"])
    assert len(log) == 1 + len(SCHEDULE)
    assert all(a["error"] == "delivery_unreachable" for a in log)


@pytest.mark.parametrize("listening", [[500, 200]], indirect=True)
def test_a_replay_sends_the_same_event_again(local_stage: Pipeline, listening: Receiver) -> None:
    endpoint = register(local_stage, listening.url)
    job = local_stage.process(photo())
    deliver(local_stage)
    assert len(listening.received) == 2
    replay = local_stage.client.http.post(
        f"/jobs/{job['jobId']}/deliveries/replay", headers=bearer(local_stage.api_key)
    )
    assert replay.status_code == 202
    assert json.loads(replay.body)["endpoints"] == [endpoint["id"]]
    deliver(local_stage)
    assert len(listening.received) == 3
    first, _, replayed = listening.received
    assert replayed.headers["webhook-id"] == first.headers["webhook-id"]
    verify(endpoint["secret"], replayed)
    assert [(a["attempt"], a["status"]) for a in attempts(local_stage, job["jobId"])] == [
        (1, 500),
        (2, 200),
        (3, 200),
    ]


def test_a_replay_before_the_job_ends_is_refused(local_stage: Pipeline) -> None:
    upload = local_stage.request_upload()
    response = local_stage.client.http.post(
        f"/jobs/{upload['jobId']}/deliveries/replay", headers=bearer(local_stage.api_key)
    )
    assert response.status_code == 409
    assert json.loads(response.body)["error"]["code"] == "job_not_finished"


def test_a_duplicate_hand_over_sends_one_success(
    local_stage: Pipeline, listening: Receiver
) -> None:
    register(local_stage, listening.url)
    job = local_stage.process(photo())
    stored = jobs.get_job(job["jobId"])
    event = job_events.of(stored) if stored else None
    assert event is not None
    job_events.send(event)  # the sweeper's late hand-over, after all
    job_events.send(event)
    deliver(local_stage)
    assert len(listening.received) == 1
    assert [a["status"] for a in attempts(local_stage, job["jobId"])] == [200]


def test_deliveries_and_replays_are_the_tenants_own(
    local_stage: Pipeline, listening: Receiver, globex_key: str
) -> None:
    register(local_stage, listening.url)
    job = local_stage.process(photo())
    deliver(local_stage)
    theirs = bearer(globex_key)
    http = local_stage.client.http
    assert http.get(f"/jobs/{job['jobId']}/deliveries", headers=theirs).status_code == 404
    replay = http.post(f"/jobs/{job['jobId']}/deliveries/replay", headers=theirs)
    assert replay.status_code == 404
    # globex's own endpoint never hears of acme's jobs.
    with receiver([200]) as globex_receiver:
        register(local_stage, globex_receiver.url, key=globex_key)
        local_stage.process(photo())
        deliver(local_stage)
        assert globex_receiver.received == []
    assert len(listening.received) == 2


def test_a_test_event_is_signed_and_sent(local_stage: Pipeline, listening: Receiver) -> None:
    endpoint = register(local_stage, listening.url)
    sent = local_stage.client.http.post(
        f"/webhooks/{endpoint['id']}/test", headers=bearer(local_stage.api_key)
    )
    assert sent.status_code == 202
    deliver(local_stage)
    (received,) = listening.received
    event = verify(endpoint["secret"], received)
    assert event["type"] == "webhook.test"
    assert event["data"] == {"endpointId": endpoint["id"]}
    assert received.headers["webhook-id"] == json.loads(sent.body)["eventId"]


def test_an_endpoint_deleted_meanwhile_gets_nothing(
    local_stage: Pipeline, listening: Receiver
) -> None:
    endpoint = register(local_stage, listening.url)
    job = local_stage.process(photo())
    webhooks_poller(local_stage).poll_once()  # the fan-out: one delivery, for it
    webhooks.delete("acme", endpoint["id"])
    deliver(local_stage)
    assert listening.received == []
    assert [a["error"] for a in attempts(local_stage, job["jobId"])] == ["endpoint_deleted"]


def test_the_first_retry_waits_five_seconds_with_jitter(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("WEBHOOK_ALLOWED_NETWORKS", "127.0.0.1/32")
    reset_settings()
    with receiver([500]) as failing:
        register(pipeline, failing.url)
        pipeline.process(photo())
        started = time.time()
        webhooks_poller(pipeline).poll_once()  # the fan-out
        webhooks_poller(pipeline).poll_once()  # attempt 1
        finished = time.time()
        assert len(failing.received) == 1
    (message,) = _peek_delayed(RETRY_WAITS_SECONDS[0] + 2)
    retry = delivery_message.parse(message)
    assert retry is not None
    assert retry.attempt == 2
    # The attempt failed at some moment between `started` and `finished`; the retry is due
    # the jittered wait after that moment.
    assert retry.due_at - started >= RETRY_WAITS_SECONDS[0] * (1 - JITTER)
    assert retry.due_at - finished <= RETRY_WAITS_SECONDS[0] * (1 + JITTER)


def test_a_long_wait_is_a_chain_of_hops(pipeline: Pipeline) -> None:
    due = time.time() + 3600
    delivery = delivery_message.Delivery("acme", "ep_x", "evt_x", "job.completed", "j", 5, due)
    deliveries.attempt(delivery, "message-1")
    (message,) = _peek_delayed(0, expect_delay=True)
    assert delivery_message.parse(message) == delivery


def _peek_delayed(wait_seconds: float, *, expect_delay: bool = False) -> list[dict[str, Any]]:
    """The messages on the webhooks queue, taken off it once visible (moto honours
    DelaySeconds); with `expect_delay`, check one is delayed and read it from moto's
    backend instead of waiting 15 minutes."""
    sqs = clients.sqs()
    url = clients.queue_url(settings().webhooks_queue)
    if expect_delay:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
        from moto.sqs.models import sqs_backends

        queue = sqs_backends["123456789012"]["us-east-1"].queues[settings().webhooks_queue]
        return [json.loads(m.body) for m in queue._messages]
    deadline = time.time() + wait_seconds
    while time.time() < deadline:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            return [json.loads(m["Body"]) for m in messages]
    return []


def _delivery_state(job_id: str) -> DeliveryState:
    stored = jobs.get_job(job_id)
    assert stored is not None
    assert stored.event_id is not None
    (record,) = delivery_log.deliveries_of_event(job_id, stored.event_id)
    return record.state


# --- faults: no event lost, no second success ---------------------------------------------------


def killable_poller(pipeline: Pipeline) -> SqsPoller:
    """The deliveries function's event source, where a killed invocation fails its batch
    (it comes back, as after its visibility timeout) instead of ending the test."""
    url = clients.queue_url(settings().webhooks_queue)

    def invoke(event: dict[str, Any]) -> Any:
        try:
            return pipeline.client.lambda_.invoke("deliver_webhooks", event).payload
        except InvocationKilled as exc:
            raise RuntimeError("invocation killed") from exc

    return SqsPoller(pipeline.sqs, url, invoke, batch_size=1, expire_with=pipeline.sqs)


DELIVERY_FAULTS = {
    # the fan-out cannot list the tenant's endpoints
    "list endpoints": lambda: Fault("Query", code="ThrottlingException", status=400, times=2),
    # the fan-out's second send fails: the first endpoint gets its delivery twice
    "fan-out send": lambda: Fault("SendMessage", times=1, skip=1),
    "claim": lambda: Fault("UpdateItem", times=1, code="InternalServerError", status=500),
    "claim applied, answer lost": lambda: Fault("UpdateItem", times=1, applied=True),
    "decrypt": lambda: Fault("Decrypt", code="ThrottlingException", status=400, times=1),
    # after the POST: the attempt is made again by the same message
    "log the attempt": lambda: Fault("PutItem", times=1, raises=connection_reset),
    "settle applied, answer lost": lambda: Fault(
        "UpdateItem", times=1, applied=True, skip=1, when=body_contains("succeeded")
    ),
}


@pytest.mark.parametrize("name", sorted(DELIVERY_FAULTS))
def test_faults_in_the_delivery_path_lose_no_event_and_record_one_success(
    local_stage: Pipeline, name: str
) -> None:
    with receiver([200]) as first, receiver([200]) as second:
        endpoints = [register(local_stage, first.url), register(local_stage, second.url)]
        jobs_ended = [local_stage.process(photo()), local_stage.process(b"not an image")]
        fault = DELIVERY_FAULTS[name]()
        with attached([fault], app_clients()):
            killable_poller(local_stage).drain()
        killable_poller(local_stage).drain()
        assert fault.failed >= 1, f"{name}: the fault never struck"
        assert_delivered_once(local_stage, jobs_ended, endpoints, [first, second])


@pytest.mark.parametrize("after_calls", [1, 2, 4, 6, 7])
def test_a_delivery_killed_anywhere_is_made_again(local_stage: Pipeline, after_calls: int) -> None:
    with receiver([200]) as listening:
        endpoint = register(local_stage, listening.url)
        job = local_stage.process(photo())
        switch = KillSwitch(after=after_calls)
        with switch.armed(app_clients()):
            killable_poller(local_stage).drain()
        killable_poller(local_stage).drain()
        assert switch.fired
        assert_delivered_once(local_stage, [job], [endpoint], [listening])


def test_a_lost_hand_over_is_delivered_after_the_sweep(
    local_stage: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEP_ANNOUNCE_GRACE_SECONDS", "0")
    reset_settings()
    with receiver([200]) as listening:
        endpoint = register(local_stage, listening.url)
        with attached([Fault("SendMessage", when=body_contains("job.event"))], app_clients()):
            job = local_stage.process(photo())
        deliver(local_stage)
        assert listening.received == []
        local_stage.sweep()
        deliver(local_stage)
        assert_delivered_once(local_stage, [job], [endpoint], [listening])


def assert_delivered_once(
    pipeline: Pipeline,
    ended: list[dict[str, Any]],
    endpoints: list[dict[str, Any]],
    receivers: list[Receiver],
) -> None:
    """Each job's event reached each endpoint (maybe more than once, always with its one
    id); each delivery logged exactly one success and ended SUCCEEDED; nothing is left on
    the webhooks queue or its dead-letter queue."""
    for job in ended:
        stored = jobs.get_job(job["jobId"])
        assert stored is not None
        assert stored.event_id is not None
        for endpoint, listening in zip(endpoints, receivers, strict=True):
            ids = {r.headers["webhook-id"] for r in listening.received}
            assert stored.event_id in ids, (job["jobId"], endpoint["id"])
            logged = [
                a for a in attempts(pipeline, job["jobId"]) if a["endpointId"] == endpoint["id"]
            ]
            assert [a["status"] for a in logged if a["status"] == 200] == [200], logged
        records = delivery_log.deliveries_of_event(job["jobId"], stored.event_id)
        assert {r.state for r in records} == {DeliveryState.SUCCEEDED}
        assert len(records) == len(endpoints)
    for queue in (settings().webhooks_queue, settings().webhooks_dlq):
        url = clients.queue_url(queue)
        depth = clients.sqs().get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        assert depth == "0", queue
