"""Shared fixtures: moto-backed AWS, the Chalice test client, API keys, a pipeline, and
`make run` as a user starts it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import auth
from chalicelib.clients import reset_clients
from chalicelib.config import reset_settings
from devstack import launch
from devstack.launch import running_emulator
from infra import stack
from tests.local_stack import LocalStack, make_run
from tests.pipeline import Pipeline
from tests.resources import REGION, Names, Queues, provision

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Names]:
    names = Names()
    for variable in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "PRESETS", "S3_ADDRESSING_STYLE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # The resource names come from the stack the `aws` fixture deploys; until then (and in
    # tests without AWS) nothing from the caller's shell may leak in.
    for variable in stack.ENVIRONMENT_OUTPUTS:
        monkeypatch.delenv(variable, raising=False)
    reset_settings()
    reset_clients()
    yield names
    reset_settings()
    reset_clients()


@pytest.fixture
def aws(aws_environment: Names, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queues]:
    """moto, provisioned from infra/template.yaml, and the app configured from its outputs."""
    with mock_aws():
        deployed = provision()
        for variable, value in deployed.environment().items():
            monkeypatch.setenv(variable, value)
        reset_settings()
        reset_clients()
        yield deployed


@pytest.fixture
def client(aws: Queues) -> Iterator[Client]:
    from app import app

    with Client(app, stage_name="test", project_dir=str(REPO)) as test_client:
        yield test_client


@pytest.fixture
def acme_key(aws: Queues) -> str:
    return auth.create_api_key("acme")


@pytest.fixture
def globex_key(aws: Queues) -> str:
    return auth.create_api_key("globex")


@pytest.fixture
def pipeline(client: Client, aws: Queues, acme_key: str) -> Pipeline:
    return Pipeline(client, aws, acme_key)


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """The local stack's emulator server (devstack.emulator_server) alone, for the module,
    on a free port: its endpoint."""
    with running_emulator() as endpoint:
        yield endpoint


# Tenants of the shared `make run`: each module that uses it keeps to its own.
STACK_TENANTS = ("acme", "globex", "cli", "console")


@pytest.fixture(scope="session", name="stack")
def make_run_stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalStack]:
    """One `make run` for every test that uses it (they run last, together: see below)."""
    keys = {tenant: secrets.token_urlsafe(30) for tenant in STACK_TENANTS}  # 40 chars
    local = LocalStack(
        launch.Settings(keys=keys, workers=2),
        log=tmp_path_factory.mktemp("local-stack") / "make-run.log",
    )
    started = time.monotonic()
    with make_run(local, request):
        print(f"\nlocal stack ready in {time.monotonic() - started:.1f} s (log: {local.log})")
        yield local


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the shared `make run` go last, so it runs only while they do."""
    items.sort(key=lambda item: "stack" in getattr(item, "fixturenames", ()))
