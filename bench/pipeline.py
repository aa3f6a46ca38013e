"""The pipeline on the local stack: job latency and throughput against the engine's own.

    python -m bench.pipeline [--burst 200] [--sequential 22] [--workers N] [--quick]

Starts the stack (devstack.launch) and measures, through media_pipeline.client: at low load, one
job at a time, from "the presigned POST returned" to the job's COMPLETED write against the
engine's own render time for the same photo, and to its `job.completed` webhook reaching a
receiver on this machine (devstack.webhooks); then a burst of uploads from 4 client threads,
its throughput and latencies against the engine's throughput times the worker processes.
Writes out/bench/pipeline.json and bench/results/pipeline.json (bench.output); see
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.output import add_output_arguments, machine, write_result
from devstack import launch
from devstack.webhooks import Receiver, receiver
from media_pipeline.client import TERMINAL, Client, Job, Upload

PROJECT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT.parent / "shared" / "corpus" / "photos"
API_KEY = "bench-key-0123456789abcdefghijklmnop"
CLIENT_THREADS = 4


def read_photos(photo_dir: Path) -> dict[str, bytes]:
    """The directory's JPEG photos, by name, in order."""
    photos = {path.name: path.read_bytes() for path in sorted(photo_dir.glob("*.jpg"))}
    if not photos:
        raise SystemExit(f"no photos in {photo_dir}")
    return photos


