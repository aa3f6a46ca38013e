"""A client of the media-pipeline API, as a user's program would use it: create an upload,
send the file with the presigned POST form, follow the job, download its outputs.

    client = Client("http://127.0.0.1:8000", api_key)
    upload = client.upload(data, filename="photo.jpg", content_type="image/jpeg")
    job = client.wait_for_end(upload.job_id)

Every failed request raises `ApiError` with the HTTP status and the error code (the API's
`error.code`, or S3's `<Code>`). Transient failures are retried first (see `RetryPolicy`).
One client may be shared by threads: each thread has a connection pool of its own.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import requests
from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor
from urllib3.exceptions import NewConnectionError

Job = dict[str, Any]
# Called with "api" or "s3" and every response, e.g. to count them by status.
Observer = Callable[[str, requests.Response], None]
# Called with the bytes of a file sent so far, as its upload goes.
Progress = Callable[[int], None]
TERMINAL = frozenset({"COMPLETED", "FAILED"})
MAX_LONG_POLL_SECONDS = 20  # the API's bound on GET /jobs/{id}?wait=
MAX_PAGE_SIZE = 100
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>")
_CHUNK_BYTES = 64 * 1024


class ApiError(Exception):
    def __init__(self, status: int, code: str | None, detail: str, message: str = "") -> None:
        super().__init__(f"{status} {code or ''}: {detail}")
        self.status = status
        self.code = code
        self.message = message  # the API's (or S3's) own message, if it gave one


class JobTimeout(TimeoutError):
    """The job was not COMPLETED or FAILED in time; `job` is what was last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job['jobId']} still {job['status']} after {timeout:.0f} s")
        self.job = job


class BackfillTimeout(TimeoutError):
    """The backfill was still running when the wait ended; `backfill` is what was seen."""

    def __init__(self, backfill: dict[str, Any], timeout: float) -> None:
        super().__init__(f"backfill {backfill['backfillId']} still running after {timeout:.0f} s")
        self.backfill = backfill


class ReprocessTimeout(TimeoutError):
    """The job was still reprocessing when the wait ended; `job` is what was last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job['jobId']} still reprocessing after {timeout:.0f} s")
        self.job = job


@dataclass(frozen=True)
class RetryPolicy:
    """Transient failures (no connection, a timeout, 429, 502, 503, 504) are tried again,
    up to `attempts` tries in all, after Retry-After when the answer gives one, else after
    an exponential backoff with full jitter (so that many clients do not come back
    together)."""

    attempts: int = 5
    base_seconds: float = 0.25
    max_seconds: float = 20.0

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first)."""
        if retry_after is not None:
            return min(retry_after, self.max_seconds)
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** (retry - 1))
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not a secret)


DEFAULT_RETRIES = RetryPolicy()
NO_RETRIES = RetryPolicy(attempts=1)
RETRIED_STATUSES = frozenset({429, 502, 503, 504})
# What a POST that is not idempotent may retry: answers saying nothing was done. Creating an
# upload or a webhook endpoint twice would leave a second job (it would end upload_expired
# and send its job.failed event) or a second endpoint (every event delivered twice), so
# after a lost answer (a timeout, a reset, 502, 504) or a 503 (the app's transient AWS
# failure may follow a write that succeeded) such a POST is not sent again. A 429 is
# answered before any work: the gateway's throttle, or the bound on pending uploads.
SAFE_TO_REPEAT_WHEN_NOT_IDEMPOTENT = frozenset({429})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Upload:
    answer: Job  # POST /uploads's answer: the new job, its presigned POST form in "upload"
    sent_at: float = 0.0  # time.time() when the file's POST returned; 0 until sent

    @property
    def job_id(self) -> str:
        return str(self.answer["jobId"])

    @property
    def form(self) -> dict[str, Any]:
        """The presigned POST: its url and fields."""
        return dict(self.answer["upload"])


