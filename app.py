"""media-pipeline: the Chalice entry points. Each one hands over to chalicelib."""

from __future__ import annotations

import os
from collections.abc import Callable

from chalice.app import (
    AuthRequest,
    AuthResponse,
    Chalice,
    CloudWatchEvent,
    Rate,
    Request,
    Response,
    S3Event,
    SQSEvent,
)

from chalicelib import (
    api,
    auth,
    backfill_api,
    backfill_dead_letters,
    backfill_pages,
    console,
    dead_letters,
    deliveries,
    dispatch,
    http,
    rendering,
    reprocess,
    reprocess_dead_letters,
    sweeper,
    webhook_api,
    webhook_dead_letters,
    worker,
)
from chalicelib.config import (
    DEFAULT_BACKFILL_DLQ,
    DEFAULT_BACKFILL_QUEUE,
    DEFAULT_JOBS_DLQ,
    DEFAULT_JOBS_QUEUE,
    DEFAULT_REPROCESS_DLQ,
    DEFAULT_REPROCESS_QUEUE,
    DEFAULT_UPLOADS_BUCKET,
    DEFAULT_WEBHOOKS_DLQ,
    DEFAULT_WEBHOOKS_QUEUE,
    UPLOADS_PREFIX,
)
from chalicelib.observability import APP_NAME, configure_logging

app = Chalice(app_name=APP_NAME, configure_logs=False)
configure_logging()


# Not named `api_key`: Chalice's Swagger gives that security name to `api_key_required`
# routes, so API Gateway would demand a usage-plan key and never run this authorizer.
@app.authorizer(ttl_seconds=int(os.environ.get("AUTHORIZER_TTL_SECONDS", "60")))
def key_authorizer(auth_request: AuthRequest) -> AuthResponse:
    return AuthResponse(routes=["*"], **auth.authorizer_context(auth_request.token))


@app.middleware("http")
def api_error_shape(request: Request, get_response: Callable[[Request], Response]) -> Response:
    return http.in_api_error_shape(request, get_response)


@app.route("/health", methods=["GET"])
def health() -> Response:
    return api.health(app.current_request)


@app.route("/openapi.json", methods=["GET"])
def openapi_document() -> Response:
    return api.openapi_document(app.current_request)


# The browser console loads without a key; a person pastes one into the page.
@app.route("/console", methods=["GET"])
def console_page() -> Response:
    return console.page(app.current_request)


@app.route("/console/{asset}", methods=["GET"])
def console_asset(asset: str) -> Response:
    return console.asset(app.current_request, asset)


@app.route("/uploads", methods=["POST"], authorizer=key_authorizer)
def create_upload() -> Response:
    return api.create_upload(app.current_request)


@app.route("/jobs/{job_id}", methods=["GET"], authorizer=key_authorizer)
def get_job(job_id: str) -> Response:
    return api.get_job(app.current_request, job_id)


@app.route("/jobs", methods=["GET"], authorizer=key_authorizer)
def list_jobs() -> Response:
    return api.list_jobs(app.current_request)


@app.route("/presets", methods=["GET"], authorizer=key_authorizer)
def list_presets() -> Response:
    return api.list_presets(app.current_request)


@app.route("/webhooks", methods=["POST"], authorizer=key_authorizer)
def create_webhook() -> Response:
    return webhook_api.create_webhook(app.current_request)


@app.route("/webhooks", methods=["GET"], authorizer=key_authorizer)
def list_webhooks() -> Response:
    return webhook_api.list_webhooks(app.current_request)


@app.route("/webhooks/{endpoint_id}", methods=["GET"], authorizer=key_authorizer)
def get_webhook(endpoint_id: str) -> Response:
    return webhook_api.get_webhook(app.current_request, endpoint_id)


@app.route("/webhooks/{endpoint_id}", methods=["DELETE"], authorizer=key_authorizer)
def delete_webhook(endpoint_id: str) -> Response:
    return webhook_api.delete_webhook(app.current_request, endpoint_id)


@app.route("/webhooks/{endpoint_id}/rotate", methods=["POST"], authorizer=key_authorizer)
def rotate_webhook_secret(endpoint_id: str) -> Response:
    return webhook_api.rotate_webhook_secret(app.current_request, endpoint_id)


@app.route("/webhooks/{endpoint_id}/test", methods=["POST"], authorizer=key_authorizer)
def send_test_event(endpoint_id: str) -> Response:
    return webhook_api.send_test_event(app.current_request, endpoint_id)


@app.route("/jobs/{job_id}/deliveries", methods=["GET"], authorizer=key_authorizer)
def list_deliveries(job_id: str) -> Response:
    return webhook_api.list_deliveries(app.current_request, job_id)


