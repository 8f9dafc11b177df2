"""Generators: one per class, registered by name, exact {0, 1} masks, reproducible from the rng alone."""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.synth.generators import CLASS_NAMES, GENERATORS, voronoi_labels

KINDS = list(CLASS_NAMES)


def test_registry_holds_exactly_the_six_classes_in_the_decided_order():
    assert CLASS_NAMES == (
        "equiaxed_grains",
        "lamellar",
        "spheroidal_particles",
        "widmanstatten",
        "porous",
        "dual_phase",
    )
    assert sorted(GENERATORS.names()) == sorted(CLASS_NAMES)


def test_unknown_generator_suggests_the_closest_name():
    with pytest.raises(ValueError, match="Did you mean 'lamellar'"):
        GENERATORS.get("lamelar")


@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_two_phase_uint8_with_both_phases(kind):
    s = GENERATORS.build(kind, shape=(96, 80), rng=np.random.default_rng(3))
    assert s.mask.shape == (96, 80)
    assert s.mask.dtype == np.uint8
    assert set(np.unique(s.mask)) == {0, 1}
    if s.grains is not None:
        assert s.grains.shape == (96, 80) and s.grains.min() >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_structure_other_seed_other_structure(kind):
    a = GENERATORS.build(kind, shape=(64, 64), rng=np.random.default_rng(7))
    b = GENERATORS.build(kind, shape=(64, 64), rng=np.random.default_rng(7))
    c = GENERATORS.build(kind, shape=(64, 64), rng=np.random.default_rng(8))
    assert np.array_equal(a.mask, b.mask) and a.params == b.params
    assert not np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("porosity", [0.2, 0.5, 0.73])
def test_porous_generator_hits_the_requested_porosity(porosity):
    s = GENERATORS.build("porous", shape=(100, 100), rng=np.random.default_rng(0), porosity=porosity)
    # quantile threshold on a continuous field: the pore count is round(porosity * N), up to one tie
    assert abs(int(s.mask.sum()) - round(porosity * 10_000)) <= 1


def test_porous_rejects_impossible_porosity():
    with pytest.raises(ValueError, match=r"porosity must be in \(0, 1\)"):
        GENERATORS.build("porous", shape=(32, 32), rng=np.random.default_rng(0), porosity=1.2)


def test_lamellar_fraction_follows_the_duty_cycle():
    # a stripe pattern frac(s) < f covers a fraction f of the area (up to discretisation)
    s = GENERATORS.build("lamellar", shape=(256, 256), rng=np.random.default_rng(1), lamella_fraction=0.3)
    assert s.mask.mean() == pytest.approx(0.3, abs=0.03)


def test_voronoi_cells_are_nearest_seed_regions():
    # without warp, every pixel belongs to its nearest seed: count of labels == number of non-empty cells,
    # and the label map agrees with a brute-force nearest-seed computation done here
    rng = np.random.default_rng(5)
    labels = voronoi_labels((40, 30), 12, np.random.default_rng(5))
    seeds = rng.uniform((0, 0), (40, 30), size=(12, 2))
    rr, cc = np.mgrid[0:40, 0:30]
    d2 = (rr[..., None] - seeds[:, 0]) ** 2 + (cc[..., None] - seeds[:, 1]) ** 2
    assert np.array_equal(labels, d2.argmin(axis=-1) + 1)


def test_equiaxed_grain_size_tracks_the_requested_diameter():
    # mean grain area should be about pi/4 d^2 (boundaries take a thin share): check the order of magnitude
    from skimage.measure import label

    for d in (16.0, 32.0):
        s = GENERATORS.build(
            "equiaxed_grains", shape=(256, 256), rng=np.random.default_rng(2), grain_diameter_px=d
        )
        n_grains = label(s.mask == 0, connectivity=1).max()
        expected = 256 * 256 / (np.pi / 4 * d**2)
        assert 0.6 * expected < n_grains < 1.5 * expected
