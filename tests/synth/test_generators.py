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


def test_particle_radii_follow_the_requested_log_normal_spread():
    # radii r·exp(N(-s²/2, s²)) with s² = ln(1 + cv²): mean r and coefficient of variation
    # sqrt(exp(s²) - 1) = cv. Measured independently: regionprops areas -> equivalent radii sqrt(A/π) of
    # the particles not cut by the border (~230 at 3 % area; overlaps and digitisation add a little spread)
    from skimage.measure import label, regionprops
    from skimage.segmentation import clear_border

    s = GENERATORS.build(
        "spheroidal_particles",
        shape=(1024, 1024),
        rng=np.random.default_rng(0),
        particle_fraction=0.03,
        mean_radius_px=6.0,
        radius_cv=0.3,
        squareness=2.0,
    )
    regions = regionprops(clear_border(label(s.mask == 1, connectivity=1)))
    radii = np.sqrt(np.array([r.area for r in regions]) / np.pi)
    assert len(radii) > 150
    assert radii.std(ddof=1) / radii.mean() == pytest.approx(0.3, abs=0.05)
    assert radii.mean() == pytest.approx(6.0, rel=0.08)


def _fft_peak(mask: np.ndarray) -> tuple[float, float]:
    """(period px, angle of the wave vector in degrees from the row axis towards the columns, mod 180)
    of the strongest Fourier component of a square mask."""
    power = np.abs(np.fft.fft2(mask - mask.mean())) ** 2
    i, j = np.unravel_index(np.argmax(power), power.shape)
    k_row, k_col = np.fft.fftfreq(mask.shape[0])[i], np.fft.fftfreq(mask.shape[1])[j]
    return 1 / np.hypot(k_row, k_col), np.degrees(np.arctan2(k_col, k_row)) % 180


@pytest.mark.parametrize(("angle", "spacing"), [(0.0, 12.0), (30.0, 8.0), (75.0, 10.5), (160.0, 5.0)])
def test_lamellar_spacing_and_orientation_seen_by_fft(angle, spacing):
    s = GENERATORS.build(
        "lamellar",
        shape=(512, 512),
        rng=np.random.default_rng(0),
        spacing_px=(spacing, spacing),
        orientation_deg=angle,
        colony_diameter_px=1000.0,
        lamella_fraction=0.3,
    )
    period, measured = _fft_peak(s.mask.astype(np.float64))
    assert period == pytest.approx(spacing, rel=0.03)  # one FFT bin at 512 px is ~1-2 % of these periods
    assert min(abs(measured - angle), 180 - abs(measured - angle)) < 1.5


def test_lamellar_spacing_holds_in_every_drawn_colony_orientation():
    # orientations drawn per colony: the strongest component still has the requested period
    s = GENERATORS.build(
        "lamellar",
        shape=(512, 512),
        rng=np.random.default_rng(4),
        spacing_px=(7.0, 7.0),
        lamella_fraction=0.3,
    )
    assert len(np.unique(s.grains)) > 10
    assert _fft_peak(s.mask.astype(np.float64))[0] == pytest.approx(7.0, rel=0.03)
