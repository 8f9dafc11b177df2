"""Losses by name: ``build_loss({"name": "dice_ce", "dice_weight": 0.5})`` -> ``loss(output, target)``.

Shapes: classification logits (N, C) with int64 labels (N,); segmentation logits (N, C, H, W) with int64
masks (N, H, W) where 255 = not labelled (ignored); regression values (N, T) with float targets (N, T);
``gaussian_nll`` takes (N, 2T) = [mean | log-variance]. ``bce`` takes logits of the same shape as its 0/1
targets (multi-label), or (N, 2, ...) logits with class indices (binary segmentation: uses class 1).

Cross-entropy, BCE, MSE, smooth L1 and the Gaussian NLL come from ``torch.nn.functional``. Dice and the
multi-class focal loss are written here: torch has neither (torchvision's focal loss is binary only) and
segmentation_models_pytorch is not a dependency.

Example:
    >>> import torch
    >>> loss = build_loss({"name": "cross_entropy", "label_smoothing": 0.1})
    >>> float(loss(torch.zeros(2, 3), torch.tensor([0, 1]))) > 0
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from microcnn.errors import ConfigError
from microcnn.registry import Registry, suggest

IGNORE_INDEX = 255
LOSSES = Registry("loss")
DEFAULT_LOSS = {"classification": "cross_entropy", "segmentation": "cross_entropy", "regression": "mse"}


def _weights(class_weights: list[float] | None, like: torch.Tensor) -> torch.Tensor | None:
    return (
        None
        if class_weights is None
        else torch.as_tensor(class_weights, dtype=like.dtype, device=like.device)
    )


@LOSSES.register("cross_entropy")
def cross_entropy(
    *,
    class_weights: list[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Softmax cross-entropy; ``class_weights`` (C,) rescale classes; targets == ignore_index skipped."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            output,
            target,
            weight=_weights(class_weights, output),
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )

    return loss


@LOSSES.register("bce")
def bce(*, pos_weight: float | None = None, ignore_index: int = IGNORE_INDEX) -> Callable[..., torch.Tensor]:
    """Binary cross-entropy on logits. Integer targets with 2-channel logits: class 1 vs the rest."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not target.is_floating_point():
            valid = (target != ignore_index).to(output.dtype)
            logits = output[:, 1] - output[:, 0] if output.shape[1] == 2 else output[:, 0]
            target = (target == 1).to(output.dtype)
        else:
            logits, valid = output, torch.ones_like(output)
        pw = (
            None if pos_weight is None else torch.tensor(pos_weight, dtype=output.dtype, device=output.device)
        )
        per = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
        return (per * valid).sum() / valid.sum().clamp_min(1)

    return loss


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0
) -> torch.Tensor:
    """1 - mean over classes of (2 sum(p g) + s) / (sum p + sum g + s), softmax probabilities p, one-hot g.

    logits (N, C, H, W), target (N, H, W) int64; ignored pixels count in neither sum.
    """
    probs = logits.softmax(dim=1)
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)
    onehot = F.one_hot(target.clamp(0, logits.shape[1] - 1), logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    probs, onehot = probs * valid, onehot * valid
    dims = (0, *range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + smooth) / (total + smooth)).mean()


@LOSSES.register("dice")
def dice(*, ignore_index: int = IGNORE_INDEX, smooth: float = 1.0) -> Callable[..., torch.Tensor]:
    """Soft Dice loss (see :func:`soft_dice_loss`), for class-imbalanced masks."""
    return lambda output, target: soft_dice_loss(output, target, ignore_index=ignore_index, smooth=smooth)


@LOSSES.register("focal")
def focal(
    *, gamma: float = 2.0, class_weights: list[float] | None = None, ignore_index: int = IGNORE_INDEX
) -> Callable[..., torch.Tensor]:
    """Focal loss (Lin et al. 2017): sum of -w_t (1 - p_t)^gamma log p_t over labelled samples/pixels,
    divided by the sum of their weights w_t (their count without ``class_weights``), the normalisation of
    weighted cross-entropy: with gamma = 0 it equals ``F.cross_entropy(weight=class_weights)``."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(output, dim=1)
        valid = (target != ignore_index).to(output.dtype)
        safe = target.clamp(0, output.shape[1] - 1)
        logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
        per = -((1 - logp_t.exp()) ** gamma) * logp_t
        w = _weights(class_weights, output)
        if w is not None:
            valid = valid * w[safe]
        return (per * valid).sum() / valid.sum().clamp_min(torch.finfo(output.dtype).tiny)

    return loss


@LOSSES.register("dice_ce")
def dice_ce(
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    class_weights: list[float] | None = None,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 1.0,
) -> Callable[..., torch.Tensor]:
    """``ce_weight * cross_entropy + dice_weight * dice``."""
    ce = cross_entropy(class_weights=class_weights, ignore_index=ignore_index)
    return lambda output, target: (
        ce_weight * ce(output, target)
        + dice_weight * soft_dice_loss(output, target, ignore_index=ignore_index, smooth=smooth)
    )


@LOSSES.register("mse")
def mse() -> Callable[..., torch.Tensor]:
    """Mean squared error over samples and targets (values (N, T); a (N, 2T) output uses its means)."""
    return lambda output, target: F.mse_loss(output[:, : target.shape[1]], target)


@LOSSES.register("smooth_l1")
def smooth_l1(*, beta: float = 1.0) -> Callable[..., torch.Tensor]:
    """Huber-like: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta."""
    return lambda output, target: F.smooth_l1_loss(output[:, : target.shape[1]], target, beta=beta)


@LOSSES.register("gaussian_nll")
def gaussian_nll(*, eps: float = 1e-6) -> Callable[..., torch.Tensor]:
    """Heteroscedastic regression: output (N, 2T) = [mean | log-variance]; mean of
    0.5 (log var + (y - mean)^2 / var) (the constant 0.5 log 2π left out)."""

    def loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target.shape[1]
        if output.shape[1] != 2 * t:
            raise ConfigError(
                f"gaussian_nll needs (N, 2T) = [mean | log-variance] outputs; got {tuple(output.shape)} for "
                f"{t} target(s). Build the regressor with heteroscedastic: true."
            )
        return F.gaussian_nll_loss(output[:, :t], target, output[:, t:].exp(), eps=eps)

    return loss


def build_loss(spec: Mapping[str, Any], *, task: str | None = None) -> Callable[..., torch.Tensor]:
    """A loss from ``{"name": ..., **params}``; name "auto" picks the task's default.

    Unknown names and parameters raise ConfigError with "did you mean".
    """
    params = dict(spec)
    name = str(params.pop("name", "auto"))
    if name == "auto":
        name = DEFAULT_LOSS.get(task or "", "cross_entropy")
    try:
        builder = LOSSES.get(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    accepted = [p for p in inspect.signature(builder).parameters]
    for key in params:
        if key not in accepted:
            raise ConfigError(
                f"Unknown parameter 'loss.{key}' for loss '{name}'.{suggest(key, accepted)} "
                f"Accepted: {', '.join(accepted) or 'none'}."
            )
    return builder(**params)


def penalty(model: nn.Module, *, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor | float:
    """``l1 * sum|w| + l2 / 2 * sum w^2`` over weight tensors with >= 2 dims (conv/linear kernels)."""
    if not l1 and not l2:
        return 0.0
    total: torch.Tensor | float = 0.0
    for p in model.parameters():
        if p.requires_grad and p.ndim >= 2:
            total = total + l1 * p.abs().sum() + 0.5 * l2 * p.pow(2).sum()
    return total
