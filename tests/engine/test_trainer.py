"""The training loop on tiny in-memory data: learning, resume, accumulation, clipping, schedules, early
stopping, channels_last, torch.compile. Faults (NaN, OOM, dead workers) are in test_trainer_faults.py."""

from __future__ import annotations

import csv
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from microcnn.engine.checkpoint import load_weights
from microcnn.engine.distributed import loss_weight

from .helpers import Blobs, fit, flat_weights, tiny_net
from .helpers import train_cfg as _cfg

F64 = ("train.dtype=float64", "optim.momentum=0")


def test_learns_and_writes_run_files(tmp_path):
    net = tiny_net()
    _, result = fit(net, _cfg("train.epochs=6"), run_dir=tmp_path)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.6 * losses[0]
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6] and "val_accuracy" in rows[0]
    _, meta = load_weights(tmp_path / "model.safetensors")
    assert meta["epoch"] == result.best_epoch and meta["partial_epoch"] is False
    assert meta["metrics"]["val_loss"] == min(r["val_loss"] for r in result.history)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    # dropout draws from the global RNG: resume must restore it as well as the sample position;
    # a step schedule (lr halved after each epoch) must not count the epoch that max_steps cut short
    opts = (
        "train.checkpoint_every_steps=2",
        "schedule.name=step",
        "schedule.step_size=1",
        "schedule.gamma=0.5",
    )
    full = tiny_net(dropout=0.2)
    done, _ = fit(full, _cfg(*opts), run_dir=tmp_path / "a")
    cut = tiny_net(dropout=0.2)
    fit(cut, _cfg(*opts, "train.max_steps=8"), run_dir=tmp_path / "b")
    torch.manual_seed(999)  # the resumed run must not depend on the RNG it starts with
    resumed = tiny_net(seed=5, dropout=0.2)
    trainer, result = fit(resumed, _cfg(*opts), run_dir=tmp_path / "b", resume=True)
    assert result.steps == 18  # 24 samples / 4 = 6 steps per epoch; 8 done before the cut
    assert torch.equal(flat_weights(resumed), flat_weights(full))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)  # 3 epochs, 3 decays
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert (trainer.state.best_epoch, trainer.state.bad_epochs) == (
        done.state.best_epoch,
        done.state.bad_epochs,
    )
    (wa, meta_a), (wb, meta_b) = (load_weights(tmp_path / r / "model.safetensors") for r in "ab")
    assert meta_a == meta_b and all(torch.equal(wa[k], wb[k]) for k in wa)


class GlobalNoise(Blobs):
    """Blobs plus noise from NumPy's and Python's global generators (as a user's dataset might draw)."""

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        noise = 0.1 * float(np.random.standard_normal()) + 0.1 * random.gauss(0.0, 1.0)
        return {**sample, "image": sample["image"] + noise}


def test_resume_continues_numpy_and_python_random_streams(tmp_path):
    def reseed(seed):
        np.random.seed(seed)
        random.seed(seed)

    reseed(7)
    full = tiny_net()
    fit(full, _cfg(), run_dir=tmp_path / "a", train=GlobalNoise(24))
    after = (np.random.random(), random.random())  # where the uninterrupted run left both streams
    reseed(7)
    fit(tiny_net(), _cfg("train.max_steps=8"), run_dir=tmp_path / "b", train=GlobalNoise(24))
    reseed(999)
    resumed = tiny_net(seed=5)
    fit(resumed, _cfg(), run_dir=tmp_path / "b", resume=True, train=GlobalNoise(24))
    assert (np.random.random(), random.random()) == after
    assert torch.equal(flat_weights(resumed), flat_weights(full))


def test_a_run_cut_before_its_first_epoch_leaves_a_provisional_model(tmp_path):
    fit(tiny_net(), _cfg("train.max_steps=2"), run_dir=tmp_path)
    _, meta = load_weights(tmp_path / "model.safetensors")
    assert meta["partial_epoch"] is True and meta["epoch"] == 1 and meta["metrics"]["step"] == 2
    trainer, _ = fit(tiny_net(), _cfg(), run_dir=tmp_path, resume=True)
    _, meta = load_weights(tmp_path / "model.safetensors")
    assert meta["partial_epoch"] is False and meta["epoch"] == trainer.state.best_epoch


