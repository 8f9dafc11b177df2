"""Test images for the app tests, built in memory (16-bit TIFFs with known phases and pixel size)."""

from __future__ import annotations

import io

import numpy as np

SQUARES = ((6, 6), (6, 40), (40, 6), (40, 40))  # top-left corners of the 12x12 px squares
DISCS = ((16, 16), (16, 29), (44, 40))  # centres of 7 px discs: the first two touch, the third is alone


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
    for r0, c0 in SQUARES:
        image[r0 : r0 + 12, c0 : c0 + 12] = 50_000
    return image


def three_phase_image() -> np.ndarray:
    """64x64 uint16: background 10000, the two top squares 30000, the two bottom ones 50000 (288 px each)."""
    image = two_phase_image()
    for r0, c0 in SQUARES[:2]:
        image[r0 : r0 + 12, c0 : c0 + 12] = 30_000
    return image


def disc_image() -> tuple[np.ndarray, np.ndarray]:
    """64x64 uint16 with three bright discs of radius 7 (two touching); (image, bool mask of the discs)."""
    from skimage.draw import disk

    drawn = np.zeros((64, 64), bool)
    for centre in DISCS:
        drawn[disk(centre, 7, shape=drawn.shape)] = True
    return np.where(drawn, 50_000, 10_000).astype(np.uint16), drawn


def with_info_bar(image: np.ndarray, *, bar_px: int, height: int = 10) -> np.ndarray:
    """``image`` with an SEM-style data bar below it: black rows, a white scale bar ``bar_px`` long and a
    short white "text" mark (shorter than the bar, so the bar is the longest segment)."""
    bar = np.zeros((height, image.shape[1]), image.dtype)
    bar[4:6, 3 : 3 + bar_px] = 65_535
    bar[2:8, image.shape[1] - 6 : image.shape[1] - 3] = 65_535
    return np.vstack([image, bar])
