"""`make run`: the whole pipeline on this machine, no AWS account, no Docker.

    EMULATOR_PORT=4566 PORT=8000 DEV_API_KEYS=acme:<key> WORKERS=2 SWEEP_INTERVAL_SECONDS=60 \
        LOCAL_QUEUE_VISIBILITY_SECONDS=360 python -m devstack.run

Starts the emulator (devstack.launch), provisions it from infra/template.yaml, seeds API
keys, serves the REST API with Chalice's local server and runs the event runner
(devstack.runner). Stops everything on Ctrl-C or SIGTERM. `make emulator` (`--emulator`)
starts only the provisioned emulator, for `make deploy` and `chalice local --stage local`,
and prints the variables those need.

LOCAL_QUEUE_VISIBILITY_SECONDS shortens the jobs queue's visibility timeout (default: the
template's), so that the batch of a worker that died comes back in seconds (a batch that
takes longer is then received twice: the worker skips or renders the duplicate alike).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import emulator, launch, persistence, runner
from infra import policies, stack

DEFAULT_TENANT = "dev"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")


def parse_api_keys(spec: str | None) -> dict[str, str]:
    """`tenant:key,...` (DEV_API_KEYS), checked before anything starts."""
    from chalicelib.auth import TENANT_PATTERN

    keys = {}
    for pair in (spec or "").split(","):
        if not pair.strip():
            continue
        tenant, separator, key = pair.strip().partition(":")
        if not separator or not TENANT_PATTERN.match(tenant) or not KEY_PATTERN.match(key):
            raise SystemExit(
                f"DEV_API_KEYS: {pair!r} is not tenant:key (tenant {TENANT_PATTERN.pattern}, "
                f"key 16 to 128 of A-Z a-z 0-9 _ -)"
            )
        keys[tenant] = key
    return keys


def parse_visibility_seconds(value: str | None) -> int | None:
    """LOCAL_QUEUE_VISIBILITY_SECONDS, checked before anything starts (None: unset)."""
    if value is None or not value.strip():
        return None
    least, greatest = emulator.visibility_bounds()
    if not value.strip().isdecimal() or not least <= int(value) <= greatest:
        raise SystemExit(
            f"LOCAL_QUEUE_VISIBILITY_SECONDS: {value!r} is not a whole number of seconds "
            f"from {least} to {greatest}"
        )
    return int(value)


def seed_api_keys(keys: dict[str, str]) -> dict[str, str]:
    """Store the given keys, or one new key for tenant `dev`; returns tenant -> key."""
    from chalicelib import auth

    if not keys:
        return {DEFAULT_TENANT: auth.create_api_key(DEFAULT_TENANT)}
    return {tenant: auth.create_api_key(tenant, key=key) for tenant, key in keys.items()}


def key_lines(keys: dict[str, str]) -> str:
    return "\n".join(f"  API key    {name}: {value}" for name, value in keys.items())


def banner(
    api: str,
    endpoint: str,
    outputs: dict[str, str],
    keys: dict[str, str],
    workers: int,
    state: str,
) -> str:
    tenant, key = next(iter(keys.items()))
    exports = shell_exports({"MEDIA_PIPELINE_API": api, "MEDIA_PIPELINE_KEY": key})
    return f"""
