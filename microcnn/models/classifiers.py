"""Classifiers: LeNet-5, AlexNet, VGG-11/13/16/19, GoogLeNet, TinyVGG (ResNets live in ``resnet.py``).

Every classifier takes ``(N, in_channels, H, W)`` float32 and returns logits ``(N, num_classes)``. It
exposes ``forward_features`` (the convolutional encoder, ``(N, num_features, h, w)``) so that regressors
and segmenters can reuse it, ``min_input_size`` (px; smaller inputs are refused with a clear error),
``output_stride`` and ``cam_layer`` (the last conv stage, for Grad-CAM). ``num_classes=0`` builds the
encoder only (no head). Grayscale input (``in_channels=1``) is the default.

Example:
    >>> import torch
    >>> net = build_vgg(depth=11, num_classes=3, widths=(8, 16, 32, 32, 32), hidden=32, pool_size=1)
    >>> net(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import itertools
from functools import partial

import torch
from torch import nn

from microcnn.models.blocks import (
    ConvNormAct,
    check_input,
    conv_stack,
    make_activation,
    make_dropout,
    make_pool,
    stack_options,
)
from microcnn.models.describe import conv_output_size
from microcnn.models.zoo import register_model
from microcnn.registry import check_choice


class Classifier(nn.Module):
    """Common frame: ``features`` (encoder) -> ``head`` (logits). Subclasses fill both."""

    task = "classification"
    #: when set, H and W must equal it (a head of fixed size after Flatten, as in LeNet-5)
    exact_input_size: int | None = None

    def __init__(
        self, in_channels: int, num_classes: int, *, min_input_size: int, output_stride: int
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 0:
            raise ValueError(
                f"in_channels must be >= 1 and num_classes >= 0; got {in_channels} and {num_classes}."
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.min_input_size = min_input_size
        self.output_stride = output_stride
        self.features: nn.Module = nn.Identity()
        self.head: nn.Module = nn.Identity()

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage of the encoder (target layer for Grad-CAM)."""
        return self.features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> feature maps (N, num_features, h, w)."""
        check_input(x, in_channels=self.in_channels, min_size=self.min_input_size, model=type(self).__name__)
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 -> logits (N, num_classes)."""
        size = self.exact_input_size
        if size is not None and self.num_classes and tuple(x.shape[-2:]) != (size, size):
            raise ValueError(
                f"{type(self).__name__} was built for {size}×{size} inputs (a fixed-size head); got "
                f"{tuple(x.shape[-2:])}. Resize or crop to {size}×{size}, or build it with input_size=H."
            )
        return self.head(self.forward_features(x))


