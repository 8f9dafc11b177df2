"""read_micrograph on every format and dtype: expected values are worked out by hand from the stored ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from microcnn.io.images import GRAY_RULE_EQUAL, GRAY_RULE_LUMINANCE, read_micrograph
from microcnn.io.micrograph import Micrograph

from .fixtures import encode_pil, encode_tiff, png16_rgb

U16 = np.array([[0, 255], [256, 65535]], np.uint16)


def test_png_8bit_gray_scales_by_255():
    m = read_micrograph(encode_pil(np.array([[0, 128, 255]], np.uint8), "PNG"))
    assert isinstance(m, Micrograph)
    assert m.pixels.dtype == np.float32 and m.pixels.shape == (1, 3)
    np.testing.assert_allclose(m.pixels, [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    assert (m.source_dtype, m.bit_depth, m.meta["format"]) == ("uint8", 8, "png")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_keeps_its_range(fmt):
    data = encode_pil(U16, "PNG") if fmt == "PNG" else encode_tiff(U16)
    m = read_micrograph(data)
    np.testing.assert_allclose(m.pixels, U16 / 65535.0, rtol=1e-6)
    assert m.pixels[1, 1] == 1.0
    assert m.pixels[0, 1] != m.pixels[1, 0]  # 255 and 256 stay distinct
    assert (m.source_dtype, m.bit_depth) == ("uint16", 16)


def test_16bit_rgb_png_is_not_reduced_to_8_bits():
    rgb = np.array([[[256, 256, 256], [1000, 1000, 1000]]], np.uint16)
    m = read_micrograph(png16_rgb(rgb))
    np.testing.assert_allclose(m.pixels, [[256 / 65535, 1000 / 65535]], rtol=1e-6)
    assert m.bit_depth == 16 and m.meta["gray_rule"] == GRAY_RULE_EQUAL


def test_palette_png_gives_intensities_not_indices():
    indices = np.array([[0, 1, 2]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    gray_levels = [200, 100, 30]  # palette entry i has gray level gray_levels[i]
    image.putpalette([v for g in gray_levels for v in (g, g, g)])
    m = read_micrograph(encode_pil(image, "PNG"))
    np.testing.assert_allclose(m.pixels, [[200 / 255, 100 / 255, 30 / 255]], rtol=1e-6)
    assert m.meta["palette_applied"] is True and m.shape == (1, 3)


def _colormap(entries: list[tuple[int, int, int]], *, scale: int = 257) -> np.ndarray:
    """A TIFF colormap (3, 256): entry i = entries[i] in 8-bit terms, stored as 16-bit (x 257) by default."""
    cmap = np.zeros((3, 256), np.uint16)
    for i, rgb in enumerate(entries):
        cmap[:, i] = np.array(rgb) * scale
    return cmap


@pytest.mark.parametrize("scale", [257, 1], ids=["16-bit-entries", "8-bit-entries"])
def test_palette_tiff_gives_intensities_not_indices(scale):
    # TIFF 6.0 colormaps hold 16-bit entries: gray 200 of 255 is stored as 200 * 257 = 51400 of 65535.
    # Some writers store 8-bit entries (all <= 255); both must give the same intensities.
    cmap = _colormap([(200, 200, 200), (100, 100, 100), (30, 30, 30)], scale=scale)
    data = encode_tiff(np.array([[0, 1, 2]], np.uint8), photometric="palette", colormap=cmap)
    m = read_micrograph(data)
    np.testing.assert_allclose(m.pixels, [[200 / 255, 100 / 255, 30 / 255]], rtol=1e-6)
    assert m.shape == (1, 3) and m.meta["palette_applied"] is True
    assert m.meta["gray_rule"] == GRAY_RULE_EQUAL  # gray palette: R = G = B, one channel kept


def test_colour_palette_tiff_follows_the_colour_rule():
    cmap = _colormap([(255, 0, 0), (0, 0, 255)])
    data = encode_tiff(np.array([[0, 1]], np.uint8), photometric="palette", colormap=cmap)
    np.testing.assert_allclose(read_micrograph(data).pixels, [[[1, 0, 0], [0, 0, 1]]], atol=1e-7)
    gray = read_micrograph(data, as_gray=True)
    np.testing.assert_allclose(gray.pixels, [[0.2125, 0.0721]], rtol=1e-4)  # BT.709 weights of R and B
    assert gray.meta["gray_rule"] == GRAY_RULE_LUMINANCE


def test_equal_rgba_channels_become_gray_and_alpha_is_dropped():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = np.array([[10, 20], [30, 40]], np.uint8)[..., None]
    rgba[..., 3] = 77
    m = read_micrograph(encode_pil(rgba, "PNG"))
    np.testing.assert_allclose(m.pixels, [[10 / 255, 20 / 255], [30 / 255, 40 / 255]], rtol=1e-6)
    assert m.meta["alpha_dropped"] is True and m.meta["shape_original"] == [2, 2, 4]


TRUE_COLOUR = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], np.uint8)


def test_true_colour_stays_rgb_by_default():
    m = read_micrograph(encode_pil(TRUE_COLOUR, "PNG"))
    assert m.shape == (1, 4, 3) and "gray_rule" not in m.meta
    np.testing.assert_allclose(m.pixels, TRUE_COLOUR / 255.0, rtol=1e-6)


def test_as_gray_uses_bt709_luminance():
    m = read_micrograph(encode_pil(TRUE_COLOUR, "PNG"), as_gray=True)
    r, g, b = 0.2125, 0.7154, 0.0721  # ITU-R BT.709 luma weights
    expected = [r, g, b, (r * 100 + g * 150 + b * 200) / 255]
    np.testing.assert_allclose(m.pixels[0], expected, rtol=1e-4)
    assert m.meta["gray_rule"] == GRAY_RULE_LUMINANCE


def test_as_gray_false_keeps_equal_channels():
    rgb = np.repeat(np.array([[5, 6]], np.uint8)[..., None], 3, axis=2)
    assert read_micrograph(encode_pil(rgb, "PNG"), as_gray=False).shape == (1, 2, 3)


def test_exif_orientation_is_applied():
    stored = np.zeros((2, 3), np.uint8)
    stored[0, 0] = 255  # top-left of the stored raster
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF 6: display = stored rotated 90° clockwise
    m = read_micrograph(encode_pil(Image.fromarray(stored), "PNG", exif=exif))
    np.testing.assert_array_equal(m.pixels, np.rot90(stored, k=-1) / 255.0)
    assert m.meta["exif_orientation_applied"] == 6


STORED = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)  # 2 rows x 3 cols, every pixel distinct


def test_tiff_orientation_6_is_rotated_90_clockwise():
    # Orientation 6: the stored row 0 is the display's right column, stored column 0 the top row. Rotating
    # [[0 1 2] / [3 4 5]] 90° clockwise by hand: the left column read upwards (3, 0) becomes the top row.
    m = read_micrograph(encode_tiff(STORED * 50, extratags=[(274, "H", 1, 6, True)]))
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m.pixels, np.array([[3, 0], [4, 1], [5, 2]]) * 50 / 255.0, rtol=1e-6)
    assert m.meta["exif_orientation_applied"] == 6


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_matches_pillows_exif_transpose(orientation):
    # Pillow's ImageOps.exif_transpose is an independent implementation of the same tag (EXIF 0x0112 is
    # TIFF tag 274): both must give the same display raster for all eight values.
    im = Image.fromarray(STORED)
    im.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(im))
    m = read_micrograph(encode_tiff(STORED, extratags=[(274, "H", 1, orientation, True)]))
    np.testing.assert_array_equal(np.rint(m.pixels * 255), expected)
    assert m.meta.get("exif_orientation_applied", 1) == orientation


def test_jpeg_exif_orientation_is_applied():
    # Stored 16 x 32: a dark left half (40) and a bright right half (200). EXIF 6 (rotate 90° clockwise):
    # display is 32 x 16 with the stored left half at the top and the right half at the bottom.
    stored = np.kron(np.array([[40, 200]], np.uint8), np.ones((16, 16), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    m = read_micrograph(encode_pil(Image.fromarray(stored), "JPEG", quality=95, exif=exif))
    assert m.shape == (32, 16) and m.meta["exif_orientation_applied"] == 6
    expected = np.vstack([np.full((16, 16), 40), np.full((16, 16), 200)]) / 255.0
    np.testing.assert_allclose(m.pixels, expected, atol=4 / 255)  # lossy codec: a few grey levels


def test_jpeg_reads_close_to_stored_values():
    blocks = np.kron(np.array([[40, 200], [120, 80]], np.uint8), np.ones((16, 16), np.uint8))
    m = read_micrograph(encode_pil(blocks, "JPEG", quality=95))
    assert m.meta["format"] == "jpeg" and m.shape == (32, 32)
    np.testing.assert_allclose(m.pixels, blocks / 255.0, atol=3 / 255)  # lossy codec: a few grey levels


@pytest.mark.parametrize("mode", ["L", "1"])
def test_bmp(mode):
    values = np.array([[0, 255, 0], [255, 0, 255]], np.uint8)
    m = read_micrograph(encode_pil(Image.fromarray(values).convert(mode), "BMP"))
    np.testing.assert_array_equal(m.pixels, values / 255.0)
    assert m.meta["format"] == "bmp"


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 51, 255]], np.uint8), [[0.0, 0.2, 1.0]]),
        (np.array([[0, 13107, 65535]], np.uint16), [[0.0, 0.2, 1.0]]),
        # int32 maps its dtype range [-2**31, 2**31 - 1] onto [0, 1]
        (np.array([[-(2**31), 0, 2**31 - 1]], np.int32), [[0.0, 2**31 / (2**32 - 1), 1.0]]),
        (np.array([[0.0, 0.25, 1.0]], np.float32), [[0.0, 0.25, 1.0]]),
    ],
    ids=["uint8", "uint16", "int32", "float32"],
)
def test_tiff_dtypes(array, expected):
    m = read_micrograph(encode_tiff(array))
    np.testing.assert_allclose(m.pixels, expected, rtol=1e-6, atol=1e-7)
    assert m.source_dtype == str(array.dtype) and m.meta["format"] == "tiff"


def test_float_tiff_outside_unit_range_is_min_max_scaled_and_range_recorded():
    m = read_micrograph(encode_tiff(np.array([[-2.0, 0.0, 6.0]], np.float32)))
    np.testing.assert_allclose(m.pixels, [[0.0, 0.25, 1.0]], rtol=1e-6)
    assert m.meta["value_range"] == [-2.0, 6.0]


def test_multipage_tiff_reads_the_chosen_page():
    pages = np.stack([np.full((2, 2), 10 * i, np.uint8) for i in range(3)])
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for page in pages:
            writer.write(page, contiguous=False)
    m = read_micrograph(buffer.getvalue(), page=2)
    np.testing.assert_allclose(m.pixels, np.full((2, 2), 20 / 255), rtol=1e-6)
    assert (m.meta["page"], m.meta["n_pages"]) == (2, 3)


def test_planar_rgb_tiff_is_read_as_rows_columns_channels():
    rgb = TRUE_COLOUR.reshape(1, 4, 3)
    m = read_micrograph(encode_tiff(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"))
    np.testing.assert_allclose(m.pixels, rgb / 255.0, rtol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (1, 100_000)])
def test_degenerate_but_valid_sizes_are_read(shape):
    m = read_micrograph(encode_pil(np.full(shape, 255, np.uint8), "PNG"))
    assert m.shape == shape and float(m.pixels.max()) == 1.0


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_sources_path_bytes_and_file_object(kind, write):
    data = encode_pil(np.array([[7]], np.uint8), "PNG")
    path = write("name.png", data)
    source = {"path": path, "bytes": data, "file": io.BytesIO(data)}[kind]
    m = read_micrograph(source)
    assert m.pixels[0, 0] == pytest.approx(7 / 255)
    assert m.meta["source_name"] == ("name.png" if kind == "path" else None)


def test_decoder_is_chosen_by_content_not_extension(write):
    path = write("really_a_jpeg.png", encode_pil(np.full((8, 8), 90, np.uint8), "JPEG"))
    assert read_micrograph(path).meta["format"] == "jpeg"


def test_dm4_through_rosettasciio_reader(monkeypatch):
    # RosettaSciIO reads DM3/DM4 but cannot write them (rsciio/digitalmicrograph/specifications.yaml:
    # "writes: False"), and no other library writes DM files, so no real DM file can be made here.
    # Instead the rsciio reader that microcnn/io/dm.py calls is replaced by one returning what rsciio
    # returns for a calibrated 1 x 2 uint16 image: a list of signal dicts with a lazy (dask) array and
    # the DM calibration as axis dicts (here 2 nm per pixel).
    rsciio_dm = pytest.importorskip("rsciio.digitalmicrograph")
    dask_array = pytest.importorskip("dask.array")
    calls = []

    def file_reader(filename, lazy=False, **kwargs):
        calls.append({"filename": filename, "lazy": lazy})
        axis = {"offset": 0.0, "scale": 2.0, "units": "nm", "navigate": False}
        return [
            {
                "data": dask_array.from_array(np.array([[0, 65535]], np.uint16)),
                "axes": [
                    {"name": "y", "size": 1, "index_in_array": 0, **axis},
                    {"name": "x", "size": 2, "index_in_array": 1, **axis},
                ],
                "metadata": {"General": {"title": "spot1"}, "Signal": {"signal_type": ""}},
                "original_metadata": {},
            }
        ]

    monkeypatch.setattr(rsciio_dm, "file_reader", file_reader)
    m = read_micrograph(b"\x00\x00\x00\x04" + bytes(60))  # DM4 magic: version 4 as big-endian int32
    np.testing.assert_array_equal(m.pixels, [[0.0, 1.0]])
    assert m.pixel_size_um == pytest.approx(0.002)  # 2 nm = 0.002 µm
    assert (m.meta["format"], m.meta["pixel_size_source"]) == ("dm", "dm")
    assert (m.source_dtype, m.bit_depth) == ("uint16", 16)
    assert calls and calls[0]["lazy"] is True  # lazy: the budget is checked before the data is read


def test_float32_extremes_are_scaled_without_overflow():
    # min-max scaling of [-3.4e38, 0, 3.4e38]: the span (6.8e38) exceeds float32, so by hand 0 -> 0.5
    top = float(np.finfo(np.float32).max)
    m = read_micrograph(encode_tiff(np.array([[-top, 0.0, top]], np.float32)))
    np.testing.assert_allclose(m.pixels, [[0.0, 0.5, 1.0]], atol=1e-7)
    assert m.meta["value_range"] == [-top, top]
