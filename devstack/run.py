"""`make run`: the whole pipeline on this machine, no AWS account, no Docker.

    EMULATOR_PORT=4566 PORT=8000 DEV_API_KEYS=acme:<key> WORKERS=2 SWEEP_INTERVAL_SECONDS=60 \
        LOCAL_QUEUE_VISIBILITY_SECONDS=360 python -m devstack.run

`make emulator` (`python -m devstack.run --emulator`) starts only its first part: the
emulator, provisioned as stage `local` with the API keys seeded, for `make deploy` and
`chalice local --stage local`; it prints the variables those need.

Starts moto in server mode, provisions it from infra/template.yaml, seeds API keys, serves
the REST API with Chalice's local server and runs the event runner (devstack.runner) with
the app's own handlers, replacing a worker process that dies. Stops everything on Ctrl-C
or SIGTERM.

LOCAL_QUEUE_VISIBILITY_SECONDS shortens the jobs queue's visibility timeout (default: the
template's, 6 times the worker's Lambda timeout), so that the batch of a worker that died
comes back in seconds; a batch that takes longer than it is then also received again by
another worker (a duplicate, which the worker skips or renders identically).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import emulator, launch, runner

HOST = "127.0.0.1"
PROJECT = Path(__file__).resolve().parents[1]
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


def banner(
    api: str, endpoint: str, outputs: dict[str, str], keys: dict[str, str], workers: int
) -> str:
    tenant, key = next(iter(keys.items()))
    photo = PROJECT / "samples" / "photos" / "Kite.jpg"
    key_lines = "\n".join(f"  API key    {name}: {value}" for name, value in keys.items())
    return f"""
