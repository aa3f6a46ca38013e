"""bench.soak in its quick mode (30 uploads from 2 clients through the local stack): no job
lost, no 5xx, and every kind of file ends the way it must. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

from bench import soak
from tests.benchmarks import quick
from tests.samples import SAMPLES, write_photos


def test_a_quick_soak_loses_nothing(tmp_path: Path) -> None:
    # The sample photos and phone photos made from two of them (orientation and GPS to handle).
    samples = sorted(path.name for path in SAMPLES.glob("*.jpg"))
    photos = write_photos(tmp_path / "photos", samples, ["BytheWater.jpg", "Kite.jpg"])
    arguments = (str(photos), "--workers", "2")
    result, _ = quick("bench.soak", tmp_path / "soak.json", *arguments)

    counts = result["counts"]
    assert counts["uploads"] == counts["jobs_created"] == 30
    assert result["http"]["server_errors_5xx"] == 0, result["http"]
    assert result["lost_jobs"] == []
    assert result["not_listed"] == []
    assert result["listing_disagrees"] == []
    assert result["unexpected"] == []
    assert result["ok"] is True

    # Every kind was sent, and each ended as it must (KIND_CYCLE: 30 uploads give each
    # bad kind twice, two originals and twenty resized photos).
    by_kind = counts["by_kind"]
    assert by_kind["photo"] == {"COMPLETED": 20}
    assert by_kind["original"] == {"COMPLETED": 2}
    assert by_kind["truncated"] == {"corrupt_image": 2}
    assert by_kind["text"] == {"unsupported_format": 2}
    assert by_kind["mismatched"] == {"content_mismatch": 2}
    # S3 refuses an empty file (the POST policy's minimum); the emulator lets it through.
    assert by_kind["empty"] in ({"refused": 2}, {"unsupported_format": 2})
    assert set(counts["by_status"]) <= {"COMPLETED", "FAILED", "refused"}
    assert sum(counts["by_status"].values()) == 30

    responses = result["http"]["responses"]
    assert responses["api 201"] == 30
    assert sum(n for key, n in responses.items() if key.startswith("s3 ")) == 30
    assert result["jobs_per_second"] > 0
    assert set(result["latency_ms"]["upload_to_terminal"]) == {"p50", "p90", "p99", "max"}
    roles = {"api", "emulator", "s3-events", "worker-0", "worker-1"}
    assert set(result["rss_mib"]["start"]) == set(result["rss_mib"]["end"]) == roles
    assert all(mib > 0 for mib in result["rss_mib"]["end"].values())
    assert result["settings"]["expected"] == {k: list(v) for k, v in soak.EXPECTED.items()}
