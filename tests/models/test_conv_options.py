"""Convolution options of the conv-stack families, reached from a YAML ``model:`` section, against hand counts
and the receptive-field formula."""

from __future__ import annotations

import json

import pytest
import torch

from microcnn.cli import main
from microcnn.models import build_model
from microcnn.models.describe import describe


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _bn(c: int) -> int:
    return 2 * c  # BatchNorm2d: weight and bias per channel


def _full(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * c_out * k * k  # no bias: a norm follows


def _separable(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * k * k + c_in * c_out  # depthwise k×k per input channel, then 1×1 pointwise


# U-Net, depth 1, widths [4, 8], 1 input channel, 2 classes; the very first conv stays a full conv
UNET_SEPARABLE = (
    _full(1, 4) + _bn(4) + _separable(4, 4) + _bn(4)  # level 0
    + _separable(4, 8) + _bn(8) + _separable(8, 8) + _bn(8)  # level 1
    + 8 * 4 * 2 * 2 + 4  # ConvTranspose2d 8 -> 4, kernel 2, with bias
    + _separable(8, 4) + _bn(4) + _separable(4, 4) + _bn(4)  # decoder on the concatenated 4 + 4
    + 4 * 2 + 2  # 1×1 head with bias
)  # fmt: skip
UNET_PLAIN = (
    _full(1, 4) + _bn(4) + _full(4, 4) + _bn(4)
    + _full(4, 8) + _bn(8) + _full(8, 8) + _bn(8)
    + 8 * 4 * 2 * 2 + 4
    + _full(8, 4) + _bn(4) + _full(4, 4) + _bn(4)
    + 4 * 2 + 2
)  # fmt: skip
UNET = {"name": "unet", "depth": 1, "base_channels": 4, "num_classes": 2}


def test_hand_counts_are_what_they_say():
    assert (UNET_SEPARABLE, UNET_PLAIN) == (654, 1682)


@pytest.mark.parametrize(("separable", "expected"), [(True, UNET_SEPARABLE), (False, UNET_PLAIN)])
def test_unet_depthwise_separable_parameter_count(separable, expected):
    assert _params(build_model({**UNET, "depthwise_separable": separable})) == expected


def test_depthwise_separable_from_a_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "model:\n  name: unet\n  depth: 1\n  base_channels: 4\n  num_classes: 2\n"
        "  depthwise_separable: true\n",
        encoding="utf-8",
    )
    assert main(["describe", str(cfg), "--input", "1x16x16", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["params"] == UNET_SEPARABLE


def test_groups_and_bias_counts_on_vgg():
    # VGG-11, widths (4, 8, 8, 8, 8), encoder only; groups=2 halves every weight after the first conv,
    # bias=True adds one per output channel even though a norm follows
    widths = (4, 8, 8, 8, 8)
    convs = [(1, 4), (4, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8), (8, 8)]  # VGG-11: 1, 1, 2, 2, 2
    kwargs = {"widths": widths, "num_classes": 0, "norm": "batch"}
    grouped = _full(1, 4) + sum(_full(a, b) // 2 for a, b in convs[1:]) + sum(_bn(b) for _, b in convs)
    assert _params(build_model("vgg11", groups=2, **kwargs)) == grouped
    assert _params(build_model("vgg11", groups=2, bias=True, **kwargs)) == grouped + sum(b for _, b in convs)


def _vgg_rf(convs_per_stage: tuple[int, ...], reach: int) -> int:
    """Receptive field of VGG's conv stages: r = 1 + sum(reach · jump) over convs + sum(1 · jump) over the
    2×2 pools, the jump doubling after each pool; reach = d(k - 1) px of the layer's input."""
    r, jump = 1, 1
    for n in convs_per_stage:
        r += n * reach * jump + 1 * jump
        jump *= 2
    return r


def test_vgg16_receptive_field_is_the_published_212():
    assert _vgg_rf((2, 2, 3, 3, 3), 2) == 212  # pool5 of VGG-16 (Araujo et al., Distill 2019)
    table = describe(build_model("vgg16", widths=(4, 8, 8, 8, 8), num_classes=0), (1, 32, 32))
    assert table.totals["rf"] == (212, 212)


@pytest.mark.parametrize(("dilation", "kernel_size"), [(1, 3), (2, 3), (1, 5), (3, 3)])
def test_dilation_and_kernel_size_set_the_receptive_field(dilation, kernel_size):
    reach = dilation * (kernel_size - 1)
    expected = _vgg_rf((1, 1, 2, 2, 2), reach)  # 32 + 59 · reach: 150, 268, 268, 386
    net = build_model({"name": "vgg11", "widths": [4, 8, 8, 8, 8], "num_classes": 0, "dilation": dilation,
                       "kernel_size": kernel_size})  # fmt: skip
    table = describe(net, (1, 32, 32))
    assert table.totals["rf"] == (expected, expected)
    convs = [r for r in table.rows if r.type == "Conv2d"]
    assert {r.dilation for r in convs} == {(dilation, dilation)}
    assert {r.output_shape[1:] for r in convs[:1]} == {(32, 32)}  # "same" padding keeps the size


@pytest.mark.parametrize("name", ["unet", "segnet", "fcn"])
def test_segmenters_take_the_options_and_keep_the_size(name):
    kw = {"num_classes": 2, "depth": 3, "base_channels": 4, "dilation": 2, "kernel_size": 5}
    for extra in ({"depthwise_separable": True}, {"groups": 2, "bias": True}):
        net = build_model(name, **kw, **extra).eval()
        with torch.no_grad():
            assert net(torch.rand(1, 1, 20, 27)).shape == (1, 2, 20, 27)


def test_tinyvgg_same_padding_changes_the_head_by_the_formula():
    # padding "same": 64 -> 64 -> 64 -> pool 32 -> 32 -> 32 -> pool 16; the head reads 10·16·16 values
    net = build_model("tinyvgg", padding="same", input_size=64, num_classes=3)
    assert net.head[-1].in_features == 10 * 16 * 16
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 3)
    # valid 5×5 convs: 64 -> 60 -> 56 -> 28 -> 24 -> 20 -> 10
    assert build_model("tinyvgg", kernel_size=5, input_size=64).head[-1].in_features == 10 * 10 * 10


def test_groups_that_do_not_divide_a_width_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"groups=3 must divide every width.*\[4, 8\].*multiples of 3"):
        build_model("unet", depth=1, base_channels=4, groups=3)


def test_depthwise_separable_with_groups_is_refused():
    with pytest.raises(ValueError, match="groups=1 with depthwise_separable=True"):
        build_model("vgg11", widths=(4, 8, 8, 8, 8), groups=2, depthwise_separable=True)


@pytest.mark.parametrize("key", ["kernel_size", "dilation", "groups"])
def test_non_positive_conv_options_are_refused(key):
    with pytest.raises(ValueError, match=rf"{key} must be >= 1; got 0"):
        build_model("segnet", depth=2, base_channels=4, **{key: 0})
