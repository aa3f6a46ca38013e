"""An upload's own outputs: rendered in the same job beside (or instead of) the named
presets, and refused past each of the stage's limits with the field and the limit named."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from chalicelib.config import reset_settings, settings
from chalicelib.errors import ConfigurationError
from tests.pipeline import Pipeline, bearer
from tests.samples import jpeg


def ask(pipeline: Pipeline, **body: Any) -> Any:
    """POST /uploads, whatever it answers."""
    body.setdefault("contentType", "image/jpeg")
    return pipeline.client.http.post(
        "/uploads", headers=bearer(pipeline.api_key), body=json.dumps(body).encode()
    )


def refused(pipeline: Pipeline, outputs: list[dict[str, Any]]) -> str:
    response = ask(pipeline, outputs=outputs)
    assert response.status_code == 400, response.body
    error = response.json_body["error"]
    assert error["code"] == "invalid_request"
    return str(error["message"])


def card(**fields: Any) -> dict[str, Any]:
    return {"name": "card", "width": 300, "height": 200, "fit": "cover", "format": "WEBP"} | fields


def test_own_outputs_are_rendered_beside_the_named_presets(pipeline: Pipeline) -> None:
    hero = {"name": "hero", "width": 400, "height": 300, "fit": "contain", "format": "JPEG",
            "quality": 70, "widths": [100, 200, 400], "formats": ["WEBP", "JPEG"]}  # fmt: skip
    job = pipeline.process(jpeg(640, 480), presets=["thumb"], outputs=[card(), hero])
    assert job["status"] == "COMPLETED", job["error"]
    made = {(o["name"], o["format"], o["width"], o["height"]) for o in job["outputs"]}
    assert made == {
        ("thumb", "JPEG", 256, 256),
        ("card", "WEBP", 300, 200),
    } | {
        (f"hero-{width}w", output_format, width, width * 3 // 4)
        for width in (100, 200, 400)
        for output_format in ("WEBP", "JPEG")
    }
    for output in job["outputs"]:
        image = Image.open(io.BytesIO(pipeline.download(output["url"]).content))
        assert (image.format, image.size) == (output["format"], (output["width"], output["height"]))
    [entry] = job["responsive"]
    assert entry["preset"] == "hero"


def test_own_outputs_alone_replace_the_default_presets(pipeline: Pipeline) -> None:
    job = pipeline.process(jpeg(640, 480), outputs=[card()])
    assert job["status"] == "COMPLETED", job["error"]
    assert job["presets"] == []
    assert [o["name"] for o in job["outputs"]] == ["card"]


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([card(width=5000)], "outputs[0].width must be at most 4096"),
        ([card(fit="stretch")], "outputs[0].fit 'stretch' is not accepted"),
        ([card(format="GIF")], "outputs[0].format 'GIF' is not accepted"),
        ([card(name="Bad Name")], "outputs[0].name is not valid: 1 to 32 characters"),
        ([card(), card()], "outputs[1].name 'card' is already the name"),
        ([card(name="thumb")], "outputs[0].name 'thumb' is already the name"),
        ([card(widths=[1, 2, 3, 4, 5, 6, 7, 8, 9])], "widths must be at most 8 distinct widths"),
    ],
)
def test_malformed_outputs_are_refused_naming_the_field(
    pipeline: Pipeline, outputs: list[dict[str, Any]], message: str
) -> None:
    if "thumb" in message:
        response = ask(pipeline, presets=["thumb"], outputs=outputs)
        assert response.status_code == 400
        assert message in response.json_body["error"]["message"]
        return
    assert message in refused(pipeline, outputs)


@pytest.mark.parametrize(
    ("variable", "value", "outputs", "message"),
    [
        ("MAX_JOB_OUTPUTS", "3", [card(widths=[100, 200]), card(name="b", widths=[50, 60])],
         "outputs asks for 4 outputs (each width counts): at most 3 per job (MAX_JOB_OUTPUTS)."),
        ("MAX_OUTPUT_DIMENSION", "250", [card()],
         "outputs[0].width is 300: at most 250 pixels (MAX_OUTPUT_DIMENSION)."),
        ("MAX_OUTPUT_DIMENSION", "250", [card(width=200, height=200, widths=[100, 280])],
         "outputs[0].widths[1] is 280: at most 250 pixels (MAX_OUTPUT_DIMENSION)."),
        ("UPLOAD_OUTPUT_FORMATS", "JPEG,WEBP", [card(format="AVIF")],
         "outputs[0].format AVIF is not offered on this stage: one of JPEG, WEBP "
         "(UPLOAD_OUTPUT_FORMATS)."),
        ("UPLOAD_OUTPUT_FORMATS", "JPEG,WEBP", [card(formats=["WEBP", "AVIF"])],
         "outputs[0].formats[1] AVIF is not offered on this stage: one of JPEG, WEBP "
         "(UPLOAD_OUTPUT_FORMATS)."),
        ("MAX_JOB_OUTPUTS", "5", [card(widths=[100, 200], formats=["WEBP", "AVIF", "JPEG"])],
         "outputs asks for 6 outputs (each width counts): at most 5 per job (MAX_JOB_OUTPUTS)."),
        ("MAX_JOB_OUTPUT_PIXELS", "100000", [card(), card(name="b")],
         "outputs asks for up to 120000 output pixels: at most 100000 per job "
         "(MAX_JOB_OUTPUT_PIXELS)."),
    ],
)  # fmt: skip
def test_outputs_past_a_stage_limit_are_refused_naming_it(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    outputs: list[dict[str, Any]],
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    reset_settings()
    assert refused(pipeline, outputs) == message
    monkeypatch.delenv(variable)
    reset_settings()
    assert ask(pipeline, outputs=outputs).status_code == 201  # within the defaults


def test_the_default_limits(pipeline: Pipeline) -> None:
    config = settings()
    assert config.max_job_outputs == 16
    assert config.max_output_dimension == 4096
    assert config.max_job_output_pixels == 24_000_000
    assert config.upload_output_formats == ("JPEG", "WEBP", "PNG", "AVIF")


def test_a_stage_cannot_offer_an_unknown_format(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOAD_OUTPUT_FORMATS", "JPEG,JPG")
    reset_settings()
    with pytest.raises(ConfigurationError, match="UPLOAD_OUTPUT_FORMATS must name formats of"):
        settings()
