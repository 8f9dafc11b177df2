"""Folder datasets: layouts, pixel-size priority, labels, masks, errors; patches; real data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from microcnn.data.datasets import FolderDataset, indices_of, open_dataset
from microcnn.data.patches import PatchDataset
from microcnn.errors import DatasetError


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


def test_segmentation_folder_pixels_masks_pixel_size_priority(seg_folder):
    ds = open_dataset(seg_folder["root"])  # task inferred from masks/
    assert ds.task == "segmentation" and ds.class_names == ["m", "p", "q"]
    assert ds.ids() == ["a", "b", "c", "d"]
    assert ds.groups() == [seg_folder["groups"][k] for k in "abcd"]
    for i, stem in enumerate("abcd"):
        s = ds[i]
        pixels, mask = seg_folder["truth"][stem]
        np.testing.assert_allclose(s["image"], pixels / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(s["mask"], mask)
        assert s["mask"].dtype == np.int64 and s["image"].dtype == np.float32
        assert s["pixel_size_um"] == pytest.approx(seg_folder["sizes"][stem])


def test_classification_subfolders_and_labels_csv(tmp_path):
    for cls, n in (("ferrite", 2), ("pearlite", 1)):
        (tmp_path / "sub" / cls).mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.full((3, 3), 10 * k, np.uint8)).save(tmp_path / "sub" / cls / f"x{k}.png")
    ds = open_dataset(tmp_path / "sub")
    assert ds.task == "classification" and ds.class_names == ["ferrite", "pearlite"]
    assert [ds[i]["label"] for i in range(3)] == [0, 0, 1]
    assert ds.ids() == ["ferrite/x0", "ferrite/x1", "pearlite/x0"]

    root = tmp_path / "csv"
    (root / "images").mkdir(parents=True)
    for stem in ("u", "v"):
        Image.fromarray(np.zeros((2, 2), np.uint8)).save(root / "images" / f"{stem}.png")
    write_csv(root / "labels.csv", ["file", "label"], [["u.png", "b"], ["v", "a"]])
    ds = open_dataset(root, class_names=["b", "a"])
    assert [ds[i]["label"] for i in range(2)] == [0, 1]


def test_regression_targets_and_units(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "images" / "s1.png")
    write_csv(tmp_path / "targets.csv", ["file", "porosity", "tau"], [["s1", 0.25, 1.5]])
    (tmp_path / "dataset.json").write_text(json.dumps({"target_units": ["1", "1"]}))
    ds = open_dataset(tmp_path, task="regression")
    assert ds.target_names == ["porosity", "tau"] and ds.target_units == ["1", "1"]
    np.testing.assert_array_equal(ds[0]["target"], np.array([0.25, 1.5], np.float32))
    assert np.isnan(ds[0]["pixel_size_um"])


def test_regression_target_units_from_the_experiment_config(tmp_path):
    # The config declares the units (data.target_units); the engine passes them to the folder dataset.
    from microcnn.config import load_config
    from microcnn.engine.data import open_source

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "images" / "s1.png")
    write_csv(tmp_path / "targets.csv", ["file", "porosity", "d_mean"], [["s1", 0.25, 1.5]])
    raw = {"task": "regression", "data": {"source": str(tmp_path), "target_units": ["1", "µm"]}}
    ds = open_source(load_config(raw))
    assert ds.target_names == ["porosity", "d_mean"] and ds.target_units == ["1", "µm"]
    raw["data"]["target_units"] = ["1"]  # one unit for two targets
    with pytest.raises(DatasetError, match=r"one unit per target column .* got \['1'\]"):
        open_source(load_config(raw))


def test_index_tiff_mask(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    mask = np.array([[0, 1, 2], [255, 1, 0]], np.uint8)  # class indices, 255 = not labelled
    tifffile.imwrite(tmp_path / "masks" / "x.tif", mask)
    s = open_dataset(tmp_path)[0]
    assert s["mask"].dtype == np.int64
    np.testing.assert_array_equal(s["mask"], [[0, 1, 2], [255, 1, 0]])


def test_colour_mask_with_palette(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((1, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    rgb = np.array([[[0, 0, 255], [255, 0, 0], [0, 0, 0]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "masks" / "x.png")
    with pytest.raises(DatasetError, match="palette"):
        open_dataset(tmp_path)[0]
    (tmp_path / "dataset.json").write_text(
        json.dumps({"palette": {"#0000FF": 1, "#FF0000": 2, "#000000": 0}})
    )
    np.testing.assert_array_equal(open_dataset(tmp_path)[0]["mask"], [[1, 2, 0]])


@pytest.mark.parametrize(
    ("break_it", "match"),
    [
        (lambda r: (r / "masks" / "a.png").unlink(), "no mask"),
        (lambda r: Image.fromarray(np.zeros((2, 2), np.uint8)).save(r / "masks" / "a.png"), "must match"),
        (lambda r: (r / "dataset.json").write_text('{"clas_names": []}'), "Did you mean 'class_names'"),
        (lambda r: write_csv(r / "samples.csv", ["file", "pixel_size_um"], [["a", "-1"]]), "positive"),
    ],
)
def test_bad_folders_explain(seg_folder, break_it, match):
    break_it(seg_folder["root"])
    with pytest.raises(DatasetError, match=match):
        open_dataset(seg_folder["root"])[0]


def test_unknown_task_and_layout(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'segmentation'"):
        open_dataset(tmp_path, task="segmenation")
    with pytest.raises(DatasetError, match="Cannot tell the task"):
        open_dataset(tmp_path)


def test_indices_of(seg_folder):
    ds = open_dataset(seg_folder["root"])
    assert indices_of(ds, ["c", "a"]) == [2, 0]
    with pytest.raises(DatasetError, match="not in the dataset"):
        indices_of(ds, ["zz"])


def test_patches_are_windows_of_the_image(seg_folder):
    base = open_dataset(seg_folder["root"])
    patches = PatchDataset(base, patch_size=5, patches_per_image=3, seed=7)
    assert len(patches) == 12
    for i in range(len(patches)):
        p = patches[i]
        full = base[i // 3]
        r, c = p["patch_origin"]
        window = full["mask"][r : r + 5, c : c + 5]
        assert p["image"].shape == (5, 5)
        np.testing.assert_array_equal(p["mask"][: window.shape[0], : window.shape[1]], window)
        assert (p["mask"][window.shape[0] :, :] == 255).all() and (
            p["mask"][:, window.shape[1] :] == 255
        ).all()
        np.testing.assert_array_equal(
            p["image"][: window.shape[0], : window.shape[1]], full["image"][r : r + 5, c : c + 5]
        )
    again = PatchDataset(base, patch_size=5, patches_per_image=3, seed=7)
    assert all((again[i]["patch_origin"] == patches[i]["patch_origin"]).all() for i in range(12))
    origins = {tuple(patches[i]["patch_origin"]) for i in range(6, 9)}  # image c is 8x8: 16 positions
    patches.set_epoch(1)
    assert origins != {tuple(patches[i]["patch_origin"]) for i in range(6, 9)} or len(origins) == 1


def test_patch_dataset_refuses_inner_transform(seg_folder):
    with pytest.raises(DatasetError, match="already has a transform"):
        PatchDataset(open_dataset(seg_folder["root"], transform=lambda s: s), patch_size=4)


def _metadata(uhcs_dir):
    with (uhcs_dir / "metadata.csv").open(newline="") as fh:
        return {row["file"].rsplit(".", 1)[0]: row for row in csv.DictReader(fh)}


@pytest.mark.shared_data
def test_real_uhcs_loads_as_segmentation(uhcs_dir):
    ds = FolderDataset(
        uhcs_dir,
        task="segmentation",
        samples_csv=uhcs_dir / "metadata.csv",
        group_column="sample_label",
        pixel_size_column="um_per_px",
    )
    meta = _metadata(uhcs_dir)
    assert len(ds) == 24 and len(set(ds.groups())) == 12  # SOURCE.md: 24 images from 12 samples
    for i in (0, 23):
        s = ds[i]
        assert s["image"].shape == (484, 645) and s["mask"].shape == (484, 645)
        assert set(np.unique(s["mask"])) <= {0, 1, 2, 3}
        assert s["pixel_size_um"] == pytest.approx(float(meta[s["id"]]["um_per_px"]))
        assert s["group"] == meta[s["id"]]["sample_label"]


@pytest.mark.shared_data
def test_real_nasa_loads_as_segmentation(nasa_dir):
    ds = open_dataset(nasa_dir, task="segmentation")
    assert len(ds) == 23  # SOURCE.md: 23 unique images, 512 x 512, RGB with R = G = B, masks {0, 1, 2}
    s = ds[0]
    assert s["image"].shape == (512, 512) and s["mask"].max() <= 2
    raw = np.asarray(Image.open(nasa_dir / "images" / f"{s['id']}.png"))[..., 0]
    np.testing.assert_allclose(s["image"], raw / 255.0, rtol=1e-6)
