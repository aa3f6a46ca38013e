"""Cold starts: importing the app and its first invocations, each in a fresh process.

    python -m bench.coldstart [--repeats N] [--quick] [--out FILE] [--photo FILE]

Every sample is a new Python process (``python -c`` with the few lines shown in
``CHILD_CODE``, so nothing but what is measured is imported first), and the variants
alternate within each round (bare, app, health, job, sqs, ..., bare, app, ...), so a
drift in the machine's load spreads over all of them. Per variant and measure the
median and p90 (nearest rank) of ``--repeats`` samples are kept. Variants:

- ``bare-imports``: ``import boto3, chalice``, the floor any Chalice app on Lambda pays;
- ``import-app``: ``import app`` (the Chalice app module), with a stage's environment;
- ``first-request-health`` / ``first-request-job``: ``import app``, then the Chalice app
  object called with an API Gateway proxy event: ``GET /health``, and an authorized
  ``GET /jobs/{id}`` of a COMPLETED job (DynamoDB read, three presigned URLs);
- ``first-sqs-message``: ``import app``, then the worker (``handler_map["make_thumbnails"]``)
  invoked with one real job message: the job created with ``chalicelib.jobs``, a photo
  (``--photo``, default samples/photos/Kite.jpg) in the uploads bucket, the job QUEUED and
  its message sent and received through the jobs queue. The first invocation includes
  importing Pillow and the engine;
- ``bare-imports-lambda-package`` / ``import-app-lambda-package``: the two imports again
  from a copy of what the Lambda zip holds (app.py, chalicelib, chalice's two runtime
  files, the wheels of requirements.txt) with the bytecode ``make package`` ships (one
  unchecked-hash ``.pyc`` per module, ``infra.package.compile_tree``) and bytecode
  writing off, as on Lambda, whose task root is read-only; boto3 and botocore stay
  those of the environment (on Lambda they come from the runtime).

The invocations in the first-* variants are timed twice in the same process: ``first_ms``
(the cold one) and ``second_ms`` (the same request, or a second job, warm); their
difference is the one-time cost of the first call (lazy imports, boto3 clients).

Each child measures with ``time.perf_counter`` around its imports and calls; the parent
also times the whole process (start to exit). AWS is a moto server started once for the
whole run (``python -m moto.server``, reached through ``AWS_ENDPOINT_URL``) and
provisioned from infra/template.yaml like the local stack; the children never import
moto. ``-X importtime`` runs of ``import app`` give the modules that weigh most.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.output import add_output_arguments, child_report, machine, write_result
from devstack import emulator
from devstack.launch import MOTO_SERVER, running_emulator, user_environment
from infra.package import compile_tree

PROJECT = Path(__file__).resolve().parents[1]
# The repository's sample, byte-identical to the shared corpus's Kite.jpg: the benchmark needs
# nothing beside the clone.
PHOTO = PROJECT / "samples" / "photos" / "Kite.jpg"
SCHEMA = "media-pipeline/bench-coldstart/1"
REGION = "us-east-1"
STAGE = "bench"
TENANT = "bench"
MARKER = "BENCH-COLDSTART "

# Issue 5: `import app` at most 1.2x a bare `import boto3, chalice`.
GOAL_IMPORT_RATIO = 1.2
DEFAULT_REPEATS = 15
# A median import's wall time over its CPU time above this means it waited for a core.
CONTENTION_FACTOR = 1.1
TOP_MODULES = 10
# Distributions the Lambda runtime provides (boto3 and its dependencies): never packaged.
# (jmespath is one of them too, but the package ships its own copy, which comes first.)
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "urllib3", "python-dateutil", "six"}
)
# Modules worth naming when they are (or are not) loaded by `import app`.
WATCHED_MODULES = (
    "boto3",
    "botocore",
    "PIL",
    "pillow_heif",
    "aws_lambda_powertools",
    "jmespath",
    "chalice",
    "moto",
)

# A stage's configuration, as `.chalice/config.json` and `make deploy` give it (the
# resource names come from the emulator's stack).
STAGE_VARIABLES = {"LOG_LEVEL": "INFO", "POWERTOOLS_SERVICE_NAME": "media-pipeline"}

BARE = "bare-imports"
IMPORT_APP = "import-app"
HEALTH = "first-request-health"
JOB = "first-request-job"
SQS = "first-sqs-message"
BARE_PACKAGE = "bare-imports-lambda-package"
IMPORT_APP_PACKAGE = "import-app-lambda-package"
VARIANTS = (BARE, IMPORT_APP, HEALTH, JOB, SQS, BARE_PACKAGE, IMPORT_APP_PACKAGE)
DESCRIPTIONS = {
    BARE: "import boto3, chalice",
    IMPORT_APP: "import app",
    HEALTH: "import app, then the app called with a GET /health proxy event",
    JOB: "import app, then an authorized GET /jobs/{id} of a COMPLETED job (3 outputs)",
    SQS: "import app, then make_thumbnails with one job message (Kite.jpg, default presets)",
    BARE_PACKAGE: "import boto3, chalice; from a copy of the Lambda package and its .pyc",
    IMPORT_APP_PACKAGE: "import app; from a copy of the Lambda package and its .pyc",
}

# --- the children -----------------------------------------------------------------------------
# Each prints one line, MARKER + JSON, after its timings; everything else it prints (logs,
# embedded metrics) is ignored. Nothing is imported before the timed import but `time`
# (built in) and, for the invocations, what `import app` has already imported.

_REPORT = """
import json, sys
report["cpu_ms"] = time.process_time() * 1000
report["modules"] = len(sys.modules)
print({marker!r} + json.dumps(report), flush=True)
"""

_IMPORTS_CHILD = """\
import time
started, cpu_started = time.perf_counter(), time.process_time()
import {modules}
report = {{
    "import_ms": (time.perf_counter() - started) * 1000,
    "import_cpu_ms": (time.process_time() - cpu_started) * 1000,
}}
"""

_INVOKE_CHILD = """\
import time
started, cpu_started = time.perf_counter(), time.process_time()
import app
report = {{
    "import_ms": (time.perf_counter() - started) * 1000,
    "import_cpu_ms": (time.process_time() - cpu_started) * 1000,
}}
import json, sys


