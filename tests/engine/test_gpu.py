"""CUDA paths (skipped without a GPU): bf16/fp16 autocast with a GradScaler, channels_last, OOM is real."""

from __future__ import annotations

import pytest
import torch

from microcnn.config import load_config
from microcnn.engine.device import amp_dtype, select_device
from microcnn.engine.tasks import build_task
from microcnn.engine.trainer import Trainer

from .helpers import Blobs, flat_weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _conv_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(128, 2)
    )


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_training_on_cuda(amp):
    device = select_device("cuda")
    cfg = load_config(
        {"task": "classification", "model": {"name": "x"}},
        overrides=[f"train.amp={amp}", "train.channels_last=true", "train.epochs=3", "optim.lr=0.01"],
    )
    net = _conv_net()
    trainer = Trainer(net, build_task("classification", class_names=["a", "b"]), cfg, device=device)
    result = trainer.fit(Blobs(32), Blobs(8, seed=1))
    assert trainer.amp == (torch.bfloat16 if amp == "bf16" else torch.float16)
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert torch.isfinite(flat_weights(net)).all() and next(net.parameters()).dtype == torch.float32


def test_auto_amp_prefers_bf16():
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype(torch.device("cuda"), "auto") == expected
