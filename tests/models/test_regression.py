"""Regressor: encoder + pooling + MLP; heteroscedastic mean | log-variance."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microcnn.models import build_model, list_models
from microcnn.models.regression import split_mean_logvar

from .tiny import TINY

SMALL = {"backbone": "vgg11", "backbone_kwargs": {"widths": (4, 8, 8, 8, 8), "norm": "batch"}, "hidden": [16]}


def test_split_mean_logvar_by_hand():
    out = torch.tensor([[1.0, 2.0, -1.0, -2.0]])
    mean, logvar = split_mean_logvar(out, 2)
    assert mean.tolist() == [[1.0, 2.0]] and logvar.tolist() == [[-1.0, -2.0]]
    with pytest.raises(ValueError, match="heteroscedastic=True"):
        split_mean_logvar(out, 1)


@pytest.mark.parametrize(("hetero", "width"), [(False, 3), (True, 6)])
def test_output_width(hetero, width):
    net = build_model("regressor", num_targets=3, heteroscedastic=hetero, **SMALL).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 40, 56)).shape == (2, width)


def test_heteroscedastic_training_with_gaussian_nll_fits_the_means():
    torch.manual_seed(0)
    kwargs = {**SMALL, "backbone_kwargs": {"widths": (4, 8, 8, 8, 8), "norm": "group"}}
    net = build_model("regressor", num_targets=1, heteroscedastic=True, **kwargs)
    g = torch.Generator().manual_seed(0)
    level = torch.linspace(0.1, 0.9, 8)
    x = level.view(8, 1, 1, 1) + 0.05 * torch.rand(8, 1, 32, 32, generator=g)
    y = 4 * level.view(8, 1)  # a target that follows the grey level
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        opt.zero_grad()
        mean, logvar = split_mean_logvar(net(x), 1)
        F.gaussian_nll_loss(mean, y, logvar.exp()).backward()
        opt.step()
    with torch.no_grad():
        mean, logvar = split_mean_logvar(net(x), 1)
    assert F.mse_loss(mean, y) < 0.1 * y.var()
    assert logvar.exp().mean() < y.var()  # the model is confident where it fits


def test_backbone_must_be_a_classifier():
    with pytest.raises(ValueError, match="Unknown regressor backbone 'unet'"):
        build_model("regressor", backbone="unet")


def test_backbone_kwargs_reach_the_backbone():
    net = build_model("regressor", backbone="resnet18", in_channels=2)
    assert net.backbone.net.conv1.in_channels == 2 and net.min_input_size == 32


@pytest.mark.parametrize("backbone", list_models("classification"))
def test_every_classifier_backbone_gives_targets_and_a_positive_variance(backbone):
    kwargs, size = TINY[backbone]
    backbone_kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    torch.manual_seed(0)
    net = build_model(
        "regressor", backbone=backbone, backbone_kwargs=backbone_kwargs, num_targets=3,
        heteroscedastic=True, hidden=[8],
    ).eval()  # fmt: skip
    assert net.min_input_size == net.backbone.min_input_size
    with torch.no_grad():
        mean, logvar = split_mean_logvar(net(torch.rand(2, 1, size, size + 8)), 3)
    assert mean.shape == logvar.shape == (2, 3)
    variance = logvar.exp()
    assert torch.isfinite(mean).all() and torch.isfinite(variance).all() and (variance > 0).all()
