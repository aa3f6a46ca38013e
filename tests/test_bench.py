"""The engine benchmark (bench/engine.py) in its quick mode: it runs and its result is whole.

No timing is asserted: these check that the benchmark works, not how fast anything is.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms

from bench import engine as bench
from chalicelib.presets import DEFAULT_PRESETS
from tests.benchmarks import quick
from tests.samples import SAMPLES, write_photos

REPO = Path(__file__).resolve().parents[1]


def _pyvips_importable() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import pyvips"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample photos and a phone photo made from one (--quick takes the first and the
    last name: a plain photo and the phone photo)."""
    samples = sorted(path.name for path in SAMPLES.glob("*.jpg"))
    return write_photos(tmp_path_factory.mktemp("photos"), samples, ["Kite.jpg"])


@pytest.fixture(scope="module")
def quick_result(
    tmp_path_factory: pytest.TempPathFactory, photos: Path
) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "engine.json"
    result, completed = quick("bench.engine", out, str(photos))
    return result, completed.stdout


def test_quick_run_measures_every_engine_it_can_run(
    quick_result: tuple[dict[str, Any], str],
) -> None:
    result, printed = quick_result
    assert result["schema"] == bench.SCHEMA
    assert result["settings"]["quick"] is True
    assert result["settings"]["repeats"] == 1
    assert len(result["settings"]["photos"]) == 2
    for key in ("cpu_model", "logical_cpus", "python"):
        assert result["machine"][key]
    assert result["versions"]["Pillow"]
    assert result["settings"]["threads"]["VIPS_CONCURRENCY"] == "1"

    expected = set(bench.ENGINE_ORDER)
    assert set(result["engines"]) == expected
    runnable = expected if _pyvips_importable() else expected - bench.PYVIPS_ENGINES
    for name, summary in result["engines"].items():
        if name not in runnable:
            assert summary["available"] is False
            assert summary["reason"]
            continue
        assert summary["available"] is True, summary
        assert summary["ms_per_image"] > 0
        assert summary["images_per_second"] > 0
        assert summary["total_bytes"] > 0
        assert 0 < summary["ssim"]["min"] <= summary["ssim"]["mean"] <= 1
        assert summary["cpu_ms_per_image"] > 0
        assert len(summary["outputs_sha256"]) == 64
        assert summary["outputs_ok"] is True
        assert summary["metadata_found"] == []
        assert name in printed

    for image in result["images"]:
        assert set(image["engines"]) == runnable
        for rendered in image["engines"].values():
            assert len(rendered["runs_ms"]) == 1
            outputs = rendered["outputs"]
            assert [output["preset"] for output in outputs] == [p.name for p in DEFAULT_PRESETS]
            thumb = outputs[0]
            assert (thumb["width"], thumb["height"], thumb["format"]) == (256, 256, "JPEG")
            assert all(0 < output["ssim"] <= 1 for output in outputs)

    ratios = result["comparison"]["engine_vs"]
    assert set(ratios) == runnable - {bench.ENGINE}
    assert all(ratio["speedup"] > 0 for ratio in ratios.values())
    assert "speed_vs_baseline" in result["comparison"]["goal"]
    assert 0 < result["placeholder"]["share_of_engine_max"] < 1
    responsive_set = result["responsive_set"]
    assert responsive_set["outputs_per_image"] > 0
    assert responsive_set["ms_per_output"] > 0
    assert set(responsive_set["bytes_per_output_by_format"]) == {"AVIF", "WEBP", "JPEG"}


def test_runs_and_says_so_without_pyvips(tmp_path: Path, photos: Path) -> None:
    shim = tmp_path / "shim" / "pyvips"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('pyvips hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim.parent), str(REPO)])}
    out = tmp_path / "engine.json"
    arguments = (str(photos), "--engines", "engine,pyvips")
    result, completed = quick("bench.engine", out, *arguments, env=env)
    assert "skipping pyvips" in completed.stderr
    assert result["engines"]["engine"]["available"] is True
    assert result["engines"]["pyvips"]["available"] is False
    assert "pyvips cannot be imported" in result["engines"]["pyvips"]["reason"]
    assert result["versions"]["libvips"] is None


def test_ssim_is_one_for_identical_planes_and_drops_with_damage() -> None:
    rows, columns = np.mgrid[0:64, 0:80]
    plane = 128 + 60 * np.sin(columns / 3) * np.cos(rows / 4)
    noisy = np.clip(plane + np.random.default_rng(5).normal(0, 20, plane.shape), 0, 255)
    assert bench.ssim(plane, plane) == pytest.approx(1.0)
    assert bench.ssim(plane, plane + 1) > 0.999  # a slight brightness change barely counts
    assert bench.ssim(plane, noisy) < 0.7
    assert bench.ssim(plane, np.roll(plane, 2, axis=1)) < 0.8
    assert bench.ssim(plane, plane * 0.5 + 64) < 0.9  # contrast halved
    with pytest.raises(ValueError, match="shapes differ"):
        bench.ssim(plane, plane[:, :-1])


def test_metadata_is_found_in_jpeg_and_webp() -> None:
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    exif = Image.Exif()
    exif[0x010F] = "camera"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for output_format in ("JPEG", "WEBP"):
        plain, tagged = io.BytesIO(), io.BytesIO()
        image.save(plain, output_format)
        image.save(tagged, output_format, exif=exif.tobytes(), icc_profile=srgb)
        assert bench.metadata_in(plain.getvalue()) == []
        assert sorted(bench.metadata_in(tagged.getvalue())) == ["exif", "icc"]


def test_srgb_profiles_are_recognised() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert bench.icc_is_srgb(srgb)
    with Image.open(SAMPLES / "Kite.jpg") as photo:
        assert bench.icc_is_srgb(photo.info["icc_profile"])  # "sRGB IEC61966-2.1"
    assert not bench.icc_is_srgb(b"\0" * 200)


def test_the_pipeline_benchmark_runs_on_the_local_stack(tmp_path: Path, photos: Path) -> None:
    """A smoke run of bench.pipeline (5 + 5 jobs): it starts the stack, measures and writes
    well-formed results. Not a timing assertion."""
    arguments = (str(photos), "--workers", "1")
    result, _ = quick("bench.pipeline", tmp_path / "pipeline.json", *arguments, timeout=300)
    assert result["workers"] == 1
    assert result["low_load"]["jobs"] == 5
    assert result["low_load"]["latency_ms_p50"] > 0
    assert result["burst"]["jobs"] == 5
    assert result["burst"]["jobs_per_second"] > 0
    assert set(result["burst"]["latency_ms"]) == {"p50", "p95", "p99"}
    names = sorted(path.name for path in photos.glob("*.jpg"))
    assert len(names) == 4  # the three samples and a phone photo
    assert result["photos"] == names
    assert len(result["engine"]["ms_per_photo"]) == len(names)
