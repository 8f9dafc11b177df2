"""The training loop on tiny in-memory data: learning, resume, accumulation, clipping, NaN, OOM, early stop"""

from __future__ import annotations

import csv

import pytest
import torch

from microcnn.config import load_config
from microcnn.engine.checkpoint import load_weights
from microcnn.engine.tasks import build_task
from microcnn.engine.trainer import NonFiniteError, OutOfMemoryFloorError, Trainer

from .helpers import Blobs, Trap, flat_weights, tiny_net

CPU = torch.device("cpu")


def _cfg(*overrides: str):
    base = [
        "train.epochs=3",
        "train.batch_size=4",
        "optim.name=sgd",
        "optim.lr=0.1",
        "train.deterministic=true",
    ]
    return load_config({"task": "classification", "model": {"name": "tiny"}}, overrides=[*base, *overrides])


def _fit(net, cfg, *, run_dir=None, n=24, resume=False, val=True):
    task = build_task("classification", class_names=["neg", "pos"])
    trainer = Trainer(net, task, cfg, device=CPU, run_dir=run_dir, metadata={"model": {"name": "tiny"}})
    return trainer, trainer.fit(Blobs(n), Blobs(8, seed=1) if val else None, resume=resume)


def test_learns_and_writes_run_files(tmp_path):
    net = tiny_net()
    _, result = _fit(net, _cfg("train.epochs=6"), run_dir=tmp_path)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.6 * losses[0]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6] and "val_accuracy" in rows[0]
    _, meta = load_weights(tmp_path / "model.safetensors")
    assert meta["epoch"] == result.best_epoch
    assert meta["metrics"]["val_loss"] == min(r["val_loss"] for r in result.history)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    # dropout draws from the global RNG: resume must restore it as well as the sample position
    full = tiny_net(dropout=0.2)
    _fit(full, _cfg("train.checkpoint_every_steps=2"), run_dir=tmp_path / "a")
    cut = tiny_net(dropout=0.2)
    _fit(cut, _cfg("train.checkpoint_every_steps=2", "train.max_steps=8"), run_dir=tmp_path / "b")
    torch.manual_seed(999)  # the resumed run must not depend on the RNG it starts with
    resumed = tiny_net(seed=5, dropout=0.2)
    _, result = _fit(resumed, _cfg("train.checkpoint_every_steps=2"), run_dir=tmp_path / "b", resume=True)
    assert result.steps == 18  # 24 samples / 4 = 6 steps per epoch; 8 done before the cut
    assert torch.equal(flat_weights(resumed), flat_weights(full))


def test_accumulation_equals_the_large_batch():
    cfg64 = ("train.dtype=float64", "train.epochs=1", "optim.momentum=0")
    big, small = tiny_net(), tiny_net()
    _fit(big, _cfg(*cfg64, "train.batch_size=8"), val=False)
    _fit(small, _cfg(*cfg64, "train.batch_size=4", "train.accumulate=2"), val=False)
    # same samples per step only if the 8-sample order is cut the same way: both draw the same permutation
    assert torch.allclose(flat_weights(big), flat_weights(small), atol=1e-12)


def test_gradient_clipping_bounds_the_step():
    net = tiny_net()
    before = flat_weights(net).double()
    _fit(
        net,
        _cfg(
            "train.epochs=1",
            "train.max_steps=1",
            "optim.lr=1",
            "optim.momentum=0",
            "train.clip_grad_norm=0.01",
        ),
        val=False,
    )
    # SGD with lr 1: the weight change equals the clipped gradient, whose norm is 0.01
    assert float((flat_weights(net).double() - before).norm()) == pytest.approx(0.01, rel=1e-4)


def test_nan_at_step_k_stops_naming_k(tmp_path):
    net = Trap(tiny_net(), nan_at=5)
    with pytest.raises(NonFiniteError, match=r"at step 5 \(epoch 1, batch 5\)"):
        _fit(net, _cfg(), run_dir=tmp_path)
    assert not (tmp_path / "model.safetensors").exists()  # nothing saved from a broken run


def test_nan_skip_policy_drops_the_step():
    net = Trap(tiny_net(), nan_at=2)
    trainer, result = _fit(net, _cfg("train.nan_policy=skip", "train.epochs=1"), val=False)
    assert trainer.state.skipped_steps == 1 and result.steps == 6
    assert torch.isfinite(flat_weights(net)).all()


def test_oom_halves_the_batch():
    net = Trap(tiny_net(), max_batch=2)
    trainer, result = _fit(net, _cfg("train.batch_size=8", "train.epochs=1"), val=False)
    assert trainer.state.batch_size == 2
    assert net.batch_sizes[:3] == [8, 4, 2] and set(net.batch_sizes[3:]) == {2}
    assert result.steps == 12  # all 24 samples seen once, 2 at a time


def test_oom_at_the_floor_is_a_clear_error():
    with pytest.raises(OutOfMemoryFloorError, match="Out of memory at batch size 4 \\(floor 4\\)"):
        _fit(Trap(tiny_net(), max_batch=2), _cfg("train.batch_size=8", "train.min_batch_size=4"), val=False)


def test_early_stopping_when_nothing_improves():
    # lr tiny: val accuracy stays the same, so after the first epoch it never improves
    cfg = _cfg(
        "train.epochs=10",
        "optim.lr=1e-12",
        "train.early_stopping.metric=accuracy",
        "train.early_stopping.patience=2",
    )
    _, result = _fit(tiny_net(), cfg)
    assert result.stopped == "early_stopping" and len(result.history) == 3 and result.best_epoch == 1
