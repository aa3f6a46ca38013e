"""The benchmarks as `make bench` runs them, in a process of their own, for their smoke
tests: no figure is asserted, only that they run and say what they measured."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def quick(
    module: str,
    out: Path,
    *arguments: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`python -m MODULE --quick --out OUT ARGUMENTS`, which must exit 0: its result, and
    the process (for what it printed)."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out), *arguments],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result, done
