"""What every benchmark does with its result: every sample to out/bench/ (gitignored), and
a small summary, the figures bench/README.md quotes, to bench/results/ (committed)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
RAW = PROJECT / "out" / "bench"
SUMMARIES = PROJECT / "bench" / "results"
LINE = 100  # a summary's containers that fit in this many characters stay on one line


def machine() -> dict[str, Any]:
    """The machine a benchmark runs on, and its load as it starts."""
    cpu = _proc_field("/proc/cpuinfo", ("model name", "Model", "Hardware", "cpu model"))
    memory = _proc_field("/proc/meminfo", ("MemTotal",))  # in kB
    return {
        "cpu_model": cpu or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def _proc_field(path: str, keys: tuple[str, ...]) -> str:
    """The value of the first `key: value` line of `path` with one of `keys`, or ''."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return ""


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--out and --summary, where `write_result` writes (--quick: only where they say)."""
    parser.add_argument("--out", type=Path, help=f"the result (default out/bench/{name}.json)")
    parser.add_argument("--summary", type=Path, help=f"default bench/results/{name}.json")


def summarised(value: Any, raw: tuple[str, ...]) -> Any:
    """`value` without the parts named by `raw`: dotted key paths, `*` for any key or item."""
    if not raw:
        return value
    heads = {path.split(".", 1)[0] for path in raw if "." not in path}

    def rest(key: str) -> tuple[str, ...]:
        split = (path.partition(".") for path in raw)
        return tuple(tail for head, _, tail in split if tail and head in (key, "*"))

    if isinstance(value, dict):
        return {k: summarised(v, rest(k)) for k, v in value.items() if k not in heads}
    if isinstance(value, list):
        return [summarised(item, rest("*")) for item in value]
    return value


def compact(value: Any, indent: int = 0) -> str:
    """JSON with each container on one line where it fits, else one entry a line."""
    flat = json.dumps(value)
    if not isinstance(value, dict | list) or indent + len(flat) <= LINE or not value:
        return flat
    inner = " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {compact(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [inner + compact(item, indent + 2) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


def write_result(
    name: str,
    result: dict[str, Any],
    arguments: argparse.Namespace,
    *,
    trial: bool,
    raw: tuple[str, ...] = (),
) -> None:
    """The whole result to --out (default out/bench/NAME.json) and its summary, without the
    per-sample parts `raw` names, to --summary (default bench/results/NAME.json); a trial
    run (--quick) writes only where it is told to."""
    out = arguments.out or (None if trial else RAW / f"{name}.json")
    summary = arguments.summary or (None if trial else SUMMARIES / f"{name}.json")
    for path, text in (
        (out, json.dumps(result, indent=2)),
        (summary, compact(summarised(result, raw))),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
            print(f"\nwrote {path}")


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
