"""`make run` keeps its state in DATA_DIR across restarts (devstack.persistence).

End to end on the local stack: a photo's job, its outputs, the API key and a webhook
endpoint outlive a stop and a start on the same DATA_DIR; a second stack on the directory,
and a damaged snapshot, are refused with a message that says what to do; RESET=1 starts
empty. A stack stopped mid-job by Ctrl-C, by a `kill -9` of make run, or by a crash of
every process restarts with every job and finishes them. The snapshot file's checks and
the directory's marker, on their own.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from PIL import Image
from standardwebhooks import Webhook

from chalicelib import presets
from devstack import emulator, launch, persistence
from devstack.webhooks import receiver
from tests.local_stack import HTTP_TIMEOUT, REPO, LocalStack, kill_everything
from tests.samples import phone_photo

TENANT = "acme"
# The restarted stack's presets: one more than a preset it had.
PRESETS = [
    {"name": "thumb", "width": 256, "height": 256, "fit": "cover", "format": "JPEG"},
    {"name": "tiny", "width": 64, "height": 64, "fit": "cover", "format": "JPEG"},
]
PHOTO = REPO / "samples" / "photos" / "Kite.jpg"


def stack(tmp_path: Path, name: str, keys: dict[str, str], **settings: object) -> LocalStack:
    return LocalStack(
        launch.Settings(keys=keys, **settings),  # type: ignore[arg-type]
        log=tmp_path / f"{name}.log",
    )


@pytest.fixture
def stack_receiver() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def banner(local: LocalStack) -> str:
    """What the stack printed at its start."""
    return launch.read_log(local.log)


def refusal(local: LocalStack) -> str:
    """The stack's message when it refuses to start."""
    with (
        pytest.raises(launch.LaunchError) as failure,
        launch.local_stack(local.settings, local.log),
    ):
        pass
    return str(failure.value)


def test_state_survives_a_restart_and_reset_empties_it(
    tmp_path: Path, stack_receiver: contextlib.ExitStack
) -> None:
    data = tmp_path / "data"
    keys = {TENANT: secrets.token_urlsafe(30)}
    hooks = stack_receiver.enter_context(receiver())
    first = stack(tmp_path, "first", keys, data_dir=data)
    with launch.local_stack(first.settings, first.log):
        assert f"State      {data} (starting empty; RESET=1 empties it)" in banner(first)
        upload = first.upload(
            TENANT, PHOTO.read_bytes(), filename=PHOTO.name, content_type="image/jpeg"
        )
        job, _ = first.wait(TENANT, upload.job_id)
        assert job["status"] == "COMPLETED", job
        outputs = {
            output["preset"]: requests.get(output["url"], timeout=HTTP_TIMEOUT).content
            for output in job["outputs"]
        }
        endpoint = first.client(TENANT).add_webhook(hooks.url)

    second = stack(tmp_path, "second", keys, data_dir=data, presets=json.dumps(PRESETS))
    with launch.local_stack(second.settings, second.log):
        assert f"State      {data} (restored as saved " in banner(second)
        again = second.job(TENANT, upload.job_id)  # the same key still authorizes
        assert again["status"] == "COMPLETED", again
        kept = {
            output["preset"]: requests.get(output["url"], timeout=HTTP_TIMEOUT).content
            for output in again["outputs"]
        }
        assert kept == outputs
        assert all(kept.values())
        added = second.upload(
            TENANT, PHOTO.read_bytes(), filename="b.jpg", content_type="image/jpeg"
        )
        added_job, _ = second.wait(TENANT, added.job_id)
        assert sorted(output["preset"] for output in added_job["outputs"]) == ["thumb", "tiny"]
        webhooks = second.client(TENANT).webhooks()
        assert endpoint["id"] in [hook["id"] for hook in webhooks]
        sent = second.client(TENANT).test_webhook(endpoint["id"])
        verifier = Webhook(endpoint["secret"])  # the secret shown before the restart
        deadline = time.monotonic() + 30
        while sent["type"] not in [
            verifier.verify(hook.body, hook.headers)["type"] for hook in list(hooks.received)
        ]:
            assert time.monotonic() < deadline, "the test event never arrived"
            time.sleep(0.05)
        status = requests.get(f"{second.endpoint}{persistence.STATUS_PATH}", timeout=5).json()
        assert status["enabled"] is True
        assert status["loadedSnapshotSavedAt"] is not None
        assert status["dataDir"] == str(data)

        intruder = stack(tmp_path, "intruder", keys, data_dir=data)
        assert "in use by another stack" in refusal(intruder)

    snapshot = data / persistence.SNAPSHOT
    damaged = bytearray(snapshot.read_bytes())
    damaged[-1] ^= 0xFF
    snapshot.write_bytes(bytes(damaged))
    message = refusal(stack(tmp_path, "damaged", keys, data_dir=data))
    assert str(snapshot) in message
    assert "RESET=1" in message

    fresh = stack(tmp_path, "reset", keys, data_dir=data, reset=True)
    with launch.local_stack(fresh.settings, fresh.log):
        assert f"State      {data} (starting empty;" in banner(fresh)
        assert fresh.jobs(TENANT) == {}
        assert fresh.client(TENANT).webhooks() == []


