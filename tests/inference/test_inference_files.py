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


def _save_pngs(folder, names, shape=(32, 32), seed=0):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _checkpoint(path, spec, meta, seed):
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_model(spec).eval()
    return save_weights(net, path, {**meta, "model": spec})


def _csv(path):
    with path.open() as fh:
        return {r["file"].split("/")[-1]: r for r in csv.DictReader(fh)}


def test_predict_cli_classification_columns_values_and_a_progress_bar_in_img_per_s(tmp_path):
    """Through a pseudo-terminal, as a person sees it: tqdm draws its bar only on a terminal."""
    import fcntl
    import os
    import pty
    import re
    import struct
    import termios

    from microcnn.inference.predictor import Predictor
    from microcnn.io.images import read_micrograph

    spec = {"name": "tinyvgg", "in_channels": 1, "num_classes": 3, "input_size": 32}
    meta = {"task": "classification", "class_names": ["a", "b", "c"]}
    models = [_checkpoint(tmp_path / f"c{s}.safetensors", spec, meta, s) for s in (1, 2)]
    images = _save_pngs(tmp_path / "imgs", ["one", "two", "three"])
    out = tmp_path / "out"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 x 120 characters
    cmd = [sys.executable, "-m", "microcnn", "predict", str(images), "--model", str(models[0]), "--model",
           str(models[1]), "--out", str(out), "--device", "cpu", "--keep-info-bar"]  # fmt: skip
    proc = subprocess.run(cmd, stderr=follower, stdout=subprocess.PIPE, text=True, timeout=180)
    os.close(follower)
    seen = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the terminal has no writer left
            break
        if not data:
            break
        seen += data
    os.close(leader)
    assert proc.returncode == 0, seen.decode(errors="replace")[-2000:]
    assert re.search(r"predict: 100%.*3/3 \[[^\]]*(img/s|s/img)\]", seen.decode(errors="replace"))
    rows = _csv(out / "predictions.csv")
    columns = ["file", "status", "error", "info_bar_rows", "rows", "cols", "pixel_size_um", "unit",
               "p_a", "p_b", "p_c", "std_a", "std_b", "std_c", "predicted"]  # fmt: skip
    assert list(rows["one.png"]) == columns
    for name in ("one", "two", "three"):
        m = read_micrograph(images / f"{name}.png")
        members = np.stack(
            [Predictor.from_checkpoint(p, device="cpu").predict(m).probabilities for p in models]
        )
        row = rows[f"{name}.png"]
        got = [float(row[f"p_{c}"]) for c in "abc"]
        np.testing.assert_allclose(got, members.mean(axis=0), atol=1e-6)
        np.testing.assert_allclose([float(row[f"std_{c}"]) for c in "abc"], members.std(axis=0), atol=1e-6)
        assert row["predicted"] == "abc"[int(np.argmax(got))] and row["status"] == "ok"


def test_predict_files_regression_columns_carry_units_and_std(tmp_path):
    from microcnn.inference.files import predict_files
    from microcnn.inference.predictor import Predictor
    from microcnn.io.images import read_micrograph

    spec = {"name": "regressor", "in_channels": 1, "num_targets": 2, "backbone": "tinyvgg",
            "backbone_kwargs": {"input_size": 32}, "heteroscedastic": True}  # fmt: skip
    meta = {"task": "regression", "target_names": ["porosity", "grain_size"], "target_units": ["1", "µm"]}
    model = _checkpoint(tmp_path / "r.safetensors", spec, meta, 3)
    images = _save_pngs(tmp_path / "imgs", ["a", "b"], seed=4)
    predictor = Predictor.from_checkpoint(model, device="cpu")
    rows = predict_files(predictor, sorted(images.iterdir()), tmp_path / "out", crop_bar=False)
    written = _csv(tmp_path / "out" / "predictions.csv")
    value_columns = ["porosity [1]", "porosity_std [1]", "grain_size [µm]", "grain_size_std [µm]"]
    assert list(written["a.png"])[-4:] == value_columns and len(rows) == 2
    for name in ("a", "b"):
        r = predictor.predict(read_micrograph(images / f"{name}.png"))
        row = written[f"{name}.png"]
        np.testing.assert_allclose([float(row[c]) for c in value_columns],
                                   [r.values[0], r.std[0], r.values[1], r.std[1]], rtol=1e-6)  # fmt: skip


def test_predict_cli_with_a_classical_method_needs_no_model(tmp_path, capsys):
    from microcnn.analysis import otsu, quantify
    from microcnn.cli import main as cli_main
    from microcnn.io.images import read_micrograph

    images = _save_pngs(tmp_path / "imgs", ["p", "q"], shape=(40, 48), seed=5)
    out = tmp_path / "out"
    assert cli_main(["predict", str(images), "--method", "otsu", "--out", str(out), "--keep-info-bar"]) == 0
    rows = _csv(out / "predictions.csv")
    for name in ("p", "q"):
        expected = quantify(otsu(read_micrograph(images / f"{name}.png"))).fractions["fraction"]
        got = [float(rows[f"{name}.png"][f"fraction_{c}"]) for c in ("background", "foreground")]
        np.testing.assert_allclose(got, expected, atol=1e-12)
        assert np.asarray(Image.open(out / f"{name}_mask.png")).shape == (40, 48)
