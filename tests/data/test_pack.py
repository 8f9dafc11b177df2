"""pack -> archive -> H5Dataset gives back the folder's pixels, masks, labels and pixel sizes; inspect;
DataLoader workers with the spawn start method."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from microcnn.cli import main
from microcnn.data.datasets import H5Dataset, open_dataset
from microcnn.errors import DatasetError


def test_pack_round_trip_segmentation(seg_folder, tmp_path, capsys):
    out = tmp_path / "seg.h5"
    assert main(["pack", str(seg_folder["root"]), str(out)]) == 0
    assert "complete     yes" in capsys.readouterr().out
    archive = open_dataset(out)
    assert isinstance(archive, H5Dataset) and archive.class_names == ["m", "p", "q"]
    assert archive.ids() == ["a", "b", "c", "d"]
    assert archive.groups() == [seg_folder["groups"][k] for k in "abcd"]
    for i, stem in enumerate("abcd"):
        pixels, mask = seg_folder["truth"][stem]
        s = archive[i]
        np.testing.assert_allclose(s["image"], pixels / 255.0, rtol=1e-6)  # 8-bit stored exactly
        np.testing.assert_array_equal(s["mask"], mask)
        assert s["pixel_size_um"] == pytest.approx(seg_folder["sizes"][stem])
    with h5py.File(out, "r") as f:  # padded to the largest image, 8 x 9
        assert f["images"].shape == (4, 8, 9) and f["images"].dtype == np.uint8
    assert main(["pack", str(seg_folder["root"]), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_pack_keeps_16_bit_and_labels(tmp_path):
    root = tmp_path / "cls"
    values = {
        "hot": np.array([[0, 255], [256, 65535]], np.uint16),
        "cold": np.array([[1, 2], [3, 4]], np.uint16),
    }
    for cls, pixels in values.items():
        (root / cls).mkdir(parents=True)
        tifffile.imwrite(root / cls / "x.tif", pixels)
    out = tmp_path / "cls.h5"
    assert main(["pack", str(root), str(out), "--task", "classification"]) == 0
    ds = open_dataset(out)
    assert ds.class_names == ["cold", "hot"]
    for i, cls in enumerate(["cold", "hot"]):
        assert ds[i]["label"] == i
        np.testing.assert_allclose(ds[i]["image"], values[cls] / 65535.0, rtol=1e-6)
    with h5py.File(out, "r") as f:
        assert f["images"].dtype == np.uint16


def test_pack_round_trip_regression_targets_and_units(tmp_path):
    root = tmp_path / "reg"
    (root / "images").mkdir(parents=True)
    targets = {"s1": (0.25, 1.5), "s2": (0.5, 12.0)}
    for k, stem in enumerate(targets):
        Image.fromarray(np.full((3, 4), 10 * k, np.uint8)).save(root / "images" / f"{stem}.png")
    with (root / "targets.csv").open("w", encoding="utf-8") as fh:
        fh.write("file,porosity,d_mean\ns1,0.25,1.5\ns2,0.5,12\n")
    (root / "dataset.json").write_text('{"target_units": ["1", "µm"], "pixel_size_um": 0.05}')
    out = tmp_path / "reg.h5"
    assert main(["pack", str(root), str(out)]) == 0
    ds = open_dataset(out)
    assert ds.task == "regression"
    assert (ds.target_names, ds.target_units) == (["porosity", "d_mean"], ["1", "µm"])
    for i, (stem, values) in enumerate(targets.items()):
        s = ds[i]
        assert s["id"] == stem and s["target"].dtype == np.float32
        np.testing.assert_array_equal(s["target"], np.array(values, np.float32))
        np.testing.assert_allclose(s["image"], np.full((3, 4), 10 * i / 255), rtol=1e-6)
        assert s["pixel_size_um"] == pytest.approx(0.05)


def test_target_units_from_the_command_line_override_dataset_json_and_are_checked(tmp_path, capsys):
    root = tmp_path / "reg"
    (root / "images").mkdir(parents=True)
    for k, stem in enumerate(("s1", "s2")):
        Image.fromarray(np.full((3, 4), k, np.uint8)).save(root / "images" / f"{stem}.png")
    (root / "targets.csv").write_text("file,porosity,d_mean\ns1,0.25,1.5\ns2,0.5,12\n", encoding="utf-8")
    (root / "dataset.json").write_text('{"target_units": ["1", "px"]}')
    out = tmp_path / "reg.h5"
    assert main(["pack", str(root), str(out), "--target-units", "1", "µm"]) == 0
    assert open_dataset(out).target_units == ["1", "µm"]  # the flag, not dataset.json's "px"
    # one unit for two target columns: exit 2, the columns and the flag named, nothing written
    assert main(["pack", str(root), str(tmp_path / "bad.h5"), "--target-units", "µm"]) == 2
    err = capsys.readouterr().err
    assert "['porosity', 'd_mean']" in err and "--target-units" in err
    assert not (tmp_path / "bad.h5").exists()


def test_pack_round_trip_float32_and_rgb_images(tmp_path):
    # float32 TIFFs in [0, 1] are stored as float32, bit for bit; true-colour PNGs as (N, H, W, 3) uint8.
    floats = {"f1": np.array([[0.1, 0.25], [0.5, 1 / 3]], np.float32), "f2": np.zeros((2, 2), np.float32)}
    rgb = {
        "c1": np.array([[[255, 0, 0], [0, 128, 255]]], np.uint8),
        "c2": np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8),
    }
    for kind, arrays in (("flt", floats), ("rgb", rgb)):
        for cls, (stem, pixels) in zip(("a", "b"), arrays.items(), strict=True):
            (tmp_path / kind / cls).mkdir(parents=True)
            if kind == "flt":
                tifffile.imwrite(tmp_path / kind / cls / f"{stem}.tif", pixels)
            else:
                Image.fromarray(pixels).save(tmp_path / kind / cls / f"{stem}.png")
        out = tmp_path / f"{kind}.h5"
        assert main(["pack", str(tmp_path / kind), str(out), "--task", "classification"]) == 0
        ds = open_dataset(out)
        for i, pixels in enumerate(arrays.values()):
            s = ds[i]
            assert s["label"] == i
            if kind == "flt":
                np.testing.assert_array_equal(s["image"], pixels)
            else:
                np.testing.assert_allclose(s["image"], pixels / 255.0, rtol=1e-6)
        with h5py.File(out, "r") as f:
            expected = ((2, 2, 2), np.float32) if kind == "flt" else ((2, 1, 2, 3), np.uint8)
            assert (f["images"].shape, f["images"].dtype) == expected


def test_inspect_reports_and_flags_incomplete(seg_folder, tmp_path, capsys):
    out = tmp_path / "seg.h5"
    main(["pack", str(seg_folder["root"]), str(out)])
    capsys.readouterr()
    assert main(["inspect", str(out), "--masks"]) == 0
    text = capsys.readouterr().out
    counts = {}
    for _, mask in seg_folder["truth"].values():
        for v in np.unique(mask):
            counts[int(v)] = counts.get(int(v), 0) + int((mask == v).sum())
    expected = ", ".join(f"{name}={counts[v]}" for v, name in enumerate(["m", "p", "q"]) if v in counts)
    assert f"mask px per class: {expected}, not labelled={counts[255]}" in text
    assert "0.25-2 µm/px (4 known, 0 unknown)" in text
    with h5py.File(out, "a") as f:
        f.attrs["complete"] = False
    assert main(["inspect", str(out)]) == 1
    assert "NO (writer did not finish)" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="incomplete"):
        open_dataset(out)


def test_pack_refuses_mixed_gray_and_colour(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "images" / "g.png")
    Image.fromarray(
        np.dstack([np.zeros((2, 2), np.uint8), np.full((2, 2), 9, np.uint8), np.zeros((2, 2), np.uint8)])
    ).save(tmp_path / "images" / "c.png")
    for stem in "gc":
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "masks" / f"{stem}.png")
    assert main(["pack", str(tmp_path), str(tmp_path / "x.h5")]) == 2
    assert not (tmp_path / "x.h5").exists()


def test_workers_with_spawn_match_single_process(seg_folder, tmp_path):
    from microcnn.data.transforms import build_transforms

    out = tmp_path / "seg.h5"
    main(["pack", str(seg_folder["root"]), str(out)])
    ds = H5Dataset(out, transform=build_transforms(None, train=False))
    assert ds.reader._file is None  # nothing opened by __init__

    def collect(**kwargs):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, **kwargs)
        return [(s["id"], s["image"], s["mask"]) for s in loader]

    single = collect(num_workers=0)
    ds.close()
    spawned = collect(num_workers=2, multiprocessing_context="spawn")
    assert [s[0] for s in spawned] == [s[0] for s in single] == ["a", "b", "c", "d"]
    for (_, img0, m0), (_, img1, m1) in zip(single, spawned, strict=True):
        assert torch.equal(img0, img1) and torch.equal(m0, m1)


@pytest.mark.shared_data
def test_real_uhcs_pack_matches_published_class_shares(uhcs_dir, tmp_path):
    from microcnn.data.pack import pack_folder
    from microcnn.io.hdf5 import open_archive

    out = tmp_path / "uhcs.h5"
    info = pack_folder(
        uhcs_dir,
        out,
        task="segmentation",
        samples_csv=uhcs_dir / "metadata.csv",
        group_column="sample_label",
        pixel_size_column="um_per_px",
    )
    assert info["count"] == 24 and info["samples"] == 12
    assert (info["pixel_size_um"]["min"], info["pixel_size_um"]["max"]) == pytest.approx(
        (0.03876, 0.3876), rel=1e-3
    )
    with open_archive(out) as archive:
        counts = archive.mask_counts()
    total = 24 * 484 * 645
    shares = [round(100 * counts[str(c)] / total, 1) for c in range(4)]
    assert shares == [16.1, 13.0, 68.2, 2.7]  # SOURCE.md: DeCost pixel shares
