"""The job store: one DynamoDB item per job, moved forward by conditional writes.

Status only moves forward: PENDING -> QUEUED -> PROCESSING -> COMPLETED | FAILED.
PROCESSING -> PROCESSING is a retry claiming the job again, never a step back. Every
write names the states it may leave, so a duplicate or late message can never drag a
finished job backwards. One write keeps a job where it is: `requeue_unchanged`, QUEUED ->
QUEUED, the sweeper's record that it sent a lost job message again. It is not in
ALLOWED_FROM, so no other write can make that move.

The two moves driven by events (`queue_upload`, `claim`) also name the upload: the write
succeeds only for the job that owns the object's key (tenant and source key) and, to
claim it, only for the object version pinned when it was queued. Every move is one
conditional UpdateItem and answers a `Transition`: a refused one is no error, it returns
the job as it stood (ALL_OLD), so the caller learns why without reading the job again.

Open jobs are also in a sparse index, `open-jobs-index`, for the sweeper: its partition
key `openShard` ("<status>#<shard>") is written by every write that leaves a job open
and removed by the one that ends it, and its sort key is `updatedAt`. So "jobs in status
S untouched since T" is one Query per shard, and a finished job costs the index nothing.

Every job is also in `tenant-status-index`, for the API: its partition key is the tenant
and its sort key `statusSince` ("<status>#<when it got there>"), which the write that
changes a job's status sets in the same write. So a tenant's jobs in one status are one
key range: `GET /jobs?status=` reads no other job, and counting a tenant's PENDING jobs
(the bound on open uploads) reads only those.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

from chalicelib import clients
from chalicelib.config import settings
from chalicelib.errors import InvalidRequest, NotFound
from chalicelib.timestamps import iso_from_epoch, now_iso

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        UpdateItemInputTypeDef,
    )


class JobStatus(StrEnum):
    """A job's `status`, stored and answered as its value."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


ALLOWED_FROM: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PENDING}),
    JobStatus.PROCESSING: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING}),
    JobStatus.COMPLETED: frozenset({JobStatus.PROCESSING}),
    JobStatus.FAILED: frozenset({JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING}),
}

# An item as the store reads it back: attribute names to plain values (numbers as int).
Item = dict[str, object]
# A set of attributes a write stores (a job's `source`, one of its `outputs`, ...).
Fields = Mapping[str, object]

TENANT_INDEX = "tenant-createdAt-index"
STATUS_INDEX = "tenant-status-index"
STATUS_SINCE = "statusSince"
# Queries one page may take, once it holds a job (an empty page goes on to the end: see
# `list_jobs`).
MAX_LIST_QUERIES = 10

OPEN_JOBS_INDEX = "open-jobs-index"
OPEN_SHARD = "openShard"
# Each status's open jobs are spread over this many index partitions, so a burst of new
# jobs never concentrates on one. A job's shard is a hash of its id: every write can name
# it without reading the job. Only ever raise it: the sweeper queries shards 0..N-1, and
# a job written under a larger N would sit in a shard it no longer queries.
OPEN_SHARDS = 8
# The open-jobs index's "status" of ended jobs whose event is not yet on the webhooks queue.
EVENT_SHARD = "EVENT"


@dataclass(frozen=True)
class Job:
    job_id: str
    tenant: str
    status: JobStatus
    created_at: str
    updated_at: str
    source_key: str
    content_type: str
    filename: str | None
    presets: list[str]
    # The upload's own outputs (preset documents, chalicelib/upload_outputs.py).
    requested_outputs: list[Item] = field(default_factory=list)
    source: Item | None = None
    outputs: list[Item] = field(default_factory=list)
    placeholder: Item | None = None
    error: dict[str, str] | None = None
    attempts: int = 0
    # The upload the job pinned when it was queued: the object's version and ETag.
    source_version: str | None = None
    source_etag: str | None = None
    # How many times the sweeper sent the job's message again (`requeue_unchanged`).
    requeues: int = 0
    # Epoch seconds after which the job is gone: DynamoDB's TTL deletes the record (up to
    # a few days late) and the derived bucket's lifecycle rule its outputs.
    expires_at: int | None = None
    # The id of the event the job's end made (`job.completed` or `job.failed`): written
    # with the end itself, the same on every delivery of that event.
    event_id: str | None = None
    # The kept original upload, for reprocessing: {"key", "bytes", "expiresAt"} (epoch
    # seconds); None when none was kept (ORIGINALS_RETENTION_DAYS 0, or before originals).
    original: Item | None = None
    # Reprocessing (chalicelib/reprocess.py): how many times the outputs were made again
    # (0: never), the request still under way (the `reprocessing` flag of the job view),
    # the last request recorded, and why the last one failed.
    revision: int = 0
    reprocess_request: str | None = None
    last_reprocess_request: str | None = None
    reprocess_error: dict[str, str] | None = None

    @property
    def is_reprocessing(self) -> bool:
        return self.reprocess_request is not None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def has_expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())

    def owns(self, upload: Upload) -> bool:
        """Whether `upload` is this job's source: the tenant and key it was created for
        (whichever version of it)."""
        return self.tenant == upload.tenant and self.source_key == upload.key


