"""Data preparation for training: class-balanced sampling weights, the data hash, cross-validation folds."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest

from microcnn.config import load_config
from microcnn.data.splits import save_split
from microcnn.engine.api import _cv_splits, cross_validate, summarise_folds
from microcnn.engine.data import balanced_weights, prepare_data
from microcnn.errors import ConfigError


def _classify(tmp_path, *overrides):
    raw = {
        "task": "classification",
        "data": {"synthetic": {"n": 6, "size": 32, "seed": 1}, "cache_dir": str(tmp_path / "cache")},
        "model": {"name": "lenet5"},
    }
    return load_config(raw, overrides=list(overrides))


@pytest.mark.parametrize("repeats", [1, 2])
def test_balanced_weights_are_one_over_the_class_count(tmp_path, repeats):
    cfg = _classify(tmp_path, "train.balanced_sampling=true", f"data.patches_per_image={repeats}")
    # training images 0, 2, 3, 1 of labels [0, 1, 0, 0, 1] -> labels 0, 0, 0, 1: three of class 0, one of 1
    prepared = SimpleNamespace(labels=[0, 1, 0, 0, 1], train_idx=[0, 2, 3, 1])
    expected = [w for w in (1 / 3, 1 / 3, 1 / 3, 1.0) for _ in range(repeats)]  # one per patch of an image
    assert balanced_weights(cfg, prepared) == pytest.approx(expected)
    assert balanced_weights(_classify(tmp_path), prepared) is None  # off by default


def test_data_hash_follows_the_content_not_the_location(tmp_path):
    base = prepare_data(_classify(tmp_path)).data_hash
    elsewhere = prepare_data(_classify(tmp_path, f"data.cache_dir={tmp_path / 'other'}"))
    other_images = prepare_data(_classify(tmp_path, "data.synthetic.seed=2"))
    assert len(base) == 16 and int(base, 16) >= 0
    assert elsewhere.data_hash == base  # the same images written to another folder
    assert other_images.dataset.ids() == elsewhere.dataset.ids()  # same ids, other pixels ...
    assert other_images.data_hash != base  # ... so another hash


def test_summarise_folds_mean_and_sample_std(tmp_path):
    rows = [{"fold": 0, "epoch": 3, "val_accuracy": 0.5}, {"fold": 1, "epoch": 5, "val_accuracy": 0.7}]
    result = summarise_folds(rows, tmp_path)
    assert result.mean == {"val_accuracy": pytest.approx(0.6)}
    # sample standard deviation (ddof = 1): sqrt(((0.5 - 0.6)^2 + (0.7 - 0.6)^2) / (2 - 1)) = 0.141421
    assert result.std["val_accuracy"] == pytest.approx(math.sqrt(0.02))
    assert result.std["val_accuracy"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    lines = (tmp_path / "cv_summary.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "mean", "std (ddof=1)"]


def test_cv_folds_from_data_split_and_a_conflicting_count(tmp_path):
    folds = [{"train": ["a", "b"], "val": ["c"]}, {"train": ["b", "c"], "val": ["a"]}]
    path = save_split(tmp_path / "folds.json", folds)
    cfg = _classify(tmp_path, f"data.split={path}")
    assert _cv_splits(cfg, None) == folds and _cv_splits(cfg, 2) == folds
    with pytest.raises(ConfigError, match=r"--folds 3 conflicts with data.split .* holds 2 folds"):
        cross_validate(cfg, folds=3, run_dir=tmp_path / "cv")
    assert not (tmp_path / "cv").exists()  # refused before anything was written
