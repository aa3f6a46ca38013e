"""GET /jobs/{id}?wait=N: one request that answers when the job ends, or after N seconds.

The answer's time is checked against the job's end, not as a speed limit: a long-poll
reads the job every LONG_POLL_INTERVAL_SECONDS, so it answers within about that of the
end; the bound below leaves a noisy machine room on top.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import api, jobs, models
from tests.pipeline import bearer, claim_job, new_job, queue_job

ANSWER_BOUND_SECONDS = api.LONG_POLL_INTERVAL_SECONDS + 1.5
API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS = 29


def get(client: Client, key: str, job_id: str, query: str = "") -> Any:
    return client.http.get(f"/jobs/{job_id}{query}", headers=bearer(key))


def test_a_long_poll_answers_soon_after_the_job_ends(client: Client, acme_key: str) -> None:
    job = new_job()
    queue_job(job.job_id)
    claim_job(job.job_id)
    ended_at: list[float] = []

    def finish_later() -> None:
        time.sleep(1.5)
        jobs.complete(job.job_id, source={"bytes": 10}, outputs=[])
        ended_at.append(time.monotonic())

    finisher = threading.Thread(target=finish_later)
    started = time.monotonic()
    finisher.start()
    response = get(client, acme_key, job.job_id, "?wait=20")
    answered = time.monotonic()
    finisher.join()
    assert response.status_code == 200
    assert json.loads(response.body)["status"] == "COMPLETED"
    assert answered >= ended_at[0]
    assert answered - ended_at[0] < ANSWER_BOUND_SECONDS
    assert answered - started < 20


def test_a_long_poll_answers_the_current_state_after_its_wait(
    client: Client, acme_key: str
) -> None:
    job = new_job()
    started = time.monotonic()
    response = get(client, acme_key, job.job_id, "?wait=1")
    assert time.monotonic() - started >= 1
    assert response.status_code == 200
    assert json.loads(response.body)["status"] == "PENDING"


def test_a_finished_job_answers_at_once(client: Client, acme_key: str) -> None:
    job = new_job()
    jobs.fail(job.job_id, code="corrupt_image", message="The image data is corrupt or truncated.")
    started = time.monotonic()
    response = get(client, acme_key, job.job_id, "?wait=20")
    assert time.monotonic() - started < 20
    assert json.loads(response.body)["status"] == "FAILED"


def test_another_tenants_job_is_not_found_without_waiting(
    client: Client, globex_key: str, acme_key: str
) -> None:
    job = new_job("acme")
    started = time.monotonic()
    assert get(client, globex_key, job.job_id, "?wait=20").status_code == 404
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("query", ["?wait=0", "?wait=21", "?wait=x", "?wait=1&wait=2", "?wait="])
def test_a_wait_outside_1_to_20_seconds_is_refused(
    client: Client, acme_key: str, query: str
) -> None:
    job = new_job()
    response = get(client, acme_key, job.job_id, query)
    assert response.status_code == 400
    assert json.loads(response.body)["error"]["code"] == "invalid_request"


def test_the_api_function_outlasts_the_longest_wait_inside_the_gateways_limit() -> None:
    config = json.loads((Path(__file__).parents[1] / ".chalice" / "config.json").read_text())
    timeout = config["lambda_functions"]["api_handler"]["lambda_timeout"]
    assert timeout >= models.MAX_WAIT_SECONDS + api.LONG_POLL_MARGIN_SECONDS
    assert timeout < API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS
