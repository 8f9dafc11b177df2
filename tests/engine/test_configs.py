"""Every config in configs/ trains for a few steps (tiny overrides); real-data configs need ../shared/data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from microcnn.config import load_config
from microcnn.engine.api import train
from microcnn.engine.checkpoint import load_model

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
REAL = {"uhcs.yaml": "uhcs_seg24", "nasa_super1.yaml": "nasa_super"}
SMALL = ["train.epochs=1", "train.max_steps=2", "train.batch_size=4", "data.num_workers=0"]
# per config: tiny synthetic sets and narrow models, so each trains in seconds on a shared 2-core CPU
TINY = {
    "classify_lenet5.yaml": ["data.synthetic.n=12"],
    "classify_resnet18.yaml": ["data.synthetic.n=12", "data.synthetic.size=32"],
    "regress_porous.yaml": ["data.synthetic.n=10", "data.synthetic.size=32"],
    "regress_size.yaml": ["data.synthetic.n=10", "data.synthetic.size=48"],
    "uhcs.yaml": ["data.patch_size=64", "data.patches_per_image=1", "model.base_channels=4", "model.depth=2"],
    "nasa_super1.yaml": [
        "data.patch_size=64",
        "data.patches_per_image=4",
        "model.decoder_channels=[16, 8, 8, 8, 8]",
    ],
}
SEGMENT = ["data.synthetic.n=8", "data.synthetic.size=48", "data.patch_size=32", "model.base_channels=4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


def test_the_promised_configs_exist():
    names = {p.name for p in CONFIGS}
    promised = {
        "segment_unet_transpose.yaml",
        "segment_unet_bilinear.yaml",
        "segment_segnet_unpool.yaml",
        "classify_lenet5.yaml",
        "classify_resnet18.yaml",
        "regress_porous.yaml",
        *REAL,
    }
    assert promised <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_trains_a_few_steps(path, cache, tmp_path, monkeypatch):
    if path.name in REAL:
        from tests.conftest import shared_dataset

        root = shared_dataset(REAL[path.name])
        monkeypatch.chdir(REPO)  # their relative paths (splits) are meant for the repository root
    overrides = [*SMALL, f"data.cache_dir={cache}", *TINY.get(path.name, SEGMENT)]
    if path.name in REAL:  # the data where it was found (MICROCNN_SHARED_DATA or ../shared/data)
        overrides.append(f"data.source={root}")
        if csv := load_config(path).data.samples_csv:
            overrides.append(f"data.samples_csv={root / Path(csv).name}")
    if path.name == "nasa_super1.yaml":  # 2 training and 1 validation image of the Super1 split
        from microcnn.data.splits import load_split, save_split

        super1 = load_split(REPO / "configs" / "splits" / "nasa_super1.json")
        small = save_split(tmp_path / "split.json", {"train": super1["train"][:2], "val": super1["val"][:1]})
        overrides.append(f"data.split={small}")
    cfg = load_config(path, overrides=overrides)
    result = train(cfg, run_dir=tmp_path / "run")
    assert result.stopped == "max_steps" and result.history[-1]["step"] == 2
    assert math.isfinite(result.history[-1]["train_loss"])
    _, meta = load_model(result.weights)
    assert meta["task"] == cfg.task and meta["model"]["name"] == cfg.model["name"]
    for name in ("config.yaml", "split.json", "augmentation.json", "metrics.csv", "last.pt"):
        assert (tmp_path / "run" / name).is_file()
