"""Classical segmentation baselines that need no training: Otsu, multi-Otsu, adaptive threshold, watershed.

They return the same :class:`SegmentationResult` as a CNN, so quantification, export, the app and batch
jobs work with either, and a CNN can always be compared with the obvious baseline. All thresholds come
from scikit-image; the pixel size of a :class:`Micrograph` is kept.

Example:
    >>> import numpy as np
    >>> from microcnn.analysis.classical import CLASSICAL
    >>> img = np.zeros((32, 32), np.float32); img[:, 16:] = 0.8
    >>> r = CLASSICAL.build("otsu", image=img, pixel_size_um=0.2)
    >>> r.mask.mean(), r.unit, CLASSICAL.names()
    (np.float64(0.5), 'µm', ['adaptive_threshold', 'multi_otsu', 'otsu', 'watershed_particles'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microcnn.analysis.results import SegmentationResult
from microcnn.errors import DegenerateImageError
from microcnn.io.micrograph import Micrograph
from microcnn.registry import Registry

CLASSICAL = Registry("classical method")


def _gray(
    image: Micrograph | np.ndarray, pixel_size_um: float | None
) -> tuple[np.ndarray, float | None, dict]:
    """(H, W) float64 intensities, the pixel size (argument wins over the Micrograph's), notes for meta."""
    from skimage.color import rgb2gray

    if isinstance(image, Micrograph):
        pixels, size = image.pixels, pixel_size_um if pixel_size_um is not None else image.pixel_size_um
    else:
        pixels, size = np.asarray(image), pixel_size_um
    notes: dict[str, Any] = {}
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = rgb2gray(pixels[..., :3])
        notes["converted"] = "RGB to luminance (skimage.color.rgb2gray: 0.2125 R + 0.7154 G + 0.0721 B)"
    elif pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise DegenerateImageError(
            f"expected a gray (H, W) or RGB (H, W, 3) image of at least 2x2 px; got shape {pixels.shape}."
        )
    pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise DegenerateImageError(
            "the image contains NaN or inf values; clean or re-read it before thresholding."
        )
    if pixels.min() == pixels.max():
        raise DegenerateImageError(
            f"the image is constant (every pixel = {pixels.min():g}); there is nothing to threshold."
        )
    return pixels, size, notes


@CLASSICAL.register("otsu")
def otsu(
    image: Micrograph | np.ndarray,
    *,
    pixel_size_um: float | None = None,
    invert: bool = False,
    class_names: tuple[str, str] = ("background", "foreground"),
) -> SegmentationResult:
    """Two phases by Otsu's global threshold (skimage ``threshold_otsu``): pixels above it are class 1.

    Args:
        image: a Micrograph or an (H, W) / (H, W, 3) array (RGB is converted to luminance, noted in meta).
        pixel_size_um: µm per px; overrides the Micrograph's.
        invert: make the dark phase class 1 (e.g. pores, which are dark in SEM).
        class_names: names of class 0 and class 1.

    Returns:
        SegmentationResult with mask (H, W) uint8 in {0, 1}, no probabilities, meta["threshold"].

    Example:
        >>> otsu(np.array([[0.1, 0.2], [0.8, 0.9]])).mask.tolist()
        [[0, 0], [1, 1]]
    """
    from skimage.filters import threshold_otsu

    pixels, size, notes = _gray(image, pixel_size_um)
    t = float(threshold_otsu(pixels))
    mask = (pixels <= t) if invert else (pixels > t)
    return SegmentationResult(
        mask=mask.astype(np.uint8),
        class_names=list(class_names),
        pixel_size_um=size,
        method="otsu",
        meta={**notes, "threshold": t, "invert": invert},
    )


@CLASSICAL.register("multi_otsu")
def multi_otsu(
    image: Micrograph | np.ndarray,
    *,
    classes: int = 3,
    pixel_size_um: float | None = None,
    class_names: list[str] | None = None,
) -> SegmentationResult:
    """``classes`` phases by multi-level Otsu (skimage ``threshold_multiotsu``); class 0 is the darkest.

    Returns:
        SegmentationResult with mask (H, W) uint8 in 0..classes-1, meta["thresholds"] (classes-1 values).
    """
    from skimage.filters import threshold_multiotsu

    if not 2 <= classes <= 8:
        raise ValueError(f"classes must be between 2 and 8 for multi-Otsu; got {classes}.")
    names = list(class_names) if class_names else [f"phase {i}" for i in range(classes)]
    if len(names) != classes:
        raise ValueError(
            f"class_names has {len(names)} names for classes={classes}; give one name per class."
        )
    pixels, size, notes = _gray(image, pixel_size_um)
    if np.unique(pixels).size < classes:
        raise DegenerateImageError(
            f"the image has only {np.unique(pixels).size} distinct values; it cannot be split into {classes} "
            "phases. Use fewer classes."
        )
    thresholds = threshold_multiotsu(pixels, classes=classes)
    mask = np.digitize(pixels, bins=thresholds).astype(np.uint8)
    return SegmentationResult(
        mask=mask,
        class_names=names,
        pixel_size_um=size,
        method=f"multi_otsu:{classes}",
        meta={**notes, "thresholds": [float(t) for t in thresholds]},
    )


@CLASSICAL.register("adaptive_threshold")
def adaptive_threshold(
    image: Micrograph | np.ndarray,
    *,
    block_size_px: int = 51,
    offset: float = 0.0,
    pixel_size_um: float | None = None,
    invert: bool = False,
    class_names: tuple[str, str] = ("background", "foreground"),
) -> SegmentationResult:
    """Two phases by a local threshold (skimage ``threshold_local``, Gaussian-weighted neighbourhood).

    Robust to uneven illumination (charging, shading) that defeats one global threshold.

    Args:
        block_size_px: odd side of the neighbourhood in px; about twice the feature size works well.
        offset: subtracted from the local mean before comparing (intensity units of the [0, 1] image).
        invert: make the dark phase class 1.
    """
    from skimage.filters import threshold_local

    if block_size_px < 3 or block_size_px % 2 == 0:
        fixed = max(3, block_size_px + 1 - block_size_px % 2)
        raise ValueError(f"block_size_px must be an odd number ≥ 3; got {block_size_px}. Use {fixed}.")
    pixels, size, notes = _gray(image, pixel_size_um)
    local = threshold_local(pixels, block_size=block_size_px, offset=offset)
    mask = (pixels <= local) if invert else (pixels > local)
    return SegmentationResult(
        mask=mask.astype(np.uint8),
        class_names=list(class_names),
        pixel_size_um=size,
        method="adaptive_threshold",
        meta={**notes, "block_size_px": block_size_px, "offset": offset},
    )


def split_touching(binary: np.ndarray, *, min_distance_px: int = 5, min_area_px: int = 4) -> np.ndarray:
    """Separate touching convex particles: watershed of the distance transform from its local maxima.

    Args:
        binary: (H, W) bool, True on particles.
        min_distance_px: smallest distance in px between two particle centres (≈ smallest radius).
        min_area_px: specks smaller than this (8-connected) are removed first (noise, not particles).

    Returns:
        (H, W) int32 label image, 0 = background, 1..N particles.
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.measure import label
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    binary = np.asarray(binary, dtype=bool)
    if min_area_px > 1:
        binary = remove_small_objects(binary, max_size=min_area_px - 1, connectivity=2)
    distance = ndimage.distance_transform_edt(binary)
    peaks = peak_local_max(distance, min_distance=min_distance_px, labels=label(binary), exclude_border=False)
    markers = np.zeros(binary.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=binary).astype(np.int32)


@CLASSICAL.register("watershed_particles")
def watershed_particles(
    image: Micrograph | np.ndarray,
    *,
    min_distance_px: int = 5,
    min_area_px: int = 4,
    pixel_size_um: float | None = None,
    invert: bool = False,
    class_names: tuple[str, str] = ("background", "particle"),
) -> SegmentationResult:
    """Particles, touching ones separated: Otsu (unless ``image`` is already boolean), then watershed.

    See :func:`split_touching` for ``min_distance_px`` and ``min_area_px`` (specks below it are dropped).

    Returns:
        SegmentationResult with mask (H, W) uint8 in {0, 1} and meta["labels"] (H, W) int32 particle
        labels, meta["n_particles"]; :func:`microcnn.analysis.quantify.quantify` measures those labels.
    """
    arr = image.pixels if isinstance(image, Micrograph) else np.asarray(image)
    if arr.dtype == bool:
        binary, meta = arr, {"threshold": None}
        size = pixel_size_um if pixel_size_um is not None else getattr(image, "pixel_size_um", None)
    else:
        first = otsu(image, pixel_size_um=pixel_size_um, invert=invert)
        binary, meta, size = first.mask.astype(bool), dict(first.meta), first.pixel_size_um
    labels = split_touching(binary, min_distance_px=min_distance_px, min_area_px=min_area_px)
    meta.update(labels=labels, n_particles=int(labels.max()), min_distance_px=min_distance_px)
    return SegmentationResult(
        mask=(labels > 0).astype(np.uint8),
        class_names=list(class_names),
        pixel_size_um=size,
        method="watershed_particles",
        meta=meta,
    )