def new_job_id() -> str:
    return str(uuid.uuid4())


def create_job(
    *,
    job_id: str,
    tenant: str,
    source_key: str,
    content_type: str,
    filename: str | None,
    presets: list[str],
    requested_outputs: Sequence[Fields] = (),
) -> Job:
    created = now_iso()
    job = Job(
        job_id=job_id,
        tenant=tenant,
        status=JobStatus.PENDING,
        created_at=created,
        updated_at=created,
        source_key=source_key,
        content_type=content_type,
        filename=filename,
        presets=presets,
        requested_outputs=[dict(output) for output in requested_outputs],
        expires_at=int(time.time()) + settings().job_ttl_days * 86400,
    )
    item = _to_item(job)
    item[OPEN_SHARD] = open_shard(job_id, JobStatus.PENDING)
    item[STATUS_SINCE] = status_since(JobStatus.PENDING, created)
    with clients.aws_errors("create job"):
        clients.dynamodb().put_item(
            TableName=settings().jobs_table,
            Item=_serialize(item),
            ConditionExpression="attribute_not_exists(jobId)",
        )
    return job


def get_job(job_id: str) -> Job | None:
    with clients.aws_errors("get job"):
        response = clients.dynamodb().get_item(
            TableName=settings().jobs_table, Key={"jobId": {"S": job_id}}, ConsistentRead=True
        )
    item = response.get("Item")
    return _from_item(_deserialize(item)) if item else None


def get_tenant_job(tenant: str, job_id: str) -> Job:
    """The caller's job, or NotFound: another tenant's job is indistinguishable from none."""
    job = get_job(job_id) if _is_uuid(job_id) else None
    if job is None or job.tenant != tenant or job.has_expired():
        raise NotFound("No such job.")
    return job


def status_since(status: JobStatus, moment: str) -> str:
    """The status index's sort key: jobs of one status sort by when they got there."""
    return f"{status}#{moment}"


def count_pending(tenant: str, *, up_to: int) -> int:
    """How many PENDING jobs `tenant` has, counting no further than `up_to`.

    Reads only the tenant's PENDING entries of the status index (eventually consistent: a
    job created a moment ago may not be counted yet)."""
    query: QueryInputTypeDef = {
        "TableName": settings().jobs_table,
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "tenant = :tenant AND begins_with(#since, :pending)",
        "ExpressionAttributeNames": {"#since": STATUS_SINCE},
        "ExpressionAttributeValues": _serialize(
            {":tenant": tenant, ":pending": status_since(JobStatus.PENDING, "")}
        ),
        "Select": "COUNT",
    }
    counted = 0
    while counted < up_to:
        with clients.aws_errors("count pending jobs"):
            query["Limit"] = up_to - counted
            response = clients.dynamodb().query(**query)
        counted += int(response.get("Count", 0))
        last = response.get("LastEvaluatedKey")
        if not last:
            break
        query["ExclusiveStartKey"] = last
    return counted


@dataclass(frozen=True)
class _Listing:
    """One tenant's jobs newest first, as a key range of an index: all of them on the
    tenant index, or those in one status on the status index."""

    index: str
    sort_key: str
    condition: str
    values: dict[str, str]
    # What the sort key of a cursor's key must match.
    sort_pattern: re.Pattern[str]


