"""Test images for the app tests, built in memory (16-bit TIFFs with known phases and pixel size)."""

from __future__ import annotations

import io

import numpy as np


def tiff16(pixels: np.ndarray, *, resolution_px_per_um: float | None = None) -> bytes:
    """uint16 (H, W) -> TIFF bytes; with a resolution the pixel size is 1 / resolution µm (ImageJ-style)."""
    import tifffile

    buffer = io.BytesIO()
    extra = {}
    if resolution_px_per_um:
        extra = {
            "resolution": (resolution_px_per_um, resolution_px_per_um),
            "imagej": True,
            "metadata": {"unit": "um"},
        }
    tifffile.imwrite(buffer, pixels.astype(np.uint16), **extra)
    return buffer.getvalue()


def two_phase_image(rows: int = 64, cols: int = 64) -> np.ndarray:
    """uint16 image: dark background (10000) with 4 bright 12x12 px squares (50000): phase 1 = 576 px."""
    image = np.full((rows, cols), 10_000, np.uint16)
    for r0, c0 in ((6, 6), (6, 40), (40, 6), (40, 40)):
        image[r0 : r0 + 12, c0 : c0 + 12] = 50_000
    return image
