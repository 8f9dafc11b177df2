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


def test_averaged_model_returns_log_mean_probabilities_and_logits_of_one_channel_heads():
    """Averaged(net) against the mean over NumPy's rot90/fliplr views, softmax and sigmoid by hand."""
    from microcnn.inference.tta import Averaged

    torch.manual_seed(0)
    x = torch.randn(2, 1, 5, 7)
    for channels in (3, 1):
        net = nn.Conv2d(1, channels, 3, padding=1).eval()
        views = []
        for flip in (False, True):
            for k in range(4):
                v = np.rot90(np.flip(x.numpy(), 3) if flip else x.numpy(), k, axes=(2, 3)).copy()
                with torch.no_grad():
                    z = net(torch.from_numpy(v)).double().numpy()
                p = np.exp(z) / np.exp(z).sum(1, keepdims=True) if channels > 1 else 1 / (1 + np.exp(-z))
                back = np.rot90(p, -k, axes=(2, 3))
                views.append(np.flip(back, 3) if flip else back)
        mean = np.mean(views, axis=0)
        with torch.no_grad():
            got = Averaged(net, "segmentation")(x).double().numpy()
        want = np.log(mean) if channels > 1 else np.log(mean / (1 - mean))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_averaged_regression_gives_the_mean_and_the_log_total_variance():
    from microcnn.inference.tta import Averaged

    class Head(nn.Module):  # mean = mean of the first row, logvar = first pixel: both orientation-dependent
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([x[:, 0, 0].mean(-1), x[:, 0, 0, 0]], dim=-1)

    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    means, logvars = [], []
    for flip in (False, True):
        for k in range(4):
            v = np.rot90(np.flip(x.numpy(), 3) if flip else x.numpy(), k, axes=(2, 3))
            means.append(v[0, 0, 0].mean())
            logvars.append(v[0, 0, 0, 0])
    total = np.mean(np.exp(logvars)) + np.var(means)  # law of total variance
    got = Averaged(Head(), "regression", num_targets=1)(x)[0].double().numpy()
    np.testing.assert_allclose(got, [np.mean(means), np.log(total)], rtol=1e-5)
