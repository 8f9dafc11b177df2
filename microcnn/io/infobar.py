"""The SEM data bar: find the band of text, scale bar and uniform background at the bottom of a frame.

Most SEMs (Thermo Fisher/FEI, Zeiss, JEOL, TESCAN) save a band under the image with the acquisition
settings and a scale bar. It is not specimen and must be cropped before any analysis. No library
detects it (scikit-image and OpenCV have no notion of it), so the heuristic below is written here.

The heuristic works on rows. A row belongs to the bar when it is made of a flat background that is near
black or near white (``background_tol``) plus sparse high-contrast marks (text, scale bar, frames):
at least ``min_bar_fraction`` of its pixels are either background or far from it, and at least half are
background. Walking up from the bottom row, bar rows are collected (short gaps for grey logos are
allowed); the band is accepted only when the rows just above it look like an image (a sharp change of
the row statistics: the share of background-level pixels drops by at least 0.4), and when its height
is between ``min_height`` px and ``max_fraction`` of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from microcnn.io.micrograph import Micrograph

ImageT = TypeVar("ImageT", Micrograph, np.ndarray)


@dataclass(frozen=True)
class InfoBar:
    """A data bar found at the bottom of a frame.

    Attributes:
        row: first row (0-based) of the bar; the specimen image is ``pixels[:row]``.
        height: bar height in px (rows ``row`` to the last row).
        background: "dark" or "bright".
        confidence: 0..1, how different the bar rows are from the image rows just above.
        reason: one sentence for a person.
    """

    row: int
    height: int
    background: str
    confidence: float
    reason: str


def _gray(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) float in [0, 1] -> (H, W) float32 (channel mean, for detection only)."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2:
        raise ValueError(f"pixels must be (H, W) or (H, W, C); got shape {array.shape}.")
    return array


def bar_row_score(gray: np.ndarray, background: float, *, background_tol: float = 0.06) -> np.ndarray:
    """Per row: (fraction of pixels at the background level, fraction that are background or far from it).

    ``gray`` is (H, W) float in [0, 1]; "far" means more than 0.5 away from ``background`` (white text
    on black, black text on white).
    Returns an (H, 2) float array.
    """
    distance = np.abs(gray - background)
    at_background = (distance <= background_tol).mean(axis=1)
    far = (distance > 0.5).mean(axis=1)
    return np.stack([at_background, at_background + far], axis=1)


def _bottom_run(is_bar: np.ndarray, *, max_gap: int) -> int:
    """Index of the top row of the run of bar rows that starts at the last row (gaps <= max_gap allowed)."""
    top, gap = len(is_bar), 0
    for row in range(len(is_bar) - 1, -1, -1):
        if is_bar[row]:
            top, gap = row, 0
        else:
            gap += 1
            if gap > max_gap:
                break
    return top


def detect_info_bar(
    pixels: np.ndarray,
    *,
    min_bar_fraction: float = 0.85,
    background_tol: float = 0.06,
    min_height: int = 4,
    max_fraction: float = 0.35,
) -> InfoBar | None:
    """Find the SEM data bar at the bottom of ``pixels`` ((H, W) or (H, W, C) float in [0, 1]).

    Returns an :class:`InfoBar` (first row, height in px, ...) or None when the frame has no bar.

    Example:
        >>> bar = detect_info_bar(micrograph.pixels)   # doctest: +SKIP
        >>> specimen = micrograph.pixels[: bar.row] if bar else micrograph.pixels
    """
    gray = _gray(pixels)
    n_rows = gray.shape[0]
    if n_rows < 2 * min_height:
        return None
    background = float(np.median(gray[-1]))
    if 0.15 < background < 0.85:
        return None  # bars are drawn on a black or white background
    scores = bar_row_score(gray, background, background_tol=background_tol)
    is_bar = (scores[:, 1] >= min_bar_fraction) & (scores[:, 0] >= 0.5)
    top = _bottom_run(is_bar, max_gap=max(2, n_rows // 100))
    height = n_rows - top
    if height < min_height or height > max_fraction * n_rows:
        return None
    above = scores[max(0, top - 8) : top, 0]
    inside = float(scores[top:, 0].mean())
    if above.size == 0 or inside - float(above.mean()) < 0.4:
        return None  # no sharp change: the "bar" is the image's own dark/bright region
    kind = "dark" if background <= 0.15 else "bright"
    return InfoBar(
        row=top,
        height=height,
        background=kind,
        confidence=round(float(np.clip(inside - above.mean(), 0.0, 1.0)), 3),
        reason=f"{height} rows at the bottom are a flat {kind} band with sparse marks (text, scale bar)",
    )


def crop_info_bar(image: ImageT, **detect_options: float) -> ImageT:
    """Remove the SEM data bar; returns the same type, unchanged when no bar is found.

    A Micrograph keeps its pixel size and gains ``meta["info_bar"] = {"row": r, "height": h}``.
    """
    pixels = image.pixels if isinstance(image, Micrograph) else image
    bar = detect_info_bar(pixels, **detect_options)
    if bar is None:
        return image
    if isinstance(image, Micrograph):
        return image.with_pixels(
            image.pixels[: bar.row].copy(), info_bar={"row": bar.row, "height": bar.height}
        )
    return image[: bar.row]


def find_scale_bar(bar_pixels: np.ndarray, *, min_length: int = 8) -> int | None:
    """Length in px of the scale bar: the longest horizontal solid segment of high contrast in the bar.

    ``bar_pixels`` is the bar region ((h, W) or (h, W, C) float in [0, 1]); segments contrast with the
    bar's background (its median), bright on dark or dark on bright. Returns None below ``min_length``.
    """
    gray = _gray(bar_pixels)
    marks = np.abs(gray - float(np.median(gray))) > 0.5
    padded = np.pad(marks, ((0, 0), (1, 1))).astype(np.int8)
    steps = np.diff(padded, axis=1)
    starts, ends = np.nonzero(steps == 1), np.nonzero(steps == -1)
    if starts[0].size == 0:
        return None
    longest = int((ends[1] - starts[1]).max())  # starts and ends pair up row by row, left to right
    return longest if longest >= min_length else None
