"""ASTM E112, porosity, L_A and S2 against the standard's table, geometry and stereological laws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.draw import disk

from microcnn.analysis.results import AnalysisError
from microcnn.analysis.stereology import (
    astm_g_from_intercept,
    astm_grain_size,
    boundary_length_per_area,
    porosity,
    two_point_correlation,
)


def astm_formula(mean_intercept_um: float) -> float:
    """ASTM E112-13: G = -6.643856 log10(l in mm) - 3.288, written out here, independent of the code."""
    return -6.643856 * np.log10(mean_intercept_um / 1000) - 3.288


def square_grains(side_px: int, size: int = 400, offset: int = 7) -> np.ndarray:
    """Label image of square grains ``side_px`` wide; the grid is shifted so the image starts mid-grain."""
    rows, cols = np.mgrid[0:size, 0:size]
    return (rows + offset) // side_px * 1000 + (cols + offset) // side_px + 1


def grid_boundaries(side_px: int, size: int = 400, offset: int = 7) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return ((rows + offset) % side_px == 0) | ((cols + offset) % side_px == 0)


@pytest.mark.parametrize(("g", "intercept_mm"), [(0, 0.320), (5, 0.0566), (8, 0.0200), (10, 0.0100)])
def test_g_matches_astm_e112_table(g, intercept_mm):
    assert astm_g_from_intercept(intercept_mm * 1000) == pytest.approx(g, abs=0.01)


@pytest.mark.parametrize(("side_px", "pixel_size_um"), [(20, 1.0), (16, 0.5), (25, 2.0)])
def test_axis_parallel_lines_on_square_grid(side_px, pixel_size_um):
    # lines parallel to the grid cross a boundary every a px: mean intercept = a exactly
    g = astm_grain_size(square_grains(side_px), pixel_size_um=pixel_size_um, angles_deg=(0, 90))
    assert g["mean_intercept_um"] == pytest.approx(side_px * pixel_size_um)
    assert g["G"] == pytest.approx(astm_formula(side_px * pixel_size_um))


def test_g8_at_20_um():
    g = astm_grain_size(square_grains(20), pixel_size_um=1.0, angles_deg=(0, 90))
    assert g["mean_intercept_um"] == pytest.approx(20.0)
    assert g["G"] == pytest.approx(8.0, abs=0.001)


@pytest.mark.parametrize("as_boundaries", [False, True])
def test_four_orientations_and_circles_on_square_grid(as_boundaries):
    a = 20
    grains = grid_boundaries(a) if as_boundaries else square_grains(a)
    # a line at angle t crosses (|cos t| + |sin t|) / a boundaries per px; mean over 0/45/90/135 degrees
    lines = astm_grain_size(grains, pixel_size_um=1.0)
    assert lines["mean_intercept_px"] == pytest.approx(2 * a / (1 + np.sqrt(2)), rel=0.02)
    # circles average over all angles: 1 / <|cos t| + |sin t|> * a = pi a / 4
    circles = astm_grain_size(grains, pixel_size_um=1.0, method="circles")
    assert circles["mean_intercept_px"] == pytest.approx(np.pi * a / 4, rel=0.02)


def voronoi_grains(lam: float, size: int, seed: int) -> np.ndarray:
    """Poisson-Voronoi grains, ``lam`` seeds per px^2, seeds also outside the field (no edge effect)."""
    pad = 4 / np.sqrt(lam)
    rng = np.random.default_rng(seed)
    seeds = rng.random((rng.poisson(lam * (size + 2 * pad) ** 2), 2)) * (size + 2 * pad) - pad
    rows, cols = np.mgrid[0:size, 0:size]
    _, nearest = cKDTree(seeds).query(np.c_[rows.ravel(), cols.ravel()])
    return nearest.reshape(size, size).astype(np.int32) + 1


def test_poisson_voronoi_grains_follow_stereology():
    size, lam = 360, 300 / 360**2  # about 300 grains in the field
    grains = voronoi_grains(lam, size, seed=0)
    # Poisson-Voronoi: L_A = 2 sqrt(lambda); P_L = (2 / pi) L_A, so mean intercept = pi / (4 sqrt(lambda))
    assert boundary_length_per_area(grains) == pytest.approx(2 * np.sqrt(lam), rel=0.06)
    # counting every pixel-level label change would read ~20 % low (staircase boundaries); 3 circles
    # give ~100 intersections only, hence their looser tolerance
    for method, tolerance in (("lines", 0.05), ("circles", 0.1)):
        g = astm_grain_size(grains, pixel_size_um=1.0, method=method, n_lines=15)
        assert g["mean_intercept_px"] == pytest.approx(np.pi / (4 * np.sqrt(lam)), rel=tolerance)
        assert g["n_intersections"] > 90


def test_thin_diagonal_boundary_is_not_slipped_through():
    # an 8-connected, 1-px boundary along the main diagonal; test lines at 45 degrees cross it once each
    boundary = np.eye(101, dtype=bool)
    g = astm_grain_size(boundary, pixel_size_um=1.0, angles_deg=(45,), n_lines=7)
    assert g["n_intersections"] == 7


def test_astm_bad_input():
    with pytest.raises(AnalysisError, match="pixel size"):
        astm_grain_size(square_grains(20), pixel_size_um=None)
    with pytest.raises(ValueError, match="Did you mean 'lines'"):
        astm_grain_size(square_grains(20), pixel_size_um=1.0, method="line")
    with pytest.raises(AnalysisError, match="no grain boundary"):
        astm_grain_size(np.ones((50, 50), np.int32) * 3, pixel_size_um=1.0)


def test_porosity_of_hand_drawn_mask():
    mask = np.array(
        [[0, 1, 0, 0],
         [0, 1, 0, 255],
         [0, 0, 0, 255],
         [1, 0, 0, 0]], np.uint8)  # fmt: skip
    assert porosity(mask) == pytest.approx(3 / 14)
    assert porosity(mask, pore_class=0) == pytest.approx(11 / 14)
    assert porosity(mask[:, :3] == 1) == pytest.approx(3 / 12)


@pytest.mark.parametrize("pixel_size_um", [None, 0.25])
def test_boundary_length_of_a_disc(pixel_size_um):
    r, size = 20, 128
    mask = np.zeros((size, size), np.uint8)
    mask[disk((64, 64), r)] = 1
    expected_px = 2 * np.pi * r / size**2  # circumference / area, per px
    got = boundary_length_per_area(mask, pixel_size_um=pixel_size_um)
    assert got == pytest.approx(expected_px / (pixel_size_um or 1.0), rel=0.03)


def test_boundary_length_straight_interface_and_ignored_pixels():
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 50:] = 1
    # one straight boundary of length 100 px in 100 x 100 px: 1/100 per px (axis-aligned reads ~5 % low)
    assert boundary_length_per_area(mask) == pytest.approx(0.01, rel=0.06)
    mask[:, 60:] = 255  # a 255 edge is no boundary; analysed area is now 100 x 60
    assert boundary_length_per_area(mask) == pytest.approx(100 / 6000, rel=0.06)


def brute_force_s2(mask: np.ndarray, r: int) -> float:
    """Direct average over all ordered pixel pairs whose rounded distance is r (independent reference)."""
    pts = np.argwhere(np.ones_like(mask, bool))
    d = np.rint(np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))).astype(int)
    inside = mask.ravel() == 1
    both = inside[:, None] & inside[None, :]
    return both[d == r].mean()


def test_s2_matches_brute_force_on_small_image(rng):
    mask = (rng.random((7, 9)) < 0.4).astype(np.uint8)
    r, s2 = two_point_correlation(mask, max_distance_px=4)
    assert r.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(s2, [brute_force_s2(mask, k) for k in range(5)], atol=1e-9)


def test_s2_limits_volume_fraction_and_its_square(rng):
    mask = (rng.random((160, 160)) < 0.35).astype(np.uint8)
    phi = mask.mean()
    r, s2 = two_point_correlation(mask, pixel_size_um=0.5)
    assert s2[0] == pytest.approx(phi, abs=1e-9)
    assert np.nanmean(s2[3:]) == pytest.approx(phi**2, abs=0.005)
    assert r[2] == pytest.approx(1.0)  # 2 px at 0.5 µm/px


def test_s2_of_correlated_structure_and_ignored_pixels(rng):
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.standard_normal((200, 200)), 3)
    mask = (field > 0.05).astype(np.uint8)
    mask[:20] = 255
    phi = np.mean(mask[20:] == 1)
    _, s2 = two_point_correlation(mask, max_distance_px=60)
    assert s2[0] == pytest.approx(phi, abs=1e-9)
    assert s2[2] > phi**2 + 0.05  # neighbours are alike
    assert s2[40:].mean() == pytest.approx(phi**2, abs=0.03)  # correlation lost after ~10 sigma
