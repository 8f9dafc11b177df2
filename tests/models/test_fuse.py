"""Batch norm folded into convolutions for inference: the same function, fewer passes, the original intact."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from microcnn.models import build_model
from microcnn.models.fuse import fold_batch_norm

from .tiny import TINY


def _with_statistics(net: nn.Module, seed: int = 0) -> nn.Module:
    """Random affine parameters and running statistics in every batch norm (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.1)
    return net.eval()


def _bn_count(net: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_zoo_model_gives_the_same_outputs_folded(name):
    kwargs, side = TINY[name]
    torch.manual_seed(0)
    net = _with_statistics(build_model({"name": name, "in_channels": 1, **kwargs}))
    before = _bn_count(net)
    x = torch.randn(2, 1, side, side)
    folded = fold_batch_norm(net)
    with torch.no_grad():
        want, got = net(x), folded(x)
    # to 1e-4 of the output's magnitude: random statistics blow ResNet-50's activations up to ~1e5-1e6, where
    # fp32 rounding in another summation order (and another CPU's SIMD kernels) differs by more than 1e-4
    # absolute; a wrong fold is off by O(1) of the magnitude
    scale = want.abs().max().clamp_min(1.0)
    torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=1e-4)
    assert _bn_count(net) == before  # the original keeps its layers (and its state dict)
    if name in ("unet", "resnet_unet", "resnet18", "segnet", "fcn", "vgg11", "regressor"):
        assert _bn_count(folded) == 0


def test_folded_weights_are_the_closed_form():
    """W' = W γ / sqrt(σ² + ε) and b' = (b − μ) γ / sqrt(σ² + ε) + β, per output channel, by hand."""
    conv, bn = nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3, eps=1e-3)
    _with_statistics(nn.Sequential(conv, bn)).requires_grad_(False)
    folded = fold_batch_norm(nn.Sequential(conv, bn))
    for c in range(3):
        s = math.sqrt(float(bn.running_var[c]) + 1e-3)
        gamma, beta, mu = float(bn.weight[c]), float(bn.bias[c]), float(bn.running_mean[c])
        torch.testing.assert_close(folded[0].weight[c], conv.weight[c] * gamma / s)
        assert float(folded[0].bias[c]) == pytest.approx(
            (float(conv.bias[c]) - mu) * gamma / s + beta, rel=1e-5
        )
    assert isinstance(folded[1], nn.Identity)


def test_pairs_of_unknown_wiring_are_left_alone():
    """A module with conv1 / bn1 attributes whose forward feeds bn1 something else keeps its batch norm."""

    class Elsewhere(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv1(x) + self.bn1(x)  # bn1 normalises the input, not conv1's output

    net = _with_statistics(Elsewhere())
    folded = fold_batch_norm(net)
    x = torch.randn(1, 3, 5, 5)
    assert _bn_count(folded) == 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))


def test_predictor_predicts_with_the_folded_copy_and_leaves_the_model_alone():
    from microcnn.inference.predictor import Predictor
    from microcnn.io.micrograph import Micrograph

    kwargs, _ = TINY["unet"]
    torch.manual_seed(0)
    net = _with_statistics(build_model({"name": "unet", "in_channels": 1, **kwargs}))
    meta = {"task": "segmentation", "class_names": ["a", "b"], "model": {"name": "unet", **kwargs}}
    image = Micrograph(pixels=torch.rand(48, 40).numpy())
    fast = Predictor([net], meta, device="cpu", tile=32)
    plain = Predictor([net], meta, device="cpu", tile=32, fold_bn=False)
    assert _bn_count(net) > 0 and _bn_count(fast.models[0]) == 0
    torch.testing.assert_close(
        torch.from_numpy(fast.predict(image).probabilities),
        torch.from_numpy(plain.predict(image).probabilities),
        rtol=1e-4,
        atol=1e-5,
    )
