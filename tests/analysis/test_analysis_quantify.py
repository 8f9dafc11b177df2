"""Phase fractions, object sizes and size statistics against hand calculations and geometry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse

from microcnn.analysis.quantify import measure_objects, phase_fractions, size_histogram, size_summary
from microcnn.analysis.results import AnalysisError, SegmentationResult

RADII = (6, 10, 15, 22)


def _discs(shape=(160, 160)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for i, r in enumerate(RADII):
        mask[disk((40 + 80 * (i // 2), 40 + 80 * (i % 2)), r)] = 1
    return mask


@pytest.mark.parametrize("pixel_size_um", [0.5, 0.13, None])
def test_disc_diameters_in_physical_units(pixel_size_um):
    scale, u = (pixel_size_um, "um") if pixel_size_um else (1.0, "px")
    df = measure_objects(_discs(), pixel_size_um=pixel_size_um).sort_values(f"area_{u}2")
    assert len(df) == len(RADII)
    # the acceptance criterion: known disc diameters come back in µm within one pixel
    np.testing.assert_allclose(df[f"equivalent_diameter_{u}"], 2 * np.array(RADII) * scale, atol=scale)
    areas_px = [np.count_nonzero(_single(r)) for r in RADII]
    np.testing.assert_allclose(df[f"area_{u}2"], np.array(areas_px) * scale**2)
    np.testing.assert_allclose(df[f"perimeter_{u}"], 2 * np.pi * np.array(RADII) * scale, rtol=0.08)
    np.testing.assert_allclose(df["aspect_ratio"], 1.0, atol=0.08)
    assert df.attrs["unit"] == ("µm" if pixel_size_um else "px")


def _single(r: int) -> np.ndarray:
    m = np.zeros((60, 60), bool)
    m[disk((30, 30), r)] = True
    return m


@pytest.mark.parametrize("rotation_deg", [0.0, 30.0, 90.0, -45.0])
def test_ellipse_axes_and_orientation(rotation_deg):
    mask = np.zeros((128, 128), np.uint8)
    # semi-axes 10 px (rows) and 30 px (cols), rotated counter-clockwise as seen on screen
    mask[ellipse(64, 64, 10, 30, rotation=np.radians(rotation_deg))] = 1
    row = measure_objects(mask).iloc[0]
    assert row["major_axis_px"] == pytest.approx(60, abs=1.5)
    assert row["minor_axis_px"] == pytest.approx(20, abs=1.5)
    assert row["aspect_ratio"] == pytest.approx(3.0, rel=0.06)
    assert row["orientation_deg"] == pytest.approx(rotation_deg, abs=1.5)


def test_border_and_small_objects_are_dropped():
    mask = np.zeros((50, 50), np.uint8)
    mask[disk((25, 25), 8)] = 1
    mask[disk((0, 0), 5, shape=mask.shape)] = 1  # touches the edge
    mask[45, 45] = 1  # a 1-px speck
    assert len(measure_objects(mask, min_area_px=1)) == 3
    assert len(measure_objects(mask)) == 2
    assert len(measure_objects(mask, exclude_border=True)) == 1


def test_label_image_is_measured_as_given():
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 7
    labels[10:12, 10:18] = 3
    df = measure_objects(labels, min_area_px=1).set_index("label")
    assert df.loc[7, "area_px2"] == 16 and df.loc[3, "area_px2"] == 16
    with pytest.raises(AnalysisError, match="2-D"):
        measure_objects(np.zeros(5))


def test_phase_fractions_by_hand_ignoring_255():
    mask = np.zeros((10, 10), np.uint8)
    mask[:, :3] = 1  # 30 px
    mask[0, :] = 255  # 10 px not analysed: 3 of them were class 1
    df = phase_fractions(mask, class_names=["matrix", "pore"])
    assert df["fraction"].tolist() == pytest.approx([63 / 90, 27 / 90])
    assert df["phase"].tolist() == ["matrix", "pore"]
    assert set(df.columns) >= {"ci_low", "ci_high", "method_of_ci"}


def _ci_width(side: int, p: float, seed: int) -> tuple[float, pd.Series]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((side, side)) < p).astype(np.uint8)
    row = phase_fractions(mask, rng=1, n_boot=500).iloc[1]
    return row["ci_high"] - row["ci_low"], row


def test_bootstrap_ci_contains_truth_and_shrinks_with_image_size():
    p = 0.3
    w_small, small = _ci_width(64, p, seed=3)
    w_large, large = _ci_width(256, p, seed=4)
    for row in (small, large):
        assert row["ci_low"] < p < row["ci_high"]
    # independent pixels: binomial 95 % CI width 2 * 1.96 * sqrt(p (1 - p) / N)
    for width, side in ((w_small, 64), (w_large, 256)):
        assert width == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p)) / side, rel=0.4)
    assert 2.5 < w_small / w_large < 6.0  # sqrt(N) scaling: 4


def test_probabilities_give_expected_fraction_and_spread():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :2] = 1
    probs = np.stack([np.full((8, 8), 0.6, np.float32), np.full((8, 8), 0.4, np.float32)])
    std = np.stack([np.full((8, 8), 0.05, np.float32), np.full((8, 8), 0.05, np.float32)])
    r = SegmentationResult(mask=mask, class_names=["a", "b"], probabilities=probs, std=std)
    df = phase_fractions(r)
    assert df["fraction"].tolist() == [0.75, 0.25]
    assert df["fraction_prob"].tolist() == pytest.approx([0.6, 0.4])
    assert df["fraction_prob_std"].tolist() == pytest.approx([0.05, 0.05])


def test_ensemble_interval_from_the_spread_of_two_members_by_hand():
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :3] = 1
    members = np.array([[0.7, 0.3], [0.5, 0.5]])  # two members' expected fractions of [a, b]
    r = SegmentationResult(mask=mask, class_names=["a", "b"], member_fractions=members)
    df = phase_fractions(r)
    # mean 0.6 / 0.4, population std |0.7 - 0.5| / 2 = 0.1; 95 %: z = 1.959964 -> 0.6 ± 0.196
    assert df["members_mean"].tolist() == pytest.approx([0.6, 0.4])
    assert df["members_std"].tolist() == pytest.approx([0.1, 0.1])
    assert df["ensemble_ci_low"].tolist() == pytest.approx([0.6 - 0.1959964, 0.4 - 0.1959964], abs=1e-6)
    assert df["ensemble_ci_high"].tolist() == pytest.approx([0.6 + 0.1959964, 0.4 + 0.1959964], abs=1e-6)
    assert "2 samples" in df["method_of_ensemble_ci"][0]
    # 80 %: z = 1.281552; clipped to [0, 1] when the spread is wide
    wide = SegmentationResult(
        mask=mask, class_names=["a", "b"], member_fractions=[[0.95, 0.05], [0.55, 0.45]]
    )
    df80 = phase_fractions(wide, ci=0.8)
    assert df80["ensemble_ci_high"][0] == 1.0 and df80["ensemble_ci_low"][1] == 0.0
    assert df80["ensemble_ci_low"][0] == pytest.approx(0.75 - 1.281552 * 0.2, abs=1e-6)
    single = phase_fractions(
        SegmentationResult(mask=mask, class_names=["a", "b"], member_fractions=[[0.6, 0.4]])
    )
    assert "ensemble_ci_low" not in single.columns  # one sample has no spread
    with pytest.raises(AnalysisError, match=r"\(S, K\)"):
        SegmentationResult(mask=mask, class_names=["a", "b"], member_fractions=[0.6, 0.4])


def test_phase_fraction_edge_cases():
    tiny = phase_fractions(np.array([[0, 1]]))
    assert np.isnan(tiny["ci_low"]).all() and "not computed" in tiny["method_of_ci"][0]
    with pytest.raises(AnalysisError, match="smaller tile"):
        phase_fractions(np.zeros((10, 10), np.uint8), tile=10)
    with pytest.raises(AnalysisError, match="255"):
        phase_fractions(np.full((4, 4), 255, np.uint8))


def test_size_summary_by_hand():
    df = pd.DataFrame({"equivalent_diameter_um": np.arange(1.0, 11.0)})
    s = size_summary(df, "equivalent_diameter_um")
    # linear interpolation between order statistics: position q * (n - 1)
    assert (s["n"], s["mean"], s["median"], s["unit"]) == (10, 5.5, 5.5, "µm")
    assert (s["d10"], s["d50"], s["d90"]) == pytest.approx((1.9, 5.5, 9.1))
    assert s["std"] == pytest.approx(np.sqrt(55 / 6))  # sample std of 1..10


def test_size_summary_area_weighted():
    df = pd.DataFrame({"equivalent_diameter_px": [1.0, 3.0], "area_px2": [1.0, 9.0]})
    s = size_summary(df, "equivalent_diameter_px", basis="area")
    # weighted mean (1*1 + 3*9) / 10; D50: cumulative mid-weights 0.05 and 0.55 -> 1 + 2 * 0.45 / 0.5
    assert s["mean"] == pytest.approx(2.8) and s["d50"] == pytest.approx(2.8) and s["unit"] == "px"
    with pytest.raises(ValueError, match="Did you mean 'area'"):
        size_summary(df, "equivalent_diameter_px", basis="areas")
    with pytest.raises(AnalysisError, match="no column"):
        size_summary(df, "diameter")


def test_size_histogram_by_hand():
    df = pd.DataFrame({"equivalent_diameter_um": [1.0, 1.0, 2.0, 3.0]})
    h = size_histogram(df, "equivalent_diameter_um", bins=2)
    assert h["bin_low_um"].tolist() == [1.0, 2.0] and h["bin_high_um"].tolist() == [2.0, 3.0]
    assert h["count"].tolist() == [2, 2] and h["fraction"].tolist() == [0.5, 0.5]
    log = size_histogram(df, "equivalent_diameter_um", bins=2, log=True)
    assert log["bin_high_um"][0] == pytest.approx(np.sqrt(3.0))  # geometric middle of 1 and 3
