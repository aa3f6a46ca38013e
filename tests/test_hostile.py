"""Hostile images: every one ends in a documented error code or a correct rendition.

The inputs are built in memory by tests/hostile.py. Besides the outcome, several tests
check that what the engine refuses is refused from the structure, before any decoding.
"""

from __future__ import annotations

import io
import signal
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageCms, TiffImagePlugin

from bench import memory
from chalicelib.errors import (
    CorruptImage,
    ImageTooLarge,
    ProcessingTimeout,
    SourceError,
    TooManyFrames,
    UnsupportedFormat,
)
from chalicelib.imaging import colour as colour_module
from chalicelib.imaging import metadata, probe, render, tiffheader
from chalicelib.imaging.budget import deadline
from chalicelib.imaging.decode import MAX_JPEG_SCANS, MAX_SIDE
from chalicelib.imaging.frames import gif_frames, jpeg_scans, tiff_pages
from chalicelib.presets import DEFAULT_PRESETS, Preset
from tests import hostile
from tests.images import decode, encode, near, noise, png_bytes, rgb_icc_profile, solid
from tests.samples import corpus_photos

AS_IS = Preset("as-is", 4096, 4096, "contain", "PNG", 100)
SMALL = Preset("small", 16, 16, "cover", "JPEG", 90)
READABLE_CODES = {"unsupported_format", "corrupt_image"}


def heif(image: Image.Image) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90)
    return buffer.getvalue()


