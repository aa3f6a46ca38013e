"""Stage configuration, read lazily from the environment.

`app.py` is imported before a stage's variables exist (tests, `chalice package`), so
nothing here runs at import time: call `settings()` when a value is needed.

The resource names (buckets, tables, the jobs queue) have no default: `make deploy` sets
them from the stack's outputs, the local stack and the tests from the resources they
provision. A function started without one fails on its first use of `settings()`, with a
message naming the variable, rather than talk to a resource that does not exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

from chalicelib.errors import ConfigurationError
from chalicelib.formats import OUTPUT_FORMATS

MIB = 1024 * 1024

# Resource names the event-source decorators of app.py fall back on while nothing is
# deployed (tests, `chalice package` without a stage): never used to reach AWS.
DEFAULT_UPLOADS_BUCKET = "media-pipeline-uploads"
DEFAULT_JOBS_QUEUE = "media-pipeline-jobs"
DEFAULT_JOBS_DLQ = "media-pipeline-jobs-dlq"
DEFAULT_WEBHOOKS_QUEUE = "media-pipeline-webhooks"
DEFAULT_WEBHOOKS_DLQ = "media-pipeline-webhooks-dlq"
DEFAULT_REPROCESS_QUEUE = "media-pipeline-reprocess"
DEFAULT_REPROCESS_DLQ = "media-pipeline-reprocess-dlq"
DEFAULT_BACKFILL_QUEUE = "media-pipeline-backfill"
DEFAULT_BACKFILL_DLQ = "media-pipeline-backfill-dlq"
UPLOADS_PREFIX = "uploads/"
# Kept originals, in the uploads bucket (chalicelib/storage.py).
ORIGINALS_PREFIX = "originals/"


@dataclass(frozen=True)
class Settings:
    uploads_bucket: str
    derived_bucket: str
    jobs_table: str
    api_keys_table: str
    jobs_queue: str
    max_upload_bytes: int
    max_pixels: int
    max_frames: int
    render_time_budget_seconds: int
    upload_url_ttl_seconds: int
    download_url_ttl_seconds: int
    job_ttl_days: int
    # Days a job's original upload is kept for reprocessing; 0 keeps none.
    originals_retention_days: int
    presets_json: str | None
    jobs_queue_retention_seconds: int
    jobs_queue_visibility_timeout_seconds: int
    sweep_pending_grace_seconds: int
    sweep_stuck_margin_seconds: int
    sweep_max_jobs: int
    sweep_scan_jobs: int
    sweep_requeue_after_seconds: int
    sweep_max_requeues: int
    sweep_announce_grace_seconds: int
    max_pending_uploads: int
    max_job_outputs: int
    max_output_dimension: int
    max_job_output_pixels: int
    upload_output_formats: tuple[str, ...]
    reprocess_queue: str
    reprocess_dlq: str
    webhooks_table: str
    webhooks_queue: str
    webhooks_dlq: str
    webhook_secrets_key: str
    max_webhooks_per_tenant: int
    webhook_allow_http: bool
    webhook_allowed_networks: tuple[str, ...]
    webhook_ca_file: str | None
    webhook_retry_schedule: tuple[int, ...] | None
    webhook_timeout_seconds: int
    backfills_table: str
    backfill_queue: str
    backfill_page_size: int


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
    return value


def _flag(name: str) -> bool:
    raw = os.environ.get(name) or "0"
    if raw not in ("0", "1"):
        raise ConfigurationError(f"{name} must be 0 or 1, got {raw!r}")
    return raw == "1"


def _list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (os.environ.get(name) or "").split(",") if item.strip())


def _formats(name: str) -> tuple[str, ...]:
    items = _list(name)
    unknown = [item for item in items if item not in OUTPUT_FORMATS]
    if unknown:
        raise ConfigurationError(f"{name} must name formats of {', '.join(OUTPUT_FORMATS)}")
    return items or tuple(OUTPUT_FORMATS)


def _seconds_list(name: str) -> tuple[int, ...] | None:
    items = _list(name)
    if not items:
        return None
    if not all(item.isascii() and item.isdigit() for item in items):
        raise ConfigurationError(f"{name} must be comma-separated whole seconds, got {items!r}")
    return tuple(int(item) for item in items)


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"{name} is not set: the stage has no name for that resource")
    return value


@cache
def settings() -> Settings:
    job_ttl_days = _int("JOB_TTL_DAYS", 30)
    return Settings(
        uploads_bucket=_required("UPLOADS_BUCKET"),
        derived_bucket=_required("DERIVED_BUCKET"),
        jobs_table=_required("JOBS_TABLE"),
        api_keys_table=_required("API_KEYS_TABLE"),
        jobs_queue=_required("JOBS_QUEUE"),
        max_upload_bytes=_int("MAX_UPLOAD_BYTES", 25 * MIB),
        max_pixels=_int("MAX_PIXELS", 50_000_000),
        max_frames=_int("MAX_FRAMES", 1000),
        # Below the worker's 60 s Lambda timeout, with room for the download and uploads.
        render_time_budget_seconds=_int("RENDER_TIME_BUDGET_SECONDS", 25),
        upload_url_ttl_seconds=_int("UPLOAD_URL_TTL_SECONDS", 900),
        download_url_ttl_seconds=_int("DOWNLOAD_URL_TTL_SECONDS", 3600),
        job_ttl_days=job_ttl_days,
        originals_retention_days=_int("ORIGINALS_RETENTION_DAYS", job_ttl_days, minimum=0),
        presets_json=os.environ.get("PRESETS") or None,
        # The jobs queue's MessageRetentionPeriod and VisibilityTimeout: the stack's outputs
        # (make deploy writes them); these defaults are the template's.
        jobs_queue_retention_seconds=_int("JOBS_QUEUE_RETENTION_SECONDS", 4 * 86400),
        jobs_queue_visibility_timeout_seconds=_int("JOBS_QUEUE_VISIBILITY_TIMEOUT_SECONDS", 360),
        # The sweeper's thresholds (chalicelib/sweeper.py explains the defaults).
        sweep_pending_grace_seconds=_int("SWEEP_PENDING_GRACE_SECONDS", 900, minimum=0),
        sweep_stuck_margin_seconds=_int("SWEEP_STUCK_MARGIN_SECONDS", 6 * 3600, minimum=0),
        sweep_max_jobs=_int("SWEEP_MAX_JOBS", 200),
        # Overdue jobs a run reads per status, among which it shares SWEEP_MAX_JOBS across
        # tenants: 5 tenants' worth of MAX_PENDING_UPLOADS (chalicelib/sweeper.py).
        sweep_scan_jobs=_int("SWEEP_SCAN_JOBS", 5000),
        # Lambda's maximum event age for asynchronous invocations (6 h), the window in which
        # a retried S3 event may still send a QUEUED job's message, and 15 minutes.
        sweep_requeue_after_seconds=_int("SWEEP_REQUEUE_AFTER_SECONDS", 6 * 3600 + 900),
        sweep_max_requeues=_int("SWEEP_MAX_REQUEUES", 3, minimum=0),
        sweep_announce_grace_seconds=_int("SWEEP_ANNOUNCE_GRACE_SECONDS", 60, minimum=0),
        # Per tenant. A client that uploads at once holds a job PENDING for its upload's
        # seconds: at the stage's whole rate (50 req/s), 1000 is 20 s per upload. It also
        # bounds the backlog one tenant can leave the sweeper (chalicelib/sweeper.py).
        max_pending_uploads=_int("MAX_PENDING_UPLOADS", 1000),
        # What an upload's own `outputs` may ask for (chalicelib/upload_outputs.py).
        max_job_outputs=_int("MAX_JOB_OUTPUTS", 16),
        max_output_dimension=_int("MAX_OUTPUT_DIMENSION", 4096),
        # 16 outputs of 1.5 megapixels: a 4-width x 3-format set up to 1600x1200 fits.
        max_job_output_pixels=_int("MAX_JOB_OUTPUT_PIXELS", 24_000_000),
        upload_output_formats=_formats("UPLOAD_OUTPUT_FORMATS"),
        reprocess_queue=os.environ.get("REPROCESS_QUEUE") or DEFAULT_REPROCESS_QUEUE,
        reprocess_dlq=os.environ.get("REPROCESS_DLQ") or DEFAULT_REPROCESS_DLQ,
        webhooks_table=_required("WEBHOOKS_TABLE"),
        webhooks_queue=_required("WEBHOOKS_QUEUE"),
        webhooks_dlq=os.environ.get("WEBHOOKS_DLQ") or DEFAULT_WEBHOOKS_DLQ,
        webhook_secrets_key=_required("WEBHOOK_SECRETS_KEY"),
        max_webhooks_per_tenant=_int("MAX_WEBHOOKS_PER_TENANT", 10),
        # Off on AWS: https to public addresses only (chalicelib/outbound.py). The local
        # stack allows http://127.0.0.1, where its receiver listens.
        webhook_allow_http=_flag("WEBHOOK_ALLOW_HTTP"),
        webhook_allowed_networks=_list("WEBHOOK_ALLOWED_NETWORKS"),
        webhook_ca_file=os.environ.get("WEBHOOK_CA_FILE") or None,
        # Seconds between a delivery's attempts; unset: the Standard Webhooks schedule.
        webhook_retry_schedule=_seconds_list("WEBHOOK_RETRY_SCHEDULE"),
        # How long a receiver has to answer (Standard Webhooks: at most 15 s; we give 10).
        webhook_timeout_seconds=_int("WEBHOOK_TIMEOUT_SECONDS", 10),
        backfills_table=_required("BACKFILLS_TABLE"),
        backfill_queue=_required("BACKFILL_QUEUE"),
        # Jobs a backfill reads, and sends to be reprocessed, per page message.
        backfill_page_size=_int("BACKFILL_PAGE_SIZE", 100),
    )


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    settings.cache_clear()
