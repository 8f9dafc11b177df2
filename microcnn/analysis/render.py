"""Pictures of results: the one class palette, display images and overlays (used by the CLI and the app).

Numpy only. Class ``i`` is drawn in ``PALETTE[i % len(PALETTE)]``; 255 ("not analysed") is never tinted.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255

# Colour per class index (Okabe-Ito, distinguishable with the common colour-vision deficiencies).
PALETTE = np.array(
    [
        [0, 114, 178],
        [230, 159, 0],
        [0, 158, 115],
        [204, 121, 167],
        [86, 180, 233],
        [213, 94, 0],
        [240, 228, 66],
        [0, 0, 0],
    ],
    dtype=np.uint8,
)


def to_display(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) float in [0, 1] -> (H, W, 3) uint8 (16-bit data was scaled to [0, 1] on read)."""
    array = np.clip(np.asarray(pixels, dtype=np.float32), 0.0, 1.0)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.round(array[..., :3] * 255).astype(np.uint8)


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) int class indices -> (H, W, 3) uint8 colours; IGNORE (255) is black."""
    mask = np.asarray(mask)
    out = PALETTE[np.mod(mask, len(PALETTE)).astype(np.intp)]
    out[mask == IGNORE] = 0
    return out


def overlay(pixels: np.ndarray, mask: np.ndarray, *, opacity: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8: ``(1 - opacity)·image + opacity·colour`` per pixel; IGNORE pixels show the image.

    Example:
        >>> overlay(np.zeros((1, 1)), np.array([[1]]), opacity=1.0).tolist()
        [[[230, 159, 0]]]
    """
    base = to_display(pixels).astype(np.float32)
    colours = colour_mask(mask).astype(np.float32)
    alpha = np.where(np.asarray(mask) == IGNORE, 0.0, float(opacity))[..., None]
    return np.round((1.0 - alpha) * base + alpha * colours).astype(np.uint8)