def test_a_torn_or_foreign_snapshot_is_named_never_loaded_empty(tmp_path: Path) -> None:
    payload = b"state"
    path = tmp_path / persistence.SNAPSHOT
    whole = persistence.encode_snapshot(payload) + payload
    path.write_bytes(whole)
    assert persistence.read_snapshot(path) == payload
    for broken in (whole[:-1], whole[:10], b"something else entirely", whole[:-1] + b"X"):
        path.write_bytes(broken)
        with pytest.raises(persistence.PersistenceError, match="RESET=1") as failure:
            persistence.read_snapshot(path)
        assert str(path) in str(failure.value)


def test_reset_wipes_only_a_data_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(persistence.PersistenceError, match="not a media-pipeline data"):
        persistence.prepare(foreign, reset=True)
    assert (foreign / "notes.txt").read_text() == "mine"

    data = tmp_path / "data"
    persistence.prepare(data, reset=False)
    (data / persistence.SNAPSHOT).write_bytes(b"old")
    persistence.prepare(data, reset=True)
    assert sorted(entry.name for entry in data.iterdir()) == [persistence.MARKER]


def test_one_stack_per_directory(tmp_path: Path) -> None:
    held = persistence.open_data_dir(tmp_path / "data", reset=False)
    try:
        with pytest.raises(persistence.PersistenceError, match="in use by another stack"):
            persistence.open_data_dir(tmp_path / "data", reset=False)
    finally:
        held.close()
    persistence.open_data_dir(tmp_path / "data", reset=False).close()


def uploads_in_flight(local: LocalStack, count: int = 3) -> set[str]:
    """`count` uploads of a phone photo to a one-worker stack, returned once one of their
    jobs is PROCESSING (the others are still waiting their turn)."""
    photo = phone_photo("Kite.jpg")
    job_ids = {
        local.upload(TENANT, photo, filename=f"{n}.jpg", content_type="image/jpeg").job_id
        for n in range(count)
    }
    deadline = time.monotonic() + 60
    while not any(job["status"] == "PROCESSING" for job in local.jobs(TENANT).values()):
        assert time.monotonic() < deadline, "no job was ever PROCESSING"
        time.sleep(0.02)
    return job_ids


def every_job_finishes_after_a_restart(
    tmp_path: Path, keys: dict[str, str], job_ids: set[str]
) -> None:
    restarted = stack(tmp_path, "restarted", keys, data_dir=tmp_path / "data", workers=1)
    with launch.local_stack(restarted.settings, restarted.log):
        assert set(restarted.jobs(TENANT)) >= job_ids
        for job_id in job_ids:
            job, _ = restarted.wait(TENANT, job_id)
            assert job["status"] == "COMPLETED", job
            assert sorted(output["preset"] for output in job["outputs"]) == [
                "large",
                "small",
                "thumb",
            ]


