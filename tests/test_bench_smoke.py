"""bench.coldstart and bench.memory in quick mode: they run,
and their results are whole.

No timing or memory figure is asserted: these check that the benchmarks work, not how
fast or how small anything is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import coldstart, memory, output
from tests.benchmarks import quick
from tests.hostile import METADATA_BOMBS


def _positive_statistic(summary: dict[str, Any], measure: str) -> None:
    statistic = summary[measure]
    assert set(statistic) == {"median", "p90"}, measure
    assert 0 < statistic["median"] <= statistic["p90"]


@pytest.fixture(scope="module")
def coldstart_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick("bench.coldstart", tmp_path_factory.mktemp("coldstart") / "result.json")[0]


@pytest.fixture(scope="module")
def memory_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return quick("bench.memory", tmp_path_factory.mktemp("memory") / "result.json")[0]


def test_coldstart_quick_run_measures_every_variant(coldstart_result: dict[str, Any]) -> None:
    result = coldstart_result
    assert result["schema"] == coldstart.SCHEMA
    assert result["settings"]["quick"] is True
    assert result["settings"]["repeats"] == 1
    assert set(result["variants"]) == set(coldstart.VARIANTS)
    for name, summary in result["variants"].items():
        assert summary["samples"] == 1, name
        assert summary["modules"] > 0, name
        assert isinstance(summary["lazy_packages_loaded"], list), name
        for measure in ("import_ms", "import_cpu_ms", "process_ms"):
            _positive_statistic(summary, measure)
    for name in coldstart.HANDLERS:
        summary = result["variants"][name]
        _positive_statistic(summary, "first_ms")
        _positive_statistic(summary, "second_ms")
        assert isinstance(summary["imported_by_first_call"], list)
    assert result["variants"][coldstart.JOB]["status"] == [200, 200]


def test_coldstart_quick_run_reports_the_ratio(coldstart_result: dict[str, Any]) -> None:
    comparison = coldstart_result["comparison"]
    assert comparison["import_app_over_bare"]["measured"] > 0
    assert isinstance(comparison["import_app_over_bare"]["met"], bool)
    assert comparison["import_app_over_bare_cpu_time"] > 0
    assert comparison["import_app_over_bare_process_wall"] > 0


def test_memory_quick_run_measures_every_case(memory_result: dict[str, Any]) -> None:
    result = memory_result
    assert result["schema"] == memory.SCHEMA
    assert result["settings"]["quick"] is True
    assert result["settings"]["size"] == list(memory.QUICK_SIZE)
    assert set(result["cases"]) == {case.name for case in memory.CASES}
    for case in memory.CASES:
        summary = result["cases"][case.name]
        for key in (
            "file_bytes",
            "decoded_bytes",
            "baseline_rss_mib",
            "peak_rss_mib",
            "peak_over_decoded",
            "render_ms",
            "second_render_ms",
        ):
            assert summary[key] > 0, (case.name, key)
        assert summary["decoded_bytes"] == summary["pixels"] * len(case.mode)
        assert summary["source"][0] == case.format
        assert [output[0] for output in summary["outputs"]] == ["thumb", "small", "large"]
        if case.goal is None:
            assert summary["goal"] is None
        else:
            assert isinstance(summary["goal"]["met"], bool)


def test_memory_quick_run_measures_every_hostile_file(memory_result: dict[str, Any]) -> None:
    assert set(memory_result["hostile"]) == set(METADATA_BOMBS)
    for name, case in memory_result["hostile"].items():
        assert case["code"] == "image_too_large", name
        assert case["peak_rss_mib"] >= case["baseline_rss_mib"] > 0, name
        assert isinstance(case["within_bound"], bool), name


def test_a_summary_leaves_out_the_raw_parts_and_keeps_every_figure() -> None:
    runs = {"median_ms": 1.5, "runs_ms": [1.0, 2.0], "outputs": [{"ssim": 0.9}]}
    result: dict[str, Any] = {
        "images": [{"name": "a.jpg", "engines": {"engine": runs}}],
        "cpus": [2, 3],
    }
    raw = ("images.*.engines.*.runs_ms", "images.*.engines.*.outputs")
    summary = output.summarised(result, raw)
    assert summary == {
        "images": [{"name": "a.jpg", "engines": {"engine": {"median_ms": 1.5}}}],
        "cpus": [2, 3],
    }
    assert result["images"][0]["engines"]["engine"] == runs  # the result itself is untouched
    assert json.loads(output.compact(result)) == result
    wide = {"samples": list(range(100)), "short": [1, 2]}
    assert output.compact(wide).splitlines()[-2:] == ['  "short": [1, 2]', "}"]


def test_a_full_run_writes_the_result_and_its_summary_a_quick_one_neither(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output, "RAW", tmp_path / "raw")
    monkeypatch.setattr(output, "SUMMARIES", tmp_path / "summaries")
    result = {"settings": {"quick": False}, "samples": [1, 2, 3]}
    nothing_named = argparse.Namespace(out=None, summary=None)
    output.write_result("b", result, nothing_named, trial=True, raw=("samples",))
    assert not tmp_path.joinpath("raw").exists()
    assert not tmp_path.joinpath("summaries").exists()
    output.write_result("b", result, nothing_named, trial=False, raw=("samples",))
    assert json.loads((tmp_path / "raw" / "b.json").read_text()) == result
    assert json.loads((tmp_path / "summaries" / "b.json").read_text()) == {
        "settings": {"quick": False}
    }
