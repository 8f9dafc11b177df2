"""microcnn.teach against hand calculations, textbook derivatives and published optimizer update rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microcnn import teach

IMAGE = np.arange(16, dtype=np.float32).reshape(4, 4)  # rows 0..3: [0 1 2 3], [4 5 6 7], ...


def test_convolution_matches_hand_calculation() -> None:
    # Box sum 2x2, no padding: top-left window 0+1+4+5 = 10; windows step by 1 -> +2 per column, +8 per row.
    out = teach.convolve(IMAGE, np.ones((2, 2), np.float32))
    expected = np.array([[10, 14, 18], [26, 30, 34], [42, 46, 50]], np.float32)
    np.testing.assert_allclose(out, expected)


def test_convolution_is_cross_correlation_not_flipped() -> None:
    # kernel with a single 1 at the top-left picks the top-left neighbour: out[r, c] = in[r - 1, c - 1].
    kernel = np.zeros((3, 3), np.float32)
    kernel[0, 0] = 1
    out = teach.convolve(IMAGE, kernel, padding=1)
    assert out[1, 1] == IMAGE[0, 0] and out[2, 3] == IMAGE[1, 2] and out[0, 0] == 0


def test_laplacian_of_a_linear_ramp_is_zero_inside() -> None:
    # The discrete Laplacian of f(r, c) = 4r + c vanishes at interior points (second differences of a plane).
    out = teach.convolve(IMAGE, teach.KERNELS["edge (Laplacian)"])
    np.testing.assert_allclose(out, 0, atol=1e-6)


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d"), [(7, 3, 1, 0, 1), (7, 3, 2, 1, 1), (9, 3, 2, 0, 2), (5, 2, 3, 2, 1)]
)
def test_output_size_follows_the_formula(n: int, k: int, s: int, p: int, d: int) -> None:
    out = teach.convolve(np.zeros((n, n)), np.ones((k, k)), stride=s, padding=p, dilation=d)
    expected = math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1
    assert out.shape == (expected, expected)


def test_reflect_padding_uses_mirror_values() -> None:
    kernel = np.zeros((3, 3), np.float32)
    kernel[0, 1] = 1  # picks the neighbour above
    out = teach.convolve(IMAGE, kernel, padding=1, padding_mode="reflect")
    assert out[0, 0] == IMAGE[1, 0]  # reflect (no edge repeat): row -1 mirrors row 1


def test_dilated_kernel_larger_than_input_is_refused_with_fix() -> None:
    with pytest.raises(ValueError, match="reduce dilation or add padding"):
        teach.convolve(np.zeros((3, 3)), np.ones((3, 3)), dilation=3)


def test_unknown_mode_names_the_choices() -> None:
    with pytest.raises(ValueError, match="Did you mean 'max'"):
        teach.pool(IMAGE, mode="maxx")


def test_max_and_average_pooling_by_hand() -> None:
    mx = teach.pool(IMAGE, mode="max")
    av = teach.pool(IMAGE, mode="average")
    np.testing.assert_allclose(mx["output"], [[5, 7], [13, 15]])
    np.testing.assert_allclose(av["output"], [[2.5, 4.5], [10.5, 12.5]])  # (0+1+4+5)/4 = 2.5
    np.testing.assert_array_equal(mx["indices"], [[5, 7], [13, 15]])  # flat positions of the maxima


def test_upsampling_modes_by_hand() -> None:
    small = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    nearest = teach.upsample(small, mode="nearest")
    np.testing.assert_allclose(nearest, np.kron(small, np.ones((2, 2))))
    np.testing.assert_allclose(teach.upsample(small, mode="transpose"), nearest)  # ones kernel, stride 2
    bilinear = teach.upsample(small, mode="bilinear")
    # align_corners=False: output pixel 1 sits at input coordinate 0.25 -> 1 + 0.25 * (2 - 1) = 1.25
    assert bilinear[0, 1] == pytest.approx(1.25)
    assert bilinear.shape == (4, 4)


def test_max_unpooling_puts_values_back_where_the_maxima_were() -> None:
    pooled = teach.pool(IMAGE, mode="max")
    restored = teach.upsample(pooled["output"], mode="unpool", indices=pooled["indices"])
    expected = np.zeros((4, 4), np.float32)
    for value in (5, 7, 13, 15):
        expected.flat[value] = value
    np.testing.assert_allclose(restored, expected)
    with pytest.raises(ValueError, match="needs the max-pool indices"):
        teach.upsample(pooled["output"], mode="unpool")


def test_activation_derivatives_match_textbook_formulas() -> None:
    x = np.array([-2.0, -0.5, 0.3, 1.7], np.float32)
    c = teach.activation_curves(("tanh", "sigmoid", "relu", "softplus", "softsign"), x=x)
    np.testing.assert_allclose(c["tanh"]["df"], 1 - np.tanh(x) ** 2, rtol=1e-5)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(c["sigmoid"]["df"], s * (1 - s), rtol=1e-5)
    np.testing.assert_allclose(c["relu"]["df"], (x > 0).astype(np.float32))
    np.testing.assert_allclose(c["softplus"]["df"], s, rtol=1e-5)  # d/dx log(1 + e^x) = sigmoid(x)
    np.testing.assert_allclose(c["softsign"]["df"], 1 / (1 + np.abs(x)) ** 2, rtol=1e-5)


def test_first_steps_follow_the_published_update_rules() -> None:
    # quadratic f = 0.5 (x² + 10 y²): gradient at (x, y) = (x, 10 y).
    lr, start = 0.05, (-1.5, 1.5)
    race = teach.optimizer_race(steps=2, lr=lr, start=start)
    g0 = np.array([-1.5, 15.0])
    sgd1 = np.array(start) - lr * g0
    np.testing.assert_allclose(race["sgd"]["path"][1], sgd1)
    # Adam step 1: m̂ = g, v̂ = g² -> step = lr · g / (|g| + eps) ≈ lr · sign(g) (Kingma & Ba 2015).
    np.testing.assert_allclose(race["adam"]["path"][1], np.array(start) - lr * np.sign(g0), rtol=1e-6)
    # Momentum (PyTorch form): v1 = g0, v2 = 0.9 v1 + g1, p2 = p1 - lr v2.
    g1 = sgd1 * np.array([1.0, 10.0])
    np.testing.assert_allclose(race["momentum"]["path"][2], sgd1 - lr * (0.9 * g0 + g1))
    # RMSprop step 1 (alpha 0.99): v = 0.01 g², p1 = p0 - lr g / (sqrt(v) + eps) = p0 - 10 lr sign(g).
    np.testing.assert_allclose(race["rmsprop"]["path"][1], np.array(start) - 10 * lr * np.sign(g0), rtol=1e-6)
    assert race["sgd"]["loss"][0] == pytest.approx(0.5 * (1.5**2 + 10 * 1.5**2))


def test_rosenbrock_loss_at_its_minimum_is_zero() -> None:
    race = teach.optimizer_race(optimizers=("sgd",), problem="rosenbrock", steps=1, lr=0.0, start=(1.0, 1.0))
    assert race["sgd"]["loss"][0] == 0.0


def test_regularization_run_is_seeded_and_memorises_without_regularisation() -> None:
    a = teach.regularization_run(epochs=60, seed=3)
    b = teach.regularization_run(epochs=60, seed=3)
    np.testing.assert_array_equal(a["val_loss"], b["val_loss"])
    # 40 points, a 64-wide MLP and full-batch Adam: the training loss must fall well below ln 2 (chance).
    assert a["train_loss"][-1] < 0.5 * math.log(2)
    dropped = teach.regularization_run(epochs=60, seed=3, dropout=0.5)
    assert not np.array_equal(dropped["train_loss"], a["train_loss"])  # dropout changes the training run
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        teach.regularization_run(dropout=1.0)


def test_regularization_run_leaves_global_torch_rng_alone() -> None:
    import torch

    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    teach.regularization_run(epochs=2, seed=0, batch_norm=True, dropout=0.2)
    np.testing.assert_array_equal(torch.rand(3).numpy(), expected.numpy())
