"""Cold starts: importing the app and its first invocations, each in a fresh process.

    python -m bench.coldstart [--repeats N] [--quick] [--out FILE] [--summary FILE]

Every sample is a new ``python -c`` process running ``CHILD_CODE[variant]``, so nothing
but what is measured is imported first; the variants alternate within each round, so a
drift in the machine's load spreads over all of them. AWS is one moto server for the
whole run, provisioned from infra/template.yaml; the children never import moto. The
variants, measures and results are in bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import statistics
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bench.output import add_output_arguments, machine, write_result
from bench.procs import PRINT_REPORT, PROJECT, run_python
from devstack import emulator
from devstack.lambda_events import api_gateway_event
from devstack.launch import MOTO_SERVER, running_emulator, user_environment

# The repository's sample (the shared corpus's Kite.jpg): the benchmark needs only the clone.
PHOTO = PROJECT / "samples" / "photos" / "Kite.jpg"
SCHEMA = "media-pipeline/bench-coldstart/2"
REGION = "us-east-1"
TENANT = "bench"

GOAL_IMPORT_RATIO = 1.2  # issue 5: `import app` at most 1.2x a bare `import boto3, chalice`
DEFAULT_REPEATS = 15
# What `import app` must leave for the first call that needs it (or never load: moto).
LAZY_PACKAGES = ("boto3", "PIL", "pillow_heif", "moto")
# A stage's configuration beside the resource names, as `.chalice/config.json` gives it.
STAGE_VARIABLES = {"LOG_LEVEL": "INFO", "POWERTOOLS_SERVICE_NAME": "media-pipeline"}

BARE = "bare-imports"
IMPORT_APP = "import-app"
JOB = "first-request-job"
SQS = "first-sqs-message"
VARIANTS = (BARE, IMPORT_APP, JOB, SQS)
MEASURES = ("import_ms", "import_cpu_ms", "first_ms", "second_ms", "process_ms")

# --- the children -----------------------------------------------------------------------------
# Nothing is imported before the timed import but `time` (built in).

_TIMED_IMPORT = """\
import time
started, cpu_started = time.perf_counter(), time.process_time()
import {modules}
report = {{
    "import_ms": (time.perf_counter() - started) * 1000,
    "import_cpu_ms": (time.process_time() - cpu_started) * 1000,
}}
import sys
loaded = {{name.split(".")[0] for name in sys.modules}}
report["lazy_packages_loaded"] = sorted(set({lazy!r}) & loaded)
"""

# The handler called twice, with the events of argv[1] and argv[2]: cold, then warm.
_TWO_CALLS = """\
import json, types

context = types.SimpleNamespace(
    function_name={function!r}, aws_request_id="bench", get_remaining_time_in_millis=lambda: 30000
)
handler = {handler}
first_event, second_event = json.loads(sys.argv[1]), json.loads(sys.argv[2])
loaded = set(sys.modules)
started = time.perf_counter()
first = handler(first_event, context)
report["first_ms"] = (time.perf_counter() - started) * 1000
report["imported_by_first_call"] = sorted(
    {{name.split(".")[0] for name in set(sys.modules) - loaded}}
    - set(sys.stdlib_module_names) - {{"__mp_main__"}}
)
started = time.perf_counter()
second = handler(second_event, context)
report["second_ms"] = (time.perf_counter() - started) * 1000
report["status"] = [result and result.get("statusCode") for result in (first, second)]
"""

HANDLERS = {
    JOB: ("api_handler", "app.app"),
    SQS: ("make_thumbnails", 'app.app.handler_map["make_thumbnails"]'),
}


def child_code(variant: str) -> str:
    modules = "boto3, chalice" if variant == BARE else "app"
    code = _TIMED_IMPORT.format(modules=modules, lazy=LAZY_PACKAGES)
    if variant in HANDLERS:
        function, handler = HANDLERS[variant]
        code += _TWO_CALLS.format(function=function, handler=handler)
    return code + 'report["modules"] = len(sys.modules)\n' + PRINT_REPORT


# CHILD_CODE: exactly what each variant's process runs (`python -c CODE [events]`).
CHILD_CODE = {variant: child_code(variant) for variant in VARIANTS}

# --- AWS: a moto server for the whole run ------------------------------------------------------


@contextmanager
def emulated_stack() -> Iterator[dict[str, str]]:
    """A moto server provisioned from infra/template.yaml as the local stack's emulator is,
    stopped at the end: the children's environment, which reaches it with a stage's
    settings. This process is configured for it too, to make the children's jobs."""
    with running_emulator(command=MOTO_SERVER) as endpoint:
        import boto3

        from chalicelib.clients import reset_clients
        from chalicelib.config import reset_settings
        from infra import stack

        aws = emulator.aws_environment(endpoint)
        for variable in [name for name in os.environ if name.startswith("AWS_")]:
            del os.environ[variable]  # no profile, session token or endpoint of the caller's
        os.environ.update(aws)
        names = stack.environment(emulator.provision(boto3.session.Session()))
        os.environ.update(names)
        reset_settings()
        reset_clients()
        # Bytecode writing on, whatever the caller's: the untimed first process writes the
        # project's .pyc, so that the samples measure warm imports.
        keep = {
            key: value
            for key, value in user_environment().items()
            if not key.startswith("POWERTOOLS_")
            and key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
        }
        yield {**keep, **aws, **names, **STAGE_VARIABLES}


