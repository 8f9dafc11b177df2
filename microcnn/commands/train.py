"""``microcnn train CONFIG [--set key=value ...] [--resume]``: train an experiment into runs/<name>/.

Examples:
  microcnn train configs/segment_unet_bilinear.yaml
  microcnn train configs/classify_lenet5.yaml --set train.epochs=3 --set optim.lr=1e-3
  microcnn train configs/uhcs.yaml --resume                       # continue runs/uhcs/last.pt
  torchrun --nproc_per_node 2 -m microcnn train configs/uhcs.yaml  # DDP (NCCL on GPUs, gloo on CPU)
"""

from __future__ import annotations

import argparse
import os
from typing import Any


class EpochBars:
    """tqdm bars for the Trainer's progress callback: one bar per epoch, one summary line per epoch."""

    def __init__(self, epochs: int, *, enabled: bool = True) -> None:
        self.epochs, self.enabled, self.bar = epochs, enabled, None

    def __call__(self, epoch: int, step: int, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if info.get("phase") == "train":
            if self.bar is None:
                self.bar = tqdm(
                    total=info["batches"], desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=False
                )
            self.bar.update(info["batch"] - self.bar.n)  # batches done (several per step when accumulating)
            self.bar.set_postfix(loss=f"{info['loss']:.4f}", lr=f"{info['lr']:.2e}")
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        shown = {
            k: v
            for k, v in info.items()
            if k in ("train_loss", "val_loss")
            or k.startswith("val_mean")
            or k in ("val_accuracy", "val_macro_f1", "val_mae", "val_rmse", "val_r2")
        }
        tqdm.write(
            f"epoch {info['epoch']}/{self.epochs}  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
        )


def summary_table(row: dict[str, Any], title: str) -> str:
    """A two-column text table of a metrics row."""
    width = max((len(k) for k in row), default=0)
    lines = [title, "-" * len(title)]
    for key, value in row.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from microcnn.config import load_config
    from microcnn.engine.api import train

    cfg = load_config(args.config, overrides=args.set)
    is_main = int(os.environ.get("RANK", "0")) == 0
    result = train(
        cfg, run_dir=args.run_dir, resume=args.resume, progress=EpochBars(cfg.train.epochs, enabled=is_main)
    )
    if is_main:
        print(
            summary_table(
                result.best, f"best epoch {result.best_epoch} ({result.stopped}) -> {result.run_dir}"
            )
        )
    from microcnn.engine.distributed import shutdown

    shutdown()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="experiment YAML (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable; values are YAML)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <run dir>/last.pt")
    p.add_argument("--run-dir", default=None, help="run folder (default: <output_dir>/<name>)")
    p.set_defaults(func=run)
