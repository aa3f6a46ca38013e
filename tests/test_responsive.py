"""Responsive sets: one decode, every width and format, never upscaled, and a job view
whose srcsets and <picture> name only outputs that exist, at their true widths."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from chalicelib import imaging, responsive
from chalicelib.imaging import Rendition
from chalicelib.presets import Preset, PresetError, load_presets, presets_to_json
from tests.images import encode, noise, with_orientation

FORMATS = ("AVIF", "WEBP", "JPEG")


def hero(widths: tuple[int, ...] = (100, 200, 400, 800), fit: str = "contain") -> Preset:
    return Preset("hero", 800, 800, fit, "JPEG", 80, widths=widths, formats=FORMATS)  # type: ignore[arg-type]


def views(renditions: tuple[Rendition, ...]) -> list[dict[str, object]]:
    """Output views as the job view lists them, a URL per output."""
    return [
        {
            "preset": r.preset,
            "name": r.name,
            "responsive": r.in_set,
            "width": r.width,
            "height": r.height,
            "format": r.format,
            "contentType": r.content_type,
            "bytes": len(r.data),
            "url": f"https://derived.example/{r.name}.{r.extension}?X-Amz-Signature=a&b=c",
        }
        for r in renditions
    ]


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parsed(snippet: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(snippet)
    return parser.tags


def srcset_entries(srcset: str) -> list[tuple[str, int]]:
    entries = []
    for entry in srcset.split(", "):
        url, descriptor = entry.rsplit(" ", 1)
        assert re.fullmatch(r"\d+w", descriptor)
        entries.append((url, int(descriptor[:-1])))
    return entries


def test_a_set_gives_every_width_in_every_format_from_one_render() -> None:
    source = noise((500, 375))
    result = imaging.render(encode(source, "PNG"), [hero()])
    # 800 is above the source's 500: that width collapses into the source's own.
    expected = {(w, fmt) for w in (100, 200, 400, 500) for fmt in FORMATS}
    assert {(r.width, r.format) for r in result.outputs} == expected
    for rendition in result.outputs:
        with Image.open(io.BytesIO(rendition.data)) as image:
            assert image.format == rendition.format
            assert image.size == (rendition.width, rendition.height)
            assert image.width * 375 == pytest.approx(image.height * 500, rel=0.02)
    names = {(r.name, r.extension) for r in result.outputs}
    assert len(names) == len(result.outputs)
    assert {r.name for r in result.outputs} == {f"hero-{w}w" for w in (100, 200, 400, 500)}


@pytest.mark.parametrize(("fit", "size"), [("contain", (150, 100)), ("cover", (100, 100))])
def test_widths_never_upscale(fit: str, size: tuple[int, int]) -> None:
    """Every width above the source gives the one output at the source's size (for a
    square cover, its centred square)."""
    result = imaging.render(encode(noise((150, 100)), "PNG"), [hero((320, 640, 1024), fit)])
    assert {((r.width, r.height), r.format) for r in result.outputs} == {(size, f) for f in FORMATS}


def test_plain_presets_keep_their_names_beside_a_set() -> None:
    plain = Preset("thumb", 64, 64, "cover", "JPEG", 82)
    result = imaging.render(encode(noise((300, 200)), "PNG"), [plain, hero((100, 200))])
    assert [r.name for r in result.outputs if r.preset == "thumb"] == ["thumb"]
    assert not result.outputs[0].in_set


def test_a_rotated_photos_set_is_upright() -> None:
    upright = noise((320, 200))
    result = imaging.render(with_orientation(upright, 6), [hero((80, 160))])
    assert {(r.width, r.height) for r in result.outputs} == {(80, 50), (160, 100)}


def test_every_srcset_entry_names_an_output_that_exists_at_its_true_width() -> None:
    result = imaging.render(encode(noise((500, 375)), "PNG"), [hero()])
    outputs = views(result.outputs)
    by_url = {str(o["url"]): o for o in outputs}
    [entry] = responsive.sets(outputs)
    srcsets = entry["srcset"]
    assert isinstance(srcsets, dict)
    assert set(srcsets) == set(FORMATS)
    for output_format, srcset in srcsets.items():
        entries = srcset_entries(srcset)
        assert [width for _, width in entries] == [100, 200, 400, 500]
        for url, width in entries:
            assert by_url[url]["width"] == width
            assert by_url[url]["format"] == output_format


def test_the_picture_snippet_offers_each_format_and_falls_back_to_jpeg() -> None:
    result = imaging.render(encode(noise((500, 375)), "PNG"), [hero()])
    outputs = views(result.outputs)
    by_url = {str(o["url"]): o for o in outputs}
    [entry] = responsive.sets(outputs)
    tags = parsed(str(entry["picture"]))
    assert [name for name, _ in tags] == ["picture", "source", "source", "img"]
    sources = [attributes for name, attributes in tags if name == "source"]
    assert [s["type"] for s in sources] == ["image/avif", "image/webp"]
    [(_, img)] = [tag for tag in tags if tag[0] == "img"]
    assert set(img) == {"src", "srcset", "sizes", "width", "height", "alt", "loading", "decoding"}
    largest = by_url[str(img["src"])]
    assert (largest["format"], largest["width"], largest["height"]) == ("JPEG", 500, 375)
    assert (img["width"], img["height"]) == ("500", "375")
    for attributes in [*sources, img]:
        assert attributes["sizes"] == entry["sizes"] == "(max-width: 500px) 100vw, 500px"
        for url, width in srcset_entries(str(attributes["srcset"])):
            assert by_url[url]["width"] == width  # & in the URLs unescaped by the parser


def test_outputs_without_urls_make_no_sets() -> None:
    result = imaging.render(encode(noise((200, 100)), "PNG"), [hero((100,))])
    outputs = views(result.outputs)
    for output in outputs:
        del output["url"]
    assert responsive.sets(outputs) == []


def test_sets_load_from_the_presets_json_and_back() -> None:
    loaded = load_presets(
        '[{"name": "hero", "width": 1600, "height": 900, "fit": "cover", "format": "JPEG",'
        ' "widths": [1600, 320, 640], "formats": ["AVIF", "JPEG"]}]'
    )["hero"]
    assert loaded.set_widths == (320, 640, 1600)
    assert loaded.box_at(320) == (320, 180)
    assert loaded.quality_of("AVIF") == 60
    assert loaded.quality_of("JPEG") == 82
    assert load_presets(presets_to_json([loaded]))["hero"] == loaded


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('"widths": 320', "presets[0].widths must be a JSON list"),
        ('"widths": [320, 320]', "widths must be at most 8 distinct widths"),
        ('"widths": [1, 2, 3, 4, 5, 6, 7, 8, 9]', "widths must be at most 8 distinct widths"),
        ('"widths": [0]', "each of widths must be 1..4096"),
        ('"widths": ["320"]', "presets[0].widths must be an integer"),
        ('"formats": ["GIF"]', "each of formats must be one of"),
        ('"formats": ["JPEG", "JPEG"]', "formats must not repeat"),
    ],
)
def test_malformed_sets_are_refused(fields: str, message: str) -> None:
    raw = (
        '[{"name": "hero", "width": 800, "height": 800, "fit": "contain", "format": "JPEG", '
        + fields
        + "}]"
    )
    with pytest.raises(PresetError, match=re.escape(message)):
        load_presets(raw)