def rendered_pixel(data: bytes, point: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    value = decode(render(data, [AS_IS]).outputs[0].data).convert("RGB").getpixel(point)
    assert isinstance(value, tuple)
    return value


# --- empty, tiny, truncated -----------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xff", b"\x89", b"B", b"GIF8", b"\x00" * 3])
def test_empty_and_tiny_files_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        render(data, DEFAULT_PRESETS)
    with pytest.raises(UnsupportedFormat):
        probe(data, max_pixels=1000)


@pytest.mark.parametrize("name", sorted(hostile.SIGNATURES_ONLY))
def test_a_signature_alone_is_corrupt(name: str) -> None:
    data = hostile.SIGNATURES_ONLY[name]

    with pytest.raises(CorruptImage):
        render(data, DEFAULT_PRESETS)
    with pytest.raises(CorruptImage):
        probe(data, max_pixels=1000)


SOURCES: dict[str, Callable[[], bytes]] = {
    "JPEG": lambda: encode(noise((48, 32)), "JPEG"),
    "progressive-JPEG": lambda: encode(noise((48, 32)), "JPEG", progressive=True),
    "PNG": lambda: encode(noise((48, 32)), "PNG"),
    "interlaced-PNG": lambda: encode(noise((48, 32)), "PNG", interlace=1),
    "GIF": lambda: encode(noise((48, 32)).convert("P"), "GIF"),
    "BMP": lambda: encode(noise((48, 32)), "BMP"),
    "TIFF": lambda: encode(noise((48, 32)), "TIFF", compression="tiff_lzw"),
    "WEBP": lambda: encode(noise((48, 32)), "WEBP"),
    "AVIF": lambda: encode(noise((48, 32)), "AVIF"),
    "HEIF": lambda: heif(noise((48, 32))),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_truncation_is_refused_with_a_readable_code(name: str) -> None:
    data = SOURCES[name]()
    # A GIF cut after its pixels (only the block terminator and trailer missing) is whole.
    complete_from = len(data) - 2 if name == "GIF" else len(data)

    for prefix in [*hostile.prefixes(data, 40), data[:-1], data[: len(data) // 2 + 1]]:
        if len(prefix) >= complete_from:
            assert render(prefix, [AS_IS]).outputs[0].width == 48
            continue
        with pytest.raises(SourceError) as caught:
            render(prefix, [AS_IS, SMALL])
        assert caught.value.code in READABLE_CODES, (len(prefix), caught.value)


def test_a_png_whose_data_breaks_off_is_corrupt_not_half_rendered() -> None:
    with pytest.raises(CorruptImage):
        render(hostile.png_broken_stream(), DEFAULT_PRESETS)


# --- huge, zero and overflowing dimensions --------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        hostile.png_header_only(hostile.HUGE, hostile.HUGE),
        hostile.png_header_only(2**31 - 1, 2**31 - 1),
        hostile.png_header_only(2**31 - 1, 1),
        hostile.gif_header(hostile.HUGE, hostile.HUGE),
        hostile.bmp_header(hostile.HUGE, hostile.HUGE),
        hostile.bmp_header(hostile.HUGE, -hostile.HUGE),  # top-down
        hostile.bmp_header(2**31 - 1, -(2**31)),
        hostile.jpeg_with_size(hostile.HUGE, hostile.HUGE),
        hostile.tiff_grey(hostile.HUGE, hostile.HUGE),
        hostile.tiff_grey(2**32 - 1, 2**32 - 1),  # the product overflows 64 bits in C
        hostile.tiff_grey(2**32 - 1, 2),
        png_bytes(10_000, 9_500, 8, 6, b""),
    ],
    ids=[
        "png",
        "png-2^31",
        "png-2^31x1",
        "gif",
        "bmp",
        "bmp-top-down",
        "bmp-extremes",
        "jpeg",
        "tiff",
        "tiff-2^32",
        "tiff-2^32x2",
        "png-95MP",
    ],
)
def test_huge_declared_dimensions_are_refused_from_the_header(data: bytes) -> None:
    assert len(data) < 1000

    with pytest.raises(ImageTooLarge):
        render(data, DEFAULT_PRESETS)
    with pytest.raises(ImageTooLarge):
        probe(data, max_pixels=50_000_000)


@pytest.mark.parametrize("size", [(hostile.HUGE, hostile.HUGE), (2**24, 2**24)])
def test_a_huge_webp_canvas_is_refused(size: tuple[int, int]) -> None:
    # libwebp refuses the canvas before Pillow sees a size: corrupt, not too large.
    with pytest.raises((CorruptImage, ImageTooLarge)):
        render(hostile.webp_canvas(*size), DEFAULT_PRESETS)


@pytest.mark.parametrize(
    "data",
    [
        hostile.png_header_only(0, 10),
        hostile.png_header_only(10, 0),
        hostile.bmp_header(0, 10),
        hostile.jpeg_with_size(0, 16),
        hostile.jpeg_with_size(16, 0),
        hostile.tiff_grey(0, 4),
    ],
    ids=["png-0-wide", "png-0-high", "bmp-0-wide", "jpeg-0-wide", "jpeg-0-high", "tiff-0-wide"],
)
def test_zero_sides_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptImage):
        render(data, DEFAULT_PRESETS)


def test_no_side_may_exceed_the_side_cap_even_within_the_pixel_cap() -> None:
    # 1 x 70,000 is far within 50 MP; resized at full length it would cost Pillow ~48 bytes
    # of coefficients per source pixel of the long side (2.4 GB at 1 x 50,000,000).
    too_long = png_bytes(1, MAX_SIDE + 1, 8, 0, b"\x00\x80" * (MAX_SIDE + 1))
    longest = png_bytes(MAX_SIDE, 1, 8, 0, b"\x00" + b"\x80" * MAX_SIDE)

    with pytest.raises(ImageTooLarge):
        render(too_long, DEFAULT_PRESETS)
    with pytest.raises(ImageTooLarge):
        probe(too_long, max_pixels=50_000_000)
    result = render(longest, DEFAULT_PRESETS)
    assert [(output.width, output.height) for output in result.outputs] == [
        (1, 1),
        (512, 1),
        (1024, 1),
    ]


# --- bombs ------------------------------------------------------------------------------------


def test_image_data_that_inflates_beyond_the_image_is_ignored() -> None:
    data = hostile.png_idat_overflow(extra_bytes=256 << 20)  # 256 MiB of zeros in ~250 KB

    assert rendered_pixel(data) == (0x10, 0x20, 0x30)


@pytest.mark.parametrize(
    "data", [hostile.png_text_bomb(), hostile.png_icc_bomb()], ids=["zTXt", "iCCP"]
)
def test_compressed_metadata_bombs_are_corrupt(data: bytes) -> None:
    # Pillow stops inflating a text or profile chunk at 1 MiB and refuses the file.
    with pytest.raises(CorruptImage):
        render(data, DEFAULT_PRESETS)


def test_a_gif_bomb_over_the_cap_is_refused_before_decoding() -> None:
    bomb = encode(solid((9, 9, 9), (3000, 3000)).convert("P"), "GIF")
    assert len(bomb) < 1_000_000  # 9 megapixels

    with pytest.raises(ImageTooLarge):
        render(bomb, DEFAULT_PRESETS, max_pixels=1_000_000)


def test_tiff_tiles_larger_than_any_image_are_refused() -> None:
    with pytest.raises(CorruptImage):
        render(hostile.tiff_huge_tiles(), DEFAULT_PRESETS)


# --- frames and pages ---------------------------------------------------------------------------


def test_a_gif_at_the_frame_cap_renders_and_one_more_frame_is_refused() -> None:
    assert render(hostile.gif_frames(1000), [AS_IS]).outputs[0].width == 1

    with pytest.raises(TooManyFrames) as caught:
        render(hostile.gif_frames(1001), [AS_IS])
    with pytest.raises(TooManyFrames):
        probe(hostile.gif_frames(1001), max_pixels=1000)
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize(
    ("image_format", "options"),
    [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True}), ("TIFF", {}), ("AVIF", {})],
)
def test_the_frame_cap_applies_to_every_animated_format(
    image_format: str, options: dict[str, object]
) -> None:
    frames = [noise((4, 4), seed) for seed in range(6)]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], **options)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 6

    assert render(data, [AS_IS], max_frames=6).outputs
    with pytest.raises(TooManyFrames):
        render(data, [AS_IS], max_frames=5)


