"""What every benchmark does with its result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def write_result(result: dict[str, Any], out: Path | None) -> None:
    """Write the JSON result to `out` (none: a quick run keeps nothing) and say where."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


def child_report(
    name: str, completed: subprocess.CompletedProcess[str], marker: str
) -> dict[str, Any]:
    """The JSON a benchmark's child process printed after `marker` (its last such line)."""
    lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
    if completed.returncode != 0 or not lines:
        detail = (completed.stderr or completed.stdout).strip()[-3000:]
        raise RuntimeError(f"{name}: the child failed ({completed.returncode}):\n{detail}")
    report: dict[str, Any] = json.loads(lines[-1].removeprefix(marker))
    return report