media-pipeline local stack
  API        {api}
  Console    {api}/console
  Emulator   {endpoint}   (AWS_ENDPOINT_URL; any credentials)
  Buckets    {outputs["UploadsBucket"]} -> {outputs["DerivedBucket"]}
  Workers    {workers} processes, each replaced if it dies (its batch returns after the
             jobs queue's visibility timeout: {outputs["JobsQueueVisibilityTimeoutSeconds"]} s)
  State      {state}
{key_lines(keys)}

Try it (tenant {tenant}), from the repository root:
  {exports}
  .venv/bin/media-pipeline upload samples/photos --wait --out out/photos
  .venv/bin/media-pipeline jobs
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 \\
    .venv/bin/aws --endpoint-url {endpoint} s3 ls --recursive s3://{outputs["DerivedBucket"]}/

Webhooks: register a receiver, then run it with the secret the answer shows:
  .venv/bin/media-pipeline webhooks add http://127.0.0.1:8765/
  .venv/bin/python -m devstack.webhooks --secret whsec_...

Ctrl-C stops everything.
Ready."""


def announce(text: str) -> None:
    """Print `text` and its newline in one write: the API server and the workers share this
    output, and a line of theirs between `Ready.` and its newline would hide it from
    whoever waits for the line (devstack.launch.printed_ready)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def shell_exports(variables: dict[str, str]) -> str:
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


def emulator_banner(
    endpoint: str, aws: dict[str, str], app: dict[str, str], keys: dict[str, str], state: str
) -> str:
    return f"""
media-pipeline emulator (stage {emulator.STAGE} provisioned)
  Emulator   {endpoint}
  State      {state}
{key_lines(keys)}

Any AWS client, `make deploy STAGE=<name>` and `make destroy STAGE=<name>` included:
{shell_exports(aws)}

`chalice local --stage {emulator.STAGE}` also needs the stage's resource names:
{shell_exports(app)}
  .venv/bin/chalice local --stage {emulator.STAGE} --port 8000

Ctrl-C stops it.
Ready."""


def kept_state(settings: launch.Settings) -> str:
    """Where the stack keeps its state, and whether this start restores it (read before
    the emulator starts: its first snapshot comes within a second)."""
    data_dir = settings.data_dir
    if data_dir is None:
        return "not kept (PERSIST=0): the next start is empty"
    snapshot = data_dir / persistence.SNAPSHOT
    if settings.reset or not snapshot.exists():
        since = "starting empty"
    else:
        saved = datetime.fromtimestamp(snapshot.stat().st_mtime, UTC)
        since = f"restored as saved {saved:%Y-%m-%d %H:%M:%S} UTC"
    return f"{data_dir} ({since}; RESET=1 empties it)"


def start_emulator(
    settings: launch.Settings, running: contextlib.ExitStack
) -> tuple[Any, dict[str, str], dict[str, str]]:
    """The emulator, provisioned as stage `local` with the keys seeded: the session, the
    stack's outputs and tenant -> key."""
    if launch.answers(f"{settings.endpoint}/moto-api/"):
        raise SystemExit(f"something already listens on {settings.endpoint}: set EMULATOR_PORT")
    data_dir, log = settings.data_dir, None
    if data_dir is not None:
        try:
            running.enter_context(persistence.open_data_dir(data_dir, reset=settings.reset))
        except persistence.PersistenceError as exc:
            raise SystemExit(str(exc)) from None
        log = data_dir / EMULATOR_LOG
    try:
        running.enter_context(
            launch.running_emulator(settings.emulator_port, data_dir=data_dir, log=log)
        )
    except launch.LaunchError as exc:
        problem = persistence_problem(log)
        raise SystemExit(problem or f"the emulator did not start: {exc}") from None
    os.environ.update(emulator.aws_environment(settings.endpoint))
    import boto3

    session = boto3.session.Session()
    outputs = emulator.provision(session, settings.queue_visibility_seconds)
    # Only now may the app be imported: its decorators read these names.
    os.environ.update(stack.environment(outputs))
    for name, value in LOCAL_STAGE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return session, outputs, seed_api_keys(dict(settings.keys) or kept_keys(data_dir))


EMULATOR_LOG = "emulator.log"


def persistence_problem(log: Path | None) -> str | None:
    """The emulator's own explanation of why it could not use DATA_DIR, if that was it."""
    if log is None:
        return None
    lines = [line for line in launch.read_log(log).splitlines() if line.startswith("emulator: ")]
    return lines[-1].removeprefix("emulator: ") if lines else None


def kept_keys(data_dir: Path | None) -> dict[str, str]:
    """The dev key an earlier run generated in DATA_DIR, or one generated now and kept
    there, so that the banner prints the same key after a restart."""
    if data_dir is None:
        return {}
    path = data_dir / persistence.API_KEYS
    if path.exists():
        return dict(json.loads(path.read_text()))
    from chalicelib import auth

    keys = {DEFAULT_TENANT: auth.KEY_PREFIX + secrets.token_urlsafe(32)}
    persistence.write_atomically(path, json.dumps(keys).encode())
    return keys


def start_functions(
    settings: launch.Settings,
    sweep_interval: float,
    s3_events_url: str,
    running: contextlib.ExitStack,
) -> None:
    """The event runner and the API server; `running` stops them in the reverse order,
    before the emulator: nothing may poll an emulator that is gone."""
    triggers = runner.sqs_triggers()
    processes = runner.function_processes(
        triggers[policies.WORKER], settings.workers, s3_events_url
    )
    processes.start()
    threads_stop = threading.Event()
    dead_letters = triggers[policies.DEAD_LETTERS]
    # Several deliveries at once, as Lambda runs one invocation per message: a slow
    # receiver holds one of them only.
    deliveries = [triggers[policies.DELIVERIES]] * DELIVERY_THREADS
    consumers = [
        dead_letters,
        triggers[policies.WEBHOOK_DEAD_LETTERS],
        *deliveries,
        # Reprocessing renders like the worker, one message at a time.
        triggers[policies.REPROCESS],
        triggers[policies.REPROCESS_DEAD_LETTERS],
        triggers[policies.BACKFILL_PAGES],
        triggers[policies.BACKFILL_DEAD_LETTERS],
    ]
    threads = [
        *(
            threading.Thread(target=runner.consume, args=(trigger, threads_stop), daemon=True)
            for trigger in consumers
        ),
        threading.Thread(
            target=runner.sweep_periodically, args=(threads_stop, sweep_interval), daemon=True
        ),
    ]
    for thread in threads:
        thread.start()
        running.callback(thread.join, runner.LONG_POLL_SECONDS + 5)
    running.callback(processes.stop)
    running.callback(threads_stop.set)
    running.callback(serve_api(settings.api_port).shutdown)
    deadline = time.monotonic() + 30
    while not launch.answers(f"{settings.api}/health", 200):
        if time.monotonic() > deadline:
            raise SystemExit(f"{settings.api}/health did not answer within 30 s")
        time.sleep(0.05)


# What the stage `local` adds to the stack's outputs (a variable already set wins):
# deliveries may go to a receiver on this machine, over http.
LOCAL_STAGE_ENVIRONMENT = {
    "WEBHOOK_ALLOW_HTTP": "1",
    "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
}
DELIVERY_THREADS = 4


def serve_api(port: int) -> Any:
    """Chalice's local server for the app, serving in a thread of its own."""
    from chalice.config import Config

    from app import app
    from devstack import local_api

    config = Config(chalice_stage=emulator.STAGE, config_from_disk={})
    server = local_api.create_server(app, config, launch.HOST, port)
    threading.Thread(target=server.server.serve_forever, name="api", daemon=True).start()
    return server


def run(settings: launch.Settings, sweep_interval: float, emulator_only: bool) -> None:
    """Start the stack (or only its emulator), print its banner, and stop everything once
    a stop is requested."""
    state = kept_state(settings)
    with contextlib.ExitStack() as running:
        session, outputs, keys = start_emulator(settings, running)
        if emulator_only:
            aws, app = emulator.aws_environment(settings.endpoint), stack.environment(outputs)
            announce(emulator_banner(settings.endpoint, aws, app, keys, state))
        else:
            uploads, notification = outputs["UploadsBucket"], runner.s3_notification()
            s3_events_url = emulator.route_s3_notifications(session, uploads, notification)
            start_functions(settings, sweep_interval, s3_events_url, running)
            endpoint, workers = settings.endpoint, settings.workers
            announce(banner(settings.api, endpoint, outputs, keys, workers, state))
        STOP_REQUESTED.wait()
    # Every process and semaphore is gone by now: the tracker may stop without warnings.
    runner.stop_resource_tracker()


DEFAULT_DATA_DIR = launch.PROJECT / ".cache" / "make-run"


def data_dir_setting(environment: Mapping[str, str]) -> Path | None:
    """DATA_DIR (default .cache/make-run), or None when PERSIST=0 keeps nothing."""
    persist = environment.get("PERSIST", "1").strip()
    if persist not in ("0", "1", ""):
        raise SystemExit(f"PERSIST: {persist!r} is not 0 or 1")
    if persist == "0":
        return None
    return Path(environment.get("DATA_DIR") or DEFAULT_DATA_DIR).resolve()


STOP_REQUESTED = threading.Event()


def request_stop(signum: int, _frame: FrameType | None) -> None:
    if not STOP_REQUESTED.is_set():  # make passes the group's signal on again
        print(f"\nstopping ({signal.Signals(signum).name})...", file=sys.stderr, flush=True)
    STOP_REQUESTED.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__)
    parser.add_argument(
        "--emulator",
        action="store_true",
        help="only the emulator, provisioned as stage local with the keys seeded (make emulator)",
    )
    emulator_only = parser.parse_args(argv).emulator
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("devstack").setLevel(logging.INFO)
    settings = launch.Settings(
        keys=parse_api_keys(os.environ.get("DEV_API_KEYS")),
        workers=int(os.environ.get("WORKERS") or os.cpu_count() or 1),
        queue_visibility_seconds=parse_visibility_seconds(
            os.environ.get("LOCAL_QUEUE_VISIBILITY_SECONDS")
        ),
        emulator_port=int(os.environ.get("EMULATOR_PORT", "4566")),
        api_port=int(os.environ.get("PORT", "8000")),
        data_dir=data_dir_setting(os.environ),
        reset=os.environ.get("RESET", "") not in ("", "0"),
    )
    sweep_interval = float(
        os.environ.get("SWEEP_INTERVAL_SECONDS") or runner.DEFAULT_SWEEP_INTERVAL_SECONDS
    )
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    run(settings, sweep_interval, emulator_only)
    print("stopped.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
