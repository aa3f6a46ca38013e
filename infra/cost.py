"""What a million images cost on AWS at the configured worker memory.

    python -m infra.cost [PHOTO_DIR] [--overhead-ms 60] [--notify polls|webhooks]

Measures the engine on the photos (median per image, this machine, one process), adds a
per-image allowance for the S3 and DynamoDB round trips the worker makes around it, and
prices the Lambda compute at the worker's configured memory and architecture together
with every other per-image request (API Gateway, S3, SQS, DynamoDB) and the API's access
log lines; then what a stage costs a month whatever its traffic (alarms, dashboard, the
webhook secrets' KMS key). `--notify` is how the client learns a job ended: three polls,
or one webhook delivery (and one GET of the job for fresh output URLs).
Prices are AWS list prices for us-east-1 (on-demand, no free tier); edit PRICES for
another region.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import timeit
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"

PRICES = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_gb_second_x86_64": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "api_gateway_rest_request": 3.50 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "sqs_request": 0.40 / 1e6,
    "dynamodb_write_unit": 0.625 / 1e6,
    "dynamodb_read_unit": 0.125 / 1e6,
    "cloudwatch_logs_ingested_gb": 0.50,
    "cloudwatch_alarm_month": 0.10,  # standard resolution, one metric
    "cloudwatch_dashboard_month": 3.00,  # beyond the account's first three
    "kms_key_month": 1.00,
    "kms_request": 0.03 / 10000,
    "s3_standard_gb_month": 0.023,
}

# Requests per image, from the code: POST /uploads and (say) three polls of GET /jobs/{id};
# the client's POST to S3 and three outputs written; GET of the source and three presigned
# GETs of outputs by the client (the source's DELETE is free); one send, and a receive and
# delete shared by a batch; writes: create, QUEUED, PROCESSING, COMPLETED (two units: the
# outputs list makes the item over 1 KB); strongly consistent reads: the four API reads
# (the dispatcher and the worker read nothing: their conditional writes return the job).
API_REQUESTS = {"polls": 4, "webhooks": 2}
S3_PUTS = 4
S3_GETS = 4
SQS_REQUESTS_PER_BATCH = 2
# +6: the open-jobs index (create 1, QUEUED 2, PROCESSING 2, end 1); +8: the status index,
# whose key every status change moves (create 1, QUEUED 2, PROCESSING 2, COMPLETED 1 + 2).
DYNAMODB_WRITE_UNITS = 19
# +0.5: POST /uploads counts the tenant's PENDING jobs (eventually consistent, one 4 KB unit
# while it has a few).
DYNAMODB_READ_UNITS = 4.5
# The job's event, whatever the client does: one send to the webhooks queue, and the write
# that takes the job out of the event shard (the item, and the open-jobs index).
EVENT_SQS_REQUESTS = 1
EVENT_WRITE_UNITS = 2

# Originals (ORIGINALS_RETENTION_DAYS, default the jobs' 30 days): each upload copied once
# (a COPY is priced as a PUT) and stored for the retention. A phone photo is about 3 MB.
ORIGINAL_MB = 3.0
DEFAULT_ORIGINALS_DAYS = 30
DAYS_PER_MONTH = 30

# One webhook delivery to one endpoint that answers at once (chalicelib/deliveries.py):
# two invocations (the fan-out and the attempt) of the deliveries function, ~50 ms each at
# its 256 MB; their receives and deletes (batches of one) and the attempt's send; reads of
# the tenant's endpoints (a query, half a unit), the endpoint and the job; writes of the
# claim, the attempt's log line and the settled delivery. KMS: a warm function decrypts a
# secret once, so a fraction of a request per image.
DELIVERY_INVOCATIONS = 2
DELIVERY_MS = 50
DELIVERY_MEMORY_MB = 256
DELIVERY_SQS_REQUESTS = 5
DELIVERY_READ_UNITS = 2.5
DELIVERY_WRITE_UNITS = 3
DELIVERY_KMS_REQUESTS = 0.01


# What a typical access-log value is as long as (infra/deploy.py's ACCESS_LOG_FIELDS): a
# GET /jobs/{jobId} of a UUID job, authorized from the authorizer's cache; a variable not
# listed here is taken as 16 characters.
ACCESS_LOG_SAMPLES = {
    "requestId": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "extendedRequestId": "Zx3JHGxwIAMEb2Q=",
    "identity.sourceIp": "203.0.113.195",
    "requestTime": "04/Dec/2026:17:55:00 +0000",
    "requestTimeEpoch": "1796406900000",
    "httpMethod": "GET",
    "resourcePath": "/jobs/{job_id}",
    "path": "/api/jobs/0f8fad5b-d9cb-469f-a165-70867728950e",
    "status": "200",
    "protocol": "HTTP/1.1",
    "responseLength": "912",
    "responseLatency": "38",
    "integrationLatency": "35",
    "integration.status": "200",
    "integration.error": "-",
    "error.responseType": "-",
    "authorizer.status": "-",
    "authorizer.latency": "-",
    "authorizer.error": "-",
    "authorizer.tenant": "acme-corp",
}
# CloudWatch Logs counts each event as its message plus 26 bytes.
LOG_EVENT_OVERHEAD_BYTES = 26


def access_log_line_bytes() -> int:
    """The size of a typical access-log event, from the format `make deploy` sets."""
    from infra.deploy import ACCESS_LOG_FORMAT

    line = re.sub(
        r"\$context\.([A-Za-z.]+)",
        lambda match: ACCESS_LOG_SAMPLES.get(match.group(1), "x" * 16),
        ACCESS_LOG_FORMAT,
    )
    return len(line.encode()) + LOG_EVENT_OVERHEAD_BYTES


def monthly_per_stage() -> dict[str, float]:
    """What a deployed stage costs a month with no traffic at all: its alarms, dashboard and
    KMS keys (the alarm topic's and the webhook secrets')."""
    from infra import stack

    types = Counter(resource["Type"] for resource in stack.load_template()["Resources"].values())
    alarms, dashboards = types["AWS::CloudWatch::Alarm"], types["AWS::CloudWatch::Dashboard"]
    keys = types["AWS::KMS::Key"]
    return {
        f"CloudWatch alarms ({alarms})": alarms * PRICES["cloudwatch_alarm_month"],
        f"CloudWatch dashboard ({dashboards})": dashboards * PRICES["cloudwatch_dashboard_month"],
        f"KMS keys ({keys})": keys * PRICES["kms_key_month"],
    }


@dataclass(frozen=True)
class Estimate:
    engine_ms: float
    worker_ms: float
    memory_mb: int
    architecture: str
    batch_size: int
    lines: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def measure_engine_ms(photos: list[Path], repeats: int = 3) -> float:
    from chalicelib.imaging import render
    from chalicelib.presets import DEFAULT_PRESETS

    def best_ms(data: bytes) -> float:
        runs = timeit.repeat(lambda: render(data, DEFAULT_PRESETS), number=1, repeat=repeats)
        return min(runs) * 1000

    return statistics.median(best_ms(photo.read_bytes()) for photo in photos)


def worker_settings() -> tuple[int, str, int]:
    config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
    worker = config["lambda_functions"]["make_thumbnails"]
    batch = int(config.get("environment_variables", {}).get("WORKER_BATCH_SIZE", 5))
    return int(worker["lambda_memory_size"]), str(config["lambda_architecture"]), batch


def estimate(
    engine_ms: float,
    overhead_ms: float,
    notify: str = "polls",
    originals_days: int = DEFAULT_ORIGINALS_DAYS,
) -> Estimate:
    memory_mb, architecture, batch_size = worker_settings()
    worker_ms = engine_ms + overhead_ms
    gb_seconds = worker_ms / 1000 * memory_mb / 1024
    million = 1e6
    api_requests = API_REQUESTS[notify]
    lines = {
        "Lambda worker compute": million * gb_seconds * PRICES[f"lambda_gb_second_{architecture}"],
        "Lambda requests (worker per batch, dispatcher, API)": million
        * (1 / batch_size + 1 + api_requests)
        * PRICES["lambda_request"],
        "API Gateway REST requests": million * api_requests * PRICES["api_gateway_rest_request"],
        "S3 PUT (upload + 3 outputs)": million * S3_PUTS * PRICES["s3_put"],
        "S3 GET/HEAD": million * S3_GETS * PRICES["s3_get"],
        "SQS": million
        * (1 + SQS_REQUESTS_PER_BATCH / batch_size + EVENT_SQS_REQUESTS)
        * PRICES["sqs_request"],
        "DynamoDB writes": million
        * (DYNAMODB_WRITE_UNITS + EVENT_WRITE_UNITS)
        * PRICES["dynamodb_write_unit"],
        "DynamoDB reads": million * DYNAMODB_READ_UNITS * PRICES["dynamodb_read_unit"],
        "CloudWatch Logs: API access log lines": million
        * api_requests
        * access_log_line_bytes()
        / 1e9
        * PRICES["cloudwatch_logs_ingested_gb"],
    }
    if notify == "webhooks":
        lines.update(delivery_lines(architecture))
    if originals_days:
        lines.update(originals_lines(originals_days))
    return Estimate(engine_ms, worker_ms, memory_mb, architecture, batch_size, lines)


def originals_lines(days: int) -> dict[str, float]:
    """Each image's original kept `days` for reprocessing: one copy, and its storage
    (a million originals' worth, held for `days` of a month's price)."""
    million = 1e6
    gb_months = million * ORIGINAL_MB / 1024 * days / DAYS_PER_MONTH
    return {
        f"S3 originals: copy + storage ({ORIGINAL_MB:g} MB kept {days} d)": million
        * PRICES["s3_put"]
        + gb_months * PRICES["s3_standard_gb_month"],
    }


def delivery_lines(architecture: str) -> dict[str, float]:
    """One webhook delivery per image, to an endpoint that answers at once."""
    million = 1e6
    gb_seconds = DELIVERY_INVOCATIONS * DELIVERY_MS / 1000 * DELIVERY_MEMORY_MB / 1024
    return {
        "Webhooks: deliveries function (2 invocations)": million
        * (
            gb_seconds * PRICES[f"lambda_gb_second_{architecture}"]
            + DELIVERY_INVOCATIONS * PRICES["lambda_request"]
        ),
        "Webhooks: SQS, DynamoDB, KMS": million
        * (
            DELIVERY_SQS_REQUESTS * PRICES["sqs_request"]
            + DELIVERY_READ_UNITS * PRICES["dynamodb_read_unit"]
            + DELIVERY_WRITE_UNITS * PRICES["dynamodb_write_unit"]
            + DELIVERY_KMS_REQUESTS * PRICES["kms_request"]
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.cost", description=__doc__)
    parser.add_argument("photos", nargs="?", type=Path, default=CORPUS)
    parser.add_argument(
        "--overhead-ms",
        type=float,
        default=60.0,
        help="worker time per image beyond the engine: S3 and DynamoDB round trips",
    )
    parser.add_argument(
        "--notify",
        choices=sorted(API_REQUESTS),
        default="webhooks",
        help="how the client learns a job ended: three polls, or a webhook",
    )
    parser.add_argument(
        "--originals-days",
        type=int,
        default=DEFAULT_ORIGINALS_DAYS,
        help="ORIGINALS_RETENTION_DAYS: days each upload is kept for reprocessing (0: none)",
    )
    args = parser.parse_args(argv)
    photos = sorted(args.photos.glob("*.jpg"))
    if not photos:
        parser.error(f"no .jpg photos in {args.photos}")
    result = estimate(measure_engine_ms(photos), args.overhead_ms, args.notify, args.originals_days)
    print(
        f"engine {result.engine_ms:.0f} ms/image (median of {len(photos)} photos, this machine)"
        f" + {args.overhead_ms:.0f} ms I/O = {result.worker_ms:.0f} ms at"
        f" {result.memory_mb} MB {result.architecture}, batches of {result.batch_size}"
    )
    for name, dollars in result.lines.items():
        print(f"  {name:<52} ${dollars:8.2f}")
    print(f"  {'total per million images (' + args.notify + ')':<52} ${result.total:8.2f}")
    print("a stage, a month, whatever its traffic:")
    for name, dollars in monthly_per_stage().items():
        print(f"  {name:<52} ${dollars:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
