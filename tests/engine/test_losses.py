"""Each loss against values computed by hand on tiny tensors (logits 0, ln 3 give softmax 0.25, 0.75)."""

from __future__ import annotations

import math

import pytest
import torch

from microcnn.engine.losses import LOSSES, build_loss, penalty
from microcnn.errors import ConfigError

LN3 = math.log(3.0)
# logits [0, ln 3] -> softmax [0.25, 0.75]
P = torch.tensor([[0.0, LN3]])


def _seg(logits_per_pixel: list[list[float]]) -> torch.Tensor:
    """[(l0, l1) per pixel] -> (1, 2, 1, n) segmentation logits."""
    return torch.tensor(logits_per_pixel).T.reshape(1, 2, 1, -1)


# name -> (params, output, target, expected value by hand)
CASES = {
    "cross_entropy": ({}, P, torch.tensor([1]), -math.log(0.75)),
    "bce": ({}, P, torch.tensor([1]), -math.log(0.75)),  # 2 logits: sigmoid(ln3 - 0) = 0.75
    "dice": (
        {"smooth": 1.0},
        _seg([[0.0, LN3], [9.0, 0.0]]),
        torch.tensor([[[1, 255]]]),
        # class 0: (0 + 1) / (0.25 + 0 + 1) = 0.8; class 1: (2*0.75 + 1) / (0.75 + 1 + 1) = 10/11
        1 - (0.8 + 10 / 11) / 2,
    ),
    "focal": ({"gamma": 2.0}, P, torch.tensor([1]), -(0.25**2) * math.log(0.75)),
    "dice_ce": (
        {"smooth": 1.0, "dice_weight": 0.5},
        _seg([[0.0, LN3], [9.0, 0.0]]),
        torch.tensor([[[1, 255]]]),
        -math.log(0.75) + 0.5 * (1 - (0.8 + 10 / 11) / 2),
    ),
    "mse": ({}, torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0]]), (0.25 + 4.0) / 2),
    "smooth_l1": ({"beta": 1.0}, torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0]]), (0.125 + 1.5) / 2),
    # mean 0, log-variance ln 4, y = 2: 0.5 (ln 4 + 4 / 4)
    "gaussian_nll": (
        {},
        torch.tensor([[0.0, math.log(4.0)]]),
        torch.tensor([[2.0]]),
        0.5 * (math.log(4.0) + 1),
    ),
}


def test_every_registered_loss_has_a_hand_case():
    assert set(CASES) == set(LOSSES.names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_value(name):
    params, output, target, expected = CASES[name]
    value = build_loss({"name": name, **params})(output, target)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_options():
    two = torch.cat([P, P])  # both samples p = [0.25, 0.75]
    target = torch.tensor([0, 1])
    weighted = build_loss({"name": "cross_entropy", "class_weights": [2.0, 1.0]})(two, target)
    assert float(weighted) == pytest.approx((2 * -math.log(0.25) - math.log(0.75)) / 3, rel=1e-6)
    smooth = build_loss({"name": "cross_entropy", "label_smoothing": 0.2})(P, torch.tensor([1]))
    expected = 0.8 * -math.log(0.75) + 0.2 * 0.5 * (-math.log(0.25) - math.log(0.75))
    assert float(smooth) == pytest.approx(expected, rel=1e-6)
    ignored = build_loss({"name": "cross_entropy"})(
        _seg([[0.0, LN3], [LN3, 0.0]]), torch.tensor([[[1, 255]]])
    )
    assert float(ignored) == pytest.approx(-math.log(0.75), rel=1e-6)


def test_bce_float_multi_label_targets():
    # sigmoid(0, ln 3, -ln 3) = 0.5, 0.75, 0.25; a soft target 0.5 at p = 0.5 costs ln 2 as well
    logits, target = torch.tensor([[0.0, LN3, -LN3, 0.0]]), torch.tensor([[1.0, 0.0, 0.0, 0.5]])
    expected = (math.log(2) + math.log(4) - math.log(0.75) + math.log(2)) / 4
    assert float(build_loss({"name": "bce"})(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_bce_pos_weight_scales_the_positive_term():
    value = build_loss({"name": "bce", "pos_weight": 2.0})(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert float(value) == pytest.approx(2 * math.log(2), rel=1e-6)  # 2 * -ln sigmoid(0)


def test_bce_ignores_unlabelled_pixels():
    # 2-channel logits: p(class 1) = sigmoid(l1 - l0); the second pixel is 255 and must not count
    two = build_loss({"name": "bce"})(_seg([[0.0, LN3], [9.0, -9.0]]), torch.tensor([[[1, 255]]]))
    assert float(two) == pytest.approx(-math.log(0.75), rel=1e-6)
    one = build_loss({"name": "bce"})(torch.tensor([[[[LN3, 9.0]]]]), torch.tensor([[[0, 255]]]))
    assert float(one) == pytest.approx(-math.log(0.25), rel=1e-6)  # 1 channel: sigmoid(ln 3) = 0.75


def test_focal_class_weights_are_normalised_like_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    target = torch.tensor([[[2, 255], [0, 1]], [[1, 1], [255, 2]]])
    weights = [0.2, 1.0, 3.0]
    focal = build_loss({"name": "focal", "gamma": 0.0, "class_weights": weights})(logits, target)
    ce = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor(weights, dtype=torch.float64), ignore_index=255
    )
    assert float(focal) == pytest.approx(float(ce), rel=1e-12)
    # gamma 2 by hand: p = [0.25, 0.75] for both samples, targets 0 and 1, weights 2 and 1
    two = build_loss({"name": "focal", "gamma": 2.0, "class_weights": [2.0, 1.0]})(
        torch.cat([P, P]), torch.tensor([0, 1])
    )
    expected = (2 * 0.75**2 * -math.log(0.25) + 1 * 0.25**2 * -math.log(0.75)) / 3
    assert float(two) == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.5]]), torch.tensor([2, 1])
    focal = build_loss({"name": "focal", "gamma": 0.0})(logits, target)
    assert float(focal) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)), rel=1e-6)


def test_auto_name_and_errors():
    assert float(build_loss({"name": "auto"}, task="regression")(torch.ones(1, 1), torch.zeros(1, 1))) == 1.0
    with pytest.raises(ConfigError, match="Did you mean 'focal'"):
        build_loss({"name": "focall"})
    with pytest.raises(ConfigError, match=r"'loss\.gama'.*Did you mean 'gamma'"):
        build_loss({"name": "focal", "gama": 1})
    with pytest.raises(ConfigError, match="heteroscedastic"):
        build_loss({"name": "gaussian_nll"})(torch.zeros(2, 1), torch.zeros(2, 1))


def test_l1_l2_penalty_on_weights_only():
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0]]))
        net.bias.fill_(5.0)  # biases are not penalised
    assert float(penalty(net, l1=0.1).detach()) == pytest.approx(0.1 * 3)
    assert float(penalty(net, l2=0.2).detach()) == pytest.approx(0.5 * 0.2 * 5)
    assert penalty(net) == 0.0