def test_multi_image_heif_is_counted() -> None:
    import pillow_heif

    heif_file = pillow_heif.from_pillow(noise((8, 8), 1))
    heif_file.add_from_pillow(noise((8, 8), 2))
    buffer = io.BytesIO()
    heif_file.save(buffer, quality=90)

    assert render(buffer.getvalue(), [AS_IS], max_frames=2).outputs[0].width == 8
    with pytest.raises(TooManyFrames):
        render(buffer.getvalue(), [AS_IS], max_frames=1)


def test_a_declared_frame_count_is_enough_to_refuse() -> None:
    with pytest.raises(TooManyFrames):
        render(hostile.apng_claiming_frames(2**31 - 1), DEFAULT_PRESETS)


def test_frames_times_pixels_has_its_own_cap() -> None:
    # 20 x the pixel cap: 30 frames of 100x100 against 10,000 pixels is over, 20 is not.
    with pytest.raises(TooManyFrames):
        render(hostile.gif_frames(30, (100, 100)), [AS_IS], max_pixels=10_000)
    assert render(hostile.gif_frames(20, (100, 100)), [AS_IS], max_pixels=10_000).outputs


def test_tiff_pages_are_counted_and_a_loop_ends_the_chain() -> None:
    assert tiff_pages(hostile.tiff_pages(3), 10) == 3
    assert tiff_pages(hostile.tiff_ifd_loop(), 10) == 1
    with pytest.raises(TooManyFrames):
        render(hostile.tiff_pages(1001), DEFAULT_PRESETS)
    assert rendered_pixel(hostile.tiff_ifd_loop()) == (0x80, 0x80, 0x80)


def test_counting_stops_one_past_the_limit() -> None:
    assert gif_frames(hostile.gif_frames(50_000), 10) == 11
    assert tiff_pages(hostile.tiff_pages(500), 10) == 11


def test_a_frame_in_a_million_one_byte_sub_blocks_is_one_frame() -> None:
    data = hostile.gif_one_frame_in_tiny_sub_blocks(1_000_000)

    assert gif_frames(data, 1000) == 1
    assert render(data, [AS_IS]).outputs[0].width == 1


# --- JPEG scans ---------------------------------------------------------------------------------


def test_ordinary_jpegs_have_few_scans() -> None:
    assert jpeg_scans(encode(noise((32, 32)), "JPEG"), MAX_JPEG_SCANS) == 1
    assert jpeg_scans(encode(noise((32, 32)), "JPEG", progressive=True), MAX_JPEG_SCANS) == 10


def test_a_progressive_jpeg_with_repeated_scans_is_refused_before_decoding() -> None:
    within = hostile.jpeg_repeated_scans(MAX_JPEG_SCANS - 10)
    over = hostile.jpeg_repeated_scans(MAX_JPEG_SCANS)

    assert jpeg_scans(within, MAX_JPEG_SCANS) == MAX_JPEG_SCANS
    assert render(within, [AS_IS]).outputs[0].width == 64
    with pytest.raises(CorruptImage, match="scans"):
        render(over, DEFAULT_PRESETS)
    with pytest.raises(CorruptImage, match="scans"):
        probe(over, max_pixels=10_000)


