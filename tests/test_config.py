"""Experiment config: defaults, coercion from YAML, overrides, did-you-mean errors, round trip."""

from __future__ import annotations

import pytest

from microcnn.config import ExperimentConfig, load_config, parse_override, save_config
from microcnn.errors import ConfigError


def test_defaults_and_override_types():
    cfg = load_config(
        {"task": "classification"}, overrides=["train.epochs=3", "optim.lr=1e-4", "model.depth=3"]
    )
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.model == {"name": "unet", "depth": 3}  # free mapping: any key allowed
    assert cfg.train.early_stopping.metric == "val_loss"


def test_yaml_strings_are_coerced(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 without a dot as a string; ints are fine where floats are wanted.
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 0\ntrain:\n  deterministic: yes\n", encoding="utf-8")
    cfg = load_config(path)
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.0 and cfg.train.deterministic is True


@pytest.mark.parametrize(
    ("raw", "overrides", "fragment"),
    [
        ({"trian": {}}, [], "Unknown config key 'trian'. Did you mean 'train'?"),
        ({}, ["train.epcohs=2"], "Unknown config key 'train.epcohs'. Did you mean 'epochs'?"),
        ({}, ["train.early_stopping.patince=2"], "'train.early_stopping.patince'. Did you mean 'patience'?"),
        ({"optim": {"name": "adamm"}}, [], "'optim.name'. Did you mean 'adam'?"),
        ({"task": "segmentaton"}, [], "Did you mean 'segmentation'?"),
        ({}, ["train.epochs=many"], "'train.epochs' must be int; got 'many'"),
        ({}, ["train.epochs=0"], "'train.epochs' must be >= 1"),
        ({"optim": {"betas": 0.9}}, [], "'optim.betas' must be a list"),
        ({"model": {"depth": 3}}, [], "'model' needs a 'name'"),
        ({}, ["train"], "must look like key.sub=value"),
    ],
)
def test_errors_name_the_path(raw, overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(raw, overrides=overrides)
    assert fragment in str(info.value)


def test_override_values_are_yaml():
    assert parse_override("data.class_names=[a, b]") == (["data", "class_names"], ["a", "b"])
    assert parse_override("train.clip_grad_norm=null") == (["train", "clip_grad_norm"], None)


def test_round_trip(tmp_path):
    cfg = load_config(
        {
            "task": "regression",
            "model": {"name": "regressor", "backbone": "tinyvgg"},
            "augment": [{"name": "X"}],
        },
        overrides=["schedule.name=cosine", "schedule.warmup_epochs=1.5"],
    )
    back = load_config(save_config(cfg, tmp_path / "c.yaml"))
    assert back == cfg
    assert isinstance(back, ExperimentConfig)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