@app.route("/jobs/{job_id}/deliveries/replay", methods=["POST"], authorizer=key_authorizer)
def replay_deliveries(job_id: str) -> Response:
    return webhook_api.replay_deliveries(app.current_request, job_id)


@app.route("/jobs/{job_id}/reprocess", methods=["POST"], authorizer=key_authorizer)
def reprocess_job(job_id: str) -> Response:
    return api.reprocess_job(app.current_request, job_id)


@app.route("/backfills", methods=["POST"], authorizer=key_authorizer)
def create_backfill() -> Response:
    return backfill_api.create_backfill(app.current_request)


@app.route("/backfills/{backfill_id}", methods=["GET"], authorizer=key_authorizer)
def get_backfill(backfill_id: str) -> Response:
    return backfill_api.get_backfill(app.current_request, backfill_id)


@app.route("/backfills/{backfill_id}", methods=["DELETE"], authorizer=key_authorizer)
def cancel_backfill(backfill_id: str) -> Response:
    return backfill_api.cancel_backfill(app.current_request, backfill_id)


@app.on_s3_event(
    bucket=os.environ.get("UPLOADS_BUCKET", DEFAULT_UPLOADS_BUCKET),
    events=["s3:ObjectCreated:*"],
    prefix=UPLOADS_PREFIX,
)
def dispatch_upload(event: S3Event) -> None:
    dispatch.handle_s3_event(event.to_dict())


dispatch.accept_test_events(dispatch_upload)


@app.on_sqs_message(
    queue=os.environ.get("JOBS_QUEUE", DEFAULT_JOBS_QUEUE),
    batch_size=int(os.environ.get("WORKER_BATCH_SIZE", "5")),
    maximum_batching_window_in_seconds=int(os.environ.get("WORKER_BATCHING_WINDOW", "0")),
    # At most the worker's reserved concurrency: a throttled delivery would still count
    # towards the queue's maxReceiveCount and dead-letter a job that never ran.
    maximum_concurrency=int(os.environ.get("WORKER_MAX_CONCURRENCY", "20")),
)
def make_thumbnails(event: SQSEvent) -> None:
    worker.handle_jobs_batch(event.to_dict()["Records"], rendering.remaining_time(event.context))


@app.on_sqs_message(queue=os.environ.get("JOBS_DLQ", DEFAULT_JOBS_DLQ), batch_size=10)
def fail_dead_letters(event: SQSEvent) -> None:
    dead_letters.handle_dead_letters(event.to_dict()["Records"])


# One message an invocation: a slow receiver (10 s at most) delays no other delivery.
@app.on_sqs_message(queue=os.environ.get("WEBHOOKS_QUEUE", DEFAULT_WEBHOOKS_QUEUE), batch_size=1)
def deliver_webhooks(event: SQSEvent) -> None:
    deliveries.handle_webhooks_batch(event.to_dict()["Records"])


@app.on_sqs_message(queue=os.environ.get("WEBHOOKS_DLQ", DEFAULT_WEBHOOKS_DLQ), batch_size=10)
def fail_webhook_dead_letters(event: SQSEvent) -> None:
    webhook_dead_letters.handle_webhook_dead_letters(event.to_dict()["Records"])


# One message an invocation: a render of several presets takes a worker's time.
@app.on_sqs_message(queue=os.environ.get("REPROCESS_QUEUE", DEFAULT_REPROCESS_QUEUE), batch_size=1)
def reprocess_outputs(event: SQSEvent) -> None:
    reprocess.handle_reprocess_batch(
        event.to_dict()["Records"], rendering.remaining_time(event.context)
    )


@app.on_sqs_message(queue=os.environ.get("REPROCESS_DLQ", DEFAULT_REPROCESS_DLQ), batch_size=10)
def fail_reprocess_dead_letters(event: SQSEvent) -> None:
    reprocess_dead_letters.handle_reprocess_dead_letters(event.to_dict()["Records"])


# One page an invocation: a page is a hundred jobs read and sent on, well within a second.
@app.on_sqs_message(queue=os.environ.get("BACKFILL_QUEUE", DEFAULT_BACKFILL_QUEUE), batch_size=1)
def walk_backfill_pages(event: SQSEvent) -> None:
    backfill_pages.handle_backfill_pages(event.to_dict()["Records"])


@app.on_sqs_message(queue=os.environ.get("BACKFILL_DLQ", DEFAULT_BACKFILL_DLQ), batch_size=10)
def fail_backfill_dead_letters(event: SQSEvent) -> None:
    backfill_dead_letters.handle_backfill_dead_letters(event.to_dict()["Records"])


@app.schedule(Rate(int(os.environ.get("SWEEP_RATE_MINUTES", "5")), unit=Rate.MINUTES))
def sweep_jobs(event: CloudWatchEvent) -> None:
    sweeper.sweep()
