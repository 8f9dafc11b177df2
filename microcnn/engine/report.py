"""Run-folder reports: ``metrics.csv`` (one row per epoch) and ``curves.png`` (loss and monitored metric).

Example:
    >>> write_metrics_csv([{"epoch": 1, "train_loss": 0.7}], "runs/x/metrics.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from microcnn.engine.checkpoint import atomic_write


def write_metrics_csv(history: list[dict[str, Any]], path: str | Path) -> Path:
    """All epochs' rows; columns in first-seen order; missing values left empty."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    data = buf.getvalue().encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def write_curves(history: list[dict[str, Any]], path: str | Path, *, monitor: str = "val_loss") -> Path:
    """Loss curves (train and validation) and, when it is not a loss, the monitored metric, per epoch."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    panels = [("loss", ["train_loss", "val_loss"])]
    if monitor not in ("val_loss", "train_loss"):
        panels.append((monitor.removeprefix("val_"), [monitor]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels, strict=True):
        for key in keys:
            values = [row.get(key, math.nan) for row in history]
            if any(isinstance(v, float | int) and math.isfinite(v) for v in values):
                ax.plot(epochs, values, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return atomic_write(path, lambda fh: fh.write(buf.getvalue()))
