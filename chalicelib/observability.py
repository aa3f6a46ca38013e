"""Structured JSON logs on the app's logger, and CloudWatch embedded metrics.

The logger is Chalice's own app logger (``logging.getLogger(app_name)``), formatted as
JSON by Powertools so every line carries its fields (``jobId`` among them) as keys.
Metrics are printed in CloudWatch's embedded metric format: no API call, no latency.
"""

from __future__ import annotations

import logging
import os

APP_NAME = "media-pipeline"
METRICS_NAMESPACE = "MediaPipeline"

logger = logging.getLogger(APP_NAME)


def configure_logging() -> None:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    if any(getattr(handler, "_media_pipeline", False) for handler in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(LambdaPowertoolsFormatter())
    handler._media_pipeline = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def metric(name: str, value: float, unit: str = "Count", **dimensions: str) -> None:
    """Emit one embedded metric (EMF) on stdout, where the Lambda agent picks it up."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=name,
        unit=MetricUnit(unit),
        value=value,
        namespace=METRICS_NAMESPACE,
        default_dimensions={"service": APP_NAME, **dimensions},
    ):
        pass


def job_fields(job_id: str, **fields: object) -> dict[str, object]:
    """`extra=` fields for a log line about one job."""
    return {"jobId": job_id, **fields}


def log_job_failed(job_id: str, code: str, reason: str, *, cause: str | None = None) -> None:
    """The log line and metric of a job the worker or the dead-letter handler ended FAILED."""
    fields = job_fields(job_id, code=code, reason=reason)
    if cause is not None:
        fields["cause"] = cause
    logger.warning("job failed", extra=fields)
    metric("JobsFailed", 1, code=code)
