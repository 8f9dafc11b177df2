"""Regressors: a classifier's encoder + global average pooling + an MLP head for N targets.

Output: ``(N, num_targets)`` values, or with ``heteroscedastic=True`` ``(N, 2·num_targets)`` laid out as
``[mean_1..mean_T | logvar_1..logvar_T]`` (log-variance per target, e.g. for ``gaussian_nll_loss`` with
``var = logvar.exp()``); :func:`split_mean_logvar` separates the halves. Values are in the units of the
training targets (standardise them in the data pipeline, not here).

Example:
    >>> import torch
    >>> net = Regressor(backbone="tinyvgg", num_targets=2, heteroscedastic=True, hidden=[16])
    >>> mean, logvar = split_mean_logvar(net(torch.zeros(3, 1, 64, 64)), 2)
    >>> mean.shape, logvar.shape
    (torch.Size([3, 2]), torch.Size([3, 2]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from microcnn.models.blocks import global_pool, make_activation, make_dropout
from microcnn.models.zoo import build_model, list_models, model_task, register_model
from microcnn.registry import check_choice


def split_mean_logvar(out: torch.Tensor, num_targets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a heteroscedastic output (N, 2T) into mean (N, T) and log-variance (N, T)."""
    if out.ndim != 2 or out.shape[1] != 2 * num_targets:
        raise ValueError(
            f"Expected a (N, {2 * num_targets}) [mean | logvar] output for {num_targets} target(s); "
            f"got shape {tuple(out.shape)}. Was the model built with heteroscedastic=True?"
        )
    return out[:, :num_targets], out[:, num_targets:]


@register_model("regressor", task="regression")
class Regressor(nn.Module):
    """Encoder (``backbone``: any registered classifier, built with ``num_classes=0``) -> pool -> MLP.

    ``hidden`` lists the MLP's hidden widths (each Linear -> activation -> Dropout); ``backbone_kwargs``
    go to the backbone builder (widths, weights_path, ...). Input ``(N, in_channels, H, W)`` float32 with
    H, W >= the backbone's ``min_input_size``; any larger size works (global pooling).
    """

    task = "regression"

    def __init__(
        self,
        in_channels: int = 1,
        num_targets: int = 1,
        *,
        backbone: str = "resnet18",
        backbone_kwargs: dict[str, Any] | None = None,
        hidden: list[int] | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
        heteroscedastic: bool = False,
    ) -> None:
        super().__init__()
        check_choice("regressor backbone", backbone, list_models("classification"))
        if num_targets < 1:
            raise ValueError(f"num_targets must be >= 1; got {num_targets}.")
        if model_task(backbone) != "classification":
            raise ValueError(f"backbone must be a classifier; '{backbone}' is {model_task(backbone)}.")
        self.backbone = build_model(
            backbone, in_channels=in_channels, num_classes=0, **(backbone_kwargs or {})
        )
        self.in_channels = in_channels
        self.num_targets = num_targets
        self.heteroscedastic = heteroscedastic
        self.min_input_size = self.backbone.min_input_size
        self.output_stride = self.backbone.output_stride
        layers: list[nn.Module] = [global_pool(), nn.Flatten()]
        width = self.backbone.num_features
        for h in hidden if hidden is not None else [64]:
            layers += [nn.Linear(width, h), make_activation(activation), make_dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_targets * (2 if heteroscedastic else 1)))
        self.head = nn.Sequential(*layers)

    @property
    def cam_layer(self) -> nn.Module:
        return self.backbone.cam_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 -> (N, T) values or (N, 2T) [mean | log-variance]."""
        return self.head(self.backbone.forward_features(x))
