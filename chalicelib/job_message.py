"""The job message: what the dispatcher sends on the jobs queue for the worker.

One JSON object per message; this module is its only writer and reader::

    {"jobId": str, "tenant": str, "bucket": str, "key": str, "versionId": str | null,
     "redrives": int}

`versionId` is the source version the job pinned (null only for an unversioned bucket).
`redrives` counts how many times the dead-letter handler has sent the message back to
the jobs queue (chalicelib/dead_letters.py); a first message leaves it out, read as 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from chalicelib.jobs import Upload

_REQUIRED_FIELDS = ("jobId", "tenant", "bucket", "key")


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    tenant: str
    bucket: str
    key: str
    version_id: str | None = None
    # How many times the dead-letter handler has sent this job's message back.
    redrives: int = 0

    @property
    def upload(self) -> Upload:
        return Upload(self.job_id, self.tenant, self.key, self.version_id)

    def to_body(self) -> str:
        payload: dict[str, str | int | None] = {
            "jobId": self.job_id,
            "tenant": self.tenant,
            "bucket": self.bucket,
            "key": self.key,
            "versionId": self.version_id,
        }
        if self.redrives:
            payload["redrives"] = self.redrives
        return json.dumps(payload)

    def redriven(self) -> JobMessage:
        """The message the dead-letter handler sends back: the same, one more redrive."""
        return replace(self, redrives=self.redrives + 1)


def build(upload: Upload, bucket: str) -> JobMessage:
    """The message for the job of `upload`, stored in `bucket`."""
    return JobMessage(upload.job_id, upload.tenant, bucket, upload.key, upload.version_id)


def parse(body: str) -> JobMessage | None:
    """The message in `body`, or None if it is not a well-formed job message."""
    try:
        payload: object = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    required = [payload.get(name) for name in _REQUIRED_FIELDS]
    job_id, tenant, bucket, key = (value if isinstance(value, str) else "" for value in required)
    if not (job_id and tenant and bucket and key):
        return None
    version_id = payload.get("versionId")
    if version_id is not None and not (isinstance(version_id, str) and version_id):
        return None
    redrives = payload.get("redrives", 0)
    # bool is an int to Python, not to JSON: `true` is no count.
    if isinstance(redrives, bool) or not isinstance(redrives, int) or redrives < 0:
        return None
    return JobMessage(job_id, tenant, bucket, key, version_id, redrives)
