"""`microcnn demo`: the default models on (a subset of) the embedded samples, scored against the truth."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from microcnn.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
MODELS = REPO / "data" / "models"


def _subset(dst: Path) -> Path:
    """Three images per task (two per class for classification), with their truth files."""
    seg = dst / "segmentation"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    shutil.copy(SAMPLES / "segmentation" / "dataset.json", seg)
    for path in sorted((SAMPLES / "segmentation" / "images").glob("*.png"))[:3]:
        shutil.copy(path, seg / "images")
        shutil.copy(SAMPLES / "segmentation" / "masks" / path.name, seg / "masks")
    cls = dst / "classification"
    with (SAMPLES / "classification" / "samples.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for k in {r["kind"] for r in rows} for r in [x for x in rows if x["kind"] == k][:2]]
    for row in keep:
        (cls / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / "classification" / row["file"], cls / row["file"])
    with (cls / "samples.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    reg = dst / "regression"
    (reg / "images").mkdir(parents=True)
    with (SAMPLES / "regression" / "targets.csv").open(encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    (reg / "targets.csv").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    for line in lines[1:4]:
        shutil.copy(SAMPLES / "regression" / line.split(",")[0], reg / "images")
    return dst


def test_demo_scores_the_default_models_against_the_truth(tmp_path, capsys):
    samples = _subset(tmp_path / "samples")
    out = tmp_path / "out"
    assert main(["demo", "--samples", str(samples), "--models", str(MODELS), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # IoU recomputed here from the written masks and the true masks
    ious = []
    for path in sorted((samples / "segmentation" / "images").glob("*.png")):
        pred = np.asarray(Image.open(out / "segmentation" / f"{path.stem}_mask.png")) == 1
        truth = np.asarray(Image.open(samples / "segmentation" / "masks" / path.name))
        # the samples carry a 20-row info bar (mask 255) that prediction cuts off
        assert pred.shape == (truth.shape[0] - 20, truth.shape[1])
        truth = truth[: pred.shape[0]] == 1
        ious.append((truth & pred).sum() / (truth | pred).sum())
    assert summary["segmentation"]["mean_iou_second_phase"] == pytest.approx(np.mean(ious))
    assert summary["segmentation"]["mean_iou_second_phase"] > 0.5
    assert summary["classification"]["images"] == 12
    assert set(summary["regression"]["mean_abs_error"]) == {"porosity", "tortuosity", "deff_ratio"}
    assert "results (CSV, mask and overlay PNGs, summary.json)" in capsys.readouterr().out


def test_demo_without_models_says_what_is_missing_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--models", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing:" in err and "phase_segmenter.safetensors" in err and "make models" in err
    assert not out.exists()
