"""Building blocks against textbook formulas and hand calculations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from microcnn.models.blocks import (
    ACTIVATIONS,
    NORMS,
    UP_MODES,
    ConvNormAct,
    Up,
    global_pool,
    make_activation,
    make_dropout,
    make_norm,
    make_pool,
    pad_to_multiple,
)

X = torch.linspace(-3, 3, 13)


def _sig(x):
    return 1 / (1 + torch.exp(-x))


# textbook definitions, written independently of torch.nn
FORMULAS = {
    "relu": lambda x: torch.where(x > 0, x, torch.zeros_like(x)),
    "leaky_relu": lambda x: torch.where(x > 0, x, 0.01 * x),
    "elu": lambda x: torch.where(x > 0, x, torch.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + torch.erf(x / math.sqrt(2))),
    "silu": lambda x: x * _sig(x),
    "swish": lambda x: x * _sig(x),
    "mish": lambda x: x * torch.tanh(torch.log1p(torch.exp(x))),
    "tanh": lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    "sigmoid": _sig,
    "softplus": lambda x: torch.log1p(torch.exp(x)),
    "softsign": lambda x: x / (1 + x.abs()),
    "identity": lambda x: x,
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_matches_its_formula(name):
    got = make_activation(name)(X.clone())
    torch.testing.assert_close(got, FORMULAS[name](X), atol=1e-5, rtol=1e-5)


def test_unknown_activation_suggests_the_closest():
    with pytest.raises(ValueError, match=r"Unknown activation 'rellu'\. Did you mean 'relu'"):
        make_activation("rellu")


# after normalisation (fresh affine: weight 1, bias 0) the mean is 0 over these dims
NORM_DIMS = {"batch": (0, 2, 3), "instance": (2, 3), "layer": (1, 2, 3), "group": (2, 3, 4)}


@pytest.mark.parametrize("name", [n for n in NORMS if n != "none"])
def test_norm_zero_mean_over_its_dims(name):
    x = torch.randn(3, 8, 5, 5, generator=torch.Generator().manual_seed(0)) * 4 + 2
    y = make_norm(name, 8, groups=4).train()(x)
    if name == "group":  # 4 groups of 2 channels: mean 0 within (sample, group)
        y = y.reshape(3, 4, 2, 5, 5)
    assert y.mean(dim=NORM_DIMS[name]).abs().max() < 1e-5
    assert make_norm("none", 8)(x) is x


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_same_padding_keeps_the_size(k, d):
    block = ConvNormAct(2, 3, kernel_size=k, dilation=d, padding="same")
    assert block(torch.zeros(1, 2, 11, 14)).shape == (1, 3, 11, 14)


def test_same_padding_with_stride_is_refused():
    with pytest.raises(ValueError, match="stride 1"):
        ConvNormAct(1, 1, stride=2, padding="same")


def test_depthwise_separable_parameter_count():
    # depthwise C_in·k² + pointwise C_in·C_out (+ C_out bias when no norm follows)
    block = ConvNormAct(8, 16, kernel_size=3, depthwise_separable=True, norm="none")
    assert sum(p.numel() for p in block.parameters()) == 8 * 9 + 8 * 16 + 16
    plain = ConvNormAct(8, 16, kernel_size=3, norm="none")
    assert sum(p.numel() for p in plain.parameters()) == 8 * 16 * 9 + 16


def test_grouped_conv_parameter_count():
    block = ConvNormAct(8, 16, kernel_size=3, groups=4, norm="none", bias=False)
    assert sum(p.numel() for p in block.parameters()) == 16 * (8 // 4) * 9


def test_spatial_dropout_zeroes_whole_channels():
    drop = make_dropout(0.5, spatial=True).train()
    y = drop(torch.ones(4, 32, 6, 6))
    per_map = y.flatten(2)
    # every feature map is either all 0 or all 1/(1-p) = 2
    assert torch.all((per_map == 0).all(-1) | (per_map == 2).all(-1))
    assert 0 < (per_map == 0).all(-1).float().mean() < 1


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_bad_dropout_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        make_dropout(bad)


def test_global_pool_is_the_mean_of_each_map():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)  # map 0 holds 0..11 (mean 5.5), map 1 holds 12..23 (17.5)
    y = global_pool()(x)
    assert y.shape == (1, 2, 1, 1) and y.flatten().tolist() == [5.5, 17.5]
    assert global_pool()(torch.ones(3, 5, 7, 2)).shape == (3, 5, 1, 1)  # any H, W


def test_regressor_and_googlenet_pool_globally():
    from microcnn.models import build_model

    reg = build_model("regressor", backbone="tinyvgg", backbone_kwargs={"input_size": 32})
    net = build_model("googlenet", width=0.0625)
    for pool in (reg.head[0], net.head[0]):
        assert isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size == 1


def test_pools_halve_and_average_by_hand():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert make_pool("max")(x).flatten().tolist() == [5, 7, 13, 15]
    assert make_pool("avg")(x).flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


@pytest.mark.parametrize("mode", UP_MODES)
def test_up_doubles_size_and_maps_channels(mode):
    x = torch.randn(2, 6, 8, 8)
    _, idx = nn.MaxPool2d(2, return_indices=True)(torch.randn(2, 3, 10, 10))
    up = Up(6, 3, mode=mode)
    y = up(torch.randn(2, 6, 5, 5), idx) if mode == "unpool" else up(x)
    assert y.shape == ((2, 3, 10, 10) if mode == "unpool" else (2, 3, 16, 16))


def test_unpool_puts_values_back_where_the_maxima_were():
    x = torch.tensor([[[[1.0, 9.0], [3.0, 4.0]]]])
    pooled, idx = nn.MaxPool2d(2, return_indices=True)(x)
    up = Up(1, 1, mode="unpool")
    with torch.no_grad():
        up.proj.weight.fill_(1.0)
        up.proj.bias.zero_()
    assert up(pooled, idx).flatten().tolist() == [0.0, 9.0, 0.0, 0.0]


def test_unpool_without_indices_says_what_it_needs():
    with pytest.raises(ValueError, match="return_indices=True"):
        Up(2, 2, mode="unpool")(torch.zeros(1, 2, 3, 3))


def test_pad_to_multiple_reflects_and_reports_the_size():
    x = torch.arange(5.0).reshape(1, 1, 1, 5).expand(1, 1, 3, 5)
    padded, h, w = pad_to_multiple(x, 4, mode="reflect")
    assert (h, w) == (3, 5) and padded.shape[-2:] == (4, 8)
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 3, 4, 3, 2, 1]  # mirrored without repeating the edge
    zeros, _, _ = pad_to_multiple(x, 4, mode="zeros")
    assert zeros[0, 0, 0, 5:].tolist() == [0, 0, 0]
