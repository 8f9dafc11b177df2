"""Classical baselines: known fractions on synthetic images, pixel size kept, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from microcnn.analysis.classical import (
    CLASSICAL,
    adaptive_threshold,
    multi_otsu,
    otsu,
    watershed_particles,
)
from microcnn.analysis.results import SegmentationResult
from microcnn.errors import DegenerateImageError
from microcnn.io.micrograph import Micrograph


def bimodal(rng: np.random.Generator, shape=(64, 80), bright_cols=56, noise=0.03) -> np.ndarray:
    """Dark (0.25) on the left, bright (0.75) on the right: bright fraction = bright_cols / width."""
    img = np.full(shape, 0.25)
    img[:, shape[1] - bright_cols :] = 0.75
    return np.clip(img + noise * rng.standard_normal(shape), 0, 1).astype(np.float32)


def test_otsu_recovers_known_fraction(rng):
    r = otsu(bimodal(rng), pixel_size_um=0.1)
    assert r.mask[:, 24:].all() and not r.mask[:, :24].any()  # modes ~17 sigma apart: none misassigned
    assert r.mask.mean() == pytest.approx(56 / 80)
    assert 0.25 + 0.1 < r.meta["threshold"] < 0.75 - 0.1  # between the modes
    assert otsu(bimodal(rng), invert=True).mask.mean() == pytest.approx(24 / 80)


def test_micrograph_pixel_size_is_kept_and_can_be_overridden(rng):
    m = Micrograph(pixels=bimodal(rng), pixel_size_um=0.37)
    assert otsu(m).pixel_size_um == 0.37 and otsu(m).unit == "µm"
    assert otsu(m, pixel_size_um=0.5).pixel_size_um == 0.5
    assert otsu(m.pixels).unit == "px"


def test_rgb_is_converted_and_said_so(rng):
    gray = bimodal(rng)
    r = otsu(np.repeat(gray[..., None], 3, axis=2))
    assert "RGB" in r.meta["converted"]
    np.testing.assert_array_equal(r.mask, otsu(gray).mask)


def test_multi_otsu_three_levels():
    img = np.zeros((50, 40), np.float32)
    img[:, 8:28] = 0.5  # 20 of 40 columns
    img[:, 28:] = 1.0  # 12 of 40 columns
    r = multi_otsu(img, classes=3, class_names=["ferrite", "pearlite", "carbide"])
    expected = np.zeros(img.shape, np.uint8)
    expected[:, 8:28], expected[:, 28:] = 1, 2
    np.testing.assert_array_equal(r.mask, expected)
    assert len(r.meta["thresholds"]) == 2 and r.class_names[2] == "carbide"


def test_adaptive_threshold_handles_uneven_illumination():
    cols = np.mgrid[0:96, 0:96][1]
    spots = np.zeros((96, 96), bool)
    for centre in [(20, 20), (20, 75), (50, 48), (78, 20), (78, 75)]:
        spots[disk(centre, 5)] = True
    img = (0.6 * cols / 95 + 0.3 * spots).astype(np.float32)  # shading ramp across the field
    local = adaptive_threshold(img, block_size_px=31, offset=-0.05)
    assert np.mean(local.mask.astype(bool) == spots) > 0.99
    assert np.mean(otsu(img).mask.astype(bool) == spots) < 0.9  # one global threshold fails here
    with pytest.raises(ValueError, match="Use 31"):
        adaptive_threshold(img, block_size_px=30)


def two_touching_discs() -> np.ndarray:
    binary = np.zeros((60, 80), bool)
    binary[disk((30, 28), 13)] = True
    binary[disk((30, 50), 13)] = True  # centres 22 px apart, radii 13: they overlap
    return binary


def test_watershed_separates_touching_discs():
    binary = two_touching_discs()
    from skimage.measure import label

    assert label(binary).max() == 1  # one blob before the watershed
    r = watershed_particles(binary, min_distance_px=8, pixel_size_um=0.5)
    labels = r.meta["labels"]
    assert r.meta["n_particles"] == 2 and labels.max() == 2
    np.testing.assert_array_equal(r.mask.astype(bool), binary)
    left, right = np.count_nonzero(labels == labels[30, 20]), np.count_nonzero(labels == labels[30, 58])
    assert left == pytest.approx(binary.sum() / 2, rel=0.05) and left + right == binary.sum()


def test_watershed_from_gray_image(rng):
    img = 0.2 + 0.6 * two_touching_discs() + 0.03 * rng.standard_normal((60, 80))
    img[5, 5] = 0.9  # a one-pixel speck of noise is not a particle
    r = watershed_particles(img.astype(np.float32), min_distance_px=8)
    assert r.meta["n_particles"] == 2 and r.meta["threshold"] is not None
    assert r.meta["labels"][5, 5] == 0
    kept = watershed_particles(img.astype(np.float32), min_distance_px=8, min_area_px=1)
    assert kept.meta["labels"][5, 5] > 0


@pytest.mark.parametrize("name", CLASSICAL.names())
def test_every_registered_method_returns_a_result(name, rng):
    m = Micrograph(pixels=bimodal(rng, shape=(64, 64), bright_cols=32), pixel_size_um=0.2)
    r = CLASSICAL.build(name, image=m)
    assert isinstance(r, SegmentationResult)
    assert r.mask.shape == (64, 64) and r.pixel_size_um == 0.2 and r.probabilities is None
    assert r.mask.max() < len(r.class_names)
    assert r.method.startswith(name)


def test_registry_and_bad_images():
    with pytest.raises(ValueError, match="Did you mean 'otsu'"):
        CLASSICAL.get("otsuu")
    with pytest.raises(DegenerateImageError, match="constant"):
        otsu(np.full((8, 8), 0.5))
    with pytest.raises(DegenerateImageError, match="NaN"):
        otsu(np.array([[0.0, np.nan], [1.0, 0.5]]))
    with pytest.raises(DegenerateImageError, match="2x2"):
        otsu(np.zeros((1, 100)))
    with pytest.raises(DegenerateImageError, match="fewer classes"):
        multi_otsu(np.array([[0.0, 1.0], [0.0, 1.0]]), classes=3)
