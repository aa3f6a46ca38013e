"""PNGs decoded band by band: the same pixels as a full decode, bounded work, strict parsing."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageFile

from chalicelib.errors import CorruptImage, SourceError
from chalicelib.imaging import colour, pipeline, png_bands, render
from chalicelib.presets import Preset
from tests.images import encode, noise, png16, png_chunk, rgb_icc_profile

# Small outputs, so that a few hundred pixels are reduced by 2 or more (the band path).
PRESETS = (
    Preset("fit", 64, 64, "contain", "PNG", 100),
    Preset("crop", 40, 40, "cover", "PNG", 100),
)
COLOUR_TYPES = {"L": 0, "RGB": 2, "P": 3, "LA": 4, "RGBA": 6}
SAMPLES = {"L": 1, "RGB": 3, "P": 1, "LA": 2, "RGBA": 4}
# Adam7: (first column, first row, column step, row step) of each pass.
ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
# Every kind of 8-bit PNG the band path takes: mode, and the tRNS chunk's payload if any.
KINDS: dict[str, tuple[str, bytes | None]] = {
    "grey": ("L", None),
    "grey-alpha": ("LA", None),
    "rgb": ("RGB", None),
    "rgba": ("RGBA", None),
    "palette": ("P", None),
    "palette-trns": ("P", bytes(range(0, 256, 4))),
    "grey-trns": ("L", struct.pack(">H", 128)),
    "rgb-trns": ("RGB", struct.pack(">HHH", 90, 90, 90)),
}


# --- building PNGs -----------------------------------------------------------------------


def picture(mode: str, size: tuple[int, int], seed: int = 1) -> Image.Image:
    """Smooth areas and noise, so that an encoder uses every kind of filter."""
    width, height = size
    smooth = Image.linear_gradient("L").resize(size).convert("RGB")
    picture = Image.blend(smooth, noise(size, seed), 0.35)
    picture.paste((90, 90, 90), (0, 0, width // 3, height // 3))  # flat, and the tRNS colour
    if mode in ("L", "RGB"):
        return picture.convert(mode)
    if mode == "P":
        return picture.quantize(64)
    alpha = Image.linear_gradient("L").rotate(90).resize(size)
    picture.putalpha(alpha)
    return picture.convert(mode)


def raw_rows(image: Image.Image) -> bytes:
    """The samples of ``image`` as a PNG stores them, row after row, without filter bytes."""
    return image.tobytes()


def paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
    return (left, up, up_left)[distances.index(min(distances))]


def filtered(raw: bytes, width: int, bpp: int, filter_types: Sequence[int]) -> bytes:
    """``raw`` rows, each filtered with its PNG filter type (0 None ... 4 Paeth)."""
    stride = width * bpp
    out = bytearray()
    previous = bytes(stride)
    for y, filter_type in enumerate(filter_types):
        row = raw[y * stride : (y + 1) * stride]
        out.append(filter_type)
        for x in range(stride):
            left = row[x - bpp] if x >= bpp else 0
            up_left = previous[x - bpp] if x >= bpp else 0
            up = previous[x]
            predictor = (0, left, up, (left + up) // 2, paeth(left, up, up_left))[filter_type]
            out.append((row[x] - predictor) & 0xFF)
        previous = row
    return bytes(out)


def interlaced(raw: bytes, width: int, height: int, bpp: int) -> bytes:
    """``raw`` rows in Adam7 order, every row unfiltered."""
    out = bytearray()
    for first_x, first_y, step_x, step_y in ADAM7:
        columns = range(first_x, width, step_x)
        if not columns:
            continue
        for y in range(first_y, height, step_y):
            row = raw[y * width * bpp : (y + 1) * width * bpp]
            out.append(0)
            for x in columns:
                out += row[x * bpp : (x + 1) * bpp]
    return bytes(out)


def build_png(
    size: tuple[int, int],
    colour_type: int,
    stream: bytes,
    *,
    bit_depth: int = 8,
    interlace: int = 0,
    before: Sequence[bytes] = (),
    after: Sequence[bytes] = (),
    idat_chunks: int = 1,
) -> bytes:
    """A PNG whose IDAT chunks hold ``stream``; ``before``/``after``: chunks around them."""
    header = struct.pack(">IIBBBBB", *size, bit_depth, colour_type, 0, 0, interlace)
    step = -(-len(stream) // idat_chunks)
    idat = [
        png_chunk(b"IDAT", stream[start : start + step]) for start in range(0, len(stream), step)
    ]
    chunks = [png_chunk(b"IHDR", header), *before, *idat, *after, png_chunk(b"IEND", b"")]
    return png_bands.SIGNATURE + b"".join(chunks)


def pixel_chunks(image: Image.Image, transparency: bytes | None) -> list[bytes]:
    chunks = []
    if image.mode == "P":
        palette = image.getpalette()
        assert palette is not None
        chunks.append(png_chunk(b"PLTE", bytes(palette)))
    if transparency is not None:
        chunks.append(png_chunk(b"tRNS", transparency))
    return chunks


def pillow_png(kind: str, size: tuple[int, int], **options: Any) -> bytes:
    """Pillow's own encoding (adaptive filters) of a picture of ``kind``."""
    mode, transparency = KINDS[kind]
    image = picture(mode, size)
    if transparency is not None:
        return png_with(image, transparency, **options)
    return encode(image, "PNG", **options)