class Context:
    function_name = {function!r}
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self):
        return 30000


handler = {handler}
first_event, second_event = json.loads(sys.argv[1]), json.loads(sys.argv[2])
loaded = set(sys.modules)
started = time.perf_counter()
first = handler(first_event, Context())
report["first_ms"] = (time.perf_counter() - started) * 1000
imported = set(sys.modules) - loaded
started = time.perf_counter()
second = handler(second_event, Context())
report["second_ms"] = (time.perf_counter() - started) * 1000
report["status"] = [
    None if result is None else result.get("statusCode") for result in (first, second)
]
report["imported_by_first_call"] = sorted(
    {{name.split(".")[0] for name in imported}} - set(sys.stdlib_module_names) - {{"__mp_main__"}}
)
report["modules_imported_by_first_call"] = len(imported)
"""


def child_code(variant: str) -> str:
    if variant in (BARE, BARE_PACKAGE):
        body = _IMPORTS_CHILD.format(modules="boto3, chalice")
    elif variant in (IMPORT_APP, IMPORT_APP_PACKAGE):
        body = _IMPORTS_CHILD.format(modules="app")
    elif variant in (HEALTH, JOB):
        body = _INVOKE_CHILD.format(function="api_handler", handler="app.app")
    elif variant == SQS:
        body = _INVOKE_CHILD.format(
            function="make_thumbnails", handler='app.app.handler_map["make_thumbnails"]'
        )
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return body + _REPORT.format(marker=MARKER)


# CHILD_CODE: exactly what each variant's process runs (`python -c CODE [events]`).
CHILD_CODE = {variant: child_code(variant) for variant in VARIANTS}


# --- AWS: a moto server for the whole run ------------------------------------------------------


@dataclass
class Stack:
    """The moto server's endpoint, its stack's outputs, and what a child's environment needs."""

    endpoint: str
    outputs: dict[str, str]
    environment: dict[str, str]