def test_accumulation_equals_the_large_batch():
    big, small = tiny_net(), tiny_net()
    fit(big, _cfg(*F64, "train.epochs=1", "train.batch_size=8"), val=False)
    fit(small, _cfg(*F64, "train.epochs=1", "train.batch_size=4", "train.accumulate=2"), val=False)
    # same samples per step only if the 8-sample order is cut the same way: both draw the same permutation
    assert torch.allclose(flat_weights(big), flat_weights(small), atol=1e-12)


@pytest.mark.parametrize(
    ("n", "big", "small", "accumulate"),
    [
        pytest.param(24, 16, 4, 4, id="last-step-of-2-batches"),  # steps of 16 and 8 samples
        pytest.param(22, 8, 4, 2, id="last-batch-short"),  # steps of 8, 8 and 6 (= 4 + 2) samples
    ],
)
def test_a_short_last_accumulation_step_gets_the_mean_gradient(n, big, small, accumulate):
    one, acc = tiny_net(), tiny_net()
    fit(one, _cfg(*F64, "train.epochs=1", f"train.batch_size={big}"), n=n, val=False)
    fit(
        acc,
        _cfg(*F64, "train.epochs=1", f"train.batch_size={small}", f"train.accumulate={accumulate}"),
        n=n,
        val=False,
    )
    assert torch.allclose(flat_weights(one), flat_weights(acc), rtol=0, atol=1e-10)


def test_loss_weight_makes_uneven_rank_shares_count_each_sample_once():
    # DDP averages the ranks' gradients; a global batch of 3 split 2 + 1 must give the one-process gradient
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(3, 4, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    w = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)

    def grad(xs, ys, factor=1.0):
        return torch.autograd.grad(factor * ((xs @ w - ys) ** 2).mean(), w)[0]

    one_process = grad(x, y)
    shares = [(x[:2], y[:2]), (x[2:], y[2:])]
    ddp = sum(grad(xs, ys, loss_weight(len(xs), 2, 3)) for xs, ys in shares) / 2
    torch.testing.assert_close(ddp, one_process, rtol=0, atol=1e-14)
    unweighted = sum(grad(xs, ys) for xs, ys in shares) / 2
    assert not torch.allclose(unweighted, one_process)  # what plain DDP averaging of the means gives


def test_gradient_clipping_bounds_the_step():
    net = tiny_net()
    before = flat_weights(net).double()
    opts = (
        "train.epochs=1",
        "train.max_steps=1",
        "optim.lr=1",
        "optim.momentum=0",
        "train.clip_grad_norm=0.01",
    )
    fit(net, _cfg(*opts), val=False)
    # SGD with lr 1: the weight change equals the clipped gradient, whose norm is 0.01
    assert float((flat_weights(net).double() - before).norm()) == pytest.approx(0.01, rel=1e-4)


def test_early_stopping_when_nothing_improves():
    # lr tiny: val accuracy stays the same, so after the first epoch it never improves
    cfg = _cfg(
        "train.epochs=10",
        "optim.lr=1e-12",
        "train.early_stopping.metric=accuracy",
        "train.early_stopping.patience=2",
    )
    _, result = fit(tiny_net(), cfg)
    assert result.stopped == "early_stopping" and len(result.history) == 3 and result.best_epoch == 1


def _best_epoch(values, *, minimize, delta):
    """The rule, written out: an epoch is the new best when it beats the best so far by more than delta."""
    best, epoch = values[0], 1
    for e, v in enumerate(values[1:], start=2):
        if (v < best - delta) if minimize else (v > best + delta):
            best, epoch = v, e
    return epoch


def test_early_stopping_mode_and_min_delta():
    _, free = fit(tiny_net(), _cfg("train.epochs=5", "optim.lr=0.02"))
    losses = [r["val_loss"] for r in free.history]
    delta = (losses[0] - losses[-1]) / 2
    cases = (("max", 0.0, False), ("min", delta, True), ("auto", 0.0, True))
    expected = [_best_epoch(losses, minimize=minimize, delta=d) for _, d, minimize in cases]
    assert len(set(expected)) == 3  # the three rules pick different epochs on this run, e.g. 1, 3, 5
    for (mode, d, _), best in zip(cases, expected, strict=True):
        opts = ("train.epochs=5", "optim.lr=0.02", f"train.early_stopping.mode={mode}")
        _, result = fit(tiny_net(), _cfg(*opts, f"train.early_stopping.min_delta={d}"))
        assert [r["val_loss"] for r in result.history] == losses  # the choice does not change training
        assert result.best_epoch == best, mode
    # a min_delta nothing can beat: epoch 1 stays best and patience 2 stops after epoch 3
    opts = ("train.epochs=5", "train.early_stopping.min_delta=1e9", "train.early_stopping.patience=2")
    _, result = fit(tiny_net(), _cfg(*opts))
    assert (result.stopped, result.best_epoch, len(result.history)) == ("early_stopping", 1, 3)


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(64, 2))