def png_with(image: Image.Image, transparency: bytes, **options: Any) -> bytes:
    # Pillow writes tRNS from its "transparency" option; the chunk's payload is the same.
    if image.mode == "P":
        return encode(image, "PNG", transparency=transparency, **options)
    value: Any = struct.unpack(">H", transparency)[0] if image.mode == "L" else None
    if image.mode == "RGB":
        value = struct.unpack(">HHH", transparency)
    return encode(image, "PNG", transparency=value, **options)


def twins(kind: str, size: tuple[int, int], after: Sequence[bytes] = ()) -> tuple[bytes, bytes]:
    """The same picture, chunks and metadata as a PNG for the band path and as an
    interlaced PNG (decoded whole)."""
    mode, transparency = KINDS[kind]
    image = picture(mode, size)
    raw = raw_rows(image)
    width, height = size
    before = pixel_chunks(image, transparency)
    flat = filtered(raw, width, SAMPLES[mode], [y % 5 for y in range(height)])
    adam7 = interlaced(raw, width, height, SAMPLES[mode])
    colour_type = COLOUR_TYPES[mode]
    return (
        build_png(size, colour_type, zlib.compress(flat), before=before, after=after),
        build_png(size, colour_type, zlib.compress(adam7), interlace=1, before=before, after=after),
    )


def full_decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def opened(data: bytes) -> png_bands.PngBands:
    png = png_bands.open_bands(data)
    assert png is not None
    return png


def decoded_heights(call: Callable[[], object]) -> list[int]:
    """The height of every image Pillow decodes from a file while ``call`` runs."""
    heights: list[int] = []

    def watch(frame: FrameType, event: str, _: object) -> None:
        if event == "call" and frame.f_code is ImageFile.ImageFile.load.__code__:
            heights.append(frame.f_locals["self"].height)

    sys.setprofile(watch)
    try:
        call()
    finally:
        sys.setprofile(None)
    return heights


# --- which PNGs -----------------------------------------------------------------------------


def test_only_8_bit_non_interlaced_stills_are_taken() -> None:
    _, adam7 = twins("rgb", (20, 10))
    animated = io.BytesIO()
    frames = [picture("RGB", (20, 10), seed) for seed in (1, 2)]
    frames[0].save(animated, "PNG", save_all=True, append_images=frames[1:])

    assert png_bands.open_bands(pillow_png("rgb", (20, 10))) is not None
    assert png_bands.open_bands(adam7) is None
    assert png_bands.open_bands(png16([[(1, 2, 3)] * 4] * 3, colour_type=2)) is None
    assert png_bands.open_bands(encode(Image.new("1", (9, 9)), "PNG")) is None
    assert png_bands.open_bands(animated.getvalue()) is None
    assert png_bands.open_bands(encode(noise((9, 9)), "JPEG")) is None