@contextmanager
def emulated_stack() -> Iterator[Stack]:
    """A moto server provisioned from infra/template.yaml (stage ``bench``), as the local
    stack provisions its emulator; stopped at the end.

    This process is configured for it too (chalicelib's settings and clients), to make the
    jobs the children process.
    """
    with running_emulator(command=MOTO_SERVER) as endpoint:
        import boto3

        from chalicelib.clients import reset_clients
        from chalicelib.config import reset_settings
        from infra import stack

        aws = emulator.aws_environment(endpoint)
        for variable in [name for name in os.environ if name.startswith("AWS_")]:
            del os.environ[variable]  # no profile, session token or endpoint of the caller's
        os.environ.update(aws)
        session = boto3.session.Session()
        outputs = stack.deploy(session.client("cloudformation"), STAGE, poll_seconds=1)
        stack.apply_emulator_gaps(session, STAGE)
        names = stack.environment(outputs)
        os.environ.update(names)
        reset_settings()
        reset_clients()
        yield Stack(endpoint, outputs, {**aws, **names, **STAGE_VARIABLES})


def child_environment(stack: Stack) -> dict[str, str]:
    """This environment without AWS or stage settings of its own, plus the stage's.

    Bytecode writing is on (whatever the caller's PYTHONDONTWRITEBYTECODE), so the untimed
    first process writes the project's .pyc and the samples measure warm imports; the
    Lambda-package variants turn it off again.
    """
    keep = {
        key: value
        for key, value in user_environment().items()
        if not key.startswith("POWERTOOLS_")
        and key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
    }
    return {**keep, **stack.environment}


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    record: dict[str, Any]  # the SQS event record Lambda's poller would hand over
    queue_url: str


def queue_job(photo: bytes) -> QueuedJob:
    """A job as the dispatcher leaves it: source uploaded, QUEUED, its message received."""
    from chalicelib import clients, jobs, storage
    from chalicelib.config import settings
    from chalicelib.job_message import JobMessage
    from chalicelib.presets import load_presets
    from devstack.lambda_events import sqs_event

    config = settings()
    job_id = jobs.new_job_id()
    key = storage.source_key(TENANT, job_id, "Kite.jpg")
    jobs.create_job(
        job_id=job_id,
        tenant=TENANT,
        source_key=key,
        content_type="image/jpeg",
        filename="Kite.jpg",
        presets=list(load_presets(config.presets_json)),
    )
    clients.s3().put_object(
        Bucket=config.uploads_bucket, Key=key, Body=photo, ContentType="image/jpeg"
    )
    jobs.queue_upload(jobs.Upload(job_id, TENANT, key, None), size=len(photo), etag=None)
    queue_url = clients.queue_url(config.jobs_queue)
    sqs = clients.sqs()
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=JobMessage(job_id, TENANT, config.uploads_bucket, key).to_body(),
    )
    for _ in range(50):
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        for message in messages:
            if job_id in message["Body"]:
                arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
                event = sqs_event([dict(message)], arn["Attributes"]["QueueArn"], REGION)
                return QueuedJob(job_id, event["Records"][0], queue_url)
    raise RuntimeError(f"the message of job {job_id} never arrived")


def finish_jobs(queued: Sequence[QueuedJob]) -> None:
    """Check the worker completed every job, and delete their messages as Lambda would."""
    from chalicelib import clients, jobs

    for item in queued:
        job = jobs.get_job(item.job_id)
        if job is None or job.status != jobs.JobStatus.COMPLETED:
            status = None if job is None else (job.status, job.error)
            raise RuntimeError(f"job {item.job_id} did not complete: {status}")
        clients.sqs().delete_message(
            QueueUrl=item.queue_url, ReceiptHandle=item.record["receiptHandle"]
        )


def sqs_records_event(item: QueuedJob) -> dict[str, Any]:
    return {"Records": [item.record]}


def completed_job(photo: bytes) -> str:
    """A COMPLETED job with outputs, processed in this process (not timed)."""
    from chalicelib import worker

    item = queue_job(photo)
    with redirect_stdout(io.StringIO()):  # the worker's embedded metrics
        worker.handle_jobs_batch([item.record])
    finish_jobs([item])
    return item.job_id


def rest_event(method: str, path: str, resource: str, **params: str) -> dict[str, Any]:
    from devstack.lambda_events import api_gateway_event

    return api_gateway_event(method, path, resource, tenant=TENANT, path_parameters=params or None)


# --- the Lambda package, with its bytecode -------------------------------------------------------


