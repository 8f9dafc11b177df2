"""Batch norm folded into the convolution before it, for inference.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map, ``y = γ (x − μ) / sqrt(σ² + ε) + β``.
Right after a convolution it can be folded into that convolution's weights and bias
(``W' = W γ / s``, ``b' = (b − μ) γ / s + β`` with ``s = sqrt(σ² + ε)``), which saves one full pass over
every feature map it normalises. Batch norm is memory-bound: on the CPU it is a good part of the forward
time that is not convolution (docs/benchmarks.md, profile). ``torch.nn.utils.fusion.fuse_conv_bn_eval``
does the arithmetic. This module only finds the pairs whose wiring is known:

- inside an ``nn.Sequential``, a ``Conv2d`` / ``ConvTranspose2d`` directly followed by a ``BatchNorm2d``
  (every ``ConvNormAct`` of the zoo, smp's decoder blocks, torchvision's ``downsample`` branches);
- in torchvision's ``ResNet``, ``BasicBlock`` and ``Bottleneck``, ``conv<i>`` / ``bn<i>``: their
  ``forward`` applies ``bn<i>`` to the output of ``conv<i>`` and to nothing else.

Pairs found elsewhere by name are left alone: a module could feed a convolution's output to other layers
too, and folding would then change what those see. The model's state dict (what a ``.safetensors`` file
holds) is not changed; the folded copy is for prediction only.

Example:
    >>> from microcnn.models import build_model
    >>> net = build_model({"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 2}).eval()
    >>> folded = fold_batch_norm(net)
    >>> any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    False
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, CONVS)
        and type(bn) is nn.BatchNorm2d
        and bn.affine
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def _fold(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    return fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))


def _named_pairs(module: nn.Module) -> list[tuple[str, str]]:
    import torchvision

    known = (
        torchvision.models.ResNet,
        torchvision.models.resnet.BasicBlock,
        torchvision.models.resnet.Bottleneck,
    )
    if not isinstance(module, known):
        return []
    return [
        (f"conv{i}", f"bn{i}") for i in (1, 2, 3) if hasattr(module, f"conv{i}") and hasattr(module, f"bn{i}")
    ]


@torch.no_grad()
def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model``, in eval mode, with each known (convolution, batch norm) pair folded into one
    convolution and the batch norm replaced by ``nn.Identity`` (see the module docstring). Its outputs
    equal the eval-mode outputs of ``model`` to float rounding."""
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            names = list(module._modules)
            for a, b in itertools.pairwise(names):
                conv, bn = module._modules[a], module._modules[b]
                if _foldable(conv, bn):
                    module._modules[a], module._modules[b] = _fold(conv, bn), nn.Identity()
        for a, b in _named_pairs(module):
            conv, bn = getattr(module, a), getattr(module, b)
            if _foldable(conv, bn):
                setattr(module, a, _fold(conv, bn))
                setattr(module, b, nn.Identity())
    return folded
