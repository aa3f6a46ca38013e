"""`make run` keeps its state in DATA_DIR across restarts (devstack.persistence).

End to end on the local stack: a photo's job, its outputs, the API key and a webhook
endpoint outlive a stop and a start on the same DATA_DIR; a second stack on the directory,
and a damaged snapshot, are refused with a message that says what to do; RESET=1 starts
empty. The snapshot file's checks and the directory's marker, on their own.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from standardwebhooks import Webhook

from devstack import launch, persistence
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


def test_a_stack_killed_mid_job_finishes_it_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    keys = {TENANT: secrets.token_urlsafe(30)}
    photo = phone_photo("Kite.jpg")
    first = stack(tmp_path, "killed", keys, data_dir=data, workers=1)
    with launch.local_stack(first.settings, first.log) as running:
        uploads = [
            first.upload(TENANT, photo, filename=f"{n}.jpg", content_type="image/jpeg")
            for n in range(3)
        ]
        deadline = time.monotonic() + 60
        while not any(job["status"] == "PROCESSING" for job in first.jobs(TENANT).values()):
            assert time.monotonic() < deadline, "no job was ever PROCESSING"
            time.sleep(0.02)
        kill_everything(running)

    second = stack(tmp_path, "restarted", keys, data_dir=data, workers=1)
    with launch.local_stack(second.settings, second.log):
        assert set(second.jobs(TENANT)) >= {upload.job_id for upload in uploads}
        for upload in uploads:
            job, _ = second.wait(TENANT, upload.job_id)
            assert job["status"] == "COMPLETED", job
            assert job["outputs"], job