def packaged_distributions() -> list[str]:
    """requirements.txt and its dependencies (no extras), less what the runtime provides."""
    names: list[str] = []
    pending = [
        re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0]
        for line in (PROJECT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    while pending:
        name = pending.pop()
        key = _canonical(name)
        if key in {_canonical(known) for known in names} or key in RUNTIME_PROVIDED:
            continue
        names.append(name)
        for requirement in metadata.requires(name) or []:
            if "extra ==" not in requirement:
                pending.append(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])
    return sorted(names, key=_canonical)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def build_lambda_package(root: Path) -> dict[str, Any]:
    """Copy what the Lambda zip holds into ``root``, with the bytecode the zip ships.

    The sources are copied without their caches, then compiled as ``make package``
    compiles them (unchecked-hash pyc for the runtime, CPython 3.13).
    """
    import chalice
    import chalice.app

    def is_cache(parts: Sequence[str]) -> bool:
        return any(part == "__pycache__" or part.endswith((".pyc", ".pyo")) for part in parts)

    shutil.copy2(PROJECT / "app.py", root / "app.py")
    shutil.copytree(
        PROJECT / "chalicelib",
        root / "chalicelib",
        ignore=lambda _directory, names: {name for name in names if is_cache([name])},
    )
    (root / "chalice").mkdir()
    shutil.copy2(str(chalice.__file__), root / "chalice" / "__init__.py")
    shutil.copy2(str(chalice.app.__file__), root / "chalice" / "app.py")
    distributions = packaged_distributions()
    copied = 0
    for name in distributions:
        for file in metadata.files(name) or []:
            parts = file.parts
            if parts[0] == ".." or parts[0].endswith(".dist-info") or is_cache(parts):
                continue
            target = root / Path(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(file.locate()), target)
            copied += 1
    return {
        "distributions": {name: metadata.version(name) for name in distributions},
        "files": copied,
        "bytecode": f"{compile_tree(root)} modules, unchecked-hash pyc (infra.package)",
        "also": ["app.py", "chalicelib/", "chalice/__init__.py", "chalice/app.py"],
    }


# --- sampling ----------------------------------------------------------------------------------


