"""SEM data-bar detection: no false positives on the real images; a realistic synthetic bar is found."""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.io.images import read_micrograph
from microcnn.io.infobar import InfoBar, crop_info_bar, detect_info_bar, find_scale_bar
from microcnn.io.micrograph import Micrograph

from .fixtures import append_info_bar


def _images(folder, pattern):
    paths = sorted(folder.glob(pattern))
    assert paths, f"no images matching {pattern} in {folder}"
    return [read_micrograph(p).pixels for p in paths]


@pytest.mark.shared_data
def test_no_false_positive_on_real_images(uhcs_dir, nasa_dir):
    # UHCS frames have their bar already cropped (SOURCE.md); the NASA images never had one.
    for pixels in _images(uhcs_dir / "images", "*.tif") + _images(nasa_dir / "images", "*.png"):
        assert detect_info_bar(pixels) is None


@pytest.mark.shared_data
@pytest.mark.parametrize("bright", [False, True], ids=["black_bar", "white_bar"])
def test_synthetic_bar_is_found_on_real_images(uhcs_dir, nasa_dir, bright):
    images = _images(uhcs_dir / "images", "uhcs00*.tif")[:3] + _images(nasa_dir / "images", "spot1*.png")
    for pixels in images:
        framed = append_info_bar(pixels, bright=bright, scale_bar_px=100)
        bar = detect_info_bar(framed)
        assert bar is not None
        assert abs(bar.row - pixels.shape[0]) <= 1
        assert bar.height == framed.shape[0] - bar.row
        assert bar.background == ("bright" if bright else "dark")
        assert find_scale_bar(framed[bar.row :]) == 100


def test_bar_on_a_synthetic_image(rng):
    pixels = rng.uniform(0.2, 0.8, (200, 300)).astype(np.float32)
    framed = append_info_bar(pixels, fraction=0.1)
    assert detect_info_bar(framed).row == 200
    assert detect_info_bar(pixels) is None


def test_dark_region_of_the_image_itself_is_not_a_bar(rng):
    pixels = rng.uniform(0.2, 0.8, (200, 300)).astype(np.float32)
    pixels[-30:] *= np.linspace(1.0, 0.0, 30, dtype=np.float32)[:, None]  # fades to black: no sharp change
    assert detect_info_bar(pixels) is None


def test_crop_keeps_type_and_pixel_size(rng):
    image = rng.uniform(0.2, 0.8, (100, 400)).astype(np.float32)
    pixels = append_info_bar(image, fraction=0.12, scale_bar_px=60)
    m = Micrograph(pixels=pixels, pixel_size_um=0.5)
    cropped = crop_info_bar(m)
    assert cropped.shape == (100, 400) and cropped.pixel_size_um == 0.5
    assert cropped.meta["info_bar"] == {"row": 100, "height": 12}
    np.testing.assert_array_equal(crop_info_bar(pixels), pixels[:100])
    plain = pixels[:100]
    assert crop_info_bar(plain) is plain  # no bar: unchanged


@pytest.mark.parametrize("length", [12, 57, 200])
def test_find_scale_bar_measures_the_longest_solid_segment(length):
    bar = np.zeros((12, 300), np.float32)
    bar[2, 5:15] = 1.0  # a text-like stroke, 10 px
    bar[8:10, 40 : 40 + length] = 1.0
    assert find_scale_bar(bar) == length
    assert find_scale_bar(1.0 - bar) == length  # dark bar on a white band


def test_no_scale_bar():
    assert find_scale_bar(np.zeros((10, 50), np.float32)) is None


def test_info_bar_fields():
    bar = InfoBar(row=5, height=3, background="dark", confidence=0.9, reason="x")
    assert (bar.row, bar.height) == (5, 3)
