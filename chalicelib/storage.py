"""Object keys, presigned URLs and S3 reads/writes for sources and outputs.

Sources live in the uploads bucket under ``uploads/<tenant>/<jobId>/<safe name>``;
outputs in the separate derived bucket under ``<tenant>/<jobId>/<output>.<version>.<ext>``
(``<output>`` is the preset's name, or ``<preset>-<width>w`` for one of a responsive set;
``<version>`` the preset's, chalicelib/presets.py `preset_version`), so a thumbnail can
never land under ``uploads/`` and re-trigger the dispatcher. Output keys are
deterministic: a duplicate delivery overwrites the same objects, never adds a set, and a
changed preset's outputs get new keys (reprocessing replaces the old ones).

The uploads bucket is versioned: a source is read, and deleted, by the version its job
pinned, so another upload to the same key can neither replace it nor survive it.

Originals (the pinned source version, kept for reprocessing) are copied within the
uploads bucket to ``originals/<tenant>/<jobId>/<safe name>``: a private prefix no API
role may read or presign (the API only presigns POSTs under ``uploads/``), outside the
dispatcher's ``uploads/`` trigger, expired by its own lifecycle rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from chalicelib import clients
from chalicelib.config import ORIGINALS_PREFIX, UPLOADS_PREFIX, settings
from chalicelib.errors import FileTooLarge, NotFound
from chalicelib.timestamps import iso_utc

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ListObjectVersionsRequestTypeDef

OUTPUT_CACHE_CONTROL = "public, max-age=31536000, immutable"
DEFAULT_SOURCE_NAME = "source"
MAX_SAFE_NAME = 100
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9 ._-]+")
_SPACES = re.compile(r" {2,}")
_KEY_PATTERN = re.compile(
    r"^uploads/(?P<tenant>[a-z0-9][a-z0-9_-]{0,63})/"
    r"(?P<job>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/[A-Za-z0-9 ._-]+$"
)


@dataclass(frozen=True)
class SourceKey:
    tenant: str
    job_id: str


@dataclass(frozen=True)
class StoredObject:
    """One stored version of an upload, as its S3 event names it. `version_id` is None only
    for an object stored without versioning; `size` and `etag` when known."""

    bucket: str
    key: str
    version_id: str | None
    size: int | None
    etag: str | None


def safe_filename(filename: str | None) -> str:
    """The user's file name reduced to a harmless last key segment: letters, digits,
    single spaces, dots, dashes and underscores, never a path or a dot-name."""
    if not filename:
        return DEFAULT_SOURCE_NAME
    base = re.split(r"[\\/]", filename)[-1]
    ascii_name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode()
    cleaned = _SPACES.sub(" ", _UNSAFE_CHARS.sub("_", ascii_name)).strip(" ._-")
    return cleaned[:MAX_SAFE_NAME] or DEFAULT_SOURCE_NAME


def source_key(tenant: str, job_id: str, filename: str | None) -> str:
    return f"{UPLOADS_PREFIX}{tenant}/{job_id}/{safe_filename(filename)}"


def original_key(tenant: str, job_id: str, filename: str | None) -> str:
    return f"{ORIGINALS_PREFIX}{tenant}/{job_id}/{safe_filename(filename)}"


def parse_source_key(key: str) -> SourceKey | None:
    match = _KEY_PATTERN.match(key)
    if match is None:
        return None
    return SourceKey(tenant=match["tenant"], job_id=match["job"])


def output_key(tenant: str, job_id: str, output: str, version: str, extension: str) -> str:
    return f"{tenant}/{job_id}/{output}.{version}.{extension}"


def presign_upload(key: str, content_type: str) -> dict[str, object]:
    """A presigned POST pinned to one key, one content type and the size cap."""
    config = settings()
    ttl = config.upload_url_ttl_seconds
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl)
    with clients.aws_errors("presign upload"):
        post = clients.s3().generate_presigned_post(
            Bucket=config.uploads_bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, config.max_upload_bytes],
            ],
            ExpiresIn=ttl,
        )
    return {
        "url": post["url"],
        "method": "POST",
        "fields": post["fields"],
        "maxBytes": config.max_upload_bytes,
        "expiresAt": iso_utc(expires_at, "seconds"),
    }


def presign_download(key: str) -> str:
    with clients.aws_errors("presign download"):
        url: str = clients.s3().generate_presigned_url(
            "get_object",
            Params={"Bucket": settings().derived_bucket, "Key": key},
            ExpiresIn=settings().download_url_ttl_seconds,
        )
    return url


def read_source(bucket: str, key: str, version_id: str | None, *, max_bytes: int) -> bytes:
    """The source's bytes: exactly `version_id` (the current object when None, which only an
    unversioned bucket's events leave). Over `max_bytes` by GetObject's own length, the
    body is closed unread and FileTooLarge raised: no separate HeadObject."""
    translate = {"NoSuchKey": NotFound, "NoSuchVersion": NotFound}
    with clients.aws_errors("read source", translate):
        if version_id is None:
            response = clients.s3().get_object(Bucket=bucket, Key=key)
        else:
            response = clients.s3().get_object(Bucket=bucket, Key=key, VersionId=version_id)
    body = response["Body"]
    size = response["ContentLength"]
    if size > max_bytes:
        body.close()
        raise FileTooLarge(
            f"The upload is {size} bytes; the limit is {max_bytes}.",
            detail=f"size: {size} bytes; limit: {max_bytes} bytes",
        )
    with clients.aws_errors("read source body"):
        return body.read()


def source_versions(bucket: str, key: str) -> list[StoredObject]:
    """Every stored version of `key`, oldest first (the order their uploads arrived in).
    Delete markers are left out; the version of an object stored before versioning was
    enabled ("null") is named None, as its S3 event would."""
    found: list[StoredObject] = []
    request: ListObjectVersionsRequestTypeDef = {"Bucket": bucket, "Prefix": key}
    while True:
        with clients.aws_errors("list source versions"):
            page = clients.s3().list_object_versions(**request)
        found.extend(
            StoredObject(
                bucket=bucket,
                key=key,
                version_id=None if version["VersionId"] == "null" else version["VersionId"],
                size=version["Size"],
                etag=version["ETag"].strip('"'),
            )
            for version in page.get("Versions", [])
            if version["Key"] == key
        )
        if not page.get("IsTruncated"):
            break
        request["KeyMarker"] = page["NextKeyMarker"]
        request["VersionIdMarker"] = page["NextVersionIdMarker"]
    # S3 lists a key's versions newest first.
    return found[::-1]


def keep_original(bucket: str, key: str, version_id: str | None, original: str) -> None:
    """Copy the source version (the current object when None) to the `original` key of
    the uploads bucket, server-side: its bytes never pass through the function."""
    copy_source: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id is not None:
        copy_source["VersionId"] = version_id
    with clients.aws_errors("keep original"):
        clients.s3().copy_object(
            Bucket=settings().uploads_bucket,
            Key=original,
            CopySource=copy_source,  # type: ignore[arg-type]
            MetadataDirective="COPY",
        )


def read_original(key: str, *, max_bytes: int) -> bytes:
    """A kept original's bytes; NotFound once it has expired."""
    return read_source(settings().uploads_bucket, key, None, max_bytes=max_bytes)


