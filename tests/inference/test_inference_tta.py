"""Test-time augmentation (D4) and ensemble statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from microcnn.inference.tta import (
    D4,
    IDENTITY,
    activate,
    apply,
    invert,
    mean_std,
    regression_mean_std,
    samples,
)


def test_d4_has_eight_distinct_transforms_and_each_inverts():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    images = {tuple(apply(x, t).flatten().tolist()) + tuple(apply(x, t).shape) for t in D4}
    assert len(D4) == 8 and len(images) == 8
    for t in D4:
        assert torch.equal(invert(apply(x, t), t), x)


def test_apply_matches_numpy_rot90_and_fliplr():
    x = np.arange(6.0).reshape(2, 3)
    got = apply(torch.from_numpy(x)[None, None], (1, True))[0, 0].numpy()
    np.testing.assert_array_equal(got, np.rot90(np.fliplr(x), 1))


def test_activate_softmax_and_single_channel_sigmoid():
    logits = torch.tensor([[0.0, float(np.log(3.0))]])
    torch.testing.assert_close(activate(logits, "classification"), torch.tensor([[0.25, 0.75]]))
    one = activate(torch.tensor([[0.0]]), "segmentation")
    torch.testing.assert_close(one, torch.tensor([[0.5, 0.5]]))
    assert torch.equal(activate(logits, "regression"), logits)


def test_dense_tta_of_an_equivariant_model_gives_zero_spread():
    net = nn.Conv2d(1, 2, 1).eval()  # pointwise: commutes with every flip and rotation
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        stack = samples([net], x, task="segmentation", transforms=D4)
        mean, std = mean_std(stack)
    assert stack.shape == (8, 2, 2, 8, 8)
    torch.testing.assert_close(mean, torch.softmax(net(x), 1), atol=1e-6, rtol=0)
    assert float(std.max()) < 1e-6


def test_identical_members_have_exactly_zero_std_and_different_members_positive():
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        _, same = mean_std(samples([a, b], x, task="classification", transforms=IDENTITY))
        b.bias[0] += 1.0  # (adding the same to both logits would not change softmax)
        _, diff = mean_std(samples([a, b], x, task="classification", transforms=IDENTITY))
    assert torch.count_nonzero(same) == 0
    assert bool((diff > 0).all())


def test_population_std_of_two_values_is_half_their_distance():
    mean, std = mean_std(torch.tensor([[1.0], [3.0]]))
    assert float(mean) == 2.0 and float(std) == 1.0


def test_heteroscedastic_total_variance_is_mean_variance_plus_spread():
    # two members: means 1 and 3 (spread variance 1), predicted variances e^0 = 1 and e^log(3) = 3 (mean 2)
    stack = torch.tensor([[[1.0, 0.0]], [[3.0, float(np.log(3.0))]]])
    mean, std = regression_mean_std(stack, num_targets=1)
    assert float(mean) == pytest.approx(2.0)
    assert float(std) == pytest.approx(np.sqrt(1.0 + 2.0))


def test_regression_output_width_mismatch_is_explained():
    with pytest.raises(ValueError, match="expected 2 targets"):
        regression_mean_std(torch.zeros(1, 1, 3), num_targets=2)