def queue_job(photo: bytes) -> dict[str, Any]:
    """A job as the dispatcher leaves it (source uploaded, QUEUED, message sent): the SQS
    record of its message, received from the jobs queue (and deleted there)."""
    from chalicelib import clients, job_message, jobs, storage
    from chalicelib.config import settings
    from chalicelib.presets import load_presets
    from devstack.lambda_events import sqs_event

    config = settings()
    job_id = jobs.new_job_id()
    upload = jobs.Upload(job_id, TENANT, storage.source_key(TENANT, job_id, PHOTO.name), None)
    presets = list(load_presets(config.presets_json))
    jobs.create_job(
        job_id=job_id,
        tenant=TENANT,
        source_key=upload.key,
        content_type="image/jpeg",
        filename=PHOTO.name,
        presets=presets,
    )
    bucket = config.uploads_bucket
    clients.s3().put_object(Bucket=bucket, Key=upload.key, Body=photo, ContentType="image/jpeg")
    jobs.queue_upload(upload, size=len(photo), etag=None)
    sqs, queue_url = clients.sqs(), clients.queue_url(config.jobs_queue)
    body = job_message.build(upload, bucket).to_body()
    sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    # The only message in the queue: each is deleted as soon as it is received.
    received = sqs.receive_message(
        QueueUrl=queue_url, WaitTimeSeconds=20, MessageSystemAttributeNames=["All"]
    )
    message = received["Messages"][0]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    if message["Body"] != body:
        raise RuntimeError(f"expected the message of job {job_id}, received {message['Body']}")
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn = attributes["Attributes"]["QueueArn"]
    record: dict[str, Any] = sqs_event([dict(message)], arn, REGION)["Records"][0]
    return record


def completed(record: Mapping[str, Any]) -> str:
    """The job of ``record``, which the worker must have completed."""
    from chalicelib import jobs

    job_id: str = json.loads(record["body"])["jobId"]
    job = jobs.get_job(job_id)
    if job is None or job.status != jobs.JobStatus.COMPLETED:
        status = None if job is None else (job.status, job.error)
        raise RuntimeError(f"job {job_id} did not complete: {status}")
    return job_id


def completed_job(photo: bytes) -> str:
    """A COMPLETED job with outputs, processed in this process (not timed)."""
    from chalicelib import worker

    record = queue_job(photo)
    with redirect_stdout(io.StringIO()):  # the worker's embedded metrics
        worker.handle_jobs_batch([record])
    return completed(record)


# --- sampling ----------------------------------------------------------------------------------


