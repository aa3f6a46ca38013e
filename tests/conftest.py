"""Shared fixtures: moto-backed AWS, the Chalice test client, API keys and a pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client
from moto import mock_aws

from chalicelib import auth
from chalicelib.clients import reset_clients
from chalicelib.config import reset_settings
from devstack.launch import running_emulator
from infra import stack
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