def parse_arguments(
    name: str, description: str | None, counts: dict[str, tuple[int, int]], argv: list[str] | None
) -> tuple[argparse.Namespace, list[int]]:
    """The options of every benchmark on the local stack: its photos, the stack's worker
    processes, where the results go (bench.output), and its counts (`counts`: each one's
    default and its value in a --quick smoke run). Returns the arguments and the counts."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument("photos", nargs="?", type=Path, default=CORPUS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    for count, (default, _) in counts.items():
        parser.add_argument(f"--{count}", type=int, default=default)
    smoke = ", ".join(f"--{count} {quick}" for count, (_, quick) in counts.items())
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {smoke}")
    add_output_arguments(parser, name)
    args = parser.parse_args(argv)
    chosen = [quick if args.quick else getattr(args, count) for count, (_, quick) in counts.items()]
    return args, chosen


def wait_all(client: Client, job_ids: set[str], timeout: float) -> dict[str, Job]:
    """Every job, once all of them are terminal (one listing a poll, not a GET a job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finished = {i: job for i, job in client.jobs().items() if job["status"] in TERMINAL}
        if job_ids <= finished.keys():
            return {job_id: finished[job_id] for job_id in job_ids}
        time.sleep(0.2)
    raise SystemExit(f"jobs still unfinished after {timeout:.0f} s")


def upload(client: Client, data: bytes) -> Upload:
    return client.upload(data, "photo.jpg", "image/jpeg")


def completed_at(job: Job) -> float:
    return datetime.fromisoformat(job["updatedAt"].replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def engine_ms(photos: list[bytes]) -> list[float]:
    """The engine's render time per photo, best of 3, in this process."""
    from chalicelib.imaging import render
    from chalicelib.presets import DEFAULT_PRESETS

    times = []
    for data in photos:
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            render(data, DEFAULT_PRESETS)
            runs.append((time.perf_counter() - started) * 1000)
        times.append(min(runs))
    return times


def low_load(
    client: Client, photos: list[bytes], count: int, listening: Receiver
) -> list[tuple[int, float, float]]:
    """(photo index, latency ms to COMPLETED, latency ms to its webhook delivered) for
    `count` jobs, one at a time."""
    results = []
    for i in range(count):
        index = i % len(photos)
        sent = upload(client, photos[index])
        job = client.wait(sent.job_id, timeout=120, poll=0.2)
        if job["status"] != "COMPLETED":
            raise SystemExit(f"job {sent.job_id} failed: {job['error']}")
        delivered = delivered_at(listening, sent.job_id)
        results.append(
            (index, (completed_at(job) - sent.sent_at) * 1000, (delivered - sent.sent_at) * 1000)
        )
    return results


def delivered_at(listening: Receiver, job_id: str, timeout: float = 60) -> float:
    """When the job's event first reached the receiver (time.time())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for received in list(listening.received):
            if json.loads(received.body)["data"].get("jobId") == job_id:
                return received.at
        time.sleep(0.01)
    raise SystemExit(f"no webhook for job {job_id} after {timeout:.0f} s")


def burst(client: Client, photos: list[bytes], count: int) -> dict[str, Any]:
    uploaded: dict[str, float] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        sent = upload(client, photos[i % len(photos)])
        with lock:
            uploaded[sent.job_id] = sent.sent_at

    started = time.time()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(one, range(count)))
    jobs = wait_all(client, set(uploaded), timeout=60 + count * 5)
    failed = [job_id for job_id, job in jobs.items() if job["status"] != "COMPLETED"]
    if failed:
        raise SystemExit(f"{len(failed)} burst jobs failed, e.g. {jobs[failed[0]]['error']}")
    finished = max(completed_at(job) for job in jobs.values())
    latencies = [(completed_at(jobs[j]) - uploaded[j]) * 1000 for j in jobs]
    return {
        "jobs": count,
        "seconds": round(finished - started, 3),
        "jobs_per_second": round(count / (finished - started), 2),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 1),
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
        },
    }


def run(burst_size: int, sequential: int, workers: int, photo_dir: Path) -> dict[str, Any]:
    by_name = read_photos(photo_dir)
    photos = list(by_name.values())
    engine = engine_ms(photos)
    engine_images_per_second = len(photos) / (sum(engine) / 1000)
    settings = launch.Settings(keys={"bench": API_KEY}, workers=workers)
    with launch.local_stack(settings), receiver() as listening:
        client = Client(settings.api, API_KEY)
        client.add_webhook(listening.url, ["job.completed"])
        warm = upload(client, photos[0])  # warm every path once before measuring
        client.wait(warm.job_id, timeout=120)
        delivered_at(listening, warm.job_id)
        sequential_results = low_load(client, photos, sequential, listening)
        burst_results = burst(client, photos, burst_size)
    overheads = [latency - engine[index] for index, latency, _ in sequential_results]
    latencies = [latency for _, latency, _ in sequential_results]
    delivered = [to_webhook for _, _, to_webhook in sequential_results]
    after_completed = [to_webhook - latency for _, latency, to_webhook in sequential_results]
    expected_throughput = engine_images_per_second * workers
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "photos": list(by_name),
        "workers": workers,
        "engine": {
            "ms_per_photo": [round(ms, 1) for ms in engine],
            "images_per_second": round(engine_images_per_second, 2),
        },
        "low_load": {
            "jobs": sequential,
            "latency_ms_p50": round(statistics.median(latencies), 1),
            "overhead_ms_p50": round(statistics.median(overheads), 1),
            "overhead_ms_p95": round(percentile(overheads, 0.95), 1),
            "webhook_delivered_ms_p50": round(statistics.median(delivered), 1),
            "webhook_delivered_ms_p95": round(percentile(delivered, 0.95), 1),
            "webhook_after_completed_ms_p50": round(statistics.median(after_completed), 1),
        },
        "burst": {
            **burst_results,
            "engine_throughput_times_workers": round(expected_throughput, 2),
            "ratio_to_engine_times_workers": round(
                burst_results["jobs_per_second"] / expected_throughput, 3
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    counts = {"burst": (200, 5), "sequential": (22, 5)}
    args, (burst_size, sequential) = parse_arguments("pipeline", __doc__, counts, argv)
    result = run(burst_size, sequential, args.workers, args.photos)
    low, hit = result["low_load"], result["burst"]
    print(
        f"low load ({low['jobs']} jobs, one at a time): upload->COMPLETED p50 "
        f"{low['latency_ms_p50']} ms; above the engine's own time: p50 "
        f"{low['overhead_ms_p50']} ms, p95 {low['overhead_ms_p95']} ms; upload->webhook "
        f"delivered p50 {low['webhook_delivered_ms_p50']} ms, p95 "
        f"{low['webhook_delivered_ms_p95']} ms ({low['webhook_after_completed_ms_p50']} ms "
        "after COMPLETED, p50)"
    )
    print(
        f"burst ({hit['jobs']} jobs, {result['workers']} workers): {hit['jobs_per_second']} jobs/s"
        f" = {hit['ratio_to_engine_times_workers']:.0%} of engine x workers"
        f" ({hit['engine_throughput_times_workers']} images/s); latency p50"
        f" {hit['latency_ms']['p50']} ms, p95 {hit['latency_ms']['p95']} ms,"
        f" p99 {hit['latency_ms']['p99']} ms"
    )
    write_result("pipeline", result, args, trial=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