def test_junk_before_repeated_scans_does_not_hide_them() -> None:
    with pytest.raises(CorruptImage, match="scans"):
        render(hostile.jpeg_with_junk_before_scans(MAX_JPEG_SCANS), DEFAULT_PRESETS)


# --- EXIF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exif",
    [
        hostile.exif_giant_counts(),
        hostile.exif_entry_count_overflow(),
        hostile.exif_deep_chain(),
        b"\x00" * 64,
        b"MM\x00*" + b"\xff" * 200,
    ],
    ids=["giant-counts", "entry-count-overflow", "deep-chain", "zeros", "garbage"],
)
@pytest.mark.parametrize("container", ["JPEG", "PNG"])
def test_broken_exif_costs_nothing_but_the_orientation(exif: bytes, container: str) -> None:
    data = hostile.jpeg_with_exif(exif) if container == "JPEG" else hostile.png_with_exif(exif)
    size = Image.open(io.BytesIO(data)).size

    result = render(data, [AS_IS])

    assert (result.outputs[0].width, result.outputs[0].height) == size


@pytest.mark.parametrize("container", ["JPEG", "PNG"])
def test_an_exif_loop_still_gives_its_orientation(container: str) -> None:
    exif = hostile.exif_ifd0_loop(orientation=6)
    data = hostile.jpeg_with_exif(exif) if container == "JPEG" else hostile.png_with_exif(exif)
    width, height = Image.open(io.BytesIO(data)).size

    result = render(data, [AS_IS])

    assert (result.outputs[0].width, result.outputs[0].height) == (height, width)


# --- metadata amplification -----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(hostile.METADATA_BOMBS))
def test_overlapping_metadata_is_refused_before_pillow_reads_it(name: str) -> None:
    data = hostile.METADATA_BOMBS[name]()

    with pytest.raises(ImageTooLarge) as caught:
        render(data, DEFAULT_PRESETS)
    with pytest.raises(ImageTooLarge):
        probe(data, max_pixels=1000)
    assert caught.value.code == "image_too_large"


SMALL_DIRECTORIES: dict[str, Callable[[str], bytes]] = {
    "tiff": lambda where: hostile.tiff_structure(where, entries=3, blob_bytes=64, pages=True),
    "bigtiff": lambda where: hostile.tiff_structure(
        where, entries=3, blob_bytes=64, pages=True, big=True
    ),
    "jpeg": lambda where: hostile.jpeg_with_exif(hostile.exif_bomb(where, blob_bytes=64)),
    "jpeg-no-jfif": lambda where: hostile.jpeg_with_exif(
        hostile.exif_bomb(where, blob_bytes=64), jfif=False
    ),
    "png": lambda where: hostile.png_with_exif(hostile.exif_bomb(where, blob_bytes=64)),
    "webp": lambda where: hostile.with_exif_item("WEBP", hostile.exif_bomb(where, blob_bytes=64)),
}


@pytest.mark.parametrize("where", hostile.DIRECTORIES)
@pytest.mark.parametrize("container", sorted(SMALL_DIRECTORIES))
def test_every_directory_within_the_caps_renders(container: str, where: str) -> None:
    # The bombs' own structure with a few small tags: only the amplification is refused.
    data = SMALL_DIRECTORIES[container](where)

    assert render(data, [AS_IS]).outputs


