"""HDF5 output of microcnn synth, read back with h5py directly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microcnn.synth import make_dataset

pytest.importorskip("microcnn.io.hdf5", reason="microcnn.io.hdf5 (data helper) not in this checkout")
h5py = pytest.importorskip("h5py")


def test_segmentation_archive_holds_exact_masks_and_images(tmp_path):
    from microcnn.synth.h5 import write_hdf5

    samples = list(make_dataset("segmentation", n=3, size=40, seed=6))
    summary = write_hdf5(samples, tmp_path / "seg.h5", task="segmentation", provenance={"seed": 6})
    assert summary["written"] == 3
    with h5py.File(tmp_path / "seg.h5", "r") as f:
        assert f["masks"].shape == (3, 40, 40)
        for i, s in enumerate(samples):
            assert np.array_equal(f["masks"][i], s.mask)
            assert np.array_equal(f["images"][i], np.rint(s.image * 255).astype(np.uint8))
        assert json.loads(f.attrs["class_names"]) == ["matrix", "second_phase"]
        assert json.loads(f.attrs["extra"])["seed"] == 6
        assert bool(f.attrs["complete"])


def test_regression_archive_skips_non_percolating(tmp_path):
    from microcnn.cli import main

    out = tmp_path / "reg.h5"
    assert (
        main(["synth", "--task", "regression", "--n", "8", "--size", "48", "--seed", "3", "--out", str(out)])
        == 0
    )
    expected = [
        s.properties
        for s in make_dataset("regression", n=8, size=48, seed=3)
        if s.properties["percolates"] == 1.0
    ]
    with h5py.File(out, "r") as f:
        targets = f["targets"][:]
        assert json.loads(f.attrs["target_names"]) == ["porosity", "tortuosity", "deff_ratio"]
    assert targets.shape == (len(expected), 3) and len(expected) < 8
    np.testing.assert_allclose(targets[:, 1], [p["tortuosity"] for p in expected], rtol=1e-6)


def test_same_seed_byte_identical_archive_other_seed_differs(tmp_path):
    from microcnn.cli import main

    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        out = tmp_path / f"{name}.h5"
        args = ["synth", "--task", "segmentation", "--n", "3", "--size", "32", "--seed", str(seed)]
        assert main([*args, "--out", str(out)]) == 0
    a, b, c = ((tmp_path / f"{n}.h5").read_bytes() for n in "abc")
    assert a == b  # no timestamps, no file names inside: same seed, same bytes
    assert len(a) == len(c) and a != c
    with h5py.File(tmp_path / "a.h5", "r") as fa, h5py.File(tmp_path / "c.h5", "r") as fc:
        assert not np.array_equal(fa["images"][0], fc["images"][0])  # the pixels differ, not metadata
