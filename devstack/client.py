"""A client of the media-pipeline API, as a user's program would use it: create an upload,
send the file with the presigned POST form, follow the job, download its outputs.

    client = Client("http://127.0.0.1:8000", api_key)
    upload = client.upload(data, filename="photo.jpg", content_type="image/jpeg")
    job = client.wait(upload.job_id)

Every failed request raises `ApiError` with the HTTP status and the error code (the API's
`error.code`, or S3's `<Code>`). One client may be shared by threads: each thread has a
connection pool of its own.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

Job = dict[str, Any]
# Called with "api" or "s3" and every response, e.g. to count them by status.
Observer = Callable[[str, requests.Response], None]
TERMINAL = frozenset({"COMPLETED", "FAILED"})
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>")


class ApiError(Exception):
    def __init__(self, status: int, code: str | None, detail: str) -> None:
        super().__init__(f"{status} {code or ''}: {detail}")
        self.status = status
        self.code = code


class JobTimeout(TimeoutError):
    """The job was not COMPLETED or FAILED in time; `job` is what was last seen."""

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job['jobId']} still {job['status']} after {timeout:.0f} s")
        self.job = job


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
        self, api: str, key: str, *, timeout: float = 30.0, observer: Observer | None = None
    ) -> None:
        self.api = api
        self.key = key
        self.timeout = timeout
        self.observer = observer
        self._local = threading.local()

    def create_upload(self, filename: str, content_type: str) -> Upload:
        body = {"filename": filename, "contentType": content_type}
        return Upload(self.request("POST", "/uploads", body))

    def send_file(self, upload: Upload, data: bytes, filename: str, content_type: str) -> Upload:
        """POST the file with the upload's presigned form, as a browser would."""
        form = upload.form
        files = {"file": (filename, data, content_type)}
        self._send("s3", "POST", form["url"], data=form["fields"], files=files)
        return Upload(upload.answer, sent_at=time.time())

    def upload(self, data: bytes, filename: str, content_type: str) -> Upload:
        """A new job, its file sent."""
        created = self.create_upload(filename, content_type)
        return self.send_file(created, data, filename, content_type)

    def job(self, job_id: str) -> Job:
        job: Job = self.request("GET", f"/jobs/{job_id}")
        return job

    def jobs(self) -> dict[str, Job]:
        """Every job of the key's tenant, by id, through all of GET /jobs's pages."""
        found: dict[str, Job] = {}
        params = {"limit": "100"}
        while True:
            page = self.request("GET", "/jobs", params=params)
            found.update((job["jobId"], job) for job in page["jobs"])
            if not page["nextCursor"]:
                return found
            params["cursor"] = page["nextCursor"]

    def wait(self, job_id: str, timeout: float = 60.0, poll: float = 0.1) -> Job:
        """The job, once a GET shows it COMPLETED or FAILED."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise JobTimeout(job, timeout)
            time.sleep(poll)
        return job

    def wait_long(self, job_id: str, seconds: int = 20) -> Job:
        """The job after one long-poll (`?wait=`): ended, or as it stands after `seconds`."""
        job: Job = self.request("GET", f"/jobs/{job_id}", params={"wait": str(seconds)})
        return job

    def add_webhook(self, url: str, events: list[str] | None = None) -> dict[str, Any]:
        """A new endpoint and its secret (shown this once)."""
        body = {"url": url, "events": events or ["job.completed", "job.failed"]}
        endpoint: dict[str, Any] = self.request("POST", "/webhooks", body)
        return endpoint

    def remove_webhook(self, endpoint_id: str) -> None:
        self._send("api", "DELETE", f"{self.api}/webhooks/{endpoint_id}", headers=self._auth())

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """Every delivery attempt of the job's events."""
        return list(self.request("GET", f"/jobs/{job_id}/deliveries")["deliveries"])

    def download(self, url: str) -> bytes:
        """An output, by the URL its job gives."""
        return self._send("s3", "GET", url).content

    def request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """One call of the API with the key; its JSON answer."""
        url = self.api + path
        answer = self._send("api", method, url, json=body, params=params, headers=self._auth())
        return answer.json()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def _send(self, target: str, method: str, url: str, **options: Any) -> requests.Response:
        response = self._session().request(method, url, timeout=self.timeout, **options)
        if self.observer is not None:
            self.observer(target, response)
        if response.status_code >= 300:
            detail = f"{method} {url}: {response.text[:2000]}"
            raise ApiError(response.status_code, _error_code(response), detail)
        return response

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session


def _error_code(response: requests.Response) -> str | None:
    """The API's `error.code`, or S3's `<Code>`, if the answer has one."""
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        found = _S3_CODE.search(response.text)
        return found.group(1) if found else None
    return str(code)
