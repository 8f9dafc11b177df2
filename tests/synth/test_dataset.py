"""generate / make_dataset: labels are consequences of the mask; sample i does not depend on n."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label, regionprops

from microcnn.synth import CLASS_NAMES, generate, make_dataset, sample_rng


@pytest.mark.parametrize("kind", CLASS_NAMES)
def test_sample_fields_and_label_consistency(kind):
    s = generate(kind, size=(72, 64), rng=np.random.default_rng(11), pixel_size_um=0.1)
    assert s.image.shape == s.mask.shape == (72, 64)
    assert s.image.dtype == np.float32 and s.image.min() >= 0.0 and s.image.max() <= 1.0
    assert s.label == CLASS_NAMES.index(kind) and s.kind == kind
    # stored fraction == the mask's own fraction, counted here
    assert s.properties["phase_fraction"] == np.count_nonzero(s.mask == 1) / s.mask.size
    objects = (s.mask == 0) if kind == "equiaxed_grains" else (s.mask == 1)
    regions = regionprops(label(objects, connectivity=1))
    assert s.properties["mean_diameter_um"] == pytest.approx(
        0.1 * np.mean([r.equivalent_diameter_area for r in regions]), rel=1e-12
    )
    assert s.units["mean_diameter_um"] == "µm" and s.units["phase_fraction"] == "1"


def test_second_phase_contrast_follows_the_physics():
    # particles image brighter than the matrix, pores darker (mean over each phase of the rendering)
    p = generate("spheroidal_particles", size=96, rng=np.random.default_rng(0))
    q = generate("porous", size=96, rng=np.random.default_rng(0))
    assert p.image[p.mask == 1].mean() > p.image[p.mask == 0].mean() + 0.05
    assert q.image[q.mask == 1].mean() < q.image[q.mask == 0].mean() - 0.05


def test_diameter_in_um_scales_with_pixel_size():
    a = generate("dual_phase", size=64, rng=np.random.default_rng(2), pixel_size_um=0.05)
    b = generate("dual_phase", size=64, rng=np.random.default_rng(2), pixel_size_um=0.2)
    assert np.array_equal(a.mask, b.mask)
    assert b.properties["mean_diameter_um"] == pytest.approx(4 * a.properties["mean_diameter_um"], rel=1e-12)


def test_info_bar_rows_are_unlabelled_and_excluded_from_properties():
    s = generate("porous", size=96, rng=np.random.default_rng(3), info_bar_rows=20, porosity=0.5)
    assert s.image.shape == (96, 96)
    assert np.all(s.mask[-20:] == 255) and set(np.unique(s.mask[:-20])) == {0, 1}
    assert s.properties["phase_fraction"] == np.mean(s.mask[:-20] == 1)
    # the bar is dark with a white scale bar of 1-2-5 length: 96 px * 0.05 µm = 4.8 µm -> 1 µm = 20 px
    bar = s.image[-20:]
    assert np.median(bar) < 0.2
    assert np.array_equal(np.flatnonzero(bar[8, :30] > 0.9), np.arange(6, 26))  # 20 px long


def test_porous_transport_labels_on_request():
    s = generate(
        "porous",
        size=64,
        rng=np.random.default_rng(5),
        porosity=0.7,
        properties=["porosity", "tortuosity", "deff_ratio"],
        device="cpu",
    )
    assert set(s.properties) == {"porosity", "tortuosity", "deff_ratio", "percolates"}
    assert s.properties["porosity"] == s.mask.mean()


def test_transport_on_non_porous_kind_is_refused():
    with pytest.raises(ValueError, match="for kind 'porous' only"):
        generate("lamellar", size=32, rng=np.random.default_rng(0), properties=["tortuosity"])


@pytest.mark.parametrize("bad", [{"size": 8}, {"pixel_size_um": 0.0}, {"info_bar_rows": 60}])
def test_bad_arguments_are_explained(bad):
    kwargs = {"size": 64, **bad}
    with pytest.raises(ValueError, match="got"):
        generate("porous", rng=np.random.default_rng(0), **kwargs)


def test_unknown_kind_and_task_suggest_names():
    with pytest.raises(ValueError, match="Did you mean 'widmanstatten'"):
        generate("widmanstaten", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Did you mean 'segmentation'"):
        list(make_dataset("segmentaton", n=1, size=32))


def test_sample_i_is_the_same_whatever_n_and_seeds_differ():
    short = list(make_dataset("segmentation", n=2, size=48, seed=4))
    long = list(make_dataset("segmentation", n=5, size=48, seed=4))
    other = list(make_dataset("segmentation", n=2, size=48, seed=5))
    for a, b in zip(short, long):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(short[0].image, other[0].image)
    assert [s.kind for s in long] == list(CLASS_NAMES[:5])


def test_sample_rng_is_the_spawned_child_of_the_seed():
    # independent route to the same stream: SeedSequence(seed).spawn(k)[i]
    child = np.random.SeedSequence(9).spawn(4)[3]
    assert sample_rng(9, 3).random() == np.random.default_rng(child).random()


def test_progress_callback_counts_up_to_n():
    calls = []
    list(make_dataset("classification", n=3, size=32, seed=0, progress=lambda d, t: calls.append((d, t))))
    assert calls == [(1, 3), (2, 3), (3, 3)]
