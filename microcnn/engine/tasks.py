"""Task objects: what a batch means, the loss and the metrics of classification, segmentation, regression.

The network is separate from the task (Lightning's "systems vs models"): a task takes any ``nn.Module``
whose ``forward`` returns logits or values, and a batch dict from ``microcnn.data`` with "image" (N, C, H, W)
float and its target: "label" (N,) int64, "mask" (N, H, W) int64 (255 = not labelled) or "target" (N, T).

Example:
    >>> task = build_task("segmentation", loss={"name": "dice_ce"}, class_names=["matrix", "phase"])
    >>> task.target_key
    'mask'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from microcnn.engine.losses import build_loss, penalty
from microcnn.engine.metrics import TaskMetrics, build_metrics
from microcnn.registry import check_choice

TARGET_KEYS = {"classification": "label", "segmentation": "mask", "regression": "target"}


class Task:
    """Loss + metrics + the two steps; subclasses only name their target key."""

    name = ""
    target_key = ""

    def __init__(
        self,
        *,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        metrics: TaskMetrics,
        l1: float = 0.0,
        l2: float = 0.0,
    ) -> None:
        self.loss = loss
        self.metrics = metrics
        self.l1 = l1
        self.l2 = l2

    def target(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.target_key not in batch:
            raise KeyError(
                f"A {self.name} batch needs '{self.target_key}'; got keys {sorted(batch)}. Is the dataset "
                f"a {self.name} dataset?"
            )
        return batch[self.target_key]

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Loss of one batch (+ the L1/L2 penalty), a scalar tensor ready for ``backward``."""
        output = model(batch["image"])
        loss = self.loss(output, self.target(batch))
        return loss + penalty(model, l1=self.l1, l2=self.l2) if (self.l1 or self.l2) else loss

    @torch.no_grad()
    def validation_step(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Loss of one batch without the penalty; the metrics are updated with the output."""
        output = model(batch["image"])
        target = self.target(batch)
        self.metrics.update(output, target)
        return self.loss(output, target)


class ClassificationTask(Task):
    name, target_key = "classification", "label"


class SegmentationTask(Task):
    name, target_key = "segmentation", "mask"


class RegressionTask(Task):
    name, target_key = "regression", "target"


TASK_CLASSES = {
    "classification": ClassificationTask,
    "segmentation": SegmentationTask,
    "regression": RegressionTask,
}


def build_task(
    task: str,
    *,
    loss: Mapping[str, Any] | None = None,
    class_names: Sequence[str] = (),
    target_names: Sequence[str] = (),
    l1: float = 0.0,
    l2: float = 0.0,
) -> Task:
    """The task object for ``task`` with ``loss`` (``{"name": ..., **params}``; "auto" = task default)."""
    check_choice("task", task, tuple(TASK_CLASSES))
    return TASK_CLASSES[task](
        loss=build_loss(dict(loss or {"name": "auto"}), task=task),
        metrics=build_metrics(task, class_names=class_names, target_names=target_names),
        l1=l1,
        l2=l2,
    )
