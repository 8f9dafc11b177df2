"""Sliding-window inference over images of any size, with overlapping tiles and smooth blending.

The image is cut into ``tile``×``tile`` windows that overlap by ``overlap`` (a fraction of the tile); the
windows are spread evenly so that the last one ends flush with the image (no padding beyond the image).
Each window's output is multiplied by a blending weight that is largest at the tile centre and
small, but positive, at its edges (``"gaussian"`` or ``"cosine"``, or ``"constant"`` for plain averaging),
accumulated into one float32 ``(K, H, W)`` sum and one ``(H, W)`` weight map, and divided at the end. The
border pixels of a tile, where zero padding inside the network makes predictions worst, thus count least,
and no seam appears at tile edges.

Memory is bounded by the output (``K·H·W`` float32), the weight map and one batch of ``batch_size``
tiles: an 8192×8192 micrograph never goes through the network at once.

Why our own code and not MONAI's ``sliding_window_inference``: MONAI is not a dependency (a large one for a
single function), and we need per-tile batching with a progress callback and outputs with any number of
channels (mean and spread), which is about 60 lines over torch.

Example:
    >>> import torch
    >>> image = torch.rand(1, 300, 500)
    >>> out = sliding_window(lambda x: x * 2, image, tile=128, overlap=0.25)
    >>> torch.allclose(out, image * 2, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from microcnn.registry import check_choice

BLENDS = ("gaussian", "cosine", "constant")
_MIN_WEIGHT = (
    1e-3  # per-axis edge weight relative to the centre: small, but every pixel keeps a positive weight
)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets (px) of windows of size ``tile`` covering ``0..length``, at most ``stride`` apart.

    The windows are spread evenly from 0 to ``length - tile`` (the last one ends flush with the image), so
    every overlap is at least ``tile - stride`` px and no window nearly duplicates its neighbour (which
    would put one window's edge close to another's and defeat the blending). ``length <= tile`` gives [0].
    """
    if length <= tile:
        return [0]
    count = -(-(length - tile) // stride) + 1  # ceil division
    span = length - tile
    return [round(i * span / (count - 1)) for i in range(count)]


def blend_window(rows: int, cols: int, *, blend: str = "gaussian") -> torch.Tensor:
    """(rows, cols) float32 blending weights in [1e-6, 1], largest at the centre.

    "gaussian": separable Gaussian with sigma = 1/8 of the side (as in nnU-Net and MONAI);
    "cosine": separable Hann window; "constant": all ones.
    """
    check_choice("blend", blend, BLENDS)

    def profile(n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float64) + 0.5
        if blend == "gaussian":
            w = torch.exp(-0.5 * ((pos - n / 2) / (n / 8)) ** 2)
        elif blend == "cosine":
            w = torch.sin(torch.pi * pos / n) ** 2
        else:
            w = torch.ones(n, dtype=torch.float64)
        return (w / w.max()).clamp_min(_MIN_WEIGHT)

    # Clamped per axis, not after the product: along the image border every window has the same small row
    # weight, and the column profile must still decide between them there.
    return (profile(rows)[:, None] * profile(cols)[None, :]).to(torch.float32)


def check_tiling(*, tile: int, overlap: float, batch_size: int, multiple: int = 1) -> None:
    """ValueError for a tile too small / not a multiple of the model stride, a bad overlap or batch size."""
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive number of px; got {tile!r}.")
    if tile % multiple:
        fixed = max(multiple, tile // multiple * multiple)
        raise ValueError(f"tile must be a multiple of the model's output stride {multiple}; got {tile}. "
                         f"Use {fixed}.")  # fmt: skip
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is a fraction of the tile in [0, 1); got {overlap!r}. Use e.g. 0.25.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size (tiles per forward pass) must be >= 1; got {batch_size!r}.")


def sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    tile: int = 512,
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply a dense predictor ``fn`` to a large image tile by tile and blend the tiles.

    Args:
        fn: (N, C, h, w) float32 -> (N, K, h, w) float32 (same rows/cols as its input), e.g. softmax of a
            segmenter's logits. Called with at most ``batch_size`` tiles at a time on ``image``'s device.
        image: (C, H, W) float32, already preprocessed.
        tile: window side in px (rows and cols); sides larger than the image shrink to the image.
        overlap: fraction of the tile shared by neighbouring windows, in [0, 1).
        blend: "gaussian" | "cosine" | "constant" weighting of each window's pixels.
        batch_size: tiles per call of ``fn`` (bounds the memory of the network's activations).
        progress: optional callback (tiles done, tiles total).

    Returns:
        (K, H, W) float32 on the CPU: the weighted mean of the overlapping window outputs.
    """
    check_tiling(tile=tile, overlap=overlap, batch_size=batch_size)
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W); got shape {tuple(image.shape)}.")
    _, rows, cols = image.shape
    th, tw = min(tile, rows), min(tile, cols)
    boxes = [(r, c) for r, c, _, _ in tile_grid(rows, cols, tile=tile, overlap=overlap)]
    if len(boxes) == 1:  # one window covers the image: the blending weights cancel exactly, skip them
        pred = fn(image[None, :, :th, :tw])
        _check_tile_output(pred, th, tw)
        if progress is not None:
            progress(1, 1)
        return pred[0].detach().to("cpu", torch.float32)
    weight = blend_window(th, tw, blend=blend)
    total = torch.zeros(rows, cols, dtype=torch.float32)
    out: torch.Tensor | None = None
    for first in range(0, len(boxes), batch_size):
        batch = boxes[first : first + batch_size]
        pred = fn(torch.stack([image[:, r : r + th, c : c + tw] for r, c in batch]))
        _check_tile_output(pred, th, tw)
        pred = pred.detach().to("cpu", torch.float32)
        if out is None:
            out = torch.zeros(pred.shape[1], rows, cols, dtype=torch.float32)
        for (r, c), p in zip(batch, pred):
            out[:, r : r + th, c : c + tw] += p * weight
            total[r : r + th, c : c + tw] += weight
        if progress is not None:
            progress(min(first + batch_size, len(boxes)), len(boxes))
    assert out is not None  # at least one box always exists (internal invariant, not user input)
    return out.div_(total)


def _check_tile_output(pred: torch.Tensor, th: int, tw: int) -> None:
    if pred.ndim != 4 or tuple(pred.shape[-2:]) != (th, tw):
        raise ValueError(f"fn must return (N, K, {th}, {tw}) for (N, C, {th}, {tw}) tiles; "
                         f"got {tuple(pred.shape)}.")  # fmt: skip


def tile_grid(rows: int, cols: int, *, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The windows (row0, col0, rows, cols) that :func:`sliding_window` uses for an image (for display)."""
    th, tw = min(tile, rows), min(tile, cols)
    stride = max(1, round(tile * (1.0 - overlap)))
    return [(r, c, th, tw) for r in tile_starts(rows, th, stride) for c in tile_starts(cols, tw, stride)]