def _listing(tenant: str, status: JobStatus | None) -> _Listing:
    # A job older than JOB_TTL_DAYS has expired (its `expiresAt`, see create_job): its record
    # may outlive its TTL by days, so the key range starts after it. A status is reached at
    # or after creation, so the same bound holds for `statusSince`.
    oldest = iso_from_epoch(time.time() - settings().job_ttl_days * 86400)
    if status is None:
        return _Listing(
            TENANT_INDEX,
            "createdAt",
            "tenant = :tenant AND createdAt > :oldest",
            {":tenant": tenant, ":oldest": oldest},
            _TIMESTAMP,
        )
    return _Listing(
        STATUS_INDEX,
        STATUS_SINCE,
        f"tenant = :tenant AND {STATUS_SINCE} BETWEEN :oldest AND :newest",
        {
            ":tenant": tenant,
            ":oldest": status_since(status, oldest),
            # "~" sorts after every timestamp.
            ":newest": status_since(status, "~"),
        },
        re.compile(re.escape(status_since(status, "")) + _TIMESTAMP.pattern),
    )


def list_jobs(
    tenant: str, *, status: JobStatus | None, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """The tenant's jobs, newest first (with `status`, by when they got there), at most
    `limit`, and the cursor for the next page.

    A cursor comes with a page only if a job was found past it, so a page is empty only at
    the end, and every page but the last is full unless its queries ran out (expired
    records DynamoDB has yet to delete are read and dropped): it then holds at least one
    job. Each query reads one job more than the page needs, to know whether there is more.
    """
    listing = _listing(tenant, status)
    start_key = _decode_cursor(cursor, tenant, listing) if cursor else None
    found: list[Item] = []
    for queries in itertools.count(1):
        items, start_key = _query_page(listing, limit + 1 - len(found), start_key)
        found.extend(items)
        if len(found) > limit or start_key is None:
            break
        if found and queries >= MAX_LIST_QUERIES:
            break
    page = found[:limit]
    if len(found) > limit:
        start_key = _index_key(page[-1], listing)
    return [_from_item(item) for item in page], (_encode_cursor(start_key) if start_key else None)


def created_between(
    tenant: str, after: str, before: str, *, limit: int, start_key: Mapping[str, str] | None
) -> tuple[list[Job], dict[str, str] | None]:
    """One page of the tenant's jobs created from `after` to `before` (both included),
    newest first, read from the tenant index (never a scan), and where the next page starts
    (None: this was the last). A page may be short, even empty, yet not the last."""
    oldest = iso_from_epoch(time.time() - settings().job_ttl_days * 86400)
    after = max(after, oldest)
    if after > before:
        return [], None
    listing = _Listing(
        TENANT_INDEX,
        "createdAt",
        "tenant = :tenant AND createdAt BETWEEN :after AND :before",
        {":tenant": tenant, ":after": after, ":before": before},
        _TIMESTAMP,
    )
    items, last = _query_page(listing, limit, dict(start_key) if start_key else None)
    next_key = {name: str(value) for name, value in last.items()} if last else None
    return [_from_item(item) for item in items], next_key


def _query_page(
    listing: _Listing, limit: int, start_key: Item | None
) -> tuple[list[Item], Item | None]:
    values = {**listing.values, ":now": int(time.time())}
    query: QueryInputTypeDef = {
        "TableName": settings().jobs_table,
        "IndexName": listing.index,
        "KeyConditionExpression": listing.condition,
        "ExpressionAttributeValues": _serialize(values),
        "ScanIndexForward": False,
        "Limit": limit,
        # Within the key range, a job may still have expired: JOB_TTL_DAYS was longer
        # when it was created, or it reached its status late.
        "FilterExpression": "attribute_not_exists(expiresAt) OR expiresAt > :now",
    }
    if start_key:
        query["ExclusiveStartKey"] = _serialize(start_key)
    with clients.aws_errors("list jobs"):
        response = clients.dynamodb().query(**query)
    items = [_deserialize(item) for item in response.get("Items", [])]
    last = response.get("LastEvaluatedKey")
    return items, (_deserialize(last) if last else None)


def _index_key(item: Item, listing: _Listing) -> Item:
    """The key DynamoDB hands out for `item` on the listing's index: the table's and the
    index's key attributes."""
    return {name: item[name] for name in ("jobId", "tenant", listing.sort_key)}


# --- transitions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """One uploaded object as its S3 event names it. `version_id` is None only for a bucket
    without versioning (or an emulator's event that leaves it out)."""

    job_id: str
    tenant: str
    key: str
    version_id: str | None


@dataclass(frozen=True)
class Transition:
    """What a conditional move did: every move answers with one, refused or not. `job` is
    the job after the move; when the move was refused, the job as it stood then (None:
    there is no such job)."""

    moved: bool
    job: Job | None


def queue_upload(upload: Upload, *, size: int | None, etag: str | None) -> Transition:
    """PENDING -> QUEUED, pinning `upload`'s version (with its size and ETag) on the job.

    One conditional write, which also proves the job exists and owns the object (its
    tenant and source key). When refused, the job as it stood comes back instead, so the
    caller learns its state and pinned version without a read of its own.
    """
    fields: dict[str, object] = {}
    if size is not None:
        fields["source"] = {"bytes": size}
    if upload.version_id is not None:
        fields["sourceVersion"] = upload.version_id
    if etag:
        fields["sourceETag"] = etag
    return _move(upload.job_id, JobStatus.QUEUED, fields, owner=_owner(upload, pinned=False))


def claim(upload: Upload) -> Transition:
    """-> PROCESSING (counting an attempt) if the job owns `upload` and pinned this very
    version. One conditional write; the job comes back either way, as for queue_upload."""
    owner = _owner(upload, pinned=True)
    return _move(upload.job_id, JobStatus.PROCESSING, {}, owner=owner, count_attempt=True)


def complete(
    job_id: str,
    *,
    source: Fields,
    outputs: Sequence[Fields],
    placeholder: Fields | None = None,
    original: Fields | None = None,
) -> Transition:
    fields: dict[str, object] = {"source": source, "outputs": list(outputs)}
    if placeholder is not None:
        fields["placeholder"] = placeholder
    if original is not None:
        fields["original"] = original
    return _move(job_id, JobStatus.COMPLETED, fields)


def fail(job_id: str, *, code: str, message: str) -> Transition:
    return _move(job_id, JobStatus.FAILED, {"error": {"code": code, "message": message}})


def give_up(
    upload: Upload, *, code: str, message: str, min_attempts: int | None = None
) -> Transition:
    """End the job of `upload` FAILED, if it owns `upload` and, with `min_attempts`, was
    claimed at least that many times. One conditional write; refused, the job comes back as
    it stood (None: there is no such job), as for queue_upload."""
    condition = None if min_attempts is None else ("attempts >= :min_attempts", min_attempts)
    return _move(
        upload.job_id,
        JobStatus.FAILED,
        {"error": {"code": code, "message": message}},
        owner=_owner(upload, pinned=False),
        condition=condition,
    )


def _owner(upload: Upload, *, pinned: bool) -> dict[str, str | None]:
    """The attributes of the job that owns `upload` (and, if `pinned`, pinned its version)."""
    owner: dict[str, str | None] = {"tenant": upload.tenant, "sourceKey": upload.key}
    if pinned:
        owner["sourceVersion"] = upload.version_id
    return owner


def _move(
    job_id: str,
    to_status: JobStatus,
    fields: Fields,
    *,
    owner: Mapping[str, str | None] | None = None,
    count_attempt: bool = False,
    condition: tuple[str, int] | None = None,
) -> Transition:
    """Move the job to `to_status` if it is in a state allowed to move there (and has the
    `owner` attributes, and meets `condition`, as `_transition_request` checks them)."""
    request = _transition_request(
        job_id, to_status, fields, count_attempt=count_attempt, owner=owner, condition=condition
    )
    return _update_or_current(request, f"move job {job_id} to {to_status}")


def _update_or_current(request: UpdateItemInputTypeDef, operation: str) -> Transition:
    """Make the conditional UpdateItem `request`; refused, return the job as it stood."""
    from botocore.exceptions import ClientError

    request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    with clients.aws_errors(operation):
        try:
            response = clients.dynamodb().update_item(**request)
        except ClientError as exc:
            if clients.aws_error_code(exc) != "ConditionalCheckFailedException":
                raise
            current = exc.response.get("Item")
            job = _from_item(_deserialize(current)) if isinstance(current, dict) else None
            return Transition(moved=False, job=job)
    return Transition(moved=True, job=_from_item(_deserialize(response["Attributes"])))


def _transition_request(
    job_id: str,
    to_status: JobStatus,
    fields: Fields,
    *,
    count_attempt: bool,
    owner: Mapping[str, str | None] | None = None,
    condition: tuple[str, int] | None = None,
) -> UpdateItemInputTypeDef:
    """The UpdateItem of a forward move: the new status and `fields`, on condition that the
    job exists in a state ALLOWED_FROM, has every `owner` attribute equal to its value
    (absent, for a None value) and meets `condition` (an expression and its one value,
    `:min_attempts`)."""
    allowed = sorted(ALLOWED_FROM[to_status])
    now = now_iso()
    values: dict[str, object] = {
        ":to": to_status.value,
        ":now": now,
        ":since": status_since(to_status, now),
    }
    values.update({f":from{i}": state.value for i, state in enumerate(allowed)})
    names = {"#status": "status", "#since": STATUS_SINCE}
    assignments = ["#status = :to", "updatedAt = :now", "#since = :since"]
    for i, (name, value) in enumerate(fields.items()):
        names[f"#f{i}"] = name
        values[f":f{i}"] = value
        assignments.append(f"#f{i} = :f{i}")
    # The write that ends a job also records its event and puts the job in an event shard
    # of the open-jobs index until the event is handed to the webhooks queue: a job never
    # ends without its event, and a lost hand-over is found by the sweeper.
    if to_status.is_terminal:
        values[":event"] = new_event_id()
        assignments.append("eventId = :event")
    values[":shard"] = open_shard(job_id, EVENT_SHARD if to_status.is_terminal else to_status)
    assignments.append(f"{OPEN_SHARD} = :shard")
    expression = "SET " + ", ".join(assignments)
    if count_attempt:
        values[":one"] = 1
        expression += " ADD attempts :one"
    conditions = [
        "attribute_exists(jobId)",
        "#status IN ({})".format(", ".join(f":from{i}" for i in range(len(allowed)))),
    ]
    for i, (name, owned) in enumerate((owner or {}).items()):
        names[f"#o{i}"] = name
        if owned is None:
            conditions.append(f"attribute_not_exists(#o{i})")
        else:
            values[f":o{i}"] = owned
            conditions.append(f"#o{i} = :o{i}")
    if condition is not None:
        expression_text, minimum = condition
        conditions.append(expression_text)
        values[":min_attempts"] = minimum
    return {
        "TableName": settings().jobs_table,
        "Key": {"jobId": {"S": job_id}},
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValues": "ALL_NEW",
    }


# --- open jobs, for the sweeper -----------------------------------------------------------


@dataclass(frozen=True)
class OpenJob:
    """A job as the open-jobs index projects it: enough to act on it, and its `updatedAt`,
    which a later write must still find unchanged."""

    job_id: str
    status: JobStatus
    updated_at: str
    tenant: str
    source_key: str


def open_shard(job_id: str, status: JobStatus | str) -> str:
    return f"{status}#{zlib.crc32(job_id.encode()) % OPEN_SHARDS}"


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def unannounced_before(updated_before: str, per_shard: int) -> list[OpenJob]:
    """Ended jobs whose event has not been handed over since before `updated_before`."""
    return open_jobs_before(EVENT_SHARD, updated_before, per_shard)


def mark_announced(job_id: str, event_id: str) -> bool:
    """Take the ended job out of the event shards once its event `event_id` is on the
    webhooks queue. False if it was already out (another hand-over was first)."""
    return clients.update_if(
        f"mark the event of job {job_id} announced",
        {
            "TableName": settings().jobs_table,
            "Key": {"jobId": {"S": job_id}},
            "UpdateExpression": f"REMOVE {OPEN_SHARD}",
            "ConditionExpression": f"eventId = :event AND begins_with({OPEN_SHARD}, :prefix)",
            "ExpressionAttributeValues": {
                ":event": {"S": event_id},
                ":prefix": {"S": f"{EVENT_SHARD}#"},
            },
        },
    )


def open_jobs_before(status: JobStatus | str, updated_before: str, per_shard: int) -> list[OpenJob]:
    """Jobs in `status` whose last write is older than `updated_before` (a timestamp as
    `now_iso` writes them): up to `per_shard` of each shard, oldest first within each.

    One Query per shard and page, never a scan. Every shard gets the same share, so a
    burst of old jobs in some shards never hides the others' jobs.
    """
    found: list[OpenJob] = []
    for shard in range(OPEN_SHARDS):
        found.extend(_query_open_shard(f"{status}#{shard}", updated_before, per_shard))
    return found


def _query_open_shard(shard: str, updated_before: str, limit: int) -> list[OpenJob]:
    query: QueryInputTypeDef = {
        "TableName": settings().jobs_table,
        "IndexName": OPEN_JOBS_INDEX,
        "KeyConditionExpression": "#shard = :shard AND updatedAt < :before",
        "ExpressionAttributeNames": {"#shard": OPEN_SHARD},
        "ExpressionAttributeValues": _serialize({":shard": shard, ":before": updated_before}),
    }
    found: list[OpenJob] = []
    while len(found) < limit:
        with clients.aws_errors("find open jobs"):
            query["Limit"] = limit - len(found)
            response = clients.dynamodb().query(**query)
        found.extend(_open_job(_deserialize(item)) for item in response.get("Items", []))
        last = response.get("LastEvaluatedKey")
        if not last:
            break
        query["ExclusiveStartKey"] = last
    return found


def _open_job(item: Item) -> OpenJob:
    return OpenJob(
        job_id=_text(item, "jobId"),
        status=JobStatus(_text(item, "status")),
        updated_at=_text(item, "updatedAt"),
        tenant=_text(item, "tenant"),
        source_key=_text(item, "sourceKey"),
    )


def fail_unchanged(job: OpenJob, *, code: str, message: str) -> Transition:
    """End `job` FAILED only if nothing has written it since it was read (its `updatedAt`
    is unchanged, so neither is its status): a worker or dispatcher that moved it in the
    meantime wins, and the move is refused."""
    fields = {"error": {"code": code, "message": message}}
    owner = {"updatedAt": job.updated_at}
    return _move(job.job_id, JobStatus.FAILED, fields, owner=owner)


def requeue_unchanged(job: OpenJob, *, max_requeues: int) -> Transition:
    """Record that the sweeper sends the QUEUED `job`'s message again: it stays QUEUED with
    a new `updatedAt` and one more `requeues`, only if nothing has written it since it was
    read (its `updatedAt` is unchanged: a worker that claimed it meanwhile wins) and it was
    requeued fewer than `max_requeues` times. Refused, the job as it stood comes back.

    The new `updatedAt` moves the job along the open-jobs index (same shard), so the next
    look at it is a whole requeue interval later.
    """
    values: dict[str, object] = {
        ":queued": JobStatus.QUEUED.value,
        ":read": job.updated_at,
        ":now": now_iso(),
        ":one": 1,
        ":max": max_requeues,
    }
    request: UpdateItemInputTypeDef = {
        "TableName": settings().jobs_table,
        "Key": {"jobId": {"S": job.job_id}},
        "UpdateExpression": "SET updatedAt = :now ADD requeues :one",
        "ConditionExpression": (
            "#status = :queued AND updatedAt = :read"
            " AND (attribute_not_exists(requeues) OR requeues < :max)"
        ),
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValues": "ALL_NEW",
    }
    return _update_or_current(request, f"requeue job {job.job_id}")


# --- reprocessing (chalicelib/reprocess.py) ----------------------------------------------

REVISION = "revision"
REPROCESS_REQUEST = "reprocessRequest"
LAST_REPROCESS_REQUEST = "lastReprocessRequest"
REPROCESS_ERROR = "reprocessError"


def mark_reprocessing(tenant: str, job_id: str, request_id: str) -> Transition:
    """Record that `request_id` will make the COMPLETED job's outputs again (the job view's
    `reprocessing`), forgetting the last request's error. Refused (the job as it stood)
    unless the job is the tenant's and COMPLETED."""
    values: dict[str, object] = {
        ":request": request_id,
        ":completed": JobStatus.COMPLETED.value,
        ":tenant": tenant,
        ":now": now_iso(),
    }
    request: UpdateItemInputTypeDef = {
        "TableName": settings().jobs_table,
        "Key": {"jobId": {"S": job_id}},
        "UpdateExpression": (
            f"SET {REPROCESS_REQUEST} = :request, updatedAt = :now REMOVE {REPROCESS_ERROR}"
        ),
        "ConditionExpression": "#status = :completed AND tenant = :tenant",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValues": "ALL_NEW",
    }
    return _update_or_current(request, f"mark job {job_id} reprocessing")


def record_reprocess(
    read: Job, *, request_id: str, outputs: Sequence[Fields], presets: Sequence[str]
) -> Transition:
    """Store a reprocess's outputs in one conditional write: the outputs and presets,
    `revision` + 1, a new event id (the job in an event shard until it is announced, as at
    its end), `request_id` as the last request, and the pending request cleared if it was
    this one (or none). Only if the job is still as it was `read` (COMPLETED, same
    revision, same pending request): a redelivered message, or another request that wrote
    first, is refused, so the revision moves once per write and only forward."""
    values: dict[str, object] = {
        ":completed": JobStatus.COMPLETED.value,
        ":outputs": list(outputs),
        ":presets": list(presets),
        ":next": read.revision + 1,
        ":event": new_event_id(),
        ":shard": open_shard(read.job_id, EVENT_SHARD),
        ":request": request_id,
        ":now": now_iso(),
    }
    assignments = [
        "outputs = :outputs",
        "presets = :presets",
        f"{REVISION} = :next",
        "eventId = :event",
        f"{OPEN_SHARD} = :shard",
        f"{LAST_REPROCESS_REQUEST} = :request",
        "updatedAt = :now",
    ]
    conditions = ["#status = :completed"]
    if read.revision:
        values[":read_revision"] = read.revision
        conditions.append(f"{REVISION} = :read_revision")
    else:
        conditions.append(f"attribute_not_exists({REVISION})")
    if read.reprocess_request is None:
        conditions.append(f"attribute_not_exists({REPROCESS_REQUEST})")
    else:
        values[":pending"] = read.reprocess_request
        conditions.append(f"{REPROCESS_REQUEST} = :pending")
    expression = "SET " + ", ".join(assignments)
    if read.reprocess_request in (None, request_id):
        expression += f" REMOVE {REPROCESS_REQUEST}, {REPROCESS_ERROR}"
    request: UpdateItemInputTypeDef = {
        "TableName": settings().jobs_table,
        "Key": {"jobId": {"S": read.job_id}},
        "UpdateExpression": expression,
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValues": "ALL_NEW",
    }
    return _update_or_current(request, f"record the reprocess of job {read.job_id}")


def end_reprocessing(
    job_id: str, request_id: str | None, *, error: Mapping[str, str] | None = None
) -> Transition:
    """The request `request_id` ended without new outputs: clear the pending request if it
    is that one (any, for None: a dead letter must never leave the job stuck), recording
    `error` ({code, message}) if given. Refused if there is no such job."""
    values: dict[str, object] = {":now": now_iso()}
    expression = "SET updatedAt = :now"
    if error is not None:
        values[":error"] = dict(error)
        expression += f", {REPROCESS_ERROR} = :error"
    conditions = ["attribute_exists(jobId)"]
    if request_id is not None:
        values[":request"] = request_id
        conditions.append(
            f"(attribute_not_exists({REPROCESS_REQUEST}) OR {REPROCESS_REQUEST} = :request)"
        )
    request: UpdateItemInputTypeDef = {
        "TableName": settings().jobs_table,
        "Key": {"jobId": {"S": job_id}},
        "UpdateExpression": f"{expression} REMOVE {REPROCESS_REQUEST}",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValues": "ALL_NEW",
    }
    return _update_or_current(request, f"end the reprocess of job {job_id}")


# --- item mapping ----------------------------------------------------------------------


def _to_item(job: Job) -> Item:
    item: Item = {
        "jobId": job.job_id,
        "tenant": job.tenant,
        "status": job.status.value,
        "createdAt": job.created_at,
        "updatedAt": job.updated_at,
        "sourceKey": job.source_key,
        "contentType": job.content_type,
        "presets": job.presets,
        "outputs": job.outputs,
        "attempts": job.attempts,
    }
    if job.filename is not None:
        item["filename"] = job.filename
    if job.requested_outputs:
        item["requestedOutputs"] = job.requested_outputs
    if job.source_version is not None:
        item["sourceVersion"] = job.source_version
    if job.source_etag is not None:
        item["sourceETag"] = job.source_etag
    if job.expires_at is not None:
        item["expiresAt"] = job.expires_at
    return item


def _from_item(item: Item) -> Job:
    source = item.get("source")
    placeholder = item.get("placeholder")
    original = item.get("original")
    error = item.get("error")
    reprocess_error = item.get(REPROCESS_ERROR)
    expires_at = item.get("expiresAt")
    return Job(
        job_id=_text(item, "jobId"),
        tenant=_text(item, "tenant"),
        status=JobStatus(_text(item, "status")),
        created_at=_text(item, "createdAt"),
        updated_at=_text(item, "updatedAt"),
        source_key=_text(item, "sourceKey"),
        content_type=_text(item, "contentType"),
        filename=_optional_text(item, "filename"),
        presets=[str(name) for name in _list(item, "presets")],
        requested_outputs=[_attributes(output) for output in _list(item, "requestedOutputs")],
        source=_attributes(source) if isinstance(source, dict) else None,
        outputs=[_attributes(output) for output in _list(item, "outputs")],
        placeholder=_attributes(placeholder) if isinstance(placeholder, dict) else None,
        error=_error(error) if isinstance(error, dict) else None,
        attempts=_count(item, "attempts"),
        source_version=_optional_text(item, "sourceVersion"),
        source_etag=_optional_text(item, "sourceETag"),
        requeues=_count(item, "requeues"),
        expires_at=expires_at if isinstance(expires_at, int) else None,
        event_id=_optional_text(item, "eventId"),
        original=_attributes(original) if isinstance(original, dict) else None,
        revision=_count(item, REVISION),
        reprocess_request=_optional_text(item, REPROCESS_REQUEST),
        last_reprocess_request=_optional_text(item, LAST_REPROCESS_REQUEST),
        reprocess_error=_error(reprocess_error) if isinstance(reprocess_error, dict) else None,
    )


def _text(item: Item, name: str) -> str:
    value = item[name]
    if not isinstance(value, str):
        raise TypeError(f"job attribute {name} is not a string: {value!r}")
    return value


def _optional_text(item: Item, name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def _count(item: Item, name: str) -> int:
    value = item.get(name, 0)
    return value if isinstance(value, int) else 0


def _list(item: Item, name: str) -> list[object]:
    value = item.get(name)
    return list(value) if isinstance(value, list) else []


def _attributes(value: object) -> Item:
    return {str(name): inner for name, inner in value.items()} if isinstance(value, dict) else {}


def _error(value: dict[object, object]) -> dict[str, str]:
    return {str(name): str(inner) for name, inner in value.items()}


def _serialize(values: Mapping[str, object]) -> dict[str, AttributeValueTypeDef]:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in values.items()}


def _deserialize(item: Mapping[str, AttributeValueTypeDef]) -> Item:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: _plain(deserializer.deserialize(value)) for key, value in item.items()}


def _plain(value: object) -> object:
    """DynamoDB numbers come back as Decimal; every number this store keeps is an int."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value


# --- cursors -----------------------------------------------------------------------------

# What now_iso() writes: a cursor's key must be one DynamoDB could have handed out.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _encode_cursor(key: Item) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, tenant: str, listing: _Listing) -> Item:
    """The key a cursor names, if it is one this very listing (the tenant's, on the same
    index, in the same status) could have handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("cursor is not valid.") from exc
    valid = (
        isinstance(key, dict)
        and set(key) == {"jobId", "tenant", listing.sort_key}
        and all(isinstance(value, str) for value in key.values())
        and key["tenant"] == tenant
        and _is_uuid(key["jobId"])
        and listing.sort_pattern.fullmatch(key[listing.sort_key]) is not None
    )
    if not valid:
        raise InvalidRequest("cursor is not valid.")
    return dict(key)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False
