"""Faults in the training loop: NaN/inf loss or gradients, CUDA out-of-memory (injected on CPU), a dead
DataLoader worker; warnings from rank 0 only."""

from __future__ import annotations

import logging
import math
import os
import signal
import time

import pytest
import torch

from microcnn.engine.distributed import DistInfo
from microcnn.engine.sampling import DataLoaderWorkerError
from microcnn.engine.tasks import build_task
from microcnn.engine.trainer import NonFiniteError, OutOfMemoryFloorError, Trainer
from microcnn.errors import MicrocnnError

from .helpers import Blobs, Trap, fit, flat_weights, tiny_net
from .helpers import train_cfg as _cfg

F64 = ("train.dtype=float64", "optim.momentum=0")


def test_nan_at_step_k_stops_naming_k(tmp_path):
    net = Trap(tiny_net(), nan_at=5)
    with pytest.raises(NonFiniteError, match=r"Non-finite loss \(NaN or inf\) at step 5 \(epoch 1\)"):
        fit(net, _cfg(), run_dir=tmp_path)
    assert not (tmp_path / "model.safetensors").exists()  # nothing saved from a broken run


def test_nan_in_the_gradients_only_stops_naming_the_step(tmp_path):
    net = tiny_net()
    backward_calls = []

    def poison(grad):  # the loss stays finite; the 3rd backward pass gives inf / NaN gradients
        backward_calls.append(1)
        return grad * math.inf if len(backward_calls) == 3 else grad

    net[1].weight.register_hook(poison)
    with pytest.raises(NonFiniteError, match=r"Non-finite gradients \(NaN or inf\) at step 3 \(epoch 1\)"):
        fit(net, _cfg(), run_dir=tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_nan_skip_policy_drops_the_update_but_keeps_the_schedule():
    net = Trap(tiny_net(), nan_at=2)
    opts = ("train.nan_policy=skip", "train.epochs=1", "optim.name=adam", "schedule.name=cosine")
    trainer, result = fit(net, _cfg(*opts, "schedule.min_lr=0.01"), val=False)
    # 24 samples / 4 = 6 steps; the 2nd is dropped: state.step counts it (documented), skipped_steps too,
    # and Adam's own step counter shows 5 applied updates
    assert result.steps == 6 and trainer.state.skipped_steps == 1
    assert [int(s["step"]) for s in trainer.optimizer.state.values()] == [5] * 4
    # the cosine schedule follows the position in the data: after 6 of 6 steps it is at min_lr
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)
    assert torch.isfinite(flat_weights(net)).all()


def test_warnings_come_from_rank_zero_only(caplog):
    task = build_task("classification", class_names=["neg", "pos"])
    trainer = Trainer(tiny_net(), task, _cfg("train.nan_policy=skip"), device=torch.device("cpu"))
    for rank, expected in ((1, 0), (0, 1)):
        caplog.clear()
        trainer.dist = DistInfo(rank=rank, world_size=2)  # no process group: the reduction is a no-op
        with caplog.at_level(logging.WARNING):
            assert trainer._finite(torch.tensor(math.nan), "loss") is False
        assert len(caplog.records) == expected, rank


def test_oom_halves_the_batch_and_says_so(caplog):
    net = Trap(tiny_net(), max_batch=2)
    with caplog.at_level(logging.WARNING):
        trainer, result = fit(net, _cfg("train.batch_size=8", "train.epochs=1"), val=False)
    assert "Out of memory at batch size 8: halved to 4" in caplog.text
    assert "Out of memory at batch size 4: halved to 2" in caplog.text
    assert trainer.state.batch_size == 2 and trainer.state.splits == 4
    # 8 and 4 ran out of memory; then all 24 samples once, 2 at a time
    assert net.batch_sizes[:2] == [8, 4] and net.batch_sizes[2:] == [2] * 12
    assert result.steps == 3  # optimizer steps stay those of batch 8: 24 / 8


@pytest.mark.parametrize(
    "schedule",
    [["schedule.name=onecycle"], ["schedule.name=cosine", "schedule.min_lr=0.01"]],
    ids=["onecycle", "cosine"],
)
def test_oom_keeps_the_steps_and_the_schedule(schedule):
    cfg = _cfg(*F64, "train.batch_size=8", "train.epochs=1", *schedule)
    plain = tiny_net()
    reference, expected = fit(plain, cfg, val=False)
    trapped = Trap(tiny_net(), max_batch=2)
    trainer, result = fit(trapped, cfg, val=False)  # before: one-cycle "Tried to step 4 times"
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert result.steps == expected.steps == 3
    assert lr == pytest.approx(reference.optimizer.param_groups[0]["lr"], rel=1e-12)
    if "schedule.name=cosine" in schedule:  # cosine over the 3 steps: min + (lr - min)(1 + cos pi) / 2
        assert lr == pytest.approx(0.01)
    assert torch.allclose(flat_weights(trapped.net), flat_weights(plain), rtol=0, atol=1e-10)


def test_oom_inside_an_accumulation_step_counts_each_loss_once():
    cfg = _cfg(*F64, "train.batch_size=4", "train.accumulate=2", "train.epochs=1")
    plain = tiny_net()
    _, expected = fit(plain, cfg, val=False)
    trapped = Trap(tiny_net(), oom_at=2)  # the 2nd batch of the first step runs out of memory
    _, result = fit(trapped, cfg, val=False)
    assert result.history[0]["train_loss"] == pytest.approx(expected.history[0]["train_loss"], rel=1e-12)
    assert torch.allclose(flat_weights(trapped.net), flat_weights(plain), rtol=0, atol=1e-10)


def test_oom_at_the_floor_is_a_clear_error():
    with pytest.raises(OutOfMemoryFloorError, match="Out of memory at batch size 4 \\(floor 4\\)"):
        fit(Trap(tiny_net(), max_batch=2), _cfg("train.batch_size=8", "train.min_batch_size=4"), val=False)


class DiesInWorker(Blobs):
    """Kills the DataLoader worker process that loads it (as the kernel's OOM killer would)."""

    def __getitem__(self, i: int) -> dict:
        if torch.utils.data.get_worker_info() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(i)


@pytest.mark.timeout(60)
def test_a_dead_dataloader_worker_fails_promptly_with_a_clear_error():
    start = time.monotonic()
    with pytest.raises(
        DataLoaderWorkerError, match=r"DataLoader worker process died .*data\.num_workers"
    ) as info:
        fit(tiny_net(), _cfg("data.num_workers=1"), train=DiesInWorker(24), val=False)
    assert isinstance(info.value, MicrocnnError) and "DataLoader worker (pid" in str(info.value)
    assert time.monotonic() - start < 10
