"""Building blocks shared by every network: convolution + norm + activation, pooling, one ``Up`` block.

Every option is a plain keyword (a string from a closed set, an int, a bool) so that the YAML ``model:``
section reaches it. Unknown choices raise the house "did you mean" ``ValueError``.

Shapes: tensors are ``(N, C, H, W)`` float32; H and W are rows and columns in pixels.

Example:
    >>> import torch
    >>> block = ConvNormAct(1, 8, kernel_size=3, padding="same", norm="batch", activation="mish")
    >>> block(torch.zeros(2, 1, 17, 17)).shape
    torch.Size([2, 8, 17, 17])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from microcnn.errors import MicrocnnError
from microcnn.registry import check_choice


class ModelInputError(MicrocnnError, ValueError):
    """A tensor given to a model has the wrong number of channels, dimensions or a too-small size."""


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),  # swish(x) = x * sigmoid(x) = SiLU
    "mish": lambda: nn.Mish(inplace=True),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "softsign": nn.Softsign,
    "identity": nn.Identity,
}
NORMS = ("batch", "group", "instance", "layer", "none")
POOLS = ("max", "avg", "none")
UP_MODES = ("transpose", "bilinear", "nearest", "pixelshuffle", "unpool")
PAD_MODES = ("reflect", "replicate", "zeros")


def make_activation(name: str) -> nn.Module:
    """An activation module by name (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[check_choice("activation", name, list(ACTIVATIONS))]()


def make_norm(name: str, channels: int, *, groups: int = 8) -> nn.Module:
    """A normalisation over ``channels`` feature maps.

    ``group`` uses ``min(groups, channels)`` groups, reduced until it divides ``channels``; ``layer`` is
    GroupNorm with one group (normalises over C, H, W of each sample, as LayerNorm does for images);
    ``instance`` has learnable affine parameters.
    """
    check_choice("norm", name, NORMS)
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        g = min(groups, channels)
        while channels % g:
            g -= 1
        return nn.GroupNorm(g, channels)
    if name == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if name == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def make_dropout(p: float, *, spatial: bool = False) -> nn.Module:
    """``nn.Dropout2d`` (drops whole feature maps) when ``spatial``, else ``nn.Dropout``; Identity at p=0."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {p}. Use 0 to switch it off.")
    if p == 0:
        return nn.Identity()
    return nn.Dropout2d(p) if spatial else nn.Dropout(p)


def make_pool(kind: str, *, kernel_size: int = 2, stride: int | None = None, return_indices: bool = False):
    """``max`` / ``avg`` pooling (``none``: Identity). Global average pooling is :func:`global_pool`."""
    check_choice("pool", kind, POOLS)
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, return_indices=return_indices)
    if kind == "avg":
        return nn.AvgPool2d(kernel_size, stride)
    return nn.Identity()


def global_pool() -> nn.Module:
    """Global average pooling: ``(N, C, H, W) -> (N, C, 1, 1)``."""
    return nn.AdaptiveAvgPool2d(1)


def make_conv(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    padding: int | str = "same",
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    depthwise_separable: bool = False,
) -> nn.Module:
    """``nn.Conv2d``, or depthwise (``groups=in_channels``, no bias) -> 1×1 pointwise when
    ``depthwise_separable``. ``padding="same"`` keeps H, W at stride 1: p = d(k - 1) / 2."""
    if padding == "same":
        if stride != 1:
            raise ValueError(f"padding='same' needs stride 1; got stride {stride}. Give an int padding.")
        padding = dilation * (kernel_size - 1) // 2
    if not depthwise_separable:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
    if groups != 1:
        raise ValueError(
            f"depthwise_separable sets the groups itself (depthwise, then 1×1); got groups={groups}. "
            "Use groups=1 with depthwise_separable=True."
        )
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, dilation, in_channels, False),
        nn.Conv2d(in_channels, out_channels, 1, bias=bias),
    )


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation -> (spatial) dropout.

    ``padding`` is an int or ``"same"`` (output H, W = input H, W at stride 1). ``depthwise_separable``
    replaces the convolution by a depthwise ``groups=in_channels`` convolution followed by a 1×1 pointwise
    one (MobileNet). The conv has no bias when a norm follows it (the norm's shift makes it redundant)
    unless ``bias`` says otherwise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str = "same",
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        spatial_dropout: bool = True,
        depthwise_separable: bool = False,
    ) -> None:
        conv = make_conv(
            in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=groups, bias=(norm == "none") if bias is None else bias,
            depthwise_separable=depthwise_separable,
        )  # fmt: skip
        super().__init__(
            conv,
            make_norm(norm, out_channels),
            make_activation(activation),
            make_dropout(dropout, spatial=spatial_dropout),
        )


def conv_stack(
    in_channels: int, out_channels: int, *, n: int = 2, plain_first: bool = False, **options
) -> nn.Sequential:
    """``n`` :class:`ConvNormAct` blocks, the first mapping ``in_channels`` to ``out_channels``.

    ``plain_first``: the first block is a full convolution (``groups=1``, not depthwise-separable), as the
    first layer of MobileNet: it is the one that sees the image channels.
    """
    first = {**options, "groups": 1, "depthwise_separable": False} if plain_first else options
    blocks = [ConvNormAct(in_channels, out_channels, **first)]
    blocks += [ConvNormAct(out_channels, out_channels, **options) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


def stack_options(
    *,
    model: str,
    widths: Sequence[int],
    norm: str,
    activation: str,
    kernel_size: int,
    dilation: int,
    groups: int,
    bias: bool | None,
    depthwise_separable: bool,
) -> dict[str, Any]:
    """The :class:`ConvNormAct` keywords of a conv-stack family (U-Net, SegNet, FCN, VGG, TinyVGG).

    Checks what the layers would only report deep inside PyTorch: ``kernel_size``, ``dilation`` and
    ``groups`` >= 1, and ``groups`` dividing every width (it applies to every conv but the first).
    """
    for key, value in (("kernel_size", kernel_size), ("dilation", dilation), ("groups", groups)):
        if value < 1:
            raise ValueError(f"{model}: {key} must be >= 1; got {value}.")
    bad = sorted({w for w in widths if w % groups})
    if bad:
        raise ValueError(
            f"{model}: groups={groups} must divide every width after the first convolution; got widths "
            f"{list(widths)} ({bad} are not multiples). Use multiples of {groups} or groups=1."
        )
    return {
        "norm": norm,
        "activation": activation,
        "kernel_size": kernel_size,
        "dilation": dilation,
        "groups": groups,
        "bias": bias,
        "depthwise_separable": depthwise_separable,
    }


class Up(nn.Module):
    """Upsample ×``scale`` and map ``in_channels`` to ``out_channels``; one block, five modes.

    - ``transpose``: ConvTranspose2d(kernel=scale, stride=scale).
    - ``bilinear`` / ``nearest``: 1×1 conv, then interpolation (the two commute; converting channels at the
      low resolution is cheaper); ``project=False``: interpolation only (``out_channels == in_channels``).
    - ``pixelshuffle``: 3×3 conv to ``out_channels·scale²``, then PixelShuffle (sub-pixel convolution).
    - ``unpool``: 1×1 conv, then MaxUnpool2d with the ``indices`` of the matching ``MaxPool2d``
      (``return_indices=True``); ``out_channels`` must equal the pooled tensor's channels.

    ``forward(x, indices=None, output_size=None)``: ``x`` (N, in_channels, h, w) ->
    (N, out_channels, h·scale, w·scale).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        mode: str = "transpose",
        scale: int = 2,
        project: bool = True,
    ) -> None:
        super().__init__()
        self.mode = check_choice("up mode", mode, UP_MODES)
        self.scale = scale
        if not project and (mode not in ("bilinear", "nearest") or in_channels != out_channels):
            raise ValueError(
                "Up(project=False) only interpolates: it needs mode 'bilinear' or 'nearest' and "
                f"in_channels == out_channels; got mode {mode!r}, {in_channels} -> {out_channels} channels."
            )
        if mode == "transpose":
            self.proj: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, scale, stride=scale)
            self.up: nn.Module = nn.Identity()
        elif mode in ("bilinear", "nearest"):
            self.proj = nn.Conv2d(in_channels, out_channels, 1) if project else nn.Identity()
            align = False if mode == "bilinear" else None
            self.up = nn.Upsample(scale_factor=scale, mode=mode, align_corners=align)
        elif mode == "pixelshuffle":
            self.proj = nn.Conv2d(in_channels, out_channels * scale * scale, 3, padding=1)
            self.up = nn.PixelShuffle(scale)
        else:
            self.proj = nn.Conv2d(in_channels, out_channels, 1)
            self.up = nn.MaxUnpool2d(scale, scale)

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor | None = None, output_size: list[int] | None = None
    ) -> torch.Tensor:
        x = self.proj(x)
        if self.mode != "unpool":
            return self.up(x)
        if indices is None:
            raise ValueError(
                "Up(mode='unpool') needs the indices of the matching MaxPool2d(return_indices=True)."
            )
        return self.up(x, indices, output_size=output_size)


