"""Task metrics, accumulated over batches (and over DDP ranks) with torchmetrics, reported as plain floats.

- classification: ``accuracy``, ``macro_f1`` and the confusion matrix (rows = true class, cols = predicted);
- segmentation (pixels == 255 ignored): ``pixel_accuracy``, ``mean_iou``, ``mean_dice`` and per class
  ``iou_<class>``, ``dice_<class>``. A class absent from both prediction and truth has IoU/Dice NaN and is
  left out of the means (``nanmean``);
- regression: per target ``mae_<t>``, ``rmse_<t>``, ``r2_<t>`` and their means ``mae``, ``rmse``, ``r2``
  (in the targets' own units).

The confusion-matrix formulas (IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN), F1 per class = Dice
of that class) are written out here because they are one line each on the accumulated matrix;
torchmetrics does the accumulation and the cross-rank sum (``compute()`` syncs when torch.distributed runs).

Example:
    >>> import torch
    >>> m = build_metrics("segmentation", class_names=["a", "b"])
    >>> m.update(torch.tensor([[[[9.0, 0.0]], [[0.0, 9.0]]]]), torch.tensor([[[0, 1]]]))
    >>> m.compute()["mean_iou"]
    1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from microcnn.registry import Registry

IGNORE_INDEX = 255
METRICS = Registry("metric")
# metrics where lower is better (early stopping's mode "auto" reads this)
LOWER_IS_BETTER = ("loss", "mae", "rmse")


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


@METRICS.register("iou")
def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """(C,) IoU = TP / (TP + FP + FN) from a (C, C) confusion matrix; NaN where the class never occurs."""
    cm = cm.double()
    tp = cm.diag()
    return _safe_div(tp, cm.sum(0) + cm.sum(1) - tp)


@METRICS.register("dice")
def dice_per_class(cm: torch.Tensor) -> torch.Tensor:
    """(C,) Dice = F1 = 2 TP / (2 TP + FP + FN); NaN where the class never occurs."""
    cm = cm.double()
    tp = cm.diag()
    return _safe_div(2 * tp, cm.sum(0) + cm.sum(1))


@METRICS.register("accuracy")
def accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Fraction correct = trace / total (the pixel accuracy for segmentation)."""
    cm = cm.double()
    return _safe_div(cm.diag().sum(), cm.sum())


@METRICS.register("macro_f1")
def macro_f1(cm: torch.Tensor) -> torch.Tensor:
    """Unweighted mean of the per-class F1 over classes that occur (in truth or prediction)."""
    return torch.nanmean(dice_per_class(cm))


def _float(t: torch.Tensor) -> float:
    value = float(t)
    return value if math.isfinite(value) else float("nan")


class TaskMetrics:
    """Accumulate ``update(output, target)`` over batches; ``compute()`` -> {name: float}; ``reset()``."""

    def __init__(
        self, task: str, *, class_names: Sequence[str] = (), target_names: Sequence[str] = ()
    ) -> None:
        from torchmetrics.classification import MulticlassConfusionMatrix
        from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError, R2Score

        self.task = task
        self.class_names = [str(c) for c in class_names]
        self.target_names = [str(t) for t in target_names]
        if task == "regression":
            t = max(len(self.target_names), 1)
            self.parts = {
                "mae": MeanAbsoluteError(num_outputs=t),
                "mse": MeanSquaredError(num_outputs=t),
                "r2": R2Score(multioutput="raw_values"),
            }
        else:
            ignore = IGNORE_INDEX if task == "segmentation" else None
            self.parts = {"cm": MulticlassConfusionMatrix(len(self.class_names), ignore_index=ignore)}

    def to(self, device: torch.device) -> TaskMetrics:
        self.parts = {k: m.to(device) for k, m in self.parts.items()}
        return self

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """classification: logits (N, C), labels (N,); segmentation: logits (N, C, H, W), masks (N, H, W);
        regression: values (N, T) or (N, 2T) = [mean | log-variance], targets (N, T)."""
        output = output.detach().float()
        if self.task == "regression":
            mean = output[:, : target.shape[1]]
            target = target.float()
            if target.shape[1] == 1:
                mean, target = mean[:, 0], target[:, 0]
            for metric in self.parts.values():
                metric.update(mean, target)
        else:
            self.parts["cm"].update(output.argmax(dim=1), target)

    def confusion_matrix(self) -> torch.Tensor:
        """(C, C) int64, rows = true class, columns = predicted class (labelled pixels only)."""
        return self.parts["cm"].compute().long().cpu()

    def compute(self) -> dict[str, float]:
        if self.task == "regression":
            return self._regression()
        cm = self.confusion_matrix()
        if self.task == "classification":
            return {"accuracy": _float(accuracy(cm)), "macro_f1": _float(macro_f1(cm))}
        iou, dice = iou_per_class(cm), dice_per_class(cm)
        out = {
            "pixel_accuracy": _float(accuracy(cm)),
            "mean_iou": _float(torch.nanmean(iou)),
            "mean_dice": _float(torch.nanmean(dice)),
        }
        for name, i, d in zip(self.class_names, iou, dice, strict=True):
            out[f"iou_{name}"], out[f"dice_{name}"] = _float(i), _float(d)
        return out

    def _regression(self) -> dict[str, float]:
        values = {k: self._part(k) for k in self.parts}
        values["rmse"] = values.pop("mse").sqrt()
        names = self.target_names or ["target"]
        out = {k: _float(torch.nanmean(v)) for k, v in values.items()}
        for key in ("mae", "rmse", "r2"):
            for name, v in zip(names, values[key], strict=True):
                out[f"{key}_{name}"] = _float(v)
        return out

    def _part(self, key: str) -> torch.Tensor:
        try:
            return self.parts[key].compute().double().reshape(-1).cpu()
        except ValueError:  # R² of fewer than two samples is undefined
            return torch.full((max(len(self.target_names), 1),), float("nan"), dtype=torch.float64)

    def reset(self) -> None:
        for metric in self.parts.values():
            metric.reset()


def build_metrics(
    task: str, *, class_names: Sequence[str] = (), target_names: Sequence[str] = ()
) -> TaskMetrics:
    """The metric set of ``task`` (see module docstring)."""
    return TaskMetrics(task, class_names=class_names, target_names=target_names)


def lower_is_better(metric: str) -> bool:
    """True for losses and errors ("val_loss", "mae_porosity", "rmse"), False for scores."""
    base = metric.removeprefix("val_").removeprefix("train_")
    return any(base == k or base.startswith(k + "_") for k in LOWER_IS_BETTER)


def metric_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A confusion-matrix metric by name ("iou", "dice", "accuracy", "macro_f1"); did-you-mean otherwise."""
    return METRICS.get(name)
