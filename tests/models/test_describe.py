"""describe() against independent references: published parameter counts, hand-computed receptive fields,
the textbook output-size formulas checked on real layers, and torch.utils.flop_counter."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from microcnn.models import build_model, list_models
from microcnn.models.describe import conv_output_size, conv_transpose_output_size, describe, parse_input_shape

from .tiny import TINY


def test_lenet5_parameters_and_shapes():
    table = describe(build_model("lenet5", in_channels=1, num_classes=10), (1, 32, 32))
    assert table.totals["params"] == 61_706  # LeCun et al. 1998 layout: 156 + 2416 + 48120 + 10164 + 850
    shapes = [r.output_shape for r in table.rows if r.type in {"Conv2d", "AvgPool2d", "Linear"}]
    assert shapes == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5), (120,), (84,), (10,)]


def test_lenet5_geometry_cells():
    # C1 and C3: 5×5 kernels, stride 1, no padding (32 -> 28, 14 -> 10); S2 and S4: 2×2 windows, stride 2
    table = describe(build_model("lenet5"), (1, 32, 32))
    geometry = [(r.type, r.kernel, r.stride, r.padding, r.dilation) for r in table.rows if r.kernel]
    assert geometry == [
        ("Conv2d", (5, 5), (1, 1), (0, 0), (1, 1)),
        ("AvgPool2d", (2, 2), (2, 2), (0, 0), (1, 1)),
        ("Conv2d", (5, 5), (1, 1), (0, 0), (1, 1)),
        ("AvgPool2d", (2, 2), (2, 2), (0, 0), (1, 1)),
    ]
    cells = [r for r in table.records() if r["type"] == "Conv2d"]
    assert [(c["kernel"], c["stride"], c["padding"]) for c in cells] == [("5", "1", "0")] * 2
    assert all(r.kernel is None for r in table.rows if r.type in {"Linear", "Tanh"})


# Parameter counts of torchvision's reference models (torchvision docs; 3×224×224 input, 1000 classes)
TORCHVISION_COUNTS = [
    ("alexnet", {}, 61_100_840),
    ("vgg11", {}, 132_863_336),
    ("vgg13", {}, 133_047_848),
    ("vgg16", {}, 138_357_544),
    ("vgg19", {}, 143_667_240),
    ("googlenet", {"branch3_kernel": 3}, 6_624_904),
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"), TORCHVISION_COUNTS, ids=[c[0] for c in TORCHVISION_COUNTS]
)
def test_parameter_counts_equal_torchvision(name, kwargs, expected):
    model = build_model(name, in_channels=3, num_classes=1000, **kwargs)
    assert sum(p.numel() for p in model.parameters()) == expected


DESCRIBE_224 = [
    ("googlenet", {"branch3_kernel": 3}, 6_624_904),
    ("resnet50", {}, 25_557_032),
    ("vgg11", {}, 132_863_336),
]


@pytest.mark.parametrize(("name", "kwargs", "expected"), DESCRIBE_224, ids=[c[0] for c in DESCRIBE_224])
def test_describe_totals_at_224_equal_torchvision(name, kwargs, expected):
    table = describe(build_model(name, in_channels=3, num_classes=1000, **kwargs), (3, 224, 224))
    assert table.totals["params"] == table.totals["trainable"] == expected
    assert sum(r.params for r in table.rows) == expected  # every parameter sits in exactly one row
    assert table.totals["output_shape"] == (1000,)


@pytest.mark.slow
def test_describe_alexnet_at_224_counts_like_torchvision_and_flop_counter():
    model = build_model("alexnet", in_channels=3, num_classes=1000)
    table = describe(model, (3, 224, 224))
    assert table.totals["params"] == 61_100_840
    assert [r.output_shape for r in table.rows if r.type == "MaxPool2d"] == [
        (64, 27, 27),
        (192, 13, 13),
        (256, 6, 6),
    ]
    assert math.isclose(table.totals["flops"], _reference_flops(model, (3, 224, 224)), rel_tol=0.01)


@pytest.mark.parametrize(("n_convs", "expected"), [(1, 3), (2, 5), (3, 7)])
def test_receptive_field_of_stacked_3x3_convs(n_convs, expected):
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3) for _ in range(n_convs)])
    assert describe(net, (1, 16, 16)).totals["rf"] == (expected, expected)


def test_receptive_field_conv_pool_conv_is_8_with_jump_2():
    table = describe(nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3)), (1, 20, 20))
    assert [r.rf for r in table.rows] == [(3, 3), (4, 4), (8, 8)]
    assert table.rows[-1].jump == (2, 2)


def test_dilated_conv_receptive_field():
    # a 3×3 kernel with dilation 2 spans 5 px; two of them 5 + 4 = 9
    net = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2), nn.Conv2d(1, 1, 3, dilation=2))
    assert describe(net, (1, 16, 16)).totals["rf"] == (9, 9)


class _TwoBranches(nn.Module):
    """y = conv3(x) + conv5(x): the field of the sum is the larger branch's (5)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 5, padding=2)

    def forward(self, x):
        return self.a(x) + self.b(x)