def check_input(x: torch.Tensor, *, in_channels: int, min_size: int, model: str) -> None:
    """Refuse a batch that the model cannot take, saying what was expected and what to do."""
    if x.ndim != 4:
        raise ModelInputError(
            f"{model} expects a batch (N, C, H, W); got a tensor of shape {tuple(x.shape)}. "
            "Add the batch dimension with x.unsqueeze(0)."
        )
    if x.shape[1] != in_channels:
        raise ModelInputError(
            f"{model} was built for {in_channels} input channel(s); got {x.shape[1]} "
            f"(shape {tuple(x.shape)}). Convert the images (e.g. grayscale -> 1 channel) "
            f"or build the model with in_channels={x.shape[1]}."
        )
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ModelInputError(
            f"{model} needs inputs of at least {min_size}×{min_size} px; got {h}×{w}. "
            "Use larger tiles or a shallower network (smaller depth / fewer pooling stages)."
        )


def pad_to_multiple(
    x: torch.Tensor, multiple: int, *, mode: str = "reflect"
) -> tuple[torch.Tensor, int, int]:
    """Pad H and W at the bottom/right up to multiples of ``multiple``; returns (padded, H, W) to crop back.

    ``mode``: ``reflect`` (default; mirrors the image so no artificial edge appears), ``replicate`` or
    ``zeros``. Reflect needs the pad to be smaller than the image, which holds when H, W >= ``multiple``.
    """
    check_choice("pad mode", mode, PAD_MODES)
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="constant" if mode == "zeros" else mode)
    return x, h, w