def test_entries_per_directory_are_capped() -> None:
    # The Exif IFD holds two entries of its own besides the bomb's.
    at_cap = metadata.MAX_ENTRIES_PER_IFD - 2

    def with_bomb_of(entries: int) -> bytes:
        return hostile.tiff_structure("exif", entries=entries, blob_bytes=8, pages=True)

    assert render(with_bomb_of(at_cap), [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(with_bomb_of(at_cap + 1), [AS_IS])


def test_directories_and_entries_per_file_are_capped() -> None:
    entries_each = metadata.MAX_ENTRIES_PER_IFD
    ifds_at_cap = metadata.MAX_ENTRIES // entries_each

    assert render(hostile.jpeg_with_exif(hostile.exif_chain(metadata.MAX_IFDS)), [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(hostile.jpeg_with_exif(hostile.exif_chain(metadata.MAX_IFDS + 1)), [AS_IS])
    within = hostile.png_with_exif(hostile.exif_chain(ifds_at_cap, entries_each))
    assert render(within, [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(hostile.png_with_exif(hostile.exif_chain(ifds_at_cap + 1, entries_each)), [AS_IS])


def test_sub_ifd_arrays_count_against_the_directory_cap_as_they_are_queued() -> None:
    # One IFD of SubIFDs entries, each naming an array of more offsets than the cap: they
    # are refused as too many directories before millions of offsets are queued.
    entries, offsets = metadata.MAX_ENTRIES_PER_IFD, metadata.MAX_IFDS + 1
    array_at = 8 + 2 + entries * 12 + 4
    ifd = struct.pack("<H", entries)
    ifd += struct.pack("<HHII", 0x014A, 4, offsets, array_at) * entries + bytes(4)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 8) * offsets

    with pytest.raises(ImageTooLarge) as caught:
        metadata.check(data, "TIFF")
    assert caught.value.detail == f"metadata directories: {metadata.MAX_IFDS}"


def test_exif_blocks_per_file_are_capped() -> None:
    # Pillow joins a JPEG's Exif segments into one block; each MPF segment is one.
    index = b"MPF\x00" + hostile.exif_chain(1)
    segment = b"\xff\xe2" + struct.pack(">H", len(index) + 2) + index
    jpeg = hostile.jpeg_with_mpf(hostile.exif_chain(1))

    assert render(jpeg[:2] + segment * (metadata.MAX_BLOCKS - 1) + jpeg[2:], [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(jpeg[:2] + segment * metadata.MAX_BLOCKS + jpeg[2:], [AS_IS])


def test_overlap_is_tolerated_up_to_the_allowance() -> None:
    # Each entry covers the blob: n entries sum to n blobs, the block holds one.
    blob = metadata.OVERLAP_ALLOWANCE // 2
    within = hostile.jpeg_with_exif(hostile.tiff_structure("ifd0", entries=2, blob_bytes=blob))
    over = hostile.png_with_exif(hostile.tiff_structure("ifd0", entries=4, blob_bytes=blob))

    assert render(within, [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(over, [AS_IS])


def test_overlap_is_bounded_per_page_not_per_file() -> None:
    # Pillow loads one page's directory at a time: pages sharing a profile copy it once each.
    shared = hostile.tiff_pages_sharing_a_profile()

    assert tiff_pages(shared, 10) == 2
    assert rendered_pixel(shared) == (0x80, 0x80, 0x80)


def test_numeric_values_are_capped_even_without_overlap() -> None:
    # Two arrays (offsets and byte counts) of one value per strip.
    at_cap = metadata.MAX_NUMERIC_VALUES // 2

    assert rendered_pixel(hostile.tiff_many_strips(at_cap)) == (0x80, 0x80, 0x80)
    with pytest.raises(ImageTooLarge):
        render(hostile.tiff_many_strips(at_cap + 1), [AS_IS])


def test_rational_values_have_their_own_smaller_cap() -> None:
    at_cap = metadata.MAX_RATIONAL_VALUES

    assert rendered_pixel(hostile.tiff_rationals(at_cap)) == (0x80, 0x80, 0x80)
    assert render(hostile.avif_rationals(at_cap), [AS_IS]).outputs
    with pytest.raises(ImageTooLarge):
        render(hostile.tiff_rationals(at_cap + 1), [AS_IS])
    with pytest.raises(ImageTooLarge):
        render(hostile.avif_rationals(at_cap + 1), [AS_IS])


def test_a_file_of_many_chunks_is_searched_past_the_walk() -> None:
    many = metadata.MAX_WALKED_CHUNKS + 10
    spam = b"eXIfII*\x00" * (metadata.MAX_BLOCKS + 1)

    assert render(hostile.png_in_many_chunks(many), [AS_IS]).outputs[0].width == 4
    with pytest.raises(ImageTooLarge):  # past the walk, what looks like EXIF is counted
        metadata.check(hostile.png_in_many_chunks(many)[:-12] + spam, "PNG")


@pytest.mark.parametrize(
    "data",
    [
        b"II*\x00" + struct.pack("<I", 1 << 20) + bytes(64),
        b"II*\x00" + struct.pack("<I", 0) + bytes(64),
        hostile.tiff_grey(4, 4)[:20],
        b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + b"\x00\x00",
        b"MM\x00+" + struct.pack(">HHQ", 8, 0, 16) + b"\x00\x00",
    ],
    ids=[
        "first-ifd-outside",
        "no-first-ifd",
        "first-ifd-cut-short",
        "bigtiff-count-cut-short",
        "mm-bigtiff-read-as-classic",  # its first IFD at bytes 4-8: 524,288, past the end
    ],
)
def test_a_tiff_whose_first_directory_cannot_be_read_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptImage):
        metadata.check(data, "TIFF")
    with pytest.raises(CorruptImage):
        render(data, DEFAULT_PRESETS)


@pytest.mark.parametrize("prefix", TiffImagePlugin.PREFIXES)
def test_tiff_headers_are_read_as_pillow_reads_them(prefix: bytes) -> None:
    header = prefix + bytes(12)
    layout = tiffheader.layout(header)
    # As TiffImageFile._open reads it: 8 bytes, 8 more for BigTIFF.
    pillows = TiffImagePlugin.ImageFileDirectory_v2(header[: 16 if header[2] == 43 else 8])

    assert tuple(TiffImagePlugin.PREFIXES) == tiffheader.PREFIXES
    assert layout == tiffheader.Layout(pillows._endian, big=pillows._bigtiff)
    assert tiffheader.layout(prefix[:2] + bytes(14)) is None


def test_a_big_endian_bigtiff_header_starts_a_classic_tiff_as_for_pillow() -> None:
    data = hostile.tiff_read_as_classic_by_pillow()
    patched = data[:-1] + b"\x40"  # no bomb left to refuse: only its pages are counted
    patched = patched.replace(struct.pack(">I", hostile.BOMB_BLOB), struct.pack(">I", 1))

    assert tiff_pages(data, 10) == 1
    assert tiff_pages(data[:0x0008_0000], 10) == 0  # not the BigTIFF IFD at 16
    assert rendered_pixel(patched) == (0x40, 0x40, 0x40)


def test_sub_directory_loops_end_the_walk() -> None:
    exif = hostile.exif_ifd0_loop(orientation=6)

    metadata.check(hostile.jpeg_with_exif(exif), "JPEG")
    metadata.check(b"II*\x00" + exif[4:], "TIFF")


def camera_exif() -> bytes:
    """EXIF as a phone writes it: IFD0 with make, model, orientation and resolution, an Exif
    IFD with rationals, a date and a maker note, and a GPS IFD ("Exif\\0\\0" first)."""
    exif = Image.Exif()
    exif.update({0x010F: "Phone Maker", 0x0110: "Model 12", 0x0112: 6, 0x011A: 72.0})
    exif.get_ifd(0x8769).update(
        {0x829A: 1 / 120, 0x829D: 1.8, 0x9003: "2026:12:04 10:00:00", 0x927C: bytes(4096)}
    )
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.2)})
    return exif.tobytes()


def test_legitimate_photos_pass_the_metadata_check() -> None:
    # A phone-style photo made here, widened by the camera and phone JPEGs of the shared
    # corpus (EXIF, GPS and maker notes) where it lies beside the clone.
    exif = camera_exif()
    photo = encode(noise((64, 48)), "JPEG", exif=exif)
    made = {"made-phone.jpg": photo}
    found = {path.name: path.read_bytes() for path in corpus_photos()}

    for name, data in {**made, **found}.items():
        metadata.check(data, "JPEG")
        with Image.open(io.BytesIO(data)) as image:
            expected = image.getexif().get(0x0112)
            assert metadata.orientation(image.info) == expected, name
    assert metadata.orientation({"exif": exif}) == 6


# --- peak memory ------------------------------------------------------------------------------

# The memory cases run in a fresh process each (bench.memory): peak RSS is VmHWM there.
MEMORY_CASES = sorted(hostile.METADATA_BOMBS)


@pytest.mark.parametrize("name", MEMORY_CASES)
def test_a_metadata_bomb_stays_within_the_memory_bound(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(hostile.METADATA_BOMBS[name]())

    report = memory.measure_hostile(path)

    assert report["code"] == "image_too_large"
    assert report["peak_rss_mib"] < memory.REFUSED_PEAK_RSS_BOUND_MIB < memory.PEAK_RSS_BOUND_MIB


@pytest.mark.parametrize(
    ("image_format", "options"),
    [("JPEG", {"quality": 90, "progressive": True}), ("WEBP", {"quality": 80, "method": 0})],
)
def test_the_largest_legitimate_renders_stay_within_the_memory_bound(
    image_format: str, options: dict[str, object], tmp_path: Path
) -> None:
    # 50 MP: the highest peaks measured among uploads within the size cap are a lossy
    # WebP's (libwebp's RGBA buffer, Pillow's copy) and a progressive JPEG's (libjpeg keeps
    # every coefficient). Texture from Pillow's noise, which is fast to make.
    width, height = memory.FULL_SIZE
    grey = Image.linear_gradient("L").resize((width, height))
    texture = Image.effect_noise((width // 4, height // 4), 24).resize((width, height))
    picture = Image.merge("RGB", (texture, grey, grey))
    path = tmp_path / f"50mp.{image_format.lower()}"
    picture.save(path, image_format, **options)
    del picture, grey, texture

    report = memory.run_child(memory.CHILD_CODE, path)

    assert report["source"] == [image_format, width, height]
    assert report["after_render_kib"]["VmHWM"] / 1024 < memory.PEAK_RSS_BOUND_MIB


# --- ICC profiles -------------------------------------------------------------------------------


def _patched_profile(offset: int, value: bytes) -> bytes:
    profile = bytearray(rgb_icc_profile("Patched"))
    profile[offset : offset + len(value)] = value
    return bytes(profile)


HOSTILE_PROFILES = {
    "garbage-10MB": bytes(range(256)) * (10 * 4096),
    "valid-padded-to-10MB": (
        (128 + 10 * 1024 * 1024).to_bytes(4, "big")
        + rgb_icc_profile("Padded")[4:]
        + bytes(10 * 1024 * 1024 - len(rgb_icc_profile("Padded")) + 128)
    ),
    "truncated": rgb_icc_profile("Truncated")[:150],
    "header-only": rgb_icc_profile("Header")[:128],
    "device-link-class": _patched_profile(12, b"link"),
    "abstract-class": _patched_profile(12, b"abst"),
    "grey-colour-space": _patched_profile(16, b"GRAY"),
    "cmyk-colour-space": _patched_profile(16, b"CMYK"),
    "tag-count-overflow": _patched_profile(128, b"\xff\xff\xff\xff"),
    "lab-profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PROFILES))
def test_a_hostile_profile_is_ignored(name: str) -> None:
    untagged = rendered_pixel(hostile.jpeg_with_icc(b""))

    assert near(rendered_pixel(hostile.jpeg_with_icc(HOSTILE_PROFILES[name])), untagged, 2)


def test_a_profile_over_the_size_cap_is_never_parsed_nor_kept() -> None:
    valid_but_huge = HOSTILE_PROFILES["valid-padded-to-10MB"]
    assert len(valid_but_huge) > colour_module.MAX_ICC_PROFILE_BYTES
    converted_when_small = rgb_icc_profile("Padded")

    huge = rendered_pixel(hostile.jpeg_with_icc(valid_but_huge))
    small = rendered_pixel(hostile.jpeg_with_icc(converted_when_small))
    untagged = rendered_pixel(hostile.jpeg_with_icc(b""))

    assert near(huge, untagged, 2)
    assert not near(small, untagged, 4)  # the same profile, small enough, is applied
    assert all(isinstance(key[0], bytes) and len(key[0]) == 32 for key in colour_module._transforms)


def test_an_rgb_profile_on_a_cmyk_jpeg_is_ignored() -> None:
    data = hostile.jpeg_with_icc(rgb_icc_profile("Wrong space"), mode="CMYK")

    assert rendered_pixel(data) == rendered_pixel(hostile.jpeg_with_icc(b"", mode="CMYK"))


# --- odd pixels ----------------------------------------------------------------------


def test_palette_indices_past_the_palette_render() -> None:
    image = decode(render(hostile.png_palette_bad_index(), [AS_IS]).outputs[0].data)

    assert image.size == (4, 4)
    assert near(image.convert("RGB").getpixel((0, 0)), (255, 0, 0), 0)  # type: ignore[arg-type]


def test_a_palette_png_without_a_palette_is_corrupt() -> None:
    with pytest.raises(CorruptImage):
        render(hostile.png_palette_without_plte(), DEFAULT_PRESETS)


def test_rle_runs_past_the_bitmap_are_clipped() -> None:
    assert render(hostile.bmp_rle_overrun(), [AS_IS]).outputs[0].width == 4


@pytest.mark.parametrize(
    ("mode", "image_format"),
    [
        ("1", "PNG"),
        ("1", "TIFF"),
        ("1", "BMP"),
        ("P", "BMP"),
        ("P", "TIFF"),
        ("LA", "PNG"),
        ("I;16", "PNG"),
        ("I;16", "TIFF"),
        ("I;16B", "TIFF"),
        ("I", "TIFF"),
        ("F", "TIFF"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("LAB", "TIFF"),
        ("YCbCr", "JPEG"),
        ("RGBA", "TIFF"),
        ("RGBA", "BMP"),
    ],
)
def test_odd_modes_render_at_their_size(mode: str, image_format: str) -> None:
    source = _i16b() if mode == "I;16B" else noise((20, 12)).convert(mode)
    data = encode(source, image_format)

    result = render(data, [AS_IS, SMALL])

    assert [(output.width, output.height) for output in result.outputs] == [(20, 12), (12, 12)]


def _i16b() -> Image.Image:
    return Image.frombytes("I;16B", (20, 12), (bytes(range(256)) * 2)[: 20 * 12 * 2])


# --- polyglots -----------------------------------------------------------------------

PAYLOAD_MARKERS = (b"<script", b"<html", b"PK\x03\x04", b"%PDF", b"\xca\xfe\xba\xbe", b"Manifest")


@pytest.mark.parametrize("name", sorted(hostile.polyglots()))
def test_a_polyglot_renders_as_its_image_and_nothing_else_survives(name: str) -> None:
    data = hostile.polyglots()[name]

    result = render(data, DEFAULT_PRESETS)

    for output in result.outputs:
        assert not any(marker in output.data for marker in PAYLOAD_MARKERS)
        assert decode(output.data).format == output.format


@pytest.mark.parametrize("name", sorted(hostile.disguised()))
def test_an_image_inside_another_file_is_unsupported(name: str) -> None:
    with pytest.raises(UnsupportedFormat):
        render(hostile.disguised()[name], DEFAULT_PRESETS)


# --- the time budget ------------------------------------------------------------------------------

SLOW_ENOUGH = encode(noise((1200, 1200)), "PNG", compress_level=1)  # takes well over 1 ms


def test_a_render_over_its_budget_times_out_with_its_own_code() -> None:
    with pytest.raises(ProcessingTimeout) as caught:
        render(SLOW_ENOUGH, DEFAULT_PRESETS, time_budget=0.001)

    assert caught.value.code == "processing_timeout"
    assert isinstance(caught.value, SourceError)


def test_a_render_within_its_budget_is_unaffected() -> None:
    assert len(render(SLOW_ENOUGH, DEFAULT_PRESETS, time_budget=600).outputs) == 3
    assert probe(SLOW_ENOUGH, max_pixels=10**7, time_budget=600).width == 1200
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_the_alarm_interrupts_python_code_inside_the_budget() -> None:
    def spin() -> None:
        with deadline(0.05):
            for _ in range(10**10):  # minutes of work, unless interrupted
                pass

    with pytest.raises(ProcessingTimeout):
        spin()


def test_the_alarm_handler_and_timer_are_restored() -> None:
    def previous(signum: int, frame: object) -> None:
        raise AssertionError("the previous handler must not run")

    limit_before = Image.MAX_IMAGE_PIXELS
    original = signal.signal(signal.SIGALRM, previous)
    try:
        with pytest.raises(ProcessingTimeout):
            render(SLOW_ENOUGH, DEFAULT_PRESETS, time_budget=0.001)
        render(encode(noise((8, 8)), "PNG"), DEFAULT_PRESETS, time_budget=600)

        assert signal.getsignal(signal.SIGALRM) is previous
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert limit_before == Image.MAX_IMAGE_PIXELS  # decoding() restored it on the way out
    finally:
        signal.signal(signal.SIGALRM, original)


def test_a_timer_armed_by_someone_else_is_left_alone() -> None:
    fired: list[int] = []
    original = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 300)
    try:
        with pytest.raises(ProcessingTimeout):  # checked between stages instead
            render(SLOW_ENOUGH, DEFAULT_PRESETS, time_budget=0.001)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 300
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, original)


def test_off_the_main_thread_the_budget_is_checked_between_stages() -> None:
    outcome: list[BaseException | int] = []

    def run() -> None:
        try:
            outcome.append(len(render(SLOW_ENOUGH, DEFAULT_PRESETS, time_budget=0.001).outputs))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()

    assert len(outcome) == 1
    assert isinstance(outcome[0], ProcessingTimeout)


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"), deadline(0):
        pass