def test_channels_last_on_cpu_gives_the_same_step():
    plain, fast = _conv_net(), _conv_net()
    seen = []
    fast[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    opts = ("train.epochs=1", "train.max_steps=1", "train.dtype=float64")
    fit(plain, _cfg(*opts), train=Blobs(8, channels=3), val=False)
    fit(fast, _cfg(*opts, "train.channels_last=true"), train=Blobs(8, channels=3), val=False)
    assert len(seen) == 1 and seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[0].is_contiguous()  # NHWC strides, not a tensor that is both
    weight = fast[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert torch.allclose(flat_weights(plain), flat_weights(fast), rtol=0, atol=1e-12)


class FakeCompiled(nn.Module):
    """What the monkeypatched torch.compile returns: the module under ``_orig_mod``, forward calls counted."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._orig_mod, self.calls = module, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self._orig_mod(x)


def test_compile_wraps_the_model_when_configured(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, **_: FakeCompiled(module))
    net = tiny_net()
    trainer, _ = fit(net, _cfg("train.compile=true", "train.epochs=1"), run_dir=tmp_path)
    assert isinstance(trainer.model, FakeCompiled) and trainer.model._orig_mod is net
    assert trainer.model.calls == 6  # every training step (24 samples / 4) went through the compiled module
    state, _ = load_weights(tmp_path / "model.safetensors")
    assert sorted(state) == sorted(net.state_dict())  # saved without the wrapper's "_orig_mod." prefix
    plain, _ = fit(tiny_net(), _cfg("train.epochs=1"))
    assert plain.model is plain.raw  # not compiled unless asked


@pytest.mark.slow
def test_real_compile_matches_eager():
    eager, compiled = tiny_net(), tiny_net()
    fit(eager, _cfg("train.epochs=1"), val=False)
    fit(compiled, _cfg("train.epochs=1", "train.compile=true"), val=False)
    assert torch.allclose(flat_weights(eager), flat_weights(compiled), atol=1e-5)


class _Ticking(Blobs):
    """Blobs whose every training sample costs one second of a fake clock (validation samples cost none)."""

    def __init__(self, n: int, clock: list[float]) -> None:
        super().__init__(n)
        self.clock = clock

    def __getitem__(self, i: int) -> dict:
        self.clock[0] += 1.0
        return super().__getitem__(i)


def test_max_minutes_starts_no_epoch_that_would_end_past_the_budget(tmp_path, monkeypatch):
    """8 samples of 1 s per epoch and a 0.5-minute budget: epochs end at 8, 16, 24 s; a 4th would end at
    32 s > 30 s, so 3 epochs run (of 50 allowed). The cosine lr at each epoch end is the closed form at the
    fraction of the budget spent, 8/30, 16/30 and 24/30; a resume with more time continues the clock."""
    import types

    from microcnn.engine import trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    opts = ("train.epochs=50", "train.max_minutes=0.5", "schedule.name=cosine", "train.batch_size=2")
    trainer, result = fit(tiny_net(), _cfg(*opts), run_dir=tmp_path, train=_Ticking(8, clock))
    assert result.stopped == "max_minutes" and [r["epoch"] for r in result.history] == [1, 2, 3]
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * t / 30)) for t in (8, 16, 24)])
    assert trainer.state.elapsed_s == pytest.approx(24.0) and trainer.state.epoch_s == pytest.approx(8.0)

    clock[0] += 1000.0  # time between the stop and the resume does not count
    more = _cfg(*opts[:1], "train.max_minutes=0.7", *opts[2:])
    trainer, result = fit(tiny_net(), more, run_dir=tmp_path, train=_Ticking(8, clock), resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5] and result.stopped == "max_minutes"
    assert result.history[-1]["lr"] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 40 / 42)))


def test_max_minutes_must_be_positive():
    from microcnn.errors import MicrocnnError

    with pytest.raises(
        MicrocnnError, match=r"train\.max_minutes must be a positive number of minutes; got 0\b"
    ):
        fit(tiny_net(), _cfg("train.max_minutes=0"))
