"""bench.ceiling, bench.resizes, bench.coldstart and bench.memory in quick mode: they run,
and their results are whole.

No timing or memory figure is asserted: these check that the benchmarks work, not how
fast or how small anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import ceiling, coldstart, memory, resizes
from bench import engine as bench_engine
from tests.samples import write_photos

REPO = Path(__file__).resolve().parents[1]


def _run_quick(module: str, out: Path, *arguments: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--out", str(out), *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _positive_statistic(summary: dict[str, Any], measure: str) -> None:
    statistic = summary[measure]
    assert set(statistic) == {"median", "p90", "min", "max"}, measure
    assert 0 < statistic["min"] <= statistic["median"] <= statistic["p90"] <= statistic["max"]


@pytest.fixture(scope="module")
def coldstart_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_quick("bench.coldstart", tmp_path_factory.mktemp("coldstart") / "result.json")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain sample photo and a phone photo (the first and the last name: --quick's two)."""
    return write_photos(tmp_path_factory.mktemp("photos"), ["BytheWater.jpg"], ["Kite.jpg"])


@pytest.fixture(scope="module")
def ceiling_out(tmp_path_factory: pytest.TempPathFactory, photos: Path) -> Path:
    out = tmp_path_factory.mktemp("ceiling") / "result.json"
    _run_quick("bench.ceiling", out, str(photos))
    return out


@pytest.fixture(scope="module")
def ceiling_result(ceiling_out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ceiling_out.read_text(encoding="utf-8"))
    return result


@pytest.fixture(scope="module")
def memory_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run_quick("bench.memory", tmp_path_factory.mktemp("memory") / "result.json")


def test_coldstart_quick_run_measures_every_variant(coldstart_result: dict[str, Any]) -> None:
    result = coldstart_result
    assert result["schema"] == coldstart.SCHEMA
    assert result["settings"]["quick"] is True
    assert result["settings"]["repeats"] == 1
    assert set(result["variants"]) == set(coldstart.VARIANTS)
    for name, summary in result["variants"].items():
        assert summary["samples"] == 1, name
        assert summary["modules_loaded"] > 0, name
        for measure in ("import_ms", "process_ms", "cpu_ms"):
            _positive_statistic(summary, measure)
    for name in (coldstart.HEALTH, coldstart.JOB, coldstart.SQS):
        summary = result["variants"][name]
        _positive_statistic(summary, "first_ms")
        _positive_statistic(summary, "second_ms")
        assert isinstance(summary["imported_by_first_call"], list)
    assert result["variants"][coldstart.HEALTH]["status"] == [200, 200]
    assert result["variants"][coldstart.JOB]["status"] == [200, 200]


def test_coldstart_quick_run_reports_imports_and_the_ratio(
    coldstart_result: dict[str, Any],
) -> None:
    for mode in ("normal", "lambda_package"):
        imports = coldstart_result["importtime"][mode]
        assert imports["total_ms"] > 0
        assert len(imports["top_cumulative"]) == coldstart.TOP_MODULES
        assert all(entry["cumulative_ms"] > 0 for entry in imports["top_cumulative"])
        assert "app" not in {entry["module"] for entry in imports["top_cumulative"]}
        assert set(imports["watched_modules_loaded"]) == set(coldstart.WATCHED_MODULES)
    comparison = coldstart_result["comparison"]
    for key in ("import_app_over_bare", "lambda_package_import_app_over_bare"):
        assert comparison[key]["measured"] > 0
        assert isinstance(comparison[key]["met"], bool)
    assert coldstart_result["settings"]["lambda_package"]["files"] > 0


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
        assert summary["stages"], case.name
        assert all(stage["peak_mib"] > 0 for stage in summary["stages"])
        assert "load" in {stage["call"] for stage in summary["stages"]}
        if case.goal is None:
            assert summary["goal"] is None
        else:
            assert isinstance(summary["goal"]["met"], bool)


def test_ceiling_floors_reproduce_the_engine_outputs(ceiling_result: dict[str, Any]) -> None:
    """The floor at the engine's own scaling encodes exactly the engine's pixels, and the one
    at libvips's scaling renders a sharper large output: the floors measure real renders."""
    result = ceiling_result
    assert result["schema"] == ceiling.SCHEMA
    engines = result["engines"]
    engine = engines[bench_engine.ENGINE]
    at_engine_quality = engines[ceiling.ENGINE_QUALITY]
    at_equal_quality = engines[ceiling.EQUAL_QUALITY]
    for image in result["images"]:
        ours = image["engines"][bench_engine.ENGINE]["outputs"]
        floor = image["engines"][ceiling.ENGINE_QUALITY]["outputs"]
        assert [o["bytes"] for o in floor] == [o["bytes"] for o in ours], image["name"]
        assert [o["preset"] for o in floor] == ["thumb", "small", "large"]
    assert at_engine_quality["ssim"] == engine["ssim"]
    large = "large"
    assert (
        at_equal_quality["ssim"]["by_preset_mean"][large] > engine["ssim"]["by_preset_mean"][large]
    )
    for name in ceiling.DRAFT_GAPS:
        entry = result["ceiling"][name]
        assert entry["engine_time_over_floor"] > 0
        if engines.get(bench_engine.PYVIPS, {}).get("available"):
            assert entry["max_speedup_vs_pyvips"] > 0
            assert isinstance(entry["free_resize_reaches_goal"], bool)
            assert isinstance(entry["ms_left_per_image_at_goal"], float)


def test_resizes_quick_run_times_each_floors_resizes(
    tmp_path: Path, ceiling_out: Path, photos: Path
) -> None:
    result = _run_quick(
        "bench.resizes",
        tmp_path / "resizes.json",
        "--ceiling",
        str(ceiling_out),
        "--photos",
        str(photos),
    )
    assert result["schema"] == resizes.SCHEMA
    assert set(result["floors"]) == set(ceiling.DRAFT_GAPS)
    for floor in result["floors"].values():
        assert len(floor["per_image"]) == 2
        assert floor["resize_ms_per_image"] > 0


def test_resizes_picks_the_engines_dct_scaling() -> None:
    """libvips's rule (gap 2) decodes the corpus's 2560x1600 photos whole for a 1024 px
    output; the engine's own (gap 1) at half size; both take 1/4 for a 256 px one."""
    assert resizes.dct_scale((2560, 1600), (1024, 640), 2.0) == 1
    assert resizes.dct_scale((2560, 1600), (1024, 640), 1.0) == 2
    assert resizes.dct_scale((2560, 1600), (256, 160), 2.0) == 4
    assert resizes.dct_scale((5120, 2880), (1024, 576), 2.0) == 2
