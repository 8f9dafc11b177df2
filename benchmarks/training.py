"""Training under a wall-clock CPU budget, for ours and for the peer, by the same microcnn engine.

The engine has no ``train.max_minutes``; so the budget is turned into a number of epochs from a measured
training-step time (forward, backward, AdamW step on one batch of crops of the config's size), and a guard
ends training at the first epoch end past the budget (the best epoch's ``model.safetensors`` stays). The
cosine schedule therefore spans the epochs that fit, for both models alike.

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


def step_seconds(cfg: Any, *, in_channels: int, num_classes: int, repeats: int = 4) -> float:
    """Seconds of one training step of ``cfg.model`` on a batch of the config's crops: the fastest of
    ``repeats`` after a warm-up (the minimum is the least disturbed by other jobs on a shared CPU, so two
    models calibrated minutes apart still get budgets in the right proportion)."""
    from benchmarks.bench_speed import _step_fns
    from microcnn.models import build_model

    spec = {"in_channels": in_channels, "num_classes": num_classes, **cfg.model}
    side = cfg.data.patch_size or 256
    x = torch.rand(cfg.train.batch_size, in_channels, side, side)
    _, train_step = _step_fns(build_model(spec), x)
    train_step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - t0)
    return min(times)


@dataclass
class BudgetedRun:
    """What a budgeted training run did: run folder, weights, epochs planned/done, seconds, stop reason."""

    run_dir: Path
    weights: Path | None
    epochs_planned: int
    epochs_done: int
    seconds: float
    stopped: str
    best: dict[str, float] = field(default_factory=dict)
    step_seconds: float = float("nan")


class _BudgetReached(Exception):
    pass


def epochs_for_budget(*, minutes: float, step_s: float, steps_per_epoch: int, overhead: float = 1.3) -> int:
    """Whole epochs that fit ``minutes`` at ``step_s`` per step (``overhead`` for validation and data)."""
    return max(1, math.floor(minutes * 60 / (step_s * steps_per_epoch * overhead)))


def train_budgeted(
    cfg: Any,
    *,
    run_dir: Path,
    minutes: float,
    split: dict[str, list[str]],
    num_classes: int,
    in_channels: int = 1,
) -> BudgetedRun:
    """Train ``cfg`` with ``split`` for about ``minutes`` of wall clock (see the module docstring)."""
    from microcnn.config import load_config
    from microcnn.engine import train

    steps = math.ceil(len(split["train"]) * cfg.data.patches_per_image / cfg.train.batch_size)
    step_s = step_seconds(cfg, in_channels=in_channels, num_classes=num_classes)
    epochs = epochs_for_budget(minutes=minutes, step_s=step_s, steps_per_epoch=steps)
    warmup = min(cfg.schedule.warmup_epochs, epochs / 5)
    cfg = load_config(cfg, overrides=[f"train.epochs={epochs}", f"schedule.warmup_epochs={warmup}"])
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []

    def guard(epoch: int, step: int, info: dict[str, Any]) -> None:
        if info.get("phase") == "epoch":
            rows.append({k: v for k, v in info.items() if isinstance(v, int | float)})
            if time.perf_counter() - start > minutes * 60:
                raise _BudgetReached

    try:
        stopped = train(cfg, run_dir=run_dir, split=split, progress=guard).stopped
    except _BudgetReached:
        stopped = "budget"
    monitor = cfg.train.early_stopping.metric
    key = monitor if monitor.startswith(("val_", "train_")) else f"val_{monitor}"
    scored = [r for r in rows if math.isfinite(r.get(key, math.nan))]
    best = max(scored, key=lambda r: r[key] * (-1 if "loss" in key else 1)) if scored else {}
    weights = run_dir / "model.safetensors"
    return BudgetedRun(
        run_dir,
        weights if weights.exists() else None,
        epochs,
        len(rows),
        time.perf_counter() - start,
        stopped,
        best,
        step_s,
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
