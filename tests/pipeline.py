"""Drives the whole flow the way a client and AWS would: API, presigned POST, S3 event,
SQS batches to the worker, dead letters to their handler, the sweeper's schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import requests
from chalice.test import Client

from chalicelib import jobs, storage
from chalicelib.config import settings
from devstack.lambda_events import SqsPoller, s3_object_created_event
from devstack.runner import scheduled_event
from tests.resources import REGION, Queues


def new_job(tenant: str = "acme") -> jobs.Job:
    """A PENDING job as POST /uploads makes it, without the API."""
    job_id = jobs.new_job_id()
    return jobs.create_job(
        job_id=job_id,
        tenant=tenant,
        source_key=storage.source_key(tenant, job_id, "a.jpg"),
        content_type="image/jpeg",
        filename="a.jpg",
        presets=["thumb"],
    )


def queue_job(job_id: str, *, size: int = 10) -> jobs.Transition:
    """PENDING -> QUEUED as the dispatcher moves a job, for an upload stored unversioned."""
    job = _stored_job(job_id)
    upload = jobs.Upload(job_id, job.tenant, job.source_key, None)
    return jobs.queue_upload(upload, size=size, etag=None)


def claim_job(job_id: str) -> jobs.Transition:
    """-> PROCESSING as the worker claims a job, naming the version the job pinned."""
    job = _stored_job(job_id)
    return jobs.claim(jobs.Upload(job_id, job.tenant, job.source_key, job.source_version))


def _stored_job(job_id: str) -> jobs.Job:
    job = jobs.get_job(job_id)
    assert job is not None, f"no job {job_id}"
    return job


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


class Pipeline:
    def __init__(self, client: Client, queues: Queues, api_key: str) -> None:
        self.client = client
        self.queues = queues
        self.api_key = api_key
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)

    # --- the client's side ---------------------------------------------------------------

    def request_upload(self, key: str | None = None, **body: Any) -> Any:
        body.setdefault("contentType", "image/jpeg")
        response = self.client.http.post(
            "/uploads", headers=bearer(key or self.api_key), body=json.dumps(body).encode()
        )
        assert response.status_code == 201, response.body
        return response.json_body

    def post_file(self, upload: dict[str, Any], data: bytes) -> str:
        """POST the file with the presigned form; returns the version S3 stored."""
        form = upload["upload"]
        response = requests.post(
            form["url"], data=form["fields"], files={"file": ("upload", data)}, timeout=30
        )
        assert response.status_code in (200, 201, 204), response.text
        # (moto's answer to a POST, unlike S3's, has no x-amz-version-id header.)
        head = self.s3.head_object(Bucket=settings().uploads_bucket, Key=form["fields"]["key"])
        return head["VersionId"]

    def job(self, job_id: str, key: str | None = None) -> Any:
        response = self.client.http.get(f"/jobs/{job_id}", headers=bearer(key or self.api_key))
        assert response.status_code == 200, response.body
        return response.json_body

    # --- AWS's side ------------------------------------------------------------------------

    def source_key(self, upload: dict[str, Any]) -> str:
        return str(upload["upload"]["fields"]["key"])

    def notify_upload(self, key: str, version_id: str | None = None) -> None:
        """S3's notification for the object (its current version unless `version_id` names
        another), delivered to the dispatcher."""
        self.client.lambda_.invoke("dispatch_upload", self.upload_event(key, version_id))

    def upload_event(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        bucket = settings().uploads_bucket
        if version_id is None:
            head = self.s3.head_object(Bucket=bucket, Key=key)
        else:
            head = self.s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        return s3_object_created_event(
            bucket,
            key,
            head["ContentLength"],
            region=REGION,
            etag=head["ETag"].strip('"'),
            version_id=head["VersionId"],
        )

    def versions(self, key: str) -> list[str]:
        """The versions of an upload still stored, newest first."""
        listing = self.s3.list_object_versions(Bucket=settings().uploads_bucket, Prefix=key)
        return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]

    def worker(self, batch_size: int = 5) -> SqsPoller:
        return self._poller(self.queues.jobs_url, "make_thumbnails", batch_size)

    def dead_letters(self) -> SqsPoller:
        return self._poller(self.queues.dlq_url, "fail_dead_letters", 10)

    def reprocessor(self) -> SqsPoller:
        """The reprocess function on the reprocess queue."""
        url = self.sqs.get_queue_url(QueueName=settings().reprocess_queue)["QueueUrl"]
        return self._poller(url, "reprocess_outputs", 1)

    def reprocess_dead_letters(self) -> SqsPoller:
        url = self.sqs.get_queue_url(QueueName=settings().reprocess_dlq)["QueueUrl"]
        return self._poller(url, "fail_reprocess_dead_letters", 10)

    def sweep(self) -> None:
        """One tick of the sweeper's schedule."""
        self.client.lambda_.invoke("sweep_jobs", scheduled_event())

    def backdate(self, job_id: str, seconds: float) -> None:
        """Make the job's writes `seconds` older: what waiting that long would do."""
        table = settings().jobs_table
        key = {"jobId": {"S": job_id}}
        item = self.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        values = {
            f":{name}": {"S": _earlier(item[name]["S"], seconds)}
            for name in ("createdAt", "updatedAt")
        }
        self.dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET createdAt = :createdAt, updatedAt = :updatedAt",
            ExpressionAttributeValues=values,
        )

    def _poller(self, queue_url: str, function: str, batch_size: int) -> SqsPoller:
        def invoke(event: dict[str, Any]) -> Any:
            return self.client.lambda_.invoke(function, event).payload

        return SqsPoller(self.sqs, queue_url, invoke, batch_size=batch_size, expire_with=self.sqs)

    # --- the whole flow ----------------------------------------------------------------------

    def process(self, data: bytes, **body: Any) -> Any:
        upload = self.request_upload(**body)
        self.post_file(upload, data)
        self.notify_upload(self.source_key(upload))
        self.worker().drain()
        self.dead_letters().drain()
        return self.job(upload["jobId"])

    def download(self, url: str) -> requests.Response:
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, response.text
        return response


def _earlier(timestamp: str, seconds: float) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
