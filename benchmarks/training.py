"""Training under a wall-clock CPU budget, for ours and for the peer, by the same microcnn engine.

The budget is the engine's own ``train.max_minutes``: no epoch starts that would end past it, and the
cosine schedule anneals over the time of the budget rather than a planned number of steps. (Earlier runs
planned a number of epochs from a calibrated step time; a noisy calibration then left a model with part
of its budget unused.) ``train.epochs`` of the config stays the upper limit, early stopping still applies.

The peer, segmentation_models_pytorch ``Unet("resnet18", encoder_weights=None)``, is registered in
microcnn's model registry (in this process only) as ``smp_unet_resnet18``, so the very same
``microcnn.engine.train`` (crops, augmentation, loss, optimizer, schedule, validation) trains it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

PEER_NAME = "smp_unet_resnet18"


class SmpUnet(nn.Module):
    """The peer, wrapped: input padded (reflect) to a multiple of 32 and logits cropped back, as ours do.

    Args:
        in_channels: image channels; num_classes: output classes. Input (N, C, H, W) float32, any H, W >= 32.
    """

    task = "segmentation"
    output_stride = 32
    min_input_size = 32

    def __init__(self, in_channels: int = 1, num_classes: int = 3) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.in_channels = in_channels
        self.net = smp.Unet(
            encoder_name="resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes
        )

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.encoder.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[-2:]
        pad_r, pad_c = (-rows) % 32, (-cols) % 32
        if pad_r or pad_c:
            x = nn.functional.pad(x, (0, pad_c, 0, pad_r), mode="reflect")
        return self.net(x)[..., :rows, :cols]


def register_peer() -> str:
    """Register :class:`SmpUnet` as ``smp_unet_resnet18`` (idempotent); returns the name."""
    from microcnn.models.zoo import MODELS, _ensure_loaded, register_model

    _ensure_loaded()
    if PEER_NAME not in MODELS:
        register_model(PEER_NAME, task="segmentation")(SmpUnet)
    return PEER_NAME


@dataclass
class BudgetedRun:
    """What a budgeted training run did: run folder, weights, the epoch cap, epochs done, seconds, stop
    reason ("max_minutes" when the budget ended it), the best epoch's metrics."""

    run_dir: Path
    weights: Path | None
    epochs_cap: int
    epochs_done: int
    seconds: float
    stopped: str
    best: dict[str, float] = field(default_factory=dict)
    minutes: float = float("nan")


def train_budgeted(
    cfg: Any,
    *,
    run_dir: Path,
    minutes: float,
    split: dict[str, list[str]],
) -> BudgetedRun:
    """Train ``cfg`` with ``split`` under ``train.max_minutes = minutes`` (see the module docstring)."""
    from microcnn.config import load_config
    from microcnn.engine import train

    cfg = load_config(cfg, overrides=[f"train.max_minutes={minutes}"])
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def record(epoch: int, step: int, info: dict[str, Any]) -> None:
        if info.get("phase") == "epoch":
            rows.append({k: v for k, v in info.items() if isinstance(v, int | float)})

    stopped = train(cfg, run_dir=run_dir, split=split, progress=record).stopped
    monitor = cfg.train.early_stopping.metric
    key = monitor if monitor.startswith(("val_", "train_")) else f"val_{monitor}"
    scored = [r for r in rows if math.isfinite(r.get(key, math.nan))]
    best = max(scored, key=lambda r: r[key] * (-1 if "loss" in key else 1)) if scored else {}
    weights = run_dir / "model.safetensors"
    return BudgetedRun(
        run_dir,
        weights if weights.exists() else None,
        cfg.train.epochs,
        len(rows),
        time.perf_counter() - start,
        stopped,
        best,
        minutes,
    )


def data_wait_fraction(
    cfg: Any, *, split: dict[str, list[str]], device: str = "cpu", steps: int = 10, bf16: bool = False
) -> dict[str, float]:
    """Fraction of training wall time spent waiting for the next batch (config's loader, crops, workers).

    Runs ``steps`` training steps of ``cfg.model`` on the real training crops of ``split`` with the
    config's batch size and ``data.num_workers``; bf16 autocast when ``bf16`` (CUDA). Returns
    wait_fraction (0..1), img_s and the number of steps timed (the first, with worker start-up, is not).
    """
    from microcnn.engine.api import complete_model_spec
    from microcnn.engine.data import build_datasets, prepare_data
    from microcnn.models import build_model

    prepared = prepare_data(cfg, split=split)
    train_set, _ = build_datasets(cfg, prepared)
    dev = torch.device(device)
    model = build_model(complete_model_spec(cfg, prepared)).to(dev).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        num_workers=cfg.data.num_workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        drop_last=True,
    )
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    wait = total = 0.0
    done = images = 0
    it = iter(loader)
    while done <= steps:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        t1 = time.perf_counter()
        x, y = batch["image"].to(dev), batch["mask"].to(dev).long()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x).float(), y, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        if done > 0:  # the first step pays for worker start-up
            wait, total, images = wait + t1 - t0, total + time.perf_counter() - t0, images + len(x)
        done += 1
    return {"wait_fraction": wait / total, "img_s": images / total, "steps": steps}
