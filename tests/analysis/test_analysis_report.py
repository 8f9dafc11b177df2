"""quantify(): one call from a segmentation (CNN or classical) to numbers with units."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.draw import disk

from microcnn.analysis import SegmentationResult, otsu, quantify, watershed_particles


def particles_image() -> np.ndarray:
    img = np.full((120, 120), 0.2, np.float32)
    for i, r in enumerate((6, 9, 12, 15)):
        img[disk((30 + 60 * (i // 2), 30 + 60 * (i % 2)), r)] = 0.9
    return img


def test_quantify_classical_result_in_um():
    rep = quantify(otsu(particles_image(), pixel_size_um=0.25, class_names=("matrix", "particle")))
    diam = np.sort(rep.objects["equivalent_diameter_um"].to_numpy())
    np.testing.assert_allclose(diam, 2 * np.array([6, 9, 12, 15]) * 0.25, atol=0.25)  # within 1 px
    assert rep.fractions["fraction"].sum() == pytest.approx(1.0)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["unit"] == "µm" and d["objects"]["n"] == 4
    assert d["objects"]["equivalent_diameter"]["unit"] == "µm"
    assert d["boundary_length_per_area"]["unit"] == "µm⁻¹"
    # L_A by hand: sum of circumferences / field area, in µm⁻¹
    expected = 2 * np.pi * (6 + 9 + 12 + 15) / 120**2 / 0.25
    assert d["boundary_length_per_area"]["value"] == pytest.approx(expected, rel=0.05)


def test_quantify_without_pixel_size_reports_px():
    rep = quantify(otsu(particles_image()))
    assert rep.unit == "px" and "equivalent_diameter_px" in rep.objects.columns
    assert rep.to_dict()["objects"]["equivalent_diameter"]["unit"] == "px"


def test_quantify_uses_watershed_labels():
    binary = np.zeros((60, 80), bool)
    binary[disk((30, 28), 13)] = True
    binary[disk((30, 50), 13)] = True
    rep = quantify(watershed_particles(binary, min_distance_px=8))
    assert len(rep.objects) == 2


def test_quantify_grain_boundary_map_gives_astm_g():
    rows, cols = np.mgrid[0:200, 0:200]
    boundary = ((rows + 7) % 20 == 0) | ((cols + 7) % 20 == 0)  # square grains, 20 px
    r = SegmentationResult(mask=boundary.astype(np.uint8), class_names=["grain", "grain boundary"],
                           pixel_size_um=1.0, method="test")  # fmt: skip
    rep = quantify(r, particle_class="grain")
    # default test lines at 0/45/90/135 degrees: mean intercept 2a / (1 + sqrt 2) for a = 20 µm
    expected = 2 * 20 / (1 + np.sqrt(2))
    assert rep.astm["mean_intercept_um"] == pytest.approx(expected, rel=0.02)
    assert rep.astm["G"] == pytest.approx(-6.643856 * np.log10(expected / 1000) - 3.288, abs=0.06)
    assert "astm_e112" in json.loads(json.dumps(rep.to_dict()))
    unknown = SegmentationResult(mask=r.mask, class_names=r.class_names, pixel_size_um=None)
    rep2 = quantify(unknown, particle_class=0)
    assert rep2.astm is None and any("pixel size" in n for n in rep2.notes)


def test_quantify_unknown_class_name():
    r = SegmentationResult(mask=np.zeros((8, 8), np.uint8), class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="Did you mean 'b'"):
        quantify(r, particle_class="bb")
    assert quantify(r).objects is None  # three classes and no particle class: nothing to measure


def test_quantify_with_no_particles_exports_nulls_not_nan():
    r = SegmentationResult(
        mask=np.zeros((16, 16), np.uint8), class_names=["matrix", "particle"], pixel_size_um=1.0
    )
    d = json.loads(json.dumps(quantify(r).to_dict()))  # json.dumps would write NaN, which is not JSON
    assert d["objects"]["n"] == 0
    assert d["objects"]["equivalent_diameter"]["d50"] is None
    assert d["boundary_length_per_area"]["value"] == 0.0
