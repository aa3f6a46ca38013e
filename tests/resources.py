"""The AWS resources the app expects, provisioned in moto from the data plane's template
(infra/template.yaml), exactly as production is: local and cloud cannot drift."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from unittest.mock import patch

import boto3

from infra import stack

REGION = "us-east-1"
STAGE = "test"

# Resources moto's CloudFormation skips (with a UserWarning each, on every deploy): nothing
# in the app depends on them, and tests/test_infra.py checks them in the template instead.
MOTO_SKIPPED_TYPES = ("AWS::CloudWatch::Alarm", "AWS::S3::BucketPolicy")
_SKIPPED = "|".join(re.escape(resource_type) for resource_type in MOTO_SKIPPED_TYPES)
MOTO_SKIPPED = rf"Tried to parse ({_SKIPPED}) but it's not supported"


@contextmanager
def moto_skips_quietly() -> Iterator[None]:
    """Silence moto's warnings (and log lines) about MOTO_SKIPPED resources: it warns when
    it creates the stack, and again whenever the stack's resources are listed."""
    moto_logger = logging.getLogger("moto")
    moto_logger.addFilter(_drop_skip_lines)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=MOTO_SKIPPED, category=UserWarning)
            yield
    finally:
        moto_logger.removeFilter(_drop_skip_lines)


def _drop_skip_lines(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (
        message.startswith("No Moto CloudFormation support for")
        and message.rsplit(" ", 1)[-1] in MOTO_SKIPPED_TYPES
    )


class Names:
    """The names of the app's resources: its environment variables, which the `aws`
    fixture sets from the stack's outputs (read them inside a test that uses it)."""

    @property
    def uploads_bucket(self) -> str:
        return _variable("UPLOADS_BUCKET")

    @property
    def derived_bucket(self) -> str:
        return _variable("DERIVED_BUCKET")

    @property
    def jobs_table(self) -> str:
        return _variable("JOBS_TABLE")

    @property
    def api_keys_table(self) -> str:
        return _variable("API_KEYS_TABLE")

    @property
    def jobs_queue(self) -> str:
        return _variable("JOBS_QUEUE")

    @property
    def jobs_dlq(self) -> str:
        return _variable("JOBS_DLQ")

    def environment(self) -> dict[str, str]:
        return {variable: _variable(variable) for variable in stack.ENVIRONMENT_OUTPUTS}


def _variable(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise LookupError(f"{name} is not set: only tests using the `aws` fixture have a stack")
    return value


@dataclass(frozen=True)
class Queues:
    jobs_url: str
    dlq_url: str


@dataclass(frozen=True)
class Deployed(Queues):
    """The stage's stack in moto: its queues' URLs, and all its outputs."""

    outputs: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        return stack.environment(self.outputs)


def provision() -> Deployed:
    """Deploy the template (stage `test`) into the active moto mock, and fill in what
    moto's CloudFormation ignores. Call inside `mock_aws()`."""
    session = _session()
    with moto_skips_quietly(), _reused_key_material():
        outputs = stack.deploy(_cloudformation(), STAGE, poll_seconds=1)
        stack.apply_emulator_gaps(session, STAGE)
    return Deployed(
        jobs_url=outputs["JobsQueueUrl"], dlq_url=outputs["JobsDlqUrl"], outputs=outputs
    )


# --- speed: provisioning runs before every test that uses AWS -----------------------------


@cache
def _session() -> boto3.session.Session:
    # A new boto3 session loads every service model again (~100 ms a client); moto mocks
    # clients whatever session made them, so one session serves every test.
    return boto3.session.Session(region_name=REGION)


@cache
def _cloudformation() -> Any:
    return _session().client("cloudformation")


@contextmanager
def _reused_key_material() -> Iterator[None]:
    """moto makes a 2048-bit RSA key pair for every KMS key, symmetric ones included
    (~30 ms each); the stack makes two (the alarm topic's key, DynamoDB's aws/dynamodb).
    Nothing signs with them, so while provisioning one pair per key spec is reused."""
    import moto.kms.models

    with patch.object(moto.kms.models, "generate_private_key", _generate_private_key):
        yield


@cache
def _generate_private_key(key_spec: str) -> Any:
    import moto.kms.utils

    return moto.kms.utils.generate_private_key(key_spec)