# --- the same pixels ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 2, 7, 100])
def test_each_band_holds_those_rows_of_a_full_decode(kind: str, rows: int) -> None:
    data = pillow_png(kind, (61, 47))
    full = full_decode(data)

    bands = list(opened(data).bands(rows))

    assert [top for top, _ in bands] == list(range(0, 47, rows))
    for top, band in bands:
        assert band.mode == full.mode
        assert band.info.get("transparency") == full.info.get("transparency")
        assert band.getpalette() == full.getpalette()
        assert band.tobytes() == full.crop((0, top, 61, min(47, top + rows))).tobytes()


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
@pytest.mark.parametrize("filters", ["none", "sub", "up", "average", "paeth", "cycle", "random"])
def test_every_filter_type_decodes_exactly_across_band_edges(mode: str, filters: str) -> None:
    width, height = 23, 19
    image = picture(mode, (width, height))
    generator = random.Random(filters)
    named = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4}
    filter_types = [
        named[filters]
        if filters in named
        else y % 5
        if filters == "cycle"
        else generator.randrange(5)
        for y in range(height)
    ]
    raw = raw_rows(image)
    stream = zlib.compress(filtered(raw, width, SAMPLES[mode], filter_types))
    data = build_png((width, height), COLOUR_TYPES[mode], stream, idat_chunks=3)
    assert full_decode(data).tobytes() == raw  # the filters above are PNG's

    for rows in (1, 2, 3):
        decoded = b"".join(band.tobytes() for _, band in opened(data).bands(rows))
        assert decoded == raw, rows


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("size", "factor"), [((61, 47), 2), ((97, 31), 3), ((5, 203), 5)])
def test_reducing_bands_gives_the_pixels_of_reducing_the_full_decode(
    kind: str, size: tuple[int, int], factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(png_bands, "BAND_BYTES", 1)  # bands of `factor` rows: many edges
    data = pillow_png(kind, size)
    full = colour.to_8bit(full_decode(data))

    reduced = pipeline.reduce_bands(opened(data), factor)

    assert reduced.mode == full.mode
    assert reduced.tobytes() == full.reduce(factor).tobytes()


@pytest.mark.parametrize("options", [{"optimize": True}, {"compress_level": 1}, {}])
def test_pillows_encoder_settings_all_decode_the_same(options: dict[str, Any]) -> None:
    data = pillow_png("rgba", (130, 70), **options)
    full = colour.to_8bit(full_decode(data))

    assert pipeline.reduce_bands(opened(data), 3).tobytes() == full.reduce(3).tobytes()


# --- the pipeline ---------------------------------------------------------------------------


def exif_chunk(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return png_chunk(b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00"))


@pytest.mark.parametrize("kind", KINDS)
def test_render_gives_the_same_outputs_as_a_full_decode(kind: str) -> None:
    # An interlaced PNG is decoded whole, as every PNG was before; with the same pixels and
    # chunks, its outputs are the reference.
    banded, whole = twins(kind, (301, 203))

    outputs = render(banded, PRESETS).outputs
    reference = render(whole, PRESETS).outputs

    assert [output.data for output in outputs] == [output.data for output in reference]


def test_metadata_after_the_image_data_still_applies() -> None:
    # eXIf after IDAT is legal; Pillow finds it only by decoding the pixels. With a colour
    # profile (before IDAT, where it must be) the outputs must match the full decode's.
    profile = zlib.compress(rgb_icc_profile("Wide test"))
    after = [exif_chunk(6), png_chunk(b"tEXt", b"Comment\x00after the pixels")]
    banded, whole = twins("rgb", (301, 203), after=after)
    iccp = png_chunk(b"iCCP", b"wide\x00\x00" + profile)
    banded = banded[:33] + iccp + banded[33:]  # right after IHDR
    whole = whole[:33] + iccp + whole[33:]

    result = render(banded, PRESETS)

    assert (result.source.width, result.source.height) == (203, 301)  # orientation 6
    assert [o.data for o in result.outputs] == [o.data for o in render(whole, PRESETS).outputs]


def test_render_never_decodes_a_big_png_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png_bands, "BAND_BYTES", 20_000)  # bands of about 20 rows
    banded, whole = twins("rgb", (301, 203))

    banded_heights = decoded_heights(lambda: render(banded, PRESETS))
    whole_heights = decoded_heights(lambda: render(whole, PRESETS))

    assert 203 in whole_heights
    assert len(banded_heights) > 1
    assert max(banded_heights) < 203


def test_a_png_that_is_not_reduced_is_decoded_whole_as_before() -> None:
    data = pillow_png("rgb", (60, 40))  # smaller than the outputs: nothing to reduce

    heights = decoded_heights(lambda: render(data, PRESETS))

    assert 40 in heights


# --- malformed files ------------------------------------------------------------------------


def good_png() -> bytes:
    return pillow_png("rgb", (301, 203), compress_level=1)


def chunks_of(data: bytes) -> list[bytes]:
    chunks, offset = [], len(png_bands.SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack_from(">I", data, offset)
        chunks.append(data[offset : offset + 12 + length])
        offset += 12 + length
    return chunks


def reassembled(chunks: Sequence[bytes]) -> bytes:
    return png_bands.SIGNATURE + b"".join(chunks)


def split_at_idat(data: bytes) -> tuple[list[bytes], bytes, list[bytes]]:
    """The chunks before the image data, the zlib stream of all IDATs, the chunks after."""
    chunks = chunks_of(data)
    image_data = [index for index, chunk in enumerate(chunks) if chunk[4:8] == b"IDAT"]
    stream = b"".join(chunks[index][8:-4] for index in image_data)
    return chunks[: image_data[0]], stream, chunks[image_data[-1] + 1 :]


def with_bad_idat_crc(data: bytes) -> bytes:
    before, stream, after = split_at_idat(data)
    idat = png_chunk(b"IDAT", stream)
    return reassembled([*before, idat[:-4] + bytes(4), *after])


def with_bad_text_crc(data: bytes) -> bytes:
    before, stream, after = split_at_idat(data)
    text = png_chunk(b"tEXt", b"Comment\x00hello")
    text = text[:-1] + bytes([text[-1] ^ 1])
    return reassembled([*before, png_chunk(b"IDAT", stream), text, *after])


def truncated_in_idat(data: bytes) -> bytes:
    before, stream, _ = split_at_idat(data)
    idat = png_chunk(b"IDAT", stream)
    return reassembled(before) + idat[: len(idat) // 2]


def with_short_stream(data: bytes) -> bytes:
    # Every chunk intact, but the zlib stream stops halfway through the rows.
    before, stream, after = split_at_idat(data)
    return reassembled([*before, png_chunk(b"IDAT", stream[: len(stream) // 2]), *after])


def with_idat_after_iend(data: bytes) -> bytes:
    before, stream, after = split_at_idat(data)
    return reassembled([*before, *after, png_chunk(b"IDAT", stream)])


def with_oversized_length(data: bytes) -> bytes:
    # After the image data, where Pillow's header parsing does not look.
    before, stream, after = split_at_idat(data)
    oversized = struct.pack(">I", 0x7FFFFFFF) + b"tEXt" + b"Comment\x00hello"
    return reassembled([*before, png_chunk(b"IDAT", stream), oversized, *after])


def with_split_idat(data: bytes) -> bytes:
    before, stream, after = split_at_idat(data)
    middle = len(stream) // 2
    text = png_chunk(b"tEXt", b"Comment\x00between")
    parts = [png_chunk(b"IDAT", stream[:middle]), text, png_chunk(b"IDAT", stream[middle:])]
    return reassembled([*before, *parts, *after])


def with_stream(stream: bytes) -> bytes:
    return build_png((301, 203), 2, stream)


def rows_of(filter_type: int) -> bytes:
    return (bytes([filter_type]) + bytes(301 * 3)) * 203


# How each file is broken, and what the message says was found.
MALFORMED: dict[str, tuple[Callable[[], bytes], str]] = {
    "bad IDAT CRC": (lambda: with_bad_idat_crc(good_png()), "IDAT chunk .* CRC"),
    "bad CRC after the pixels": (lambda: with_bad_text_crc(good_png()), "tEXt chunk .* CRC"),
    "truncated inside IDAT": (lambda: truncated_in_idat(good_png()), "IDAT chunk .* claims"),
    "zlib stream ends early": (lambda: with_short_stream(good_png()), "ends before its last row"),
    "IDAT after IEND": (lambda: with_idat_after_iend(good_png()), "no image data before"),
    "oversized chunk length": (lambda: with_oversized_length(good_png()), "claims 2147483647"),
    "IDAT chunks not consecutive": (lambda: with_split_idat(good_png()), "not consecutive"),
    "unknown filter type": (lambda: with_stream(zlib.compress(rows_of(7))), "image data"),
    "not a zlib stream": (
        lambda: with_stream(b"\x78\x9c" + bytes(range(256)) * 8),
        "cannot be inflated",
    ),
    "missing IEND": (lambda: good_png()[:-12], "ends before its IEND"),
    "palette without PLTE": (
        lambda: build_png((9, 9), 3, zlib.compress(bytes(10) * 9)),
        "no PLTE",
    ),
    "PLTE after the pixels": (
        lambda: build_png(
            (9, 9), 3, zlib.compress(bytes(10) * 9), after=[png_chunk(b"PLTE", bytes(3))]
        ),
        "PLTE chunk is repeated or after",
    ),
}


@pytest.mark.parametrize(("make", "found"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_pngs_are_corrupt_images(make: Callable[[], bytes], found: str) -> None:
    with pytest.raises(CorruptImage, match=found) as caught:
        render(make(), PRESETS)

    assert caught.value.__cause__ is not None  # translated from what found the fault


def with_crcs_recomputed(data: bytes) -> bytes:
    chunks = []
    for chunk in chunks_of(data):
        body = chunk[4:-4]
        chunks.append(chunk[:-4] + struct.pack(">I", zlib.crc32(body)))
    return reassembled(chunks)


def test_damage_that_passes_the_crc_checks_is_still_a_corrupt_image() -> None:
    generator = random.Random(5)
    originals = [pillow_png(kind, (301, 203)) for kind in ("rgb", "rgba", "palette-trns")]
    for original in originals:
        for _ in range(40):
            damaged = bytearray(original)
            for _ in range(generator.randint(1, 6)):
                damaged[generator.randrange(50, len(damaged) - 12)] = generator.randrange(256)
            with contextlib.suppress(SourceError):
                render(with_crcs_recomputed(bytes(damaged)), PRESETS)


def test_bytes_after_iend_are_ignored() -> None:
    data = good_png()

    outputs = render(data + b"trailing junk", PRESETS).outputs

    assert [o.data for o in outputs] == [o.data for o in render(data, PRESETS).outputs]


def test_the_chunk_walk_keeps_nothing_per_chunk() -> None:
    # 20,000 empty private chunks (240 KB): legal, and a list of them would cost ~3 MB.
    data = pillow_png("rgb", (30, 20))
    before, stream, after = split_at_idat(data)
    filler = png_chunk(b"zzZz", b"") * 20_000
    many = reassembled([*before, png_chunk(b"IDAT", stream), filler, *after])
    view = memoryview(many)
    header = png_bands.read_header(view)

    tracemalloc.start()
    try:
        layout = png_bands.read_layout(view, header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert layout.end == len(many)
    assert peak < 100_000


# --- bounded inflating ----------------------------------------------------------------------


def zeros_stream(size: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    for start in range(0, size, len(block)):
        yield compressor.compress(block[: min(len(block), size - start)])
    yield compressor.flush()


def test_a_flat_band_is_inflated_no_further_than_asked() -> None:
    # 3000 x 2000 of zeros: 6 MB of rows from about 6 KB, 1000:1.
    size = (3000, 2000)
    stream = b"".join(zeros_stream((3000 + 1) * 2000))
    png = opened(build_png(size, 0, stream))
    assert len(stream) * 500 < (3000 + 1) * 2000
    inflater = png.inflater()
    rows = png.band_rows(4)

    bands = png.bands(rows, inflater)
    top, first = next(bands)

    assert (top, first.size) == (0, (3000, rows))
    assert inflater.inflated == rows * png.header.row_bytes  # that band, nothing more
    assert inflater.largest_inflate <= png_bands.INFLATE_PIECE
    assert sum(1 for _ in bands) == -(-2000 // rows) - 1
    assert inflater.inflated == 2000 * png.header.row_bytes


def test_data_past_the_last_row_is_never_inflated() -> None:
    # The stream goes on with 64 MiB of zeros after the image's 20 rows.
    rows = (bytes([0]) + bytes(range(30))) * 20
    compressor = zlib.compressobj(9)
    stream = compressor.compress(rows)
    stream += b"".join(compressor.compress(bytes(1 << 20)) for _ in range(64))
    stream += compressor.flush()
    png = opened(build_png((30, 20), 0, stream))
    inflater = png.inflater()

    decoded = b"".join(band.tobytes() for _, band in png.bands(7, inflater))

    assert decoded == bytes(range(30)) * 20
    assert inflater.inflated == len(rows)
    assert inflater.largest_inflate <= png_bands.INFLATE_PIECE
