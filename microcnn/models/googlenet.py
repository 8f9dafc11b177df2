"""GoogLeNet (Szegedy et al. 2015) with Inception modules, without the auxiliary heads.

An Inception module runs four branches on the same input and concatenates them along channels:
1×1; 1×1 reduction -> 3×3; 1×1 reduction -> 5×5; 3×3 max-pool -> 1×1 projection. The 1×1 reductions
are what keeps the 3×3 and 5×5 convolutions cheap.

torchvision's GoogLeNet uses a 3×3 kernel in the "5×5" branch (pytorch/vision#906); ``branch3_kernel=3``
reproduces it (6,624,904 parameters with 3 channels and 1000 classes), the default 5 follows the paper.
``width`` scales every channel count (e.g. 0.125 for 32×32 toy data).
"""

from __future__ import annotations

import torch
from torch import nn

from microcnn.models.blocks import ConvNormAct, global_pool, make_dropout
from microcnn.models.classifiers import Classifier
from microcnn.models.zoo import register_model

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) of the paper's Table 1; "M" = 3×3/2 max-pool
INCEPTION_PLAN: tuple = (
    (64, 96, 128, 16, 32, 32),
    (128, 128, 192, 32, 96, 64),
    "M",
    (192, 96, 208, 16, 48, 64),
    (160, 112, 224, 24, 64, 64),
    (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64),
    (256, 160, 320, 32, 128, 128),
    "M2",
    (256, 160, 320, 32, 128, 128),
    (384, 192, 384, 48, 128, 128),
)


class Inception(nn.Module):
    """Four branches, concatenated: (N, C_in, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        *,
        branch3_kernel: int = 5,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()

        def conv(a: int, b: int, k: int) -> ConvNormAct:
            return ConvNormAct(a, b, kernel_size=k, padding="same", norm=norm, activation=activation)

        self.branch1 = conv(in_channels, ch1x1, 1)
        self.branch2 = nn.Sequential(conv(in_channels, ch3x3red, 1), conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(conv(in_channels, ch5x5red, 1), conv(ch5x5red, ch5x5, branch3_kernel))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv(in_channels, pool_proj, 1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)


@register_model("googlenet", task="classification")
class GoogLeNet(Classifier):
    """GoogLeNet: stem (7×7/2 conv, pool, 1×1, 3×3, pool) -> 9 Inception modules -> global pool -> Linear.

    Needs >= 32 px (output stride 32; ceil-mode pools as in torchvision).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        *,
        width: float = 1.0,
        branch3_kernel: int = 5,
        dropout: float = 0.2,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__(in_channels, num_classes, min_input_size=32, output_stride=32)
        if width <= 0:
            raise ValueError(f"width must be > 0; got {width}.")

        def c(n: int) -> int:
            return max(1, round(n * width))

        opts = {"norm": norm, "activation": activation}
        stem = [
            ConvNormAct(in_channels, c(64), kernel_size=7, stride=2, padding=3, **opts),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            ConvNormAct(c(64), c(64), kernel_size=1, **opts),
            ConvNormAct(c(64), c(192), kernel_size=3, **opts),
            nn.MaxPool2d(3, 2, ceil_mode=True),
        ]
        layers: list[nn.Module] = []
        ch = c(192)
        for item in INCEPTION_PLAN:
            if item == "M":
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            elif item == "M2":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                block = Inception(ch, *(c(n) for n in item), branch3_kernel=branch3_kernel, **opts)
                layers.append(block)
                ch = block.out_channels
        self.features = nn.Sequential(*stem, *layers)
        self.num_features = ch
        if num_classes:
            self.head = nn.Sequential(
                global_pool(), nn.Flatten(), make_dropout(dropout), nn.Linear(ch, num_classes)
            )
