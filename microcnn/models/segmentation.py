"""Segmentation encoder-decoders: U-Net, SegNet, FCN, U-Net on a ResNet encoder.

All take ``(N, in_channels, H, W)`` float32 of any H, W >= ``min_input_size`` and return logits
``(N, num_classes, H, W)``. Inside ``forward`` the input is padded at the bottom and right to a multiple
of ``output_stride`` (``pad_mode``: reflect by default, or replicate / zeros) and the logits are cropped
back: never a silent resize. ``min_input_size`` equals ``output_stride`` (the deepest stage sees >= 1 px).

Example:
    >>> import torch
    >>> net = UNet(in_channels=1, num_classes=3, depth=3, base_channels=8, upsample="bilinear")
    >>> net(torch.zeros(1, 1, 25, 33)).shape
    torch.Size([1, 3, 25, 33])
"""

from __future__ import annotations

import torch
from torch import nn

from microcnn.models.blocks import (
    Up,
    check_input,
    conv_stack,
    make_dropout,
    pad_to_multiple,
    stack_options,
)
from microcnn.models.resnet import build_torchvision_resnet, load_resnet_weights
from microcnn.models.zoo import register_model
from microcnn.registry import check_choice


class Segmenter(nn.Module):
    """Common frame: checks the input, pads to the stride, runs ``_forward_padded``, crops the logits."""

    task = "segmentation"

    def __init__(self, in_channels: int, num_classes: int, *, output_stride: int, pad_mode: str) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1; got {in_channels}, {num_classes}.")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.min_input_size = output_stride
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 -> logits (N, num_classes, H, W)."""
        check_input(x, in_channels=self.in_channels, min_size=self.min_input_size, model=type(self).__name__)
        padded, h, w = pad_to_multiple(x, self.output_stride, mode=self.pad_mode)
        return self._forward_padded(padded)[..., :h, :w]

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _widths(base_channels: int, depth: int, widths: list[int] | None, *, levels: int) -> list[int]:
    """Channels per level, ``levels`` of them (U-Net: depth + 1, SegNet / FCN: depth): given, or base·2^i."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1; got {depth}.")
    out = list(widths) if widths else [base_channels * 2**i for i in range(levels)]
    if len(out) != levels:
        rule = "depth + 1" if levels == depth + 1 else "depth"
        raise ValueError(
            f"widths needs {rule} = {levels} entries for depth {depth} (one per level); "
            f"got {len(out)}: {out}."
        )
    return out


