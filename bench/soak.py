"""A soak of the local stack: many uploads, good and bad, from concurrent clients.

    python -m bench.soak [--uploads 1000] [--clients 4] [--workers N] [--quick] [--out FILE]

Each of `--clients` threads uploads files of every kind (`KIND_CYCLE`) one at a time and
polls its job until it ends, through media_pipeline.client. At the end every job created must
be listed by GET /jobs, be terminal with an outcome its kind may have (`EXPECTED`), and no
response may be a 5xx; otherwise it exits 1. The RSS of the stack's processes is read after
a warm-up job, every few seconds, and at the end. bench/README.md tells the whole story.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from bench.output import machine, write_result
from bench.pipeline import API_KEY, completed_at, parse_arguments, percentile, read_photos
from devstack import launch
from media_pipeline.client import TERMINAL, ApiError, Client, Job, JobTimeout

HTTP_TIMEOUT = 60.0
RESIZED_SIDE = 1280
RSS_SAMPLE_SECONDS = 5.0
POLL_SECONDS = 0.1  # between GETs of a job
JOB_TIMEOUT = 180.0

# One upload in 20 of each bad kind; the bad ones come early so a short run has them all.
KIND_CYCLE = (
    "photo", "truncated", "photo", "text", "photo", "empty", "photo", "mismatched",
    "photo", "original", *["photo"] * 10,
)  # fmt: skip
# kind -> the outcomes it may have: COMPLETED, the FAILED job's error code, or "refused"
# (S3 refused the file: the job stays PENDING until its TTL). The POST policy's 1-byte
# minimum refuses an empty file on AWS; the emulator does not enforce POST policies, so
# there the empty file is uploaded and fails as no image at all.
EXPECTED: dict[str, tuple[str, ...]] = {
    "photo": ("COMPLETED",),
    "original": ("COMPLETED",),
    "truncated": ("corrupt_image",),
    "text": ("unsupported_format",),
    "empty": ("refused", "unsupported_format"),
    "mismatched": ("content_mismatch",),  # a PNG declared image/jpeg
}


@dataclass(frozen=True)
class Payload:
    kind: str
    name: str
    data: bytes
    content_type: str


def resized(data: bytes, image_format: str) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        exif = image.info.get("exif", b"")
        image.draft("RGB", (RESIZED_SIDE, RESIZED_SIDE))
        image.thumbnail((RESIZED_SIDE, RESIZED_SIDE))
        buffer = io.BytesIO()
        if image_format == "JPEG":
            image.save(buffer, "JPEG", quality=88, exif=exif)
        else:
            image.save(buffer, image_format)
        return buffer.getvalue()


def payloads(photo_dir: Path) -> dict[str, list[Payload]]:
    """Every kind's files, built once from the corpus."""
    originals = read_photos(photo_dir).items()
    photos = [Payload("photo", n, resized(d, "JPEG"), "image/jpeg") for n, d in originals]
    first = photos[0]
    return {
        "photo": photos,
        "original": [Payload("original", n, d, "image/jpeg") for n, d in originals],
        "truncated": [
            Payload("truncated", p.name, p.data[: len(p.data) * 3 // 5], "image/jpeg")
            for p in photos
        ],
        "text": [Payload("text", "notes.png", b"not an image, just words\n" * 40, "image/png")],
        "empty": [Payload("empty", "empty.jpg", b"", "image/jpeg")],
        "mismatched": [
            Payload("mismatched", "really-a.png", resized(first.data, "PNG"), "image/jpeg")
        ],
    }


def schedule(count: int, files: dict[str, list[Payload]]) -> list[Payload]:
    counters = {kind: itertools.cycle(items) for kind, items in files.items()}
    return [next(counters[KIND_CYCLE[i % len(KIND_CYCLE)]]) for i in range(count)]


# --- the stack's processes ---------------------------------------------------------------------


def roles(root: int) -> dict[int, str]:
    """The stack's processes by role: api (devstack.run), emulator, worker-N, s3-events."""
    found = {root: "api"}
    for proc in launch.descendants(root):
        if "devstack.emulator_server" in proc.command:
            found[proc.pid] = "emulator"
        elif proc.name.startswith("worker-") or proc.name == "s3-events":
            found[proc.pid] = proc.name
    return found


def rss_mib(root: int) -> dict[str, float]:
    """The resident memory of each of the stack's processes still alive, by role."""
    found = {}
    for pid, role in roles(root).items():
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            kib = next(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
            found[role] = round(kib / 1024, 1)
    return dict(sorted(found.items()))


@contextlib.contextmanager
def rss_timeline(root: int) -> Iterator[list[dict[str, Any]]]:
    """`rss_mib` every RSS_SAMPLE_SECONDS while the block runs."""
    samples: list[dict[str, Any]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(RSS_SAMPLE_SECONDS):
            samples.append({"seconds": round(time.monotonic() - started, 1), "mib": rss_mib(root)})

    thread = threading.Thread(target=sample, name="rss", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


# --- the clients -------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    kind: str
    job_id: str | None = None
    status: str | None = None  # the last status seen, or "refused" / "create_failed"
    error_code: str | None = None
    stored_bytes: int = 0
    posted: float = 0.0  # time.time() when the file's POST returned
    finished: float = 0.0  # the job's updatedAt, the worker's clock

    @property
    def result(self) -> str:
        if self.status == "FAILED":
            return self.error_code or "FAILED without a code"
        return self.status or "none"


class Soak:
    """The clients' uploads, through one client of the API that counts every response."""

    def __init__(self, api: str) -> None:
        self.client = Client(api, API_KEY, timeout=HTTP_TIMEOUT, observer=self._count)
        self.responses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, target: str, response: requests.Response) -> None:
        with self._lock:
            self.responses[f"{target} {response.status_code}"] += 1

    def upload(self, index: int, payload: Payload) -> Outcome:
        outcome = Outcome(index, payload.kind)
        try:
            upload = self.client.create_upload(payload.name, payload.content_type)
        except ApiError:
            outcome.status = "create_failed"
            return outcome
        outcome.job_id = upload.job_id
        try:
            sent = self.client.send_file(upload, payload.data, payload.name, payload.content_type)
        except ApiError as refused:
            outcome.posted = time.time()
            outcome.status = "refused" if refused.status < 500 else "upload_failed"
            self._record(outcome, self.client.job(upload.job_id))
            return outcome
        outcome.posted = sent.sent_at
        self._wait(outcome, upload.job_id)
        return outcome

    def _wait(self, outcome: Outcome, job_id: str) -> None:
        try:
            job = self.client.wait(job_id, JOB_TIMEOUT, POLL_SECONDS)
        except JobTimeout as late:
            outcome.status = late.job["status"]
            return
        except ApiError:
            outcome.status = "unreadable"
            return
        self._record(outcome, job)
        outcome.finished = completed_at(job)

    @staticmethod
    def _record(outcome: Outcome, job: Job) -> None:
        if outcome.status != "refused":
            outcome.status = job["status"]
        elif job["status"] != "PENDING":
            outcome.status = f"refused but {job['status']}"
        outcome.error_code = (job.get("error") or {}).get("code")
        outcome.stored_bytes = sum(output["bytes"] for output in job.get("outputs", []))


# --- judging ---------------------------------------------------------------------------------


def unexpected(outcome: Outcome) -> str | None:
    """Why the outcome is not one its kind may have, or None."""
    if outcome.result in EXPECTED[outcome.kind]:
        return None
    return f"{outcome.kind} #{outcome.index}: {outcome.result}, expected {EXPECTED[outcome.kind]}"


def latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 0.50), 1),
        "p90": round(percentile(values, 0.90), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def judge(
    outcomes: list[Outcome], listed: dict[str, dict[str, Any]], responses: Counter[str]
) -> dict[str, Any]:
    created = [o for o in outcomes if o.job_id]
    not_listed = [o.job_id for o in created if o.job_id not in listed]
    # Lost: accepted by the API, uploaded, and never terminal (or not even listed).
    lost = [
        o.job_id
        for o in created
        if o.job_id in not_listed or (o.result != "refused" and o.status not in TERMINAL)
    ]
    # What GET /jobs says must agree with what the client saw.
    disagreeing = [
        o.job_id
        for o in created
        if o.job_id in listed and o.status in TERMINAL and listed[o.job_id]["status"] != o.status
    ]
    wrong = [reason for o in outcomes if (reason := unexpected(o)) is not None]
    by_kind: dict[str, Counter[str]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, Counter())[o.result] += 1
    server_errors = sum(n for key, n in responses.items() if key.split()[1].startswith("5"))
    return {
        "counts": {
            "uploads": len(outcomes),
            "jobs_created": len(created),
            "by_kind": {kind: dict(sorted(c.items())) for kind, c in sorted(by_kind.items())},
            "by_status": dict(sorted(Counter(o.status or "none" for o in outcomes).items())),
        },
        "http": {"responses": dict(sorted(responses.items())), "server_errors_5xx": server_errors},
        "lost_jobs": lost,
        "not_listed": not_listed,
        "listing_disagrees": disagreeing,
        "unexpected": wrong,
        "ok": not (lost or not_listed or disagreeing or wrong or server_errors),
    }


# --- the run ---------------------------------------------------------------------------------


def run(uploads: int, clients: int, workers: int, photo_dir: Path) -> dict[str, Any]:
    files = payloads(photo_dir)
    plan = schedule(uploads, files)
    settings = launch.Settings(keys={"bench": API_KEY}, workers=workers)
    with launch.local_stack(settings) as stack:
        soak = Soak(settings.api)
        warm = soak.upload(-1, files["photo"][0])  # every path once, before measuring
        if warm.status != "COMPLETED":
            raise SystemExit(f"the warm-up job did not complete: {warm}")
        soak.responses.clear()
        rss_start = rss_mib(stack.process.pid)
        started = time.time()
        with rss_timeline(stack.process.pid) as timeline, ThreadPoolExecutor(clients) as pool:
            outcomes = list(pool.map(soak.upload, range(uploads), plan))
        ended = time.time()
        rss_end = rss_mib(stack.process.pid)
        listed = soak.client.jobs()
    verdict = judge(outcomes, listed, soak.responses)
    terminal = [o for o in outcomes if o.status in TERMINAL]
    uploaded_bytes = sum(len(p.data) for p in plan)
    output_bytes = sum(o.stored_bytes for o in outcomes)
    seconds = ended - started
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "uploads": uploads,
            "clients": clients,
            "workers": workers,
            "kind_cycle": list(KIND_CYCLE),
            "expected": EXPECTED,
            "photos": sorted(p.name for p in files["photo"]),
        },
        "seconds": round(seconds, 1),
        "jobs_per_second": round(len(terminal) / seconds, 2),
        # from the file's POST returning to the job's terminal write (the worker's clock)
        "latency_ms": {
            "upload_to_terminal": latency_summary(
                [(o.finished - o.posted) * 1000 for o in terminal]
            )
        },
        **verdict,
        "bytes": {"uploaded": uploaded_bytes, "outputs": output_bytes},
        "rss_mib": {
            "start": rss_start,
            "end": rss_end,
            "growth": {
                role: round(rss_end.get(role, 0.0) - mib, 1) for role, mib in rss_start.items()
            },
            "stored_mib": round((uploaded_bytes + output_bytes) / 2**20, 1),
            "timeline": timeline,
        },
    }


def summary(result: dict[str, Any]) -> str:
    counts, rss = result["counts"], result["rss_mib"]
    lines = [
        f"{counts['uploads']} uploads in {result['seconds']} s, {result['jobs_per_second']}"
        f" jobs/s; upload -> terminal ms: {json.dumps(result['latency_ms']['upload_to_terminal'])}",
        f"by kind: {json.dumps(counts['by_kind'])}",
        f"5xx: {result['http']['server_errors_5xx']}, lost: {len(result['lost_jobs'])}, "
        f"not listed: {len(result['not_listed'])}, unexpected: {len(result['unexpected'])}",
        f"RSS MiB {json.dumps(rss['start'])} -> {json.dumps(rss['end'])}"
        f" (stored: {rss['stored_mib']} MiB)",
        "OK" if result["ok"] else "NOT OK",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    counts = {"uploads": (1000, 30), "clients": (4, 2)}
    args, (uploads, clients) = parse_arguments("soak", __doc__, counts, argv)
    result = run(uploads, clients, args.workers, args.photos)
    print(summary(result))
    write_result("soak", result, args, trial=args.quick, raw=("rss_mib.timeline",))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
