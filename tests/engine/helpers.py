"""Tiny in-memory datasets and networks for the engine tests (no files, CPU, milliseconds per step)."""

from __future__ import annotations

import torch
from torch import nn


class Blobs:
    """n samples of (1, 4, 4) noise; label 1 where the mean is positive. ``dtype`` float32 or float64."""

    def __init__(self, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 4, 4, generator=g, dtype=dtype)
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
    samples raise torch.OutOfMemoryError (an injected CUDA OOM)."""

    def __init__(self, net: nn.Module, *, nan_at: int | None = None, max_batch: int | None = None) -> None:
        super().__init__()
        self.net, self.nan_at, self.max_batch, self.calls = net, nan_at, max_batch, 0
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
            self.batch_sizes.append(int(x.shape[0]))
            if self.max_batch is not None and x.shape[0] > self.max_batch:
                raise torch.OutOfMemoryError("CUDA out of memory (injected by the test)")
        out = self.net(x)
        return out * float("nan") if self.training and self.calls == self.nan_at else out


def flat_weights(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])