@register_model("unet", task="segmentation")
class UNet(Segmenter):
    """U-Net (Ronneberger et al. 2015): ``depth`` down-steps (2×2 max-pool), skip connections by concat.

    Level i has ``widths[i]`` channels (default ``base_channels·2^i``); output stride ``2^depth``.
    ``upsample`` is any :class:`~microcnn.models.blocks.Up` mode ("unpool" reuses the pool indices).
    ``base_channels`` defaults to 16 (Ronneberger et al. used 64), as in the shipped default models, the
    synthetic configs and the app's Train page: on a CPU a 16-channel U-Net trains ~4x faster than a
    32-channel one (FLOPs grow with the square of the width) and it reached 0.96 joint IoU on NASA Super1
    (data/models/nasa_gamma_prime). SegNet and FCN share the default.

    Convolution options, for every conv of the stacks (``padding`` stays "same" so that each level keeps
    its size; downsampling is by pooling): ``kernel_size``, ``dilation``, ``groups`` and
    ``depthwise_separable`` (every conv but the first, which sees the image channels), ``bias`` (None:
    only when ``norm="none"``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        depth: int = 4,
        base_channels: int = 16,
        widths: list[int] | None = None,
        upsample: str = "transpose",
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        depthwise_separable: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__(in_channels, num_classes, output_stride=2**depth, pad_mode=pad_mode)
        w = _widths(base_channels, depth, widths, levels=depth + 1)
        opts = stack_options(
            model="UNet", widths=w, norm=norm, activation=activation, kernel_size=kernel_size,
            dilation=dilation, groups=groups, bias=bias, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        self.down = nn.ModuleList([conv_stack(in_channels, w[0], plain_first=True, **opts)])
        self.down.extend(conv_stack(w[i], w[i + 1], **opts) for i in range(depth))
        # Pool indices cost time and memory; only the unpooling decoder uses them.
        self.pool = nn.MaxPool2d(2, 2, return_indices=upsample == "unpool")
        self.bottleneck_dropout = make_dropout(dropout, spatial=True)
        self.ups = nn.ModuleList(Up(w[i + 1], w[i], mode=upsample) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(conv_stack(2 * w[i], w[i], **opts) for i in reversed(range(depth)))
        self.head = nn.Conv2d(w[0], num_classes, 1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.down[-1]

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        skips, indices = [], []
        for i, stage in enumerate(self.down):
            if i:
                x, idx = self.pool(x) if self.pool.return_indices else (self.pool(x), None)
                indices.append(idx)
            x = stage(x)
            skips.append(x)
        x = self.bottleneck_dropout(skips.pop())
        for up, dec in zip(self.ups, self.dec):
            skip = skips.pop()
            x = up(x, indices.pop(), output_size=skip.shape[-2:])
            x = dec(torch.cat([skip, x], dim=1))
        return self.head(x)


@register_model("segnet", task="segmentation")
class SegNet(Segmenter):
    """SegNet (Badrinarayanan et al. 2017): encoder with max-pool indices, decoder that unpools with them.

    No skip connections: only the pool indices cross over. Stage i has ``widths[i]`` channels and
    ``convs_per_stage`` convolutions; output stride ``2^depth``. ``upsample`` defaults to "unpool".
    Convolution options (``kernel_size``, ``dilation``, ``groups``, ``depthwise_separable``, ``bias``) as
    in :class:`UNet`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        depth: int = 4,
        base_channels: int = 16,
        widths: list[int] | None = None,
        convs_per_stage: int = 2,
        upsample: str = "unpool",
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        depthwise_separable: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__(in_channels, num_classes, output_stride=2**depth, pad_mode=pad_mode)
        w = _widths(base_channels, depth, widths, levels=depth)
        opts = stack_options(
            model="SegNet", widths=w, norm=norm, activation=activation, kernel_size=kernel_size,
            dilation=dilation, groups=groups, bias=bias, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        opts["n"] = convs_per_stage
        chans = [in_channels, *w]
        self.enc = nn.ModuleList(
            conv_stack(chans[i], chans[i + 1], plain_first=i == 0, **opts) for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.dropout = make_dropout(dropout, spatial=True)
        self.ups = nn.ModuleList(Up(w[i], w[i], mode=upsample) for i in reversed(range(depth)))
        outs = [w[0], *w[:-1]]
        self.dec = nn.ModuleList(conv_stack(w[i], outs[i], **opts) for i in reversed(range(depth)))
        self.head = nn.Conv2d(w[0], num_classes, 1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.enc[-1]

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        record = []
        for stage in self.enc:
            x = stage(x)
            size = x.shape[-2:]
            x, idx = self.pool(x)
            record.append((idx, size))
        x = self.dropout(x)
        for up, dec in zip(self.ups, self.dec):
            idx, size = record.pop()
            x = dec(up(x, idx, output_size=size))
        return self.head(x)


@register_model("fcn", task="segmentation")
class FCN(Segmenter):
    """FCN-8s-style network (Long et al. 2015): VGG-like encoder, 1×1 class scores, transposed convolutions.

    Scores of the deepest stage are upsampled ×2 (ConvTranspose2d 4×4/2) and added to the scores of the two
    stages before; the sum is upsampled by ``2^(depth-2)`` with one ConvTranspose2d (kernel 2f, stride f,
    padding f/2). Needs ``depth >= 3``; output stride ``2^depth``. Convolution options (``kernel_size``,
    ``dilation``, ``groups``, ``depthwise_separable``, ``bias``) as in :class:`UNet`.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        depth: int = 5,
        base_channels: int = 16,
        widths: list[int] | None = None,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        depthwise_separable: bool = False,
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__(in_channels, num_classes, output_stride=2**depth, pad_mode=pad_mode)
        if depth < 3:
            raise ValueError(f"FCN needs depth >= 3 (three score maps to fuse); got {depth}.")
        w = _widths(base_channels, depth, widths, levels=depth)
        chans = [in_channels, *w]
        opts = stack_options(
            model="FCN", widths=w, norm=norm, activation=activation, kernel_size=kernel_size,
            dilation=dilation, groups=groups, bias=bias, depthwise_separable=depthwise_separable,
        )  # fmt: skip
        self.enc = nn.ModuleList(
            nn.Sequential(conv_stack(chans[i], chans[i + 1], plain_first=i == 0, **opts), nn.MaxPool2d(2, 2))
            for i in range(depth)
        )
        self.dropout = make_dropout(dropout, spatial=True)
        self.scores = nn.ModuleList(
            nn.Conv2d(w[i], num_classes, 1) for i in (depth - 3, depth - 2, depth - 1)
        )
        self.up2 = nn.ModuleList(nn.ConvTranspose2d(num_classes, num_classes, 4, 2, 1) for _ in range(2))
        f = 2 ** (depth - 2)
        self.up_final = nn.ConvTranspose2d(num_classes, num_classes, 2 * f, f, f // 2)

    @property
    def cam_layer(self) -> nn.Module:
        return self.enc[-1]

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.enc:
            x = stage(x)
            feats.append(x)
        s3, s4, s5 = (score(f) for score, f in zip(self.scores, feats[-3:]))
        s5 = self.dropout(s5)
        y = self.up2[1](self.up2[0](s5) + s4) + s3
        return self.up_final(y)


@register_model("resnet_unet", task="segmentation")
class ResNetUNet(Segmenter):
    """U-Net decoder on a torchvision ResNet encoder (features at strides 2, 4, 8, 16, 32).

    ``encoder``: resnet18 | resnet34 | resnet50; ``encoder_weights_path`` loads a local torchvision-layout
    file (conv1 adapted as in :mod:`microcnn.models.resnet`). ``upsample``: any Up mode but "unpool" (the
    ResNet downsamples with strided convolutions, there are no pool indices). Output stride 32.

    ``project_up`` (nearest / bilinear only): True, a 1×1 conv maps the deeper features to the decoder
    width before they are upsampled and concatenated with the skip (cheaper); False, all their channels
    are upsampled and the first 3×3 conv after the concatenation maps them, as segmentation_models_pytorch's
    ``Unet`` does (resnet18, 256²: 10.6 instead of 9.4 GFLOP per image). ``head_kernel``: side of the last
    convolution to the class logits (1; smp's ``Unet`` uses 3: context of the neighbouring pixels).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        encoder: str = "resnet18",
        encoder_weights_path: str | None = None,
        decoder_channels: list[int] | None = None,
        upsample: str = "transpose",
        norm: str = "batch",
        activation: str = "relu",
        pad_mode: str = "reflect",
        project_up: bool = True,
        head_kernel: int = 1,
    ) -> None:
        super().__init__(in_channels, num_classes, output_stride=32, pad_mode=pad_mode)
        check_choice("ResNet-U-Net encoder", encoder, ("resnet18", "resnet34", "resnet50"))
        check_choice(
            "ResNet-U-Net upsample mode", upsample, ("transpose", "bilinear", "nearest", "pixelshuffle")
        )
        if not project_up and upsample not in ("nearest", "bilinear"):
            raise ValueError(
                "project_up=False needs upsample 'nearest' or 'bilinear' (interpolation keeps the "
                f"channels); got {upsample!r}, whose upsampling is itself a learned projection. Set "
                "project_up: true or upsample: nearest."
            )
        if head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be an odd side >= 1 (1, 3, 5, ...); got {head_kernel}.")
        self.encoder = build_torchvision_resnet(int(encoder[6:]), in_channels, 0)
        if encoder_weights_path:
            load_resnet_weights(self.encoder, encoder_weights_path)
        e = 4 if encoder == "resnet50" else 1
        skips = [64, 64 * e, 128 * e, 256 * e, 512 * e]  # channels at strides 2, 4, 8, 16, 32
        d = list(decoder_channels or [256, 128, 64, 32, 16])
        if len(d) != 5:
            raise ValueError(f"decoder_channels needs 5 entries (strides 16, 8, 4, 2, 1); got {len(d)}: {d}.")
        ins = [skips[4], *d[:4]]
        skip_in = [skips[3], skips[2], skips[1], skips[0], 0]
        opts = {"norm": norm, "activation": activation}
        up_out = d if project_up else ins  # without the projection the channels pass through
        self.ups = nn.ModuleList(Up(ins[i], up_out[i], mode=upsample, project=project_up) for i in range(5))
        self.dec = nn.ModuleList(conv_stack(up_out[i] + skip_in[i], d[i], **opts) for i in range(5))
        self.head = nn.Conv2d(d[4], num_classes, head_kernel, padding=head_kernel // 2)

    @property
    def cam_layer(self) -> nn.Module:
        return self.encoder.layer4

    def _forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        n = self.encoder
        s2 = n.relu(n.bn1(n.conv1(x)))
        s4 = n.layer1(n.maxpool(s2))
        s8 = n.layer2(s4)
        s16 = n.layer3(s8)
        y = n.layer4(s16)
        for up, dec, skip in zip(self.ups, self.dec, (s16, s8, s4, s2, None)):
            y = up(y)
            y = dec(y if skip is None else torch.cat([skip, y], dim=1))
        return self.head(y)
