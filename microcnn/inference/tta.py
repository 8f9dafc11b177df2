"""Test-time augmentation (the 8 symmetries of the square) and ensemble statistics (mean, spread).

Micrographs have no "up": a flipped or rotated micrograph shows the same microstructure, so a model's
answers on the 8 dihedral copies (4 rotations by 90°, each with and without a left-right flip) should
agree. Averaging them smooths out orientation-specific mistakes; their spread is a cheap uncertainty.
For dense outputs (segmentation) each answer is mapped back to the original orientation before averaging.

Ensembles work the same way: every (member, symmetry) pair is one sample; the prediction is the sample
mean and the uncertainty its standard deviation (population form, ``correction=0``: identical members
give exactly zero).

For regression with a heteroscedastic head (``[mean | log-variance]`` outputs), the total variance follows
the law of total variance: ``Var[y] = E[Var[y | member]] + Var[E[y | member]]`` — the mean predicted
variance (aleatoric) plus the spread of the members' means (epistemic).

Example:
    >>> import torch
    >>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
    >>> all(torch.equal(invert(apply(x, t), t), x) for t in D4)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# (number of 90° counter-clockwise rotations, left-right flip first)
D4: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))
IDENTITY: tuple[tuple[int, bool], ...] = ((0, False),)


def apply(x: torch.Tensor, t: tuple[int, bool]) -> torch.Tensor:
    """Transform (N, C, H, W) images: flip the columns (if asked), then rotate by k·90°."""
    k, flip = t
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k % 4 else x


def invert(y: torch.Tensor, t: tuple[int, bool]) -> torch.Tensor:
    """Undo :func:`apply` on a dense (N, K, H', W') output."""
    k, flip = t
    if k % 4:
        y = torch.rot90(y, -k, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


def activate(out: torch.Tensor, task: str) -> torch.Tensor:
    """Logits -> probabilities over dim 1 (softmax; 1 channel -> [1 - sigmoid, sigmoid]); regression as is."""
    if task == "regression":
        return out
    if out.shape[1] == 1:
        p = torch.sigmoid(out)
        return torch.cat([1.0 - p, p], dim=1)
    return torch.softmax(out, dim=1)


def samples(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    task: str,
    transforms: Sequence[tuple[int, bool]] = IDENTITY,
) -> torch.Tensor:
    """Every (model, transform) answer for a batch, activated and (if dense) re-oriented.

    Args:
        models: ensemble members in eval mode, all of the same task.
        x: (N, C, H, W) float32 preprocessed batch.
        task: "classification" | "segmentation" | "regression".
        transforms: elements of :data:`D4` (``IDENTITY`` = no TTA).

    Returns:
        (S, N, ...) float32 with S = len(models)·len(transforms): (S, N, K) probabilities,
        (S, N, K, H, W) probabilities or (S, N, T | 2T) regression outputs.
    """
    outs = []
    for model in models:
        for t in transforms:
            y = activate(model(apply(x, t)), task)
            outs.append(invert(y, t) if task == "segmentation" else y)
    return torch.stack(outs).float()


def mean_std(stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population standard deviation over the first (sample) axis of (S, ...)."""
    if stack.shape[0] == 1:  # one sample: the mean is that sample and the spread 0, exactly (and 15x faster)
        return stack[0], torch.zeros_like(stack[0])
    var, mean = torch.var_mean(stack, dim=0, correction=0)
    return mean, var.sqrt()


def regression_mean_std(stack: torch.Tensor, *, num_targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, N, T) or heteroscedastic (S, N, 2T) samples -> mean (N, T) and total std (N, T).

    Heteroscedastic: std = sqrt(mean over samples of exp(logvar) + variance of the sample means).
    """
    if stack.shape[-1] == 2 * num_targets:
        means, logvar = stack[..., :num_targets], stack[..., num_targets:]
        spread, mean = torch.var_mean(means, dim=0, correction=0)
        return mean, (spread + logvar.exp().mean(dim=0)).sqrt()
    if stack.shape[-1] != num_targets:
        raise ValueError(
            f"Regression output has {stack.shape[-1]} values per image; expected {num_targets} targets "
            f"(or {2 * num_targets} for a heteroscedastic [mean | logvar] head). Check target_names."
        )
    return mean_std(stack)


class Averaged(nn.Module):
    """``model`` wrapped so that its output is its own test-time average, in the form its loss and metrics
    take: the log of the mean probabilities (a softmax of it gives the mean back, an argmax the averaged
    class), the logit of the mean probability for a one-channel head, and the mean output for regression
    (with ``num_targets`` and a ``[mean | logvar]`` head: the mean and the log of the total variance).

    Example:
        >>> net = nn.Conv2d(1, 3, 3, padding=1)
        >>> Averaged(net, "segmentation")(torch.rand(1, 1, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        task: str,
        *,
        transforms: Sequence[tuple[int, bool]] = D4,
        num_targets: int | None = None,
    ) -> None:
        super().__init__()
        self.model, self.task, self.transforms, self.num_targets = model, task, tuple(transforms), num_targets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stack = samples([self.model], x, task=self.task, transforms=self.transforms)
        if self.task == "regression":
            if self.num_targets is not None and stack.shape[-1] == 2 * self.num_targets:
                mean, std = regression_mean_std(stack, num_targets=self.num_targets)
                return torch.cat([mean, (2 * std.clamp_min(1e-12).log())], dim=-1)
            return stack.mean(dim=0)
        prob = stack.mean(dim=0).clamp_min(torch.finfo(stack.dtype).tiny)
        if prob.shape[1] == 2 and self._one_channel(x):
            return prob[:, 1:].log() - prob[:, :1].log()
        return prob.log()

    def _one_channel(self, x: torch.Tensor) -> bool:
        if not hasattr(self, "_channels"):
            with torch.no_grad():
                self._channels = int(self.model(x[:1]).shape[1])
        return self._channels == 1
