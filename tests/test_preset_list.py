"""GET /presets: the stage's presets as the API runs them, each with its current version,
so that a client can tell which of a job's outputs a reprocess or a backfill would make
again."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib import jobs, reprocess
from chalicelib.config import reset_settings
from chalicelib.presets import DEFAULT_PRESETS, parse_preset, preset_version
from tests.pipeline import Pipeline, bearer
from tests.samples import jpeg

CARD = {
    "name": "card",
    "width": 600,
    "height": 400,
    "fit": "cover",
    "format": "AVIF",
    "quality": 55,
    "watermark": {"text": "© Example Ltd", "corner": "top-left"},
}
HERO = {
    "name": "hero",
    "width": 1600,
    "height": 1200,
    "fit": "contain",
    "format": "JPEG",
    "widths": [320, 640],
    "formats": ["WEBP", "JPEG"],
}


def configure(monkeypatch: pytest.MonkeyPatch, *presets: dict[str, Any]) -> None:
    monkeypatch.setenv("PRESETS", json.dumps(list(presets)))
    reset_settings()


def listed(client: Client, key: str) -> list[dict[str, Any]]:
    answer = client.http.get("/presets", headers=bearer(key))
    assert answer.status_code == 200, answer.body
    presets: list[dict[str, Any]] = answer.json_body["presets"]
    return presets


def test_the_defaults_are_listed_in_order_with_their_versions(
    client: Client, acme_key: str
) -> None:
    shown = listed(client, acme_key)
    assert [preset["name"] for preset in shown] == [preset.name for preset in DEFAULT_PRESETS]
    for preset, item in zip(DEFAULT_PRESETS, shown, strict=True):
        assert item["version"] == preset_version(preset)
        assert (item["width"], item["height"], item["fit"], item["format"]) == (
            preset.width,
            preset.height,
            preset.fit,
            preset.format,
        )


def test_each_definition_is_shown_whole_and_gives_back_its_preset(
    client: Client, acme_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, CARD, HERO)
    card, hero = listed(client, acme_key)
    assert card["watermark"] == {
        "text": "© Example Ltd",
        "corner": "top-left",
        "opacity": 0.6,
        "size": 0.04,
    }
    assert (hero["widths"], hero["formats"], hero["quality"]) == ([320, 640], ["WEBP", "JPEG"], 82)
    for item in (card, hero):
        definition = {key: value for key, value in item.items() if key != "version"}
        assert preset_version(parse_preset(definition, "listed")) == item["version"]


def test_a_changed_preset_shows_the_version_its_old_outputs_lack(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    thumb = {"name": "thumb", "width": 64, "height": 64, "fit": "cover", "format": "JPEG"}
    configure(monkeypatch, thumb)
    job = pipeline.process(jpeg(), presets=["thumb"])
    (before,) = listed(pipeline.client, pipeline.api_key)
    assert [output["version"] for output in job["outputs"]] == [before["version"]]

    configure(monkeypatch, {**thumb, "width": 32})
    (after,) = listed(pipeline.client, pipeline.api_key)
    assert after["version"] != before["version"]
    stale = [o["preset"] for o in job["outputs"] if o["version"] != after["version"]]
    stored = jobs.get_job(job["jobId"])
    assert stored is not None
    assert reprocess.presets_to_redo(stored, ["thumb"]) == stale == ["thumb"]


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        ({"Authorization": "Bearer " + "x" * 20}, "/presets", 401, "unauthorized"),
        (None, "/presets?name=thumb", 400, "invalid_request"),
    ],
)
def test_a_bad_request_is_refused(
    client: Client,
    acme_key: str,
    headers: dict[str, str] | None,
    path: str,
    status: int,
    code: str,
) -> None:
    answer = client.http.get(path, headers=headers or bearer(acme_key))
    assert (answer.status_code, answer.json_body["error"]["code"]) == (status, code)
