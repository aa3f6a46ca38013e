"""The local stack answers as its own /openapi.json says, whatever a client sends.

Schemathesis reads the document the running API serves, generates valid and invalid
requests for every operation (bodies, query strings, path parameters, headers) and checks
every answer: never a 5xx, only documented statuses and content types, bodies matching
the documented schemas, invalid data refused, valid data accepted, the key enforced.

Two checks are configured rather than run as they come:
- `positive_data_acceptance` on GET /jobs also accepts 400: a cursor is opaque and valid
  only for the tenant it was given to, which no schema can say, so a drawn one is refused.
- `positive_data_acceptance` on POST /webhooks also accepts 400: a URL is checked
  beyond its form (its host must resolve, to public addresses only), which no schema can
  say either.
- GET /jobs/{job_id} long-polls with `wait` fixed at 1 s: a drawn wait of up to 20 s on
  a job that never ends would hold each request that long (tests/test_long_poll.py checks
  the parameter's bounds and its answer).
- `unsupported_method` tries the methods schemathesis generates requests for;
  `test_undeclared_methods_answer_405` adds TRACE and QUERY, which the local API
  (devstack/local_api.py) answers in the API's shape as it does any other method a route
  does not serve, and checks the body of the 405s too, which no document describes.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib import openapi
from devstack import launch

RUN_TIMEOUT = 240.0
HTTP_TIMEOUT = 10.0
TENANT = "schemathesis"
MAX_EXAMPLES = 25
SEED = 20261122  # fixed, so a CI failure reproduces; change it to explore elsewhere
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "QUERY")

CONFIG = """
[generation]
database = "none"

[phases.coverage]
unexpected-methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]

[[operations]]
include-path = "/jobs"
include-method = "GET"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "429"]

[[operations]]
include-path = "/jobs/{job_id}"
include-method = "GET"
parameters = { "query.wait" = 1 }

[[operations]]
include-path = "/webhooks"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "404", "409", "429"]
"""


@dataclass(frozen=True)
class Api:
    url: str
    key: str
    log: Path

    def log_tail(self, lines: int = 60) -> str:
        """The end of the stack's log, without the server's access lines."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        kept = [line for line in text.splitlines() if not line.startswith("127.0.0.1 - - ")]
        return "\n".join(kept[-lines:])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`python -m devstack.run` on free ports with one key; stopped by process id."""
    settings = launch.Settings(keys={TENANT: secrets.token_urlsafe(30)})
    log = tmp_path_factory.mktemp("schemathesis-stack") / "stack.log"
    with launch.local_stack(settings, log):
        yield Api(url=settings.api, key=settings.keys[TENANT], log=log)


def test_the_api_conforms_to_its_openapi_document(
    api: Api, tmp_path: Path, record_property: Any
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{api.url}/openapi.json",
        "--url",
        api.url,
        "--header",
        f"Authorization: Bearer {api.key}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        str(HTTP_TIMEOUT),
    ]
    started = time.monotonic()
    done = subprocess.run(  # in tmp_path: nothing it writes lands in the repository
        command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", output)
    print(f"\nschemathesis: {generated[0] if generated else '?'} in {elapsed:.0f} s")
    record_property("schemathesis_cases", int(generated[1]) if generated else 0)
    assert done.returncode == 0, f"{output[-12000:]}\n--- stack log ---\n{api.log_tail()}"
    # It really ran every operation and every phase (an empty run also exits 0).
    assert re.search(rf"Tested: {len(openapi.OPERATIONS)}\b", output), output[-3000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", output), f"{phase} did not pass:\n{output[-3000:]}"
    assert generated is not None
    assert int(generated[1]) >= 100, output[-3000:]


def test_undeclared_methods_answer_405(api: Api) -> None:
    document = requests.get(f"{api.url}/openapi.json", timeout=HTTP_TIMEOUT).json()
    headers = {"Authorization": f"Bearer {api.key}"}
    checked = 0
    for template, operations in document["paths"].items():
        path = template.replace("{job_id}", "00000000-0000-4000-8000-000000000000").replace(
            "{endpoint_id}", "ep_" + "0" * 24
        )
        declared = {method.upper() for method in operations}
        for method in sorted(set(METHODS) - declared):
            response = requests.request(
                method, api.url + path, headers=headers, timeout=HTTP_TIMEOUT
            )
            assert response.status_code == 405, (method, path, response.text)
            assert set(response.headers["Allow"].split(", ")) == declared
            assert response.headers["Content-Type"] == "application/json"
            assert response.json()["error"]["code"] == "method_not_allowed"
            checked += 1
    # Every path: each of the seven methods it does not serve.
    assert checked == sum(
        len(METHODS) - len(operations) for operations in document["paths"].values()
    )
    assert len(document["paths"]) == len({operation.path for operation in openapi.OPERATIONS})