def _fixed_head(sizes: list[int], activation: str, dropout: float = 0.0) -> nn.Sequential:
    """Flatten -> Linear/act (-> Dropout) ... -> Linear (no activation on the logits)."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if dropout and i < len(sizes) - 2:
            layers.append(make_dropout(dropout))
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


@register_model("lenet5", task="classification")
class LeNet5(Classifier):
    """LeNet-5 (LeCun et al. 1998), classic 32×32 layout: C1 6@5×5 -> S2 -> C3 16@5×5 -> S4 -> 120 -> 84.

    With 1 channel and 10 classes it has 61,706 parameters. ``input_size`` fixes the size of the first
    fully connected layer (16·s·s inputs with s = ((input_size - 4) / 2 - 4) / 2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        input_size: int = 32,
        activation: str = "tanh",
        pool: str = "avg",
    ) -> None:
        super().__init__(in_channels, num_classes, min_input_size=16, output_stride=4)
        self.exact_input_size = input_size
        conv = partial(ConvNormAct, kernel_size=5, padding=0, norm="none", activation=activation)
        self.features = nn.Sequential(conv(in_channels, 6), make_pool(pool), conv(6, 16), make_pool(pool))
        self.num_features = 16
        s = ((input_size - 4) // 2 - 4) // 2
        if s < 1:
            raise ValueError(f"LeNet-5 needs input_size >= 16; got {input_size}.")
        if num_classes:
            self.head = _fixed_head([16 * s * s, 120, 84, num_classes], activation)


@register_model("tinyvgg", task="classification")
class TinyVGG(Classifier):
    """TinyVGG of CNN Explainer (Wang et al. 2020): [conv3-relu-conv3-relu-maxpool] ×2 -> Linear.

    Convolutions are unpadded ("valid", ``padding=0``), ``hidden`` filters each; 64×64 inputs give
    10×13×13 features. Convolution options: ``kernel_size``, ``padding`` (int or "same"), ``dilation``,
    ``groups`` and ``depthwise_separable`` (every conv but the first, which sees the image channels),
    ``bias`` (None: only when ``norm="none"``); the head's size follows the output-size formula.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        input_size: int = 64,
        hidden: int = 10,
        activation: str = "relu",
        norm: str = "none",
        kernel_size: int = 3,
        padding: int | str = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__(in_channels, num_classes, min_input_size=16, output_stride=4)
        self.exact_input_size = input_size
        opts = stack_options(
            model="TinyVGG", widths=[hidden], norm=norm, activation=activation, kernel_size=kernel_size,
            dilation=dilation, groups=groups, bias=bias, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        opts["padding"] = padding
        self.features = nn.Sequential(
            *conv_stack(in_channels, hidden, plain_first=True, **opts), make_pool("max"),
            *conv_stack(hidden, hidden, **opts), make_pool("max"),
        )  # fmt: skip
        self.num_features = hidden
        p = dilation * (kernel_size - 1) // 2 if padding == "same" else int(padding)
        conv = partial(conv_output_size, k=kernel_size, p=p, d=dilation)
        s = conv(conv(conv(conv(input_size)) // 2)) // 2  # conv, conv, pool, conv, conv, pool
        if s < 1:
            raise ValueError(
                f"TinyVGG's input_size {input_size} leaves no pixel after its four convolutions and two "
                "pools; use input_size >= 16 (valid 3×3 convs) or padding='same'."
            )
        if num_classes:
            self.head = _fixed_head([hidden * s * s, num_classes], activation)


def _pooled_head(
    channels: int, pool_size: int, hidden: int, num_classes: int, activation: str, dropout: float
):
    """AdaptiveAvgPool(pool_size) -> Dropout/Linear(hidden)/act ×2 -> Linear(num_classes) (AlexNet/VGG)."""
    pooled = nn.AdaptiveAvgPool2d(pool_size)
    return nn.Sequential(
        pooled, _fixed_head([channels * pool_size**2, hidden, hidden, num_classes], activation, dropout)
    )


@register_model("alexnet", task="classification")
class AlexNet(Classifier):
    """AlexNet (Krizhevsky et al. 2012) in torchvision's single-GPU layout (no LRN; ``norm`` adds one).

    ``stem="imagenet"``: conv 11×11/4 and 3×3/2 max-pools (needs >= 63 px); ``stem="small"``: conv 5×5/1
    and 2×2/2 pools (needs >= 8 px). With 3 channels, 1000 classes and the defaults: 61,100,840 parameters.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        widths: tuple[int, ...] = (64, 192, 384, 256, 256),
        hidden: int = 4096,
        pool_size: int = 6,
        dropout: float = 0.5,
        norm: str = "none",
        activation: str = "relu",
        stem: str = "imagenet",
    ) -> None:
        check_choice("AlexNet stem", stem, ("imagenet", "small"))
        big = stem == "imagenet"
        super().__init__(
            in_channels, num_classes, min_input_size=63 if big else 8, output_stride=32 if big else 8
        )
        w = list(widths)
        if len(w) != 5:
            raise ValueError(f"AlexNet needs 5 widths (one per conv); got {len(w)}: {w}.")
        conv = partial(ConvNormAct, norm=norm, activation=activation)
        pool = partial(nn.MaxPool2d, 3, 2) if big else partial(nn.MaxPool2d, 2, 2)
        self.features = nn.Sequential(
            conv(in_channels, w[0], kernel_size=11 if big else 5, stride=4 if big else 1, padding=2), pool(),
            conv(w[0], w[1], kernel_size=5, padding=2), pool(),
            conv(w[1], w[2], padding=1), conv(w[2], w[3], padding=1), conv(w[3], w[4], padding=1), pool(),
        )  # fmt: skip
        self.num_features = w[4]
        if num_classes:
            self.head = _pooled_head(w[4], pool_size, hidden, num_classes, activation, dropout)


VGG_LAYERS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


class VGG(Classifier):
    """VGG (Simonyan & Zisserman 2015): five stages of 3×3 convs + 2×2 max-pool, then a 3-layer head.

    ``widths`` (one per stage), ``hidden`` and ``pool_size`` shrink it for small inputs (e.g. widths
    (8, 16, 32, 32, 32), hidden 64, pool_size 1). torchvision's layout (3 channels, 1000 classes, the
    defaults) gives 132,863,336 (VGG-11), 133,047,848 (VGG-13), 138,357,544 (VGG-16) and 143,667,240
    (VGG-19) parameters. Needs >= 32 px. Convolution options, for every conv ("same" padding, stride 1:
    the pools downsample): ``kernel_size``, ``dilation``, ``groups`` and ``depthwise_separable`` (every
    conv but the first, which sees the image channels), ``bias`` (None: only when ``norm="none"``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        depth: int = 16,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        hidden: int = 4096,
        pool_size: int = 7,
        dropout: float = 0.5,
        norm: str = "none",
        activation: str = "relu",
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        depthwise_separable: bool = False,
    ) -> None:
        super().__init__(in_channels, num_classes, min_input_size=32, output_stride=32)
        if depth not in VGG_LAYERS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_LAYERS)}; got {depth}.")
        if len(widths) != 5:
            raise ValueError(f"VGG needs 5 widths (one per stage); got {len(widths)}: {list(widths)}.")
        opts = stack_options(
            model="VGG", widths=widths, norm=norm, activation=activation, kernel_size=kernel_size,
            dilation=dilation, groups=groups, bias=bias, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        layers: list[nn.Module] = []
        c = in_channels
        for n, width in zip(VGG_LAYERS[depth], widths):
            layers += [*conv_stack(c, width, n=n, plain_first=not layers, **opts), nn.MaxPool2d(2, 2)]
            c = width
        self.features = nn.Sequential(*layers)
        self.num_features = c
        if num_classes:
            self.head = _pooled_head(c, pool_size, hidden, num_classes, activation, dropout)


def build_vgg(**kwargs) -> VGG:
    """Shorthand for :class:`VGG` (``depth`` 11, 13, 16 or 19)."""
    return VGG(**kwargs)


for _depth in VGG_LAYERS:
    register_model(f"vgg{_depth}", task="classification")(partial(VGG, depth=_depth))