def delete_source(bucket: str, key: str, version_id: str) -> None:
    """Delete one version of a source for good (no delete marker is left behind)."""
    with clients.aws_errors("delete source"):
        clients.s3().delete_object(Bucket=bucket, Key=key, VersionId=version_id)


@dataclass(frozen=True)
class Output:
    key: str
    data: bytes
    content_type: str


def write_outputs(outputs: Sequence[Output]) -> None:
    """Write a job's outputs all at once, one PutObject each on its own thread, so the job
    waits for about one round trip to S3 instead of one per output (boto3 clients are
    thread-safe). Every write has ended when this returns or raises; the first failure is
    raised, and a retry overwrites whichever outputs were written (their keys are fixed)."""
    if len(outputs) <= 1:
        for output in outputs:
            write_output(output)
        return
    clients.s3()  # created once here, not raced for by the threads
    with ThreadPoolExecutor(len(outputs), thread_name_prefix="write-output") as pool:
        writes = [pool.submit(write_output, output) for output in outputs]
    for write in writes:
        write.result()


def write_output(output: Output) -> None:
    with clients.aws_errors("write output"):
        clients.s3().put_object(
            Bucket=settings().derived_bucket,
            Key=output.key,
            Body=output.data,
            ContentType=output.content_type,
            CacheControl=OUTPUT_CACHE_CONTROL,
        )


def delete_outputs(keys: Sequence[str]) -> None:
    """Delete outputs from the derived bucket (those a reprocess superseded)."""
    for key in keys:
        with clients.aws_errors("delete superseded output"):
            clients.s3().delete_object(Bucket=settings().derived_bucket, Key=key)
