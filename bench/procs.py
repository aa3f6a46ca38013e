"""A few lines of Python in a fresh process, for the benchmarks that measure one
(bench.coldstart, bench.memory): the child builds a dict ``report`` and ends with
``PRINT_REPORT``; the parent reads it back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.output import child_report

PROJECT = Path(__file__).resolve().parents[1]
MARKER = "BENCH-REPORT "

# The child's last lines: everything else it prints (logs, embedded metrics) is ignored.
PRINT_REPORT = f"import json\nprint({MARKER!r} + json.dumps(report), flush=True)\n"


def run_python(
    name: str,
    code: str,
    arguments: Sequence[str] = (),
    *,
    cwd: Path = PROJECT,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> tuple[dict[str, Any], float]:
    """``python -c CODE ARGUMENTS``: the report it printed, and its wall time in ms from
    start to exit, as the parent sees it."""
    started = time.perf_counter()
    completed = subprocess.run(  # noqa: S603 - our interpreter, our code
        [sys.executable, "-c", code, *arguments],
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    process_ms = (time.perf_counter() - started) * 1000
    return child_report(name, completed, MARKER), process_ms
