"""What keeping `make run`'s state costs: uploads/s and jobs/s of the local stack with
PERSIST=0 and with PERSIST=1 (a fresh DATA_DIR), measured in the same run, and their ratios.

    python -m bench.persistence [--uploads 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from devstack import launch, persistence
from media_pipeline.client import Client

PHOTO = launch.PROJECT / "samples" / "photos" / "Kite.jpg"
TENANT = "bench"


def measure(uploads: int, workers: int, data_dir: Path | None) -> dict[str, Any]:
    """Uploads/s (the API's answer and the file's POST) and jobs/s (first upload to last
    job COMPLETED) of one stack."""
    settings = launch.Settings(
        keys={TENANT: secrets.token_urlsafe(30)}, workers=workers, data_dir=data_dir
    )
    data = PHOTO.read_bytes()
    with launch.local_stack(settings):
        client = Client(settings.api, settings.keys[TENANT], timeout=60)
        started = time.monotonic()
        jobs = [client.upload(data, f"{n}.jpg", "image/jpeg").job_id for n in range(uploads)]
        uploaded = time.monotonic()
        for job_id in jobs:
            assert client.wait(job_id, 300, 0.05)["status"] == "COMPLETED", job_id
        finished = time.monotonic()
        status = requests.get(f"{settings.endpoint}{persistence.STATUS_PATH}", timeout=5).json()
    return {
        "persist": data_dir is not None,
        "uploadsPerSecond": round(uploads / (uploaded - started), 2),
        "jobsPerSecond": round(uploads / (finished - started), 2),
        "snapshots": status.get("snapshots"),
        "lastSnapshotBytes": status.get("lastSnapshotBytes"),
        "longestSnapshotMilliseconds": status.get("longestSnapshotMilliseconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.persistence", description=__doc__)
    parser.add_argument("--uploads", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-persistence-") as directory:
        memory = measure(options.uploads, options.workers, None)
        kept = measure(options.uploads, options.workers, Path(directory) / "data")
    report = {
        "PERSIST=0": memory,
        "PERSIST=1": kept,
        "uploadsRatio": round(kept["uploadsPerSecond"] / memory["uploadsPerSecond"], 3),
        "jobsRatio": round(kept["jobsPerSecond"] / memory["jobsPerSecond"], 3),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
