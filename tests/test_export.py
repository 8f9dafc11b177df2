"""``microcnn export`` and microcnn.cards: weights copied bit for bit, metadata kept, card added, guards."""

from __future__ import annotations

import csv
import datetime as dt
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from microcnn.cards import (
    CardError,
    check_model_name,
    joint_iou_from_accuracy,
    list_cards,
    read_card,
    read_metadata,
)
from microcnn.cli import main

ROW = {
    "epoch": 3,
    "step": 12,
    "lr": 1e-3,
    "train_loss": 0.5,
    "val_loss": 0.4,
    "val_pixel_accuracy": 0.9,
    "val_mean_iou": 0.8,
    "val_iou_matrix": 0.85,
    "val_iou_second_phase": 0.75,
}


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as microcnn train writes it: a tiny U-Net's weights + metadata, and metrics.csv."""
    import torch

    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
    torch.manual_seed(0)
    meta = {
        "microcnn_version": "0.1.0",
        "model": spec,
        "task": "segmentation",
        "class_names": ["matrix", "second_phase"],
        "target_names": [],
        "target_units": [],
        "pixel_size_um": None,
        "metrics": ROW,
        "epoch": 3,
        "monitor": "val_mean_iou",
    }
    run = tmp_path / "runs" / "seg"
    save_weights(build_model(dict(spec)), run / "model.safetensors", meta)
    with (run / "metrics.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(ROW))
        writer.writeheader()
        for epoch in (1, 2, 3, 4):
            writer.writerow({**ROW, "epoch": epoch})
    stamp = dt.datetime(2025, 3, 14, 12, 0, tzinfo=dt.UTC).timestamp()
    os.utime(run / "model.safetensors", (stamp, stamp))
    return run


def _export(run_dir, out, *extra: str) -> int:
    return main(["export", str(run_dir), "--name", "seg_model", "--to", str(out), *extra])


def test_export_keeps_tensors_and_metadata_and_adds_card(run_dir, tmp_path):
    out = tmp_path / "models"
    assert _export(run_dir, out, "--description", "two phases") == 0
    weights = out / "seg_model.safetensors"
    src, dst = load_file(run_dir / "model.safetensors"), load_file(weights)
    assert sorted(src) == sorted(dst)
    for key in src:
        assert src[key].dtype == dst[key].dtype and np.array_equal(src[key], dst[key])
    before, after = read_metadata(run_dir / "model.safetensors"), read_metadata(weights)
    card = after.pop("card")
    assert after == before  # every key of the run's metadata, unchanged
    with safe_open(str(weights), framework="numpy") as f:
        assert f.metadata()["format"] == "pt"
    assert card["description"] == "two phases"
    assert card["class_names"] == ["matrix", "second_phase"]
    assert card["training_date"] == "2025-03-14"  # the run's weights file date (set in the fixture)
    assert card["epochs_trained"] == 4 and card["best_epoch"] == 3
    assert card["held_out_metrics"]["mean_iou"] == 0.8
    assert card["held_out_metrics"]["joint_iou"] == pytest.approx(0.9 / 1.1)
    assert read_card(weights) == card and list(list_cards(out)) == ["seg_model"]


def test_exported_model_loads_strictly_and_card_markdown_states_facts(run_dir, tmp_path):
    from microcnn.engine.checkpoint import load_model

    out = tmp_path / "models"
    card_yaml = tmp_path / "card.yaml"
    card_yaml.write_text("reproduce: microcnn train x.yaml\nlicence: MIT\n", encoding="utf-8")
    assert _export(run_dir, out, "--card", str(card_yaml)) == 0
    model, meta = load_model(out / "seg_model.safetensors")
    assert meta["card"]["licence"] == "MIT" and model.training is False
    text = (out / "seg_model.md").read_text(encoding="utf-8")
    for fact in (
        "microcnn train x.yaml",
        "2025-03-14",
        "matrix, second_phase",
        "| licence | MIT |",
        "unknown",
    ):
        assert fact in text


def test_export_refuses_to_overwrite_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "models"
    assert _export(run_dir, out) == 0
    (out / "seg_model.md").write_text("hand edited", encoding="utf-8")
    assert _export(run_dir, out) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "seg_model.md").read_text(encoding="utf-8") == "hand edited"
    assert _export(run_dir, out, "--force") == 0
    assert (out / "seg_model.md").read_text(encoding="utf-8").startswith("# seg_model")


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "..", "", "/abs", "x..y", ".hidden"])
def test_export_refuses_names_that_are_paths(run_dir, tmp_path, name, capsys):
    out = tmp_path / "deep" / "models"
    assert main(["export", str(run_dir), "--name", name, "--to", str(out)]) == 2
    assert "plain name" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists()
    with pytest.raises(CardError):
        check_model_name(name)


def test_export_of_folder_without_weights_says_train_first(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--name", "m", "--to", str(tmp_path / "o")]) == 2
    assert "microcnn train" in capsys.readouterr().err


def test_card_file_with_unknown_key_is_refused(run_dir, tmp_path, capsys):
    bad = tmp_path / "card.yaml"
    bad.write_text("licnece: MIT\n", encoding="utf-8")
    assert _export(run_dir, tmp_path / "o", "--card", str(bad)) == 2
    assert "licnece" in capsys.readouterr().err


def test_joint_iou_formula_matches_one_hot_iou_by_counting(rng):
    """smp's joint IoU over one-hot channels, counted directly, equals a / (2 - a)."""
    truth = rng.integers(0, 3, size=(40, 50))
    pred = np.where(rng.random((40, 50)) < 0.8, truth, rng.integers(0, 3, size=(40, 50)))
    t, p = np.eye(3)[truth].astype(bool), np.eye(3)[pred].astype(bool)
    joint = (t & p).sum() / (t | p).sum()
    assert joint_iou_from_accuracy(float((pred == truth).mean())) == pytest.approx(joint, rel=1e-12)


def test_meta_key_is_the_one_checkpoint_writes():
    from microcnn.cards import META_KEY
    from microcnn.engine import checkpoint

    assert META_KEY == checkpoint.META_KEY
