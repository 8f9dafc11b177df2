"""train()/evaluate() in-process: model kwargs filled from the data, worker-independent augmentation,
metadata of the saved model, evaluate() against the metrics recomputed by hand from its confusion matrix."""

from __future__ import annotations

import pytest
import torch

from microcnn.config import load_config
from microcnn.engine.api import evaluate, train
from microcnn.engine.checkpoint import load_resume_state, load_weights
from microcnn.errors import ConfigError


def _cfg(tmp_path, *overrides):
    raw = {
        "task": "segmentation",
        "seed": 1,
        "data": {"synthetic": {"n": 6, "size": 32}, "cache_dir": str(tmp_path / "cache"), "patch_size": 24},
        "model": {"name": "unet", "depth": 2, "base_channels": 4},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}, {"name": "GaussNoise", "std_range": [0.01, 0.05]}],
        "train": {"epochs": 1, "batch_size": 2, "deterministic": True},
    }
    return load_config(raw, overrides=list(overrides))


def test_metadata_and_filled_model_kwargs(tmp_path):
    result = train(_cfg(tmp_path), run_dir=tmp_path / "run")
    _, meta = load_weights(result.weights)
    assert meta["model"] == {
        "name": "unet",
        "depth": 2,
        "base_channels": 4,
        "in_channels": 1,
        "num_classes": 2,
    }
    assert meta["class_names"] == ["matrix", "second_phase"] and meta["pixel_size_um"] == pytest.approx(0.05)
    assert meta["task"] == "segmentation" and meta["microcnn_version"] and len(meta["split_hash"]) == 16
    assert meta["epoch"] == 1 and "val_mean_iou" in meta["metrics"]

    data = next((tmp_path / "cache").iterdir())
    out = evaluate(result.weights, data, device="cpu")
    cm = torch.tensor(out["confusion_matrix"], dtype=torch.float64)
    tp = cm.diag()
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    assert out["n"] == 6 and out["mean_iou"] == pytest.approx(float(iou[~iou.isnan()].mean()))
    assert out["pixel_accuracy"] == pytest.approx(float(tp.sum() / cm.sum()))


def test_regression_metadata(tmp_path):
    normalize = {"name": "Normalize", "mean": 0.5, "std": 0.25}
    raw = {
        "task": "regression",
        "seed": 0,
        "data": {
            "synthetic": {"n": 8, "size": 32, "seed": 2, "targets": ["porosity", "tortuosity", "deff_ratio"]},
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"name": "regressor", "backbone": "tinyvgg", "heteroscedastic": True},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}, normalize],
        "loss": {"name": "gaussian_nll"},
        "train": {"epochs": 1, "batch_size": 4, "max_steps": 1},
    }
    result = train(load_config(raw), run_dir=tmp_path / "run")
    _, meta = load_weights(result.weights)
    assert meta["task"] == "regression" and meta["class_names"] == []
    assert meta["target_names"] == ["porosity", "tortuosity", "deff_ratio"]
    assert meta["target_units"] == ["1", "1", "1"]  # all three are dimensionless
    assert meta["normalisation"] == normalize
    assert meta["preprocessing"] == {"in_channels": 1, "patch_size": None, "augment": raw["augment"]}
    assert meta["model"]["num_targets"] == 3 and len(meta["data_hash"]) == 16
    assert meta["data_hash"] != meta["split_hash"]


def test_workers_do_not_change_the_result(tmp_path):
    """Augmentation is seeded per (seed, epoch, sample): 0 or 2 workers give the same weights."""
    a = train(_cfg(tmp_path), run_dir=tmp_path / "w0")
    b = train(_cfg(tmp_path, "data.num_workers=2"), run_dir=tmp_path / "w2")
    wa, wb = (
        load_resume_state(a.run_dir / "last.pt")["model"],
        load_resume_state(b.run_dir / "last.pt")["model"],
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_model_of_another_task_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'lenet5' is a classification model but the config's task is"):
        train(_cfg(tmp_path, "model={name: lenet5}"), run_dir=tmp_path / "run")


def test_deterministic_with_a_nondeterministic_layer_is_a_config_error(tmp_path):
    # SegNet's max-unpooling has no deterministic kernel in torch
    cfg = _cfg(tmp_path, "model={name: segnet, depth: 2, base_channels: 4}")
    with pytest.raises(ConfigError, match="no deterministic kernel"):
        train(cfg, run_dir=tmp_path / "run")
    # the process-wide switch is restored after the run: later work (prediction, other tests) is unaffected
    assert not torch.are_deterministic_algorithms_enabled()
    cfg = _cfg(tmp_path, "model={name: segnet, depth: 2, base_channels: 4}", "train.deterministic=false")
    assert train(cfg, run_dir=tmp_path / "run2").stopped == "epochs"


def test_resume_refuses_a_changed_experiment(tmp_path):
    train(_cfg(tmp_path, "train.max_steps=1"), run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.001 -> 0\.5"):
        train(_cfg(tmp_path, "optim.lr=0.5"), run_dir=tmp_path / "run", resume=True)
    # more epochs (or no step limit) is a legitimate change
    assert (
        train(_cfg(tmp_path, "train.epochs=2"), run_dir=tmp_path / "run", resume=True).history[-1]["epoch"]
        == 2
    )


def test_evaluate_with_tta_scores_the_mean_of_the_8_symmetries(tmp_path):
    """The D4-averaged class of every pixel, computed here with NumPy's rot90/fliplr on each image, gives the
    confusion matrix that ``evaluate(tta=True)`` reports; plain evaluation of the same model differs."""
    import numpy as np

    from microcnn.data.datasets import open_dataset
    from microcnn.data.transforms import build_transforms
    from microcnn.engine.checkpoint import load_model, save_weights

    result = train(_cfg(tmp_path), run_dir=tmp_path / "run")
    data = next((tmp_path / "cache").iterdir())
    model, meta = load_model(result.weights, device="cpu")
    torch.manual_seed(3)  # random weights: one short epoch may leave a net that gives one class everywhere
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    weights = save_weights(model, tmp_path / "random.safetensors", meta)
    dataset = open_dataset(
        data, task="segmentation", transform=build_transforms(meta["preprocessing"]["augment"], train=False)
    )
    cm = np.zeros((2, 2), np.int64)
    for i in range(len(dataset)):
        image, mask = dataset[i]["image"][0].numpy(), dataset[i]["mask"].numpy()
        prob = np.zeros((2, *image.shape))
        for flip in (False, True):
            for k in range(4):
                view = np.rot90(np.fliplr(image) if flip else image, k).copy()
                with torch.no_grad():
                    logits = model(torch.from_numpy(view)[None, None])[0].double().numpy()
                p = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
                back = np.rot90(p, -k, axes=(1, 2))
                prob += np.flip(back, axis=2) if flip else back
        keep = mask < 2
        cm += np.bincount(2 * mask[keep].astype(np.int64) + prob.argmax(0)[keep], minlength=4).reshape(2, 2)
    out = evaluate(weights, data, device="cpu", tta=True)
    np.testing.assert_array_equal(np.array(out["confusion_matrix"]), cm)
    plain = evaluate(weights, data, device="cpu")
    assert plain["confusion_matrix"] != out["confusion_matrix"]