@dataclass
class Sampler:
    environment: dict[str, str]
    photo: bytes
    job_event: dict[str, Any]

    def run(self, variant: str) -> dict[str, Any]:
        """One fresh process of ``variant``: its report, plus the parent's wall time."""
        records: list[dict[str, Any]] = []
        arguments: list[str] = []
        if variant == JOB:
            arguments = [json.dumps(self.job_event)] * 2
        elif variant == SQS:
            records = [queue_job(self.photo), queue_job(self.photo)]
            arguments = [json.dumps({"Records": [record]}) for record in records]
        code = CHILD_CODE[variant]
        report, process_ms = run_python(variant, code, arguments, env=self.environment)
        report["process_ms"] = process_ms
        if variant == JOB and report["status"] != [200, 200]:
            raise RuntimeError(f"{variant}: the API answered {report['status']}")
        for record in records:
            completed(record)
        return report


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``fraction`` at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summarise(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"samples": len(samples)}
    for measure in MEASURES:
        values = [float(sample[measure]) for sample in samples if measure in sample]
        if values:
            median, p90 = statistics.median(values), percentile(values, 0.9)
            summary[measure] = {"median": round(median, 2), "p90": round(p90, 2)}
    first = samples[0]
    for key in ("imported_by_first_call", "status", "lazy_packages_loaded", "modules"):
        if key in first:
            summary[key] = first[key]
    return summary


def run_benchmark(repeats: int, quick: bool) -> dict[str, Any]:
    photo = PHOTO.read_bytes()
    machine_at_start = machine()
    with emulated_stack() as environment:
        job_id = completed_job(photo)
        path, parameters = f"/jobs/{job_id}", {"job_id": job_id}
        job_event = api_gateway_event(
            "GET", path, "/jobs/{job_id}", tenant=TENANT, path_parameters=parameters
        )
        sampler = Sampler(environment, photo, job_event)
        if not quick:  # untimed: writes any stale .pyc, warms the page cache and moto
            for variant in VARIANTS:
                sampler.run(variant)
        samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
        for round_number in range(repeats):
            for variant in VARIANTS:
                samples[variant].append(sampler.run(variant))
            print(f"round {round_number + 1}/{repeats} done", file=sys.stderr, flush=True)
    variants = {variant: summarise(samples[variant]) for variant in VARIANTS}
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine_at_start,
            "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        },
        "versions": {
            name: metadata.version(name)
            for name in ("boto3", "botocore", "chalice", "aws-lambda-powertools", "Pillow", "moto")
        },
        "settings": {
            "quick": quick,
            "repeats": repeats,
            "photo": PHOTO.name,
            "child_code": CHILD_CODE,
        },
        "variants": variants,
        "comparison": compare(variants),
    }


def compare(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`import app` over the bare imports, in median wall time (the target), CPU time and
    the whole process's wall time."""

    def ratio(measure: str) -> float:
        app, bare = variants[IMPORT_APP][measure]["median"], variants[BARE][measure]["median"]
        return round(float(app) / float(bare), 3)

    measured = ratio("import_ms")
    return {
        "import_app_over_bare": {
            "target": f"<= {GOAL_IMPORT_RATIO}",
            "measured": measured,
            "met": measured <= GOAL_IMPORT_RATIO,
        },
        "import_app_over_bare_cpu_time": ratio("import_cpu_ms"),
        "import_app_over_bare_process_wall": ratio("process_ms"),
    }


def format_table(result: Mapping[str, Any]) -> str:
    lines = [
        "| variant | import ms | import CPU ms | first call ms | second call ms | process ms |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, summary in result["variants"].items():
        cells = [
            f"{summary[measure]['median']:.1f} / {summary[measure]['p90']:.1f}"
            if measure in summary
            else "—"
            for measure in MEASURES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    goal = result["comparison"]["import_app_over_bare"]
    verdict = "met" if goal["met"] else "NOT met"
    return "\n".join(lines) + (
        "\n\n(median / p90 of the samples)\n\n"
        f"import app / bare imports: {goal['measured']} (target {goal['target']}): {verdict}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coldstart",
        description="Cold-start times of the app, each sample in a fresh process.",
    )
    parser.add_argument(
        "--repeats", type=int, help=f"samples per variant (default {DEFAULT_REPEATS})"
    )
    parser.add_argument(
        "--quick", action="store_true", help="one sample per variant, no warm-up: a smoke test"
    )
    add_output_arguments(parser, "coldstart")
    arguments = parser.parse_args(argv)
    repeats = arguments.repeats or (1 if arguments.quick else DEFAULT_REPEATS)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    result = run_benchmark(repeats, arguments.quick)
    print(format_table(result))
    write_result("coldstart", result, arguments, trial=arguments.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