def wait_for_exit(leader: int, procs: list[launch.Proc], seconds: float = 30.0) -> None:
    """Until every process in `procs` (and the leader's session) has ended; whatever is
    still alive after `seconds` is SIGKILLed and the test fails."""
    deadline = time.monotonic() + seconds
    while launch.survivors(leader, procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = launch.survivors(leader, procs)
    launch.kill(left)
    assert not left, f"still running {seconds} s after the stack died: {left}"


def kill_make_run(running: launch.Launched) -> None:
    """`kill -9` of make run's own process."""
    os.kill(running.process.pid, signal.SIGKILL)
    running.process.wait(10)


def press_ctrl_c(running: launch.Launched) -> None:
    """Ctrl-C: SIGINT to the terminal's foreground process group, here make run's."""
    os.killpg(running.process.pid, signal.SIGINT)
    assert running.process.wait(60) == 0, running.log_tail()
    assert "stopped." in running.log_text()


@pytest.mark.parametrize("stop", [kill_make_run, press_ctrl_c], ids=["kill-9", "ctrl-c"])
def test_a_stop_mid_job_loses_nothing(
    tmp_path: Path, stop: Callable[[launch.Launched], None]
) -> None:
    """After a `kill -9` of make run its emulator is told (SIGTERM, its parent's death
    signal) and takes its last snapshot; Ctrl-C stops everything cleanly. Either way the
    restart has every job and finishes the one in flight."""
    keys = {TENANT: secrets.token_urlsafe(30)}
    first = stack(tmp_path, "stopped", keys, data_dir=tmp_path / "data", workers=1)
    with launch.local_stack(first.settings, first.log) as running:
        job_ids = uploads_in_flight(first)
        leader = running.process.pid
        children = launch.descendants(leader)
        stop(running)
        wait_for_exit(leader, children)
    every_job_finishes_after_a_restart(tmp_path, keys, job_ids)


def test_a_second_stop_signal_never_cuts_the_last_snapshot_short(tmp_path: Path) -> None:
    """The emulator's parent-death signal can come twice (it is sent again each time the
    emulator is re-parented, as the threads of a killed make run end one by one). The
    second, while the last snapshot waits for a request in flight, is ignored: the request
    is answered and the snapshot holds its write."""
    data = tmp_path / "data"
    persistence.prepare(data, reset=False)
    first = launch.launched_emulator(data_dir=data, log=tmp_path / "first.log")
    with first as (endpoint, running):
        dynamodb = emulator_client(endpoint, "dynamodb")
        dynamodb.create_table(
            TableName="kept",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        with put_item_in_flight(endpoint, "kept", "written-while-stopping") as finish:
            status_url = f"{endpoint}{persistence.STATUS_PATH}"
            deadline = time.monotonic() + 30
            while requests.get(status_url, timeout=5).json()["requestsInFlight"] != 1:
                assert time.monotonic() < deadline, "the PutItem never reached the emulator"
                time.sleep(0.02)
            running.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while launch.answers(f"{endpoint}/moto-api/"):  # until its server has stopped
                assert time.monotonic() < deadline, "the emulator never stopped serving"
                time.sleep(0.05)
            running.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # for the second signal to be handled (or ignored) first
            assert finish().startswith(b"HTTP/1.1 200 "), running.log_tail()
        assert running.process.wait(30) == 0, running.log_tail()
    with launch.running_emulator(data_dir=data, log=tmp_path / "restarted.log") as endpoint:
        kept = emulator_client(endpoint, "dynamodb").get_item(
            TableName="kept", Key={"id": {"S": "written-while-stopping"}}
        )
        assert kept.get("Item") == {"id": {"S": "written-while-stopping"}}


def emulator_client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=emulator.REGION,
        aws_access_key_id=emulator.ACCESS_KEY_ID,
        aws_secret_access_key=emulator.SECRET_ACCESS_KEY,
    )


@contextlib.contextmanager
def put_item_in_flight(endpoint: str, table: str, key: str) -> Iterator[Callable[[], bytes]]:
    """A DynamoDB PutItem of `key`, in flight: its body is half sent until the function
    yielded sends the rest. That function returns the response's status line (empty if
    the emulator closed the connection instead)."""
    body = json.dumps({"TableName": table, "Item": {"id": {"S": key}}}).encode()
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    scope = f"{emulator.ACCESS_KEY_ID}/20260101/{emulator.REGION}/dynamodb/aws4_request"
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-amz-json-1.0\r\n"
        "X-Amz-Target: DynamoDB_20120810.PutItem\r\n"
        f"Authorization: AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head + body[:10])

        def finish() -> bytes:
            connection.sendall(body[10:])
            with connection.makefile("rb") as response:
                return response.readline()

        yield finish


def test_a_crash_of_every_process_keeps_the_last_snapshot(tmp_path: Path) -> None:
    """Every process SIGKILLed at once (a crash: nobody gets to save anything): the restart
    has every job the last snapshot held, here taken after the jobs were queued, and
    finishes the one that was in flight."""
    keys = {TENANT: secrets.token_urlsafe(30)}
    first = stack(tmp_path, "crashed", keys, data_dir=tmp_path / "data", workers=1)
    with launch.local_stack(first.settings, first.log) as running:
        job_ids = uploads_in_flight(first)
        queued_by = time.time()
        status_url = f"{first.endpoint}{persistence.STATUS_PATH}"
        deadline = time.monotonic() + 30
        while not snapshot_taken_after(requests.get(status_url, timeout=5).json(), queued_by):
            assert time.monotonic() < deadline, "no snapshot after the jobs were queued"
            time.sleep(0.02)
        kill_everything(running)
    every_job_finishes_after_a_restart(tmp_path, keys, job_ids)


def snapshot_taken_after(status: dict[str, object], moment: float) -> bool:
    last = status["lastSnapshotAt"]
    return isinstance(last, str) and datetime.fromisoformat(last).timestamp() > moment


def test_a_backfill_after_a_restart_with_one_more_preset_reaches_every_job(
    tmp_path: Path,
) -> None:
    """The issue's walk on `make run`: photos uploaded, the stack stopped, restarted with one
    more preset, a backfill of it: every job gains the new output and keeps the others; a
    second backfill finds nothing left to do."""
    data = tmp_path / "data"
    keys = {TENANT: secrets.token_urlsafe(30)}
    photos = sorted((REPO / "samples" / "photos").glob("*.jpg"))
    before = stack(tmp_path, "before", keys, data_dir=data)
    with launch.local_stack(before.settings, before.log):
        job_ids = [
            before.upload(
                TENANT, photo.read_bytes(), filename=photo.name, content_type="image/jpeg"
            ).job_id
            for photo in photos
        ]
        first_outputs = {}
        for job_id in job_ids:
            job, _ = before.wait(TENANT, job_id)
            assert job["status"] == "COMPLETED", job
            first_outputs[job_id] = {output["preset"]: output for output in job["outputs"]}

    tiny = presets.parse_preset(PRESETS[1], "tiny")
    more = presets.presets_to_json([*presets.DEFAULT_PRESETS, tiny])
    after = stack(tmp_path, "after", keys, data_dir=data, presets=more)
    with launch.local_stack(after.settings, after.log):
        client = after.client(TENANT)
        started = client.start_backfill(["tiny"])
        finished = client.wait_backfill(started["backfillId"], timeout=180, poll=0.2)
        assert finished["status"] == "completed", finished
        counts = finished["counts"]
        assert (counts["matched"], counts["toReprocess"], counts["done"]) == (3, 3, 3), counts
        assert counts["failed"] == counts["alreadyCurrent"] == counts["originalExpired"] == 0
        for job_id in job_ids:
            job = after.job(TENANT, job_id)
            outputs = {output["preset"]: output for output in job["outputs"]}
            assert sorted(outputs) == ["large", "small", "thumb", "tiny"], job
            image = Image.open(
                io.BytesIO(requests.get(outputs["tiny"]["url"], timeout=HTTP_TIMEOUT).content)
            )
            assert image.size == (64, 64)
            assert outputs["tiny"]["version"] == presets.preset_version(tiny)
            for name, output in first_outputs[job_id].items():
                assert outputs[name]["version"] == output["version"]
                assert (outputs[name]["width"], outputs[name]["height"]) == (
                    output["width"],
                    output["height"],
                )

        again = client.start_backfill(["tiny"])
        repeated = client.wait_backfill(again["backfillId"], timeout=60, poll=0.2)
        assert repeated["status"] == "completed", repeated
        assert repeated["counts"]["alreadyCurrent"] == 3, repeated
        assert repeated["counts"]["toReprocess"] == repeated["counts"]["done"] == 0, repeated
