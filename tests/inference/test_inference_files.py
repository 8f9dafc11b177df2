"""``microcnn predict`` over files and folders: CSV numbers, mask and overlay PNGs, failures recorded."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from microcnn.analysis.render import overlay
from microcnn.errors import MicrocnnError
from microcnn.inference.files import expand_inputs

SPEC = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}


@pytest.fixture
def model(tmp_path):
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = build_model(SPEC).eval()
    meta = {"model": SPEC, "task": "segmentation", "class_names": ["matrix", "pore"]}
    return save_weights(net, tmp_path / "m.safetensors", meta)


def test_overlay_blends_class_colours_and_leaves_unanalysed_pixels():
    pixels = np.full((2, 2), 0.5, dtype=np.float32)  # displayed as round(0.5·255) = 128
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    rgb = overlay(pixels, mask, opacity=0.5)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[1, 1]) == (128, 128, 128)  # 255 = not analysed: the image itself
    # 0.5·128 + 0.5·colour, Okabe-Ito blue (0, 114, 178) and orange (230, 159, 0), by hand
    assert tuple(rgb[0, 0]) == (64, 121, 153)
    assert tuple(rgb[0, 1]) == (179, 144, 64)


def test_expand_inputs_lists_folder_images_and_refuses_missing(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.tif", "b.png"]
    with pytest.raises(MicrocnnError, match="neither a file nor a folder"):
        expand_inputs([tmp_path / "missing"])


def test_predict_cli_writes_csv_masks_overlays_and_records_a_bad_file(model, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("one", "two"):
        Image.fromarray(rng.integers(0, 256, (24, 30), dtype=np.uint8)).save(images / f"{name}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "microcnn", "predict", str(images), "--model", str(model), "--out", str(out),
           "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    with (out / "predictions.csv").open() as fh:
        rows = {r["file"].split("/")[-1]: r for r in csv.DictReader(fh)}
    assert rows["broken.png"]["status"] == "failed" and rows["broken.png"]["error"]
    for name in ("one", "two"):
        mask = np.asarray(Image.open(out / f"{name}_mask.png"))
        assert mask.shape == (24, 30) and set(np.unique(mask)) <= {0, 1}
        assert float(rows[f"{name}.png"]["fraction_pore"]) == pytest.approx((mask == 1).mean())
        assert rows[f"{name}.png"]["unit"] == "px"
        assert np.asarray(Image.open(out / f"{name}_overlay.png")).shape == (24, 30, 3)
