"""Sliding-window inference: window placement, blending weights, tiled == whole image, no seams."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from microcnn.inference.tiling import blend_window, check_tiling, sliding_window, tile_grid, tile_starts


def _smoother(seed: int = 0) -> nn.Module:
    """Two 3x3 zero-padded convolutions: receptive field 5x5, so borders of a tile differ from the whole."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 3, padding=1))
    return net.eval()


@pytest.mark.parametrize(
    ("length", "tile", "stride", "expected"),
    [(100, 40, 30, [0, 30, 60]), (100, 50, 50, [0, 50]), (30, 40, 30, [0]), (101, 50, 25, [0, 17, 34, 51])],
)
def test_tile_starts_cover_the_image_and_end_flush(length, tile, stride, expected):
    assert tile_starts(length, tile, stride) == expected  # written out by hand


@pytest.mark.parametrize("blend", ["gaussian", "cosine", "constant"])
def test_blend_window_is_positive_symmetric_and_peaks_in_the_centre(blend):
    w = blend_window(16, 16, blend=blend)
    assert w.min() >= 1e-6 and w.max() == pytest.approx(1.0)
    assert torch.equal(w, w.flip(0)) and torch.equal(w, w.T)
    if blend != "constant":
        assert w[8, 8] > w[0, 8] and w[8, 8] > w[0, 0]


def test_gaussian_weight_one_sigma_from_centre_is_exp_minus_half():
    w = blend_window(1, 800, blend="gaussian")[0].double()  # sigma = 800/8 = 100 px; centre at 399.5 + 0.5
    expected = torch.exp(torch.tensor(-0.5 * ((99.5 / 100) ** 2 - (0.5 / 100) ** 2), dtype=torch.float64))
    assert float(w[499] / w[399]) == pytest.approx(float(expected), rel=1e-5)


def test_pointwise_model_tiled_equals_whole_exactly_enough():
    image = torch.rand(1, 301, 517, generator=torch.Generator().manual_seed(1))
    out = sliding_window(lambda x: torch.cat([x, 1 - x], 1), image, tile=64, overlap=0.5, batch_size=3)
    assert out.shape == (2, 301, 517)
    torch.testing.assert_close(out, torch.cat([image, 1 - image]), atol=2e-6, rtol=0)


def test_conv_model_tiled_matches_whole_image_within_tolerance():
    net = _smoother()
    image = torch.rand(1, 200, 260, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = net(image[None])[0]
        tiled = sliding_window(net, image, tile=64, overlap=0.25)
    err = (tiled - whole).abs()
    assert err.max() < 0.02 * whole.abs().max()
    assert err.mean() < 1e-3 * whole.abs().max()


def test_checkerboard_seams_disappear_with_blending():
    """Zero padding inside each tile makes tile borders wrong; blended overlaps must hide the seam."""
    net = _smoother(3)
    rows = torch.arange(256)[:, None] // 8
    cols = torch.arange(256)[None, :] // 8
    board = ((rows + cols) % 2).float()[None]
    with torch.inference_mode():
        whole = net(board[None])[0]
        seamy = sliding_window(net, board, tile=64, overlap=0.0, blend="constant")
        smooth = sliding_window(net, board, tile=64, overlap=0.5, blend="gaussian")
    seam_err = (seamy - whole).abs()[:, :, 63:65].max()  # the border between the first two tile columns
    assert seam_err > 0.05  # the artefact is real without blending
    assert (smooth - whole).abs().max() < seam_err / 5


def test_progress_reports_every_batch_and_the_total():
    calls: list[tuple[int, int]] = []
    sliding_window(lambda x: x, torch.zeros(1, 100, 100), tile=50, overlap=0.0, batch_size=3,
                   progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [(3, 4), (4, 4)]  # 2x2 windows, batches of 3


def test_tile_grid_matches_the_windows_used():
    assert tile_grid(100, 70, tile=50, overlap=0.5) == [(r, c, 50, 50) for r in (0, 25, 50) for c in (0, 20)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tile": 0, "overlap": 0.2, "batch_size": 1}, "tile must be a positive"),
        ({"tile": 100, "overlap": 0.2, "batch_size": 1, "multiple": 16}, "Use 96"),
        ({"tile": 64, "overlap": 1.0, "batch_size": 1}, "overlap"),
        ({"tile": 64, "overlap": 0.2, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_tiling_options_say_what_to_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_tiling(**kwargs)


def test_fn_that_changes_the_size_is_refused():
    with pytest.raises(ValueError, match="must return"):
        sliding_window(lambda x: x[..., ::2, ::2], torch.zeros(1, 64, 64), tile=32)


def test_unknown_blend_suggests_the_closest():
    with pytest.raises(ValueError, match="gaussian"):
        blend_window(4, 4, blend="gausian")


def test_1024_image_uses_bounded_batches():
    seen: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return x

    out = sliding_window(fn, torch.ones(1, 1024, 1024), tile=256, overlap=0.25, batch_size=4)
    assert max(seen) <= 4 and sum(seen) == 25  # starts 0,192,384,576,768 per axis
    assert torch.allclose(out, torch.ones(1, 1024, 1024))