def test_branches_take_the_largest_receptive_field():
    assert describe(_TwoBranches(), (1, 12, 12)).totals["rf"] == (5, 5)
    cat = describe(nn.Sequential(_TwoBranches(), nn.Conv2d(1, 1, 3)), (1, 12, 12))
    assert cat.totals["rf"] == (7, 7)


def test_transposed_conv_halves_the_jump():
    table = describe(
        nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ConvTranspose2d(2, 1, 2, stride=2)), (1, 9, 9)
    )
    assert table.rows[0].jump == (2, 2) and table.rows[1].jump == (1, 1)
    assert table.rows[1].rf == (3, 3)  # each output pixel of a k2/s2 transposed conv sees one input pixel


GRID = [
    (n, k, s, p, d)
    for n in (5, 8, 13)
    for k in (1, 2, 3, 5)
    for s in (1, 2, 3)
    for p in (0, 1, 2)
    for d in (1, 2)
    if n + 2 * p - d * (k - 1) - 1 >= 0  # the conv has at least one output pixel
]
GRID_T = [(*g, op) for g in GRID for op in (0, 1) if op < max(g[2], g[4])]  # PyTorch: output_padding < s or d


@pytest.mark.parametrize(("n", "k", "s", "p", "d"), GRID)
def test_conv_output_size_formula_against_nn_conv2d(n, k, s, p, d):
    expected_len = math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    real = conv(torch.zeros(1, 1, n, n)).shape[-1]
    assert conv_output_size(n, k, s, p, d) == real == expected_len


@pytest.mark.parametrize(("n", "k", "s", "p", "d", "output_padding"), GRID_T)
def test_conv_transpose_output_size_formula_against_nn(n, k, s, p, d, output_padding):
    expected_len = (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1
    layer = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, dilation=d, output_padding=output_padding)
    real = layer(torch.zeros(1, 1, n, n)).shape[-1]
    assert conv_transpose_output_size(n, k, s, p, d, output_padding) == real == expected_len


@pytest.mark.parametrize(("groups", "bias"), [(1, False), (1, True), (4, True), (8, False)])
def test_single_conv_flops_formula(groups, bias):
    c_in, c_out, k, h_out, w_out = 8, 16, 3, 10, 12
    conv = nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias)
    expected = 2 * k * k * c_in * c_out * h_out * w_out // groups
    assert describe(conv, (c_in, h_out + 2, w_out + 2)).totals["flops"] == expected
    with_bias = describe(conv, (c_in, h_out + 2, w_out + 2), count_bias=True).totals["flops"]
    assert with_bias == expected + (c_out * h_out * w_out if bias else 0)


def _reference_flops(model: nn.Module, shape) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list_models())
def test_total_flops_agree_with_torch_flop_counter(name):
    kwargs, size = TINY[name]
    model = build_model(name, **kwargs)
    shape = (1, size, size if getattr(model, "exact_input_size", None) else size + 8)
    ours = describe(model, shape).totals["flops"]
    assert ours > 0
    assert math.isclose(ours, _reference_flops(model, shape), rel_tol=0.01)


def test_describe_counts_frozen_parameters_and_restores_training_mode():
    model = build_model("lenet5")
    for p in model.features.parameters():
        p.requires_grad_(False)
    model.train()
    totals = describe(model, (1, 32, 32)).totals
    assert totals["frozen"] == 156 + 2416 and totals["trainable"] == 61_706 - 156 - 2416
    assert model.training


def test_table_exports_agree():
    table = describe(build_model("lenet5"), "1x32x32")
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["output_shape"] for r in rows][:2] == ["6×28×28", "6×28×28"]
    assert sum(int(r["params"]) for r in rows) == 61_706
    data = json.loads(table.to_json())
    assert data["totals"]["params"] == 61_706 and len(data["rows"]) == len(rows)
    md = table.to_markdown()
    assert md.count("\n| ") == len(rows) and "Total params: 61,706" in md
    assert table.to_dataframe()["params"].sum() == 61_706


@pytest.mark.parametrize("bad", ["1x32", "ax32x32", "0x32x32", (1, 32)])
def test_bad_input_shape_is_refused(bad):
    with pytest.raises(ValueError, match="C×H×W"):
        parse_input_shape(bad)