@dataclass
class Sampler:
    environment: dict[str, str]
    package_root: Path
    photo: bytes
    job_event: dict[str, Any]

    def run(self, variant: str) -> dict[str, Any]:
        """One fresh process of ``variant``: its report, plus the parent's wall time."""
        arguments: list[str] = []
        cwd, environment = PROJECT, self.environment
        queued: list[QueuedJob] = []
        if variant in (BARE_PACKAGE, IMPORT_APP_PACKAGE):
            cwd = self.package_root
            environment = {**environment, "PYTHONDONTWRITEBYTECODE": "1"}
        elif variant == HEALTH:
            event = rest_event("GET", "/health", "/health")
            arguments = [json.dumps(event)] * 2
        elif variant == JOB:
            arguments = [json.dumps(self.job_event)] * 2
        elif variant == SQS:
            queued = [queue_job(self.photo), queue_job(self.photo)]
            arguments = [json.dumps(sqs_records_event(item)) for item in queued]
        command = [sys.executable, "-c", CHILD_CODE[variant], *arguments]
        started = time.perf_counter()
        completed = subprocess.run(  # noqa: S603 - our interpreter, our code
            command,
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        process_ms = (time.perf_counter() - started) * 1000
        report = child_report(variant, completed, MARKER)
        report["process_ms"] = process_ms
        if variant in (HEALTH, JOB) and report["status"] != [200, 200]:
            raise RuntimeError(f"{variant}: the API answered {report['status']}")
        finish_jobs(queued)
        return report


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarise(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    measures = ("import_ms", "import_cpu_ms", "first_ms", "second_ms", "process_ms", "cpu_ms")
    summary: dict[str, Any] = {"samples": len(samples)}
    for measure in measures:
        values = [float(sample[measure]) for sample in samples if measure in sample]
        if values:
            summary[measure] = {
                "median": round(statistics.median(values), 2),
                "p90": round(percentile(values, 0.9), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
    first = samples[0]
    for key in ("imported_by_first_call", "modules_imported_by_first_call", "status"):
        if key in first:
            summary[key] = first[key]
    summary["modules_loaded"] = first["modules"]
    return summary


# --- -X importtime -------------------------------------------------------------------------------

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def importtime(environment: Mapping[str, str], cwd: Path, runs: int) -> dict[str, Any]:
    """Where ``import app`` spends its time, by module (median over ``runs``)."""
    per_module: dict[str, list[tuple[int, int, int]]] = {}
    for _ in range(runs):
        completed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import app"],
            cwd=cwd,
            env=dict(environment),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        for line in completed.stderr.splitlines():
            match = _IMPORTTIME.match(line)
            if match:
                self_us, cumulative_us = int(match[1]), int(match[2])
                depth = len(match[3]) // 2
                per_module.setdefault(match[4], []).append((self_us, cumulative_us, depth))
    modules = {
        name: {
            "self_ms": round(statistics.median(v[0] for v in values) / 1000, 2),
            "cumulative_ms": round(statistics.median(v[1] for v in values) / 1000, 2),
            "depth": values[0][2],
        }
        for name, values in per_module.items()
    }
    top = sorted(
        ((name, entry) for name, entry in modules.items() if name != "app"),
        key=lambda item: item[1]["cumulative_ms"],
        reverse=True,
    )[:TOP_MODULES]
    packages: dict[str, float] = {}
    for name, entry in modules.items():
        package = name.split(".")[0]
        packages[package] = packages.get(package, 0.0) + entry["self_ms"]
    by_package = dict(sorted(packages.items(), key=lambda item: item[1], reverse=True)[:12])
    loaded = {name.split(".")[0] for name in modules}
    return {
        "runs": runs,
        "total_ms": modules.get("app", {}).get("cumulative_ms"),
        "modules": len(modules),
        "top_cumulative": [{"module": name, **entry} for name, entry in top],
        "self_ms_by_top_level_package": {name: round(ms, 2) for name, ms in by_package.items()},
        "watched_modules_loaded": {name: name in loaded for name in WATCHED_MODULES},
    }


# --- running ------------------------------------------------------------------------------------


def run_benchmark(repeats: int, quick: bool, photo_path: Path = PHOTO) -> dict[str, Any]:
    if not photo_path.is_file():
        raise SystemExit(f"photo not found: {photo_path}")
    photo = photo_path.read_bytes()
    machine_at_start = machine()
    with emulated_stack() as stack, tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        package_root = Path(tmp)
        package = build_lambda_package(package_root)
        job_id = completed_job(photo)
        job_event = rest_event("GET", f"/jobs/{job_id}", "/jobs/{job_id}", job_id=job_id)
        sampler = Sampler(child_environment(stack), package_root, photo, job_event)
        if not quick:  # untimed: writes any stale .pyc, warms the page cache and moto
            for variant in VARIANTS:
                sampler.run(variant)
        samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for round_number in range(repeats):
            for variant in VARIANTS:
                samples[variant].append(sampler.run(variant))
            print(f"round {round_number + 1}/{repeats} done", file=sys.stderr, flush=True)
        runs = 1 if quick else 5
        imports = {
            "normal": importtime(sampler.environment, PROJECT, runs),
            "lambda_package": importtime(
                {**sampler.environment, "PYTHONDONTWRITEBYTECODE": "1"}, package_root, runs
            ),
        }
    variants = {
        variant: {"description": DESCRIPTIONS[variant], **summarise(samples[variant])}
        for variant in VARIANTS
    }
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine_at_start,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        },
        "versions": _versions(),
        "settings": {
            "quick": quick,
            "repeats": repeats,
            "order": "variants alternate within each round: " + ", ".join(VARIANTS),
            "warmup": "none" if quick else "one untimed process per variant first",
            "statistic": "median and p90 (nearest rank) of the samples",
            "timers": "import_ms, first_ms, second_ms: time.perf_counter in the child;"
            " import_cpu_ms: time.process_time around the same import;"
            " process_ms: the parent's wall time from start to exit of the child;"
            " cpu_ms: the child's process_time at its end (interpreter start included)",
            "photo": photo_path.name,
            "stage_environment": sorted(stack.environment),
            "lambda_package": package,
            "child_code": CHILD_CODE,
        },
        "variants": variants,
        "importtime": imports,
        "comparison": compare(variants),
        "warnings": warnings(variants),
    }


def warnings(variants: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Imports that took noticeably longer than their CPU time: another process had the core."""
    found = []
    for name in (BARE, IMPORT_APP, BARE_PACKAGE, IMPORT_APP_PACKAGE):
        wall = variants[name]["import_ms"]["median"]
        cpu = variants[name]["import_cpu_ms"]["median"]
        if wall > cpu * CONTENTION_FACTOR:
            found.append(
                f"{name}: median import {wall:.1f} ms wall for {cpu:.1f} ms CPU: the machine was"
                " busy; compare the CPU-time ratio"
            )
    return found


def compare(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    def ratio(numerator: str, denominator: str, measure: str) -> float:
        top = variants[numerator][measure]["median"]
        bottom = variants[denominator][measure]["median"]
        return round(float(top) / float(bottom), 3)

    import_ratio = ratio(IMPORT_APP, BARE, "import_ms")
    cpu_ratio = ratio(IMPORT_APP, BARE, "import_cpu_ms")
    package_ratio = ratio(IMPORT_APP_PACKAGE, BARE_PACKAGE, "import_ms")
    return {
        "import_app_over_bare": {
            "measure": "median import_ms",
            "target": f"<= {GOAL_IMPORT_RATIO}",
            "measured": import_ratio,
            "met": import_ratio <= GOAL_IMPORT_RATIO,
        },
        "import_app_over_bare_cpu_time": cpu_ratio,
        "import_app_over_bare_process_wall": ratio(IMPORT_APP, BARE, "process_ms"),
        "lambda_package_import_app_over_bare_cpu_time": ratio(
            IMPORT_APP_PACKAGE, BARE_PACKAGE, "import_cpu_ms"
        ),
        "lambda_package_import_app_over_bare": {
            "measure": "median import_ms, packaged code with its bytecode",
            "target": f"<= {GOAL_IMPORT_RATIO}",
            "measured": package_ratio,
            "met": package_ratio <= GOAL_IMPORT_RATIO,
        },
        "lambda_package_import_app_over_normal": ratio(IMPORT_APP_PACKAGE, IMPORT_APP, "import_ms"),
    }


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("boto3", "botocore", "chalice", "aws-lambda-powertools", "Pillow", "moto"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# --- reporting ----------------------------------------------------------------------------------


def _cell(summary: Mapping[str, Any], measure: str) -> str:
    value = summary.get(measure)
    return "—" if value is None else f"{value['median']:.1f} / {value['p90']:.1f}"


def format_table(result: Mapping[str, Any]) -> str:
    measures = ("import_ms", "import_cpu_ms", "first_ms", "second_ms", "process_ms")
    lines = [
        "| variant | import ms | import CPU ms | first call ms | second call ms | process ms |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, summary in result["variants"].items():
        cells = [_cell(summary, measure) for measure in measures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n(median / p90 of the samples)"


def format_importtime(result: Mapping[str, Any]) -> str:
    imports = result["importtime"]["normal"]
    lines = ["| module | cumulative ms | self ms |", "|---|--:|--:|"]
    for entry in imports["top_cumulative"]:
        indent = "· " * max(0, entry["depth"] - 1)
        lines.append(
            f"| {indent}{entry['module']} | {entry['cumulative_ms']:.1f} | {entry['self_ms']:.1f} |"
        )
    return "\n".join(lines)


def format_goal(result: Mapping[str, Any]) -> str:
    comparison = result["comparison"]
    lines = []
    for key in ("import_app_over_bare", "lambda_package_import_app_over_bare"):
        criterion = comparison[key]
        verdict = "met" if criterion["met"] else "NOT met"
        lines.append(f"- {key}: {criterion['measured']} (target {criterion['target']}): {verdict}")
    return "\n".join(lines)


# --- the command line ---------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coldstart",
        description="Cold-start times of the app, each sample in a fresh process.",
    )
    parser.add_argument(
        "--repeats", type=_positive, help=f"samples per variant (default {DEFAULT_REPEATS})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one sample per variant, no warm-up: a smoke test"
    )
    add_output_arguments(parser, "coldstart")
    parser.add_argument(
        "--photo",
        type=Path,
        default=PHOTO,
        help=f"the job's source photo (default {PHOTO.relative_to(PROJECT)})",
    )
    arguments = parser.parse_args(argv)
    repeats = arguments.repeats or (1 if arguments.quick else DEFAULT_REPEATS)
    result = run_benchmark(repeats, arguments.quick, arguments.photo)
    print(format_table(result))
    print()
    print(format_importtime(result))
    print()
    print(format_goal(result))
    for warning in result["warnings"]:
        print(f"WARNING: {warning}")
    write_result("coldstart", result, arguments, trial=arguments.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