media-pipeline local stack
  API        {api}
  Emulator   {endpoint}   (AWS_ENDPOINT_URL; any credentials)
  Buckets    {outputs["UploadsBucket"]} -> {outputs["DerivedBucket"]}
  Workers    {workers} processes, each replaced if it dies (its batch returns after the
             jobs queue's visibility timeout: {outputs["JobsQueueVisibilityTimeoutSeconds"]} s)
{key_lines}

Try it (tenant {tenant}), from the repository root:
  KEY={key}
  curl -s -X POST {api}/uploads -H "Authorization: Bearer $KEY" \\
       -H "Content-Type: application/json" \\
       -d '{{"filename": "kite.jpg", "contentType": "image/jpeg"}}' > upload.json
  curl -s $(.venv/bin/python -m devstack.form upload.json) -F file=@{photo}
  curl -s {api}/jobs/$(.venv/bin/python -m devstack.form --job-id upload.json) \\
       -H "Authorization: Bearer $KEY"
  AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x AWS_DEFAULT_REGION=us-east-1 \\
    .venv/bin/aws --endpoint-url {endpoint} s3 ls --recursive s3://{outputs["DerivedBucket"]}/

Ctrl-C stops everything.
Ready."""


def shell_exports(variables: dict[str, str]) -> str:
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items())


def emulator_banner(
    endpoint: str, aws: dict[str, str], app: dict[str, str], keys: dict[str, str]
) -> str:
    key_lines = "\n".join(f"  API key    {name}: {value}" for name, value in keys.items())
    return f"""
media-pipeline emulator (stage {emulator.STAGE} provisioned)
  Emulator   {endpoint}
{key_lines}

Any AWS client, `make deploy STAGE=<name>` and `make destroy STAGE=<name>` included:
{shell_exports(aws)}

`chalice local --stage {emulator.STAGE}` also needs the stage's resource names:
{shell_exports(app)}
  .venv/bin/chalice local --stage {emulator.STAGE} --port 8000

Ctrl-C stops it.
Ready."""


@dataclass
class LocalStack:
    emulator_port: int
    api_port: int
    workers: int
    api_keys: dict[str, str]
    sweep_interval: float = runner.DEFAULT_SWEEP_INTERVAL_SECONDS
    queue_visibility_seconds: int | None = None
    emulator_only: bool = False
    stop_requested: threading.Event = field(default_factory=threading.Event)
    _threads_stop: threading.Event = field(default_factory=threading.Event)
    _emulator: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _server: object | None = None
    _processes: runner.ProcessPool | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.emulator_port}"

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def run(self) -> None:
        try:
            self._start()
            self.stop_requested.wait()
        finally:
            self._stop()

    def _start_emulator(self) -> tuple[Any, dict[str, str], dict[str, str]]:
        """The emulator, provisioned as stage `local` with the keys seeded: the session, the
        stack's outputs and tenant -> key."""
        if launch.answers(f"{self.endpoint}/moto-api/"):
            raise SystemExit(f"something already listens on {self.endpoint}: set EMULATOR_PORT")
        try:
            self._emulator.enter_context(launch.running_emulator(self.emulator_port))
        except launch.LaunchError as exc:
            raise SystemExit(f"the emulator did not start: {exc}") from None
        emulator.apply_environment(emulator.aws_environment(self.endpoint))
        import boto3

        from infra import stack

        session = boto3.session.Session()
        outputs = emulator.provision(session, self.queue_visibility_seconds)
        # Only now may the app be imported: its decorators read these names.
        emulator.apply_environment(stack.environment(outputs))
        return session, outputs, seed_api_keys(self.api_keys)

    def _start(self) -> None:
        session, outputs, keys = self._start_emulator()
        if self.emulator_only:
            from infra import stack

            aws, app = emulator.aws_environment(self.endpoint), stack.environment(outputs)
            print(emulator_banner(self.endpoint, aws, app, keys), flush=True)
            return
        s3_events_url = emulator.route_s3_notifications(
            session, outputs["UploadsBucket"], runner.s3_notification()
        )
        triggers = runner.sqs_triggers()
        self._processes = runner.function_processes(
            triggers[runner.WORKER], self.workers, s3_events_url
        )
        self._processes.start()
        self._threads = [
            threading.Thread(
                target=runner.consume,
                args=(triggers[runner.DEAD_LETTERS], self._threads_stop),
                name="dead-letters",
                daemon=True,
            ),
            threading.Thread(
                target=runner.sweep_periodically,
                args=(self._threads_stop, self.sweep_interval),
                name="sweeper",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        self._serve_api()
        deadline = time.monotonic() + 30
        while not launch.answers(f"{self.api}/health", 200):
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.api}/health did not answer within 30 s")
            time.sleep(0.05)
        print(banner(self.api, self.endpoint, outputs, keys, self.workers), flush=True)

    def _serve_api(self) -> None:
        from chalice.config import Config

        from app import app
        from devstack import local_api

        config = Config(chalice_stage=emulator.STAGE, config_from_disk={})
        server = local_api.create_server(app, config, HOST, self.api_port)
        self._server = server
        threading.Thread(target=server.server.serve_forever, name="api", daemon=True).start()

    def _stop(self) -> None:
        """Stop in the reverse order of start: nothing may poll an emulator that is gone."""
        self._threads_stop.set()
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
        if self._processes is not None:
            self._processes.stop()
        for thread in self._threads:
            thread.join(runner.LONG_POLL_SECONDS + 5)
        self._emulator.close()
        self._processes = None  # its semaphores go with it, before the tracker stops
        runner.stop_resource_tracker()


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
    stack = LocalStack(
        emulator_port=int(os.environ.get("EMULATOR_PORT", "4566")),
        api_port=int(os.environ.get("PORT", "8000")),
        workers=int(os.environ.get("WORKERS") or os.cpu_count() or 1),
        api_keys=parse_api_keys(os.environ.get("DEV_API_KEYS")),
        sweep_interval=float(
            os.environ.get("SWEEP_INTERVAL_SECONDS") or runner.DEFAULT_SWEEP_INTERVAL_SECONDS
        ),
        queue_visibility_seconds=parse_visibility_seconds(
            os.environ.get("LOCAL_QUEUE_VISIBILITY_SECONDS")
        ),
        emulator_only=emulator_only,
    )

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stack.stop_requested.is_set():  # make passes the group's signal on again
            print(f"\nstopping ({signal.Signals(signum).name})...", file=sys.stderr, flush=True)
        stack.stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack.run()
    print("stopped.", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
