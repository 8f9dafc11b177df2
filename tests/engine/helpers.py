"""Tiny in-memory datasets and networks for the engine tests (no files, CPU, milliseconds per step)."""

from __future__ import annotations

import torch
from torch import nn


class Blobs:
    """n samples of (channels, 4, 4) noise; label 1 where the mean is positive. ``dtype`` float32/float64."""

    def __init__(
        self, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32, channels: int = 1
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, channels, 4, 4, generator=g, dtype=dtype)
        self.y = (self.x.mean(dim=(1, 2, 3)) > 0).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.x[i], "label": self.y[i]}


def tiny_net(seed: int = 0, *, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 2))


class Trap(nn.Module):
    """Wraps a net: its ``nan_at``-th forward call (1-based) returns NaN; inputs with more than ``max_batch``
    samples, and the ``oom_at``-th forward call, raise torch.OutOfMemoryError (an injected CUDA OOM)."""

    def __init__(
        self,
        net: nn.Module,
        *,
        nan_at: int | None = None,
        max_batch: int | None = None,
        oom_at: int | None = None,
    ) -> None:
        super().__init__()
        self.net, self.nan_at, self.max_batch, self.oom_at, self.calls = net, nan_at, max_batch, oom_at, 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            self.batch_sizes.append(int(x.shape[0]))
            too_big = self.max_batch is not None and x.shape[0] > self.max_batch
            if too_big or self.calls == self.oom_at:
                raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        out = self.net(x)
        return out * float("nan") if self.training and self.calls == self.nan_at else out


def flat_weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def train_cfg(*overrides: str):
    """A classification config for the tiny nets: 3 epochs of batch 4, SGD lr 0.1, deterministic."""
    from microcnn.config import load_config

    base = [
        "train.epochs=3",
        "train.batch_size=4",
        "optim.name=sgd",
        "optim.lr=0.1",
        "train.deterministic=true",
    ]
    return load_config({"task": "classification", "model": {"name": "tiny"}}, overrides=[*base, *overrides])


def fit(net, cfg, *, run_dir=None, n=24, resume=False, val=True, train=None, **trainer_options):
    """(Trainer, FitResult) of ``net`` on ``train`` (default Blobs(n)), validated on Blobs(8, seed=1)."""
    from microcnn.engine.tasks import build_task
    from microcnn.engine.trainer import Trainer

    task = build_task("classification", class_names=["neg", "pos"])
    trainer = Trainer(
        net,
        task,
        cfg,
        device=torch.device("cpu"),
        run_dir=run_dir,
        metadata={"model": {"name": "tiny"}},
        **trainer_options,
    )
    train = train if train is not None else Blobs(n)
    return trainer, trainer.fit(train, Blobs(8, seed=1) if val else None, resume=resume)
