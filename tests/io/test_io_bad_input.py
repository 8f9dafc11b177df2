"""Bad input never crashes or hangs: one test per case of RELIABILITY.md "Images", type and message."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from microcnn.errors import (
    CorruptFileError,
    DegenerateImageError,
    ImageTooLargeError,
    MicrographError,
    MissingExtraError,
    UnsupportedFormatError,
)
from microcnn.io.images import (
    MicrographNotFoundError,
    PageOutOfRangeError,
    check_pixel_budget,
    read_micrograph,
)
from microcnn.io.metadata import PixelSizeError

from .fixtures import encode_pil, encode_tiff, raw_png, tiff_claiming


def test_68_byte_png_claiming_20000_squared_is_refused_quickly():
    bomb = raw_png(20_000, 20_000, bit_depth=8, colour_type=0, rows=None)
    assert len(bomb) < 100  # the header alone (IHDR + IEND)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"= 400,000,000 px, over the budget of 100,000,000 px"):
        read_micrograph(bomb)
    assert time.perf_counter() - start < 5  # generous bound; the < 100 ms figure is in benchmarks/bench_io


# 15000 x 14000 = 210 Mpx: over Pillow's DecompressionBombError threshold (2 x 89,478,485 = 178,956,970 px)
HEADER_210_MPX = raw_png(15_000, 14_000, bit_depth=8, colour_type=0, rows=None)


def test_raised_budget_overrules_pillows_bomb_limit():
    # With a budget of 500 Mpx the header passes our check, so what stops this file must be that its data
    # is missing (the truncation check), not a size limit Pillow applies on its own.
    assert 14_000 * 15_000 > 2 * 89_478_485
    with pytest.raises(CorruptFileError, match=r"claims 14000 x 15000 pixels but holds only \d+ bytes"):
        read_micrograph(HEADER_210_MPX, max_pixels=500_000_000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default, not changed by reading


def test_default_budget_refuses_the_210_mpx_header():
    with pytest.raises(ImageTooLargeError, match=r"14000 x 15000 pixels .* = 210,000,000 px, over the bud"):
        read_micrograph(HEADER_210_MPX)


def test_png_over_our_budget_but_under_pillows_limit_is_refused_from_the_header():
    header_only = raw_png(12_000, 10_000, bit_depth=8, colour_type=0, rows=None)  # 120 Mpx
    with pytest.raises(ImageTooLargeError, match=r"10000 x 12000 pixels .* = 120,000,000 px"):
        read_micrograph(header_only)


def test_pixel_budget_is_configurable():
    data = encode_pil(np.zeros((100, 100), np.uint8), "PNG")
    assert read_micrograph(data, max_pixels=10_000).shape == (100, 100)  # exactly at the budget
    with pytest.raises(ImageTooLargeError, match="over the budget of 9,999 px"):
        read_micrograph(data, max_pixels=9_999)


def test_tiff_budget_is_checked_from_the_header(tmp_path):
    path = tiff_claiming(tmp_path, rows=50_000, cols=50_000)  # 2,500 Mpx claimed by a ~200-byte file
    with pytest.raises(ImageTooLargeError, match="50000 x 50000 pixels"):
        read_micrograph(path)


def test_tiff_with_20000_pages_is_refused_without_walking_the_pages(tiff_20000_pages):
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="20000 pages, over the limit of 10000"):
        read_micrograph(tiff_20000_pages)
    # a hang guard only (robust on a loaded CI machine); the speed figure (~20 ms) is in benchmarks/bench_io
    assert time.perf_counter() - start < 10.0


def test_page_cap_is_configurable_and_page_range_checked():
    from .fixtures import many_page_tiff

    data = many_page_tiff(3)
    with pytest.raises(ImageTooLargeError, match="3 pages"):
        read_micrograph(data, max_pages=2)
    with pytest.raises(PageOutOfRangeError, match="Page 3 was asked for; this TIFF has 3 pages"):
        read_micrograph(data, page=3)
    with pytest.raises(PageOutOfRangeError, match="only page 0"):
        read_micrograph(encode_pil(np.zeros((2, 2), np.uint8), "PNG"), page=1)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_files_are_corrupt(fmt, rng):
    noise = rng.integers(0, 256, (64, 64), dtype=np.uint8)  # noise does not compress: data is long
    data = encode_tiff(noise) if fmt == "TIFF" else encode_pil(noise, fmt)
    with pytest.raises(CorruptFileError, match="damaged or truncated"):
        read_micrograph(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_empty_file(write):
    with pytest.raises(CorruptFileError, match=r"empty \(0 bytes\)"):
        read_micrograph(write("empty.tif", b""))


def test_random_bytes(rng):
    junk = bytes(rng.integers(0, 256, 4096, dtype=np.uint8)).replace(b"BM", b"xx")
    with pytest.raises(UnsupportedFormatError, match="not a recognised image format"):
        read_micrograph(b"\x01\x02" + junk)


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"SIMPLE  =                    T / conforms to FITS".ljust(2880), "FITS"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript/EPS"),
        (b"8BPS\x00\x01" + bytes(20), "Photoshop"),
        (None, "ICO"),
    ],
    ids=["fits", "eps", "psd", "ico"],
)
def test_unsupported_formats_are_named(head, named):
    data = head if head is not None else encode_pil(Image.new("RGB", (16, 16)), "ICO")
    with pytest.raises(UnsupportedFormatError, match=named) as info:
        read_micrograph(data)
    assert "Supported: PNG, JPEG, BMP, TIFF" in str(info.value)


def _gif() -> bytes:
    return encode_pil(Image.new("L", (4, 4), 9), "GIF")


def _webp() -> bytes:
    return encode_pil(Image.new("RGB", (4, 4)), "WEBP", lossless=True)


def _tga() -> bytes:
    return encode_pil(Image.new("L", (4, 4), 9), "TGA")


@pytest.mark.parametrize(
    ("make", "pillow_format", "error", "message"),
    [
        (_gif, "GIF", UnsupportedFormatError, "This file is GIF, which microcnn does not read"),
        (_webp, "WEBP", UnsupportedFormatError, r"This file is RIFF \(WebP/AVI\)"),
        # TGA has no magic bytes: not recognised, although Pillow would decode it
        (_tga, "TGA", UnsupportedFormatError, "not a recognised image format"),
    ],
    ids=["gif", "webp", "tga"],
)
def test_formats_pillow_decodes_but_we_do_not_allow_are_refused(make, pillow_format, error, message):
    data = make()
    with Image.open(io.BytesIO(data)) as im:  # the premise: Pillow itself would open this file
        assert im.format == pillow_format
    with pytest.raises(error, match=message) as info:
        read_micrograph(data)
    assert "Supported: PNG, JPEG, BMP, TIFF" in str(info.value)


def test_zero_size_is_refused():
    with pytest.raises(DegenerateImageError, match="0 x 5 pixels"):
        check_pixel_budget(0, 5, max_pixels=100)


def test_zero_width_tiff_header_is_refused(tmp_path):
    with pytest.raises(DegenerateImageError, match="10 x 0 pixels"):
        read_micrograph(tiff_claiming(tmp_path, rows=10, cols=0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(bad):
    array = np.zeros((3, 4), np.float32)
    array[1, 2] = bad
    array[2, 3] = bad
    with pytest.raises(DegenerateImageError, match=r"2 non-finite values .* \(row, column\) \(1, 2\)"):
        read_micrograph(encode_tiff(array))


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(MicrographNotFoundError, match="does not exist"):
        read_micrograph(tmp_path / "nope.tif")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        read_micrograph(tmp_path)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "abc"])
def test_invalid_user_pixel_size(value):
    with pytest.raises(PixelSizeError, match="positive number of micrometres"):
        read_micrograph(encode_pil(np.zeros((2, 2), np.uint8), "PNG"), pixel_size_um=value)


def test_dm_without_rosettasciio_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rsciio.digitalmicrograph", None)  # import now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'microcnn\[dm\]'"):
        read_micrograph(b"\x00\x00\x00\x04" + bytes(60))


def test_damaged_dm_file_is_corrupt():
    pytest.importorskip("rsciio")
    with pytest.raises(CorruptFileError, match="DM3/DM4"):
        read_micrograph(b"\x00\x00\x00\x04" + bytes(60))


def test_png_too_small_for_its_claimed_size_is_corrupt_not_decoded():
    stub = raw_png(5_000, 5_000, bit_depth=8, colour_type=0, rows=b"\x00")  # 25 Mpx: within budget
    with pytest.raises(CorruptFileError, match=r"claims 5000 x 5000 pixels but holds only \d+ bytes"):
        read_micrograph(stub)


def test_maximally_compressible_pngs_are_still_read():
    blank = encode_pil(Image.new("1", (4000, 4000), 0), "PNG")  # 1 bit per pixel, all zero
    assert read_micrograph(blank).shape == (4000, 4000)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "TIFF-zlib-16"])
def test_mutated_files_raise_only_micrograph_errors(fmt, rng):
    """Seeded fuzzing: flipped bytes and cuts give a Micrograph or a MicrographError, nothing else."""
    image = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    if fmt == "TIFF-zlib-16":
        data = encode_tiff(image.astype(np.uint16) * 257, compression="zlib")
    else:
        data = encode_tiff(image) if fmt == "TIFF" else encode_pil(image, fmt)
    for _ in range(60):
        mutated = bytearray(data)
        for position in rng.integers(0, len(data), size=rng.integers(1, 6)):
            mutated[position] = rng.integers(0, 256)
        if rng.random() < 0.2:
            mutated = mutated[: rng.integers(1, len(mutated))]
        try:
            result = read_micrograph(bytes(mutated))
        except MicrographError:
            continue
        assert result.pixels.dtype == np.float32
        assert np.isfinite(result.pixels).all()
        assert result.pixels.min() >= 0.0 and result.pixels.max() <= 1.0