class Client:
    def __init__(
        self,
        api: str,
        key: str,
        *,
        timeout: float = 30.0,
        observer: Observer | None = None,
        retry: RetryPolicy = DEFAULT_RETRIES,
    ) -> None:
        self.api = api.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.observer = observer
        self.retry = retry
        self._local = threading.local()

    # --- uploads -------------------------------------------------------------------------

    def create_upload(
        self, filename: str, content_type: str, presets: list[str] | None = None
    ) -> Upload:
        body: dict[str, Any] = {"filename": filename, "contentType": content_type}
        if presets:
            body["presets"] = presets
        return Upload(self.request("POST", "/uploads", body))

    def send_file(self, upload: Upload, data: bytes, filename: str, content_type: str) -> Upload:
        """POST the file with the upload's presigned form, as a browser would."""
        form = upload.form
        files = {"file": (filename, data, content_type)}
        # Sending the same bytes to the same job again is harmless: the first version that
        # arrives is the job's, any other is ignored and deleted (chalicelib.dispatch).
        self._send("s3", "POST", form["url"], idempotent=True, data=form["fields"], files=files)
        return Upload(upload.answer, sent_at=time.time())

    def send_path(
        self,
        upload: Upload,
        path: Path,
        content_type: str,
        progress: Progress | None = None,
    ) -> Upload:
        """POST the file at `path` with the upload's presigned form, streamed from disk;
        `progress` hears of the file's bytes sent so far (from 0 again on a retry)."""
        form = upload.form
        opened: list[BinaryIO] = []

        def body() -> MultipartEncoderMonitor:
            opened.append(path.open("rb"))
            return _streamed_form(form["fields"], opened[-1], path.name, content_type, progress)

        try:
            self._send("s3", "POST", form["url"], idempotent=True, body=body)
        finally:
            for source in opened:
                source.close()
        return Upload(upload.answer, sent_at=time.time())

    def upload(self, data: bytes, filename: str, content_type: str) -> Upload:
        """A new job, its file sent."""
        created = self.create_upload(filename, content_type)
        return self.send_file(created, data, filename, content_type)

    # --- jobs ----------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        job: Job = self.request("GET", f"/jobs/{job_id}")
        return job

    def jobs(self) -> dict[str, Job]:
        """Every job of the key's tenant, by id, through all of GET /jobs's pages."""
        return {job["jobId"]: job for job in self.list_jobs(limit=None)}

    def list_jobs(self, status: str | None = None, limit: int | None = 20) -> Iterator[Job]:
        """The tenant's jobs, newest first (`status`: only those), at most `limit` of them
        (None: all), page after page."""
        params = {"limit": str(min(limit or MAX_PAGE_SIZE, MAX_PAGE_SIZE))}
        if status is not None:
            params["status"] = status
        given = 0
        while True:
            page = self.request("GET", "/jobs", params=params)
            for job in page["jobs"]:
                if limit is not None and given >= limit:
                    return
                given += 1
                yield job
            if not page["nextCursor"] or (limit is not None and given >= limit):
                return
            params["cursor"] = page["nextCursor"]

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.1) -> Job:
        """The job, once a GET shows it COMPLETED or FAILED (polled every `poll` s)."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise JobTimeout(job, timeout)
            time.sleep(poll)
        return job

    def wait_long(self, job_id: str, seconds: int = MAX_LONG_POLL_SECONDS) -> Job:
        """The job after one long-poll (`?wait=`): ended, or as it stands after `seconds`."""
        job: Job = self.request("GET", f"/jobs/{job_id}", params={"wait": str(seconds)})
        return job

    def wait_for_end(self, job_id: str, timeout: float = 600.0) -> Job:
        """The job once COMPLETED or FAILED, by long-polls (each answers within a second of
        the job's end); JobTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            seconds = max(1, min(MAX_LONG_POLL_SECONDS, int(left)))
            job = self.wait_long(job_id, seconds)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise JobTimeout(job, timeout)

    def presets(self) -> list[dict[str, Any]]:
        """The stage's presets, each definition with its current `version`."""
        return list(self.request("GET", "/presets")["presets"])

    def reprocess(self, job_id: str, presets: list[str]) -> dict[str, Any]:
        """Ask for the COMPLETED job's outputs of `presets` to be made again from its
        original, at the presets' current versions; the request (`requestId`, the
        `revision` it will give the job)."""
        asked: dict[str, Any] = self.request(
            "POST", f"/jobs/{job_id}/reprocess", {"presets": presets}
        )
        return asked

    def wait_reprocessed(self, job_id: str, timeout: float = 600.0, poll: float = 0.5) -> Job:
        """The job once it is no longer reprocessing (its `reprocessError` says if the last
        request failed); ReprocessTimeout after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["reprocessing"]:
            if time.monotonic() > deadline:
                raise ReprocessTimeout(job, timeout)
            time.sleep(poll)
        return job

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """Every delivery attempt of the job's events."""
        return list(self.request("GET", f"/jobs/{job_id}/deliveries")["deliveries"])

    # --- outputs -------------------------------------------------------------------------

    def download(self, url: str) -> bytes:
        """An output, by the URL its job gives."""
        return self._send("s3", "GET", url).content

    def download_to(self, url: str, path: Path) -> int:
        """An output saved at `path` (written beside it, then renamed: never half a file
        under its name); its size in bytes."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with self._send("s3", "GET", url, stream=True) as response, partial.open("wb") as out:
            for chunk in response.iter_content(_CHUNK_BYTES):
                out.write(chunk)
        partial.replace(path)
        return path.stat().st_size

    # --- webhooks ------------------------------------------------------------------------

    def add_webhook(
        self, url: str, events: list[str] | None = None, description: str | None = None
    ) -> dict[str, Any]:
        """A new endpoint and its secret (shown this once)."""
        body: dict[str, Any] = {"url": url, "events": events or ["job.completed", "job.failed"]}
        if description:
            body["description"] = description
        endpoint: dict[str, Any] = self.request("POST", "/webhooks", body)
        return endpoint

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/webhooks")["webhooks"])

    def webhook(self, endpoint_id: str) -> dict[str, Any]:
        endpoint: dict[str, Any] = self.request("GET", f"/webhooks/{endpoint_id}")
        return endpoint

    def remove_webhook(self, endpoint_id: str) -> None:
        self._send("api", "DELETE", f"{self.api}/webhooks/{endpoint_id}", headers=self._auth())

    def test_webhook(self, endpoint_id: str) -> dict[str, Any]:
        """Send the endpoint a `webhook.test` event; its id and type."""
        sent: dict[str, Any] = self.request("POST", f"/webhooks/{endpoint_id}/test")
        return sent

    def rotate_webhook_secret(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint with its new secret (shown this once)."""
        rotated: dict[str, Any] = self.request("POST", f"/webhooks/{endpoint_id}/rotate")
        return rotated

    # --- backfills -----------------------------------------------------------------------

    def start_backfill(
        self,
        presets: list[str],
        *,
        created_after: str | None = None,
        created_before: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Start a backfill of the presets over the jobs created in the range (both ends
        included; ISO 8601 date-times with an offset)."""
        body: dict[str, Any] = {"presets": presets, "dryRun": dry_run}
        if created_after:
            body["createdAfter"] = created_after
        if created_before:
            body["createdBefore"] = created_before
        started: dict[str, Any] = self.request("POST", "/backfills", body)
        return started

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = self.request("GET", f"/backfills/{backfill_id}")
        return shown

    def cancel_backfill(self, backfill_id: str) -> dict[str, Any]:
        cancelled: dict[str, Any] = self.request("DELETE", f"/backfills/{backfill_id}")
        return cancelled

    def wait_backfill(
        self, backfill_id: str, timeout: float = 600.0, poll: float = 1.0
    ) -> dict[str, Any]:
        """The backfill once it is no longer running; BackfillTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        while (shown := self.backfill(backfill_id))["status"] == "running":
            if time.monotonic() > deadline:
                raise BackfillTimeout(shown, timeout)
            time.sleep(poll)
        return shown

    # --- HTTP ----------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """One call of the API with the key; its JSON answer."""
        url = self.api + path
        answer = self._send("api", method, url, json=body, params=params, headers=self._auth())
        return answer.json()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def _send(
        self,
        target: str,
        method: str,
        url: str,
        *,
        idempotent: bool | None = None,
        body: Callable[[], MultipartEncoderMonitor] | None = None,
        **options: Any,
    ) -> requests.Response:
        """The request's answer once it succeeded, after retries of transient failures;
        `body` makes a fresh streamed body for each try."""
        repeatable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        tries = max(1, self.retry.attempts)
        for attempt in range(1, tries + 1):
            last = attempt == tries
            if body is not None:
                monitor = body()
                options["data"] = monitor
                options["headers"] = {"Content-Type": monitor.content_type}
            try:
                response = self._session().request(method, url, timeout=self.timeout, **options)
            except requests.RequestException as failure:
                if last or not _may_retry_failure(failure, repeatable):
                    raise
                time.sleep(self.retry.delay(attempt, None))
                continue
            if self.observer is not None:
                self.observer(target, response)
            if not last and _may_retry_status(response.status_code, repeatable):
                response.close()
                time.sleep(self.retry.delay(attempt, _retry_after(response)))
                continue
            if response.status_code >= 300:
                raise _api_error(method, url, response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session


def _streamed_form(
    fields: dict[str, str],
    source: BinaryIO,
    filename: str,
    content_type: str,
    progress: Progress | None,
) -> MultipartEncoderMonitor:
    """The presigned form's fields, then the file as `file`, read from `source` as it is
    sent."""
    size = os.fstat(source.fileno()).st_size
    encoder = MultipartEncoder(fields=[*fields.items(), ("file", (filename, source, content_type))])
    # The monitor counts the whole body: the fields (a few hundred bytes) come before the file.
    preamble = encoder.len - size

    def report(monitor: MultipartEncoderMonitor) -> None:
        if progress is not None:
            progress(max(0, min(monitor.bytes_read - preamble, size)))

    return MultipartEncoderMonitor(encoder, report)


def _may_retry_failure(failure: requests.RequestException, repeatable: bool) -> bool:
    if isinstance(failure, requests.ConnectTimeout):
        return True  # never connected: nothing was sent
    if isinstance(failure, requests.ConnectionError):
        return repeatable or _never_connected(failure)
    return repeatable and isinstance(failure, requests.Timeout)


def _never_connected(failure: requests.ConnectionError) -> bool:
    cause = failure.args[0] if failure.args else None
    return isinstance(getattr(cause, "reason", None), NewConnectionError)


def _may_retry_status(status: int, repeatable: bool) -> bool:
    if repeatable:
        return status in RETRIED_STATUSES
    return status in SAFE_TO_REPEAT_WHEN_NOT_IDEMPOTENT


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdecimal():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _api_error(method: str, url: str, response: requests.Response) -> ApiError:
    code, message = _error_code(response)
    detail = f"{method} {url.split('?', 1)[0]}: {response.text[:2000]}"
    return ApiError(response.status_code, code, detail, message)


def _error_code(response: requests.Response) -> tuple[str | None, str]:
    """The API's `error.code` and message, or S3's `<Code>`, if the answer has one."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        found = _S3_CODE.search(response.text)
        return (found.group(1) if found else None), ""
