"""CLAHE at the precision of the data: what the spec name "CLAHE" builds in augmentation pipelines.

``albumentations.CLAHE`` turns float images into uint8 before equalising, which merges 16-bit levels
(256..259 of 65535 all become 1 of 255): 16-bit data quietly squeezed to 8 bits. :class:`PreciseCLAHE`
keeps A.CLAHE's arguments, random draw, validation and serialisation and changes only ``apply``:

- images whose every value is k / 255 (8-bit data, also as float) go through A.CLAHE unchanged
  (lossless there, identical results);
- any other image goes through OpenCV's CLAHE on uint16 (the same OpenCV implementation A.CLAHE calls;
  it supports 16-bit images), so distinct 16-bit levels stay distinct.

RGB images are equalised on the L channel of CIELAB, as A.CLAHE does. OpenCV's clip limit is relative to
the mean count of a histogram bin; a 16-bit histogram has 65,536 bins, so the limit is floored at one count
per bin and equalisation is stronger than on 8-bit data with the same ``clip_limit``.

This module imports albumentations (and OpenCV) at import time; :mod:`microcnn.data.transforms` imports it
only when a pipeline is built or loaded. Being a module-level class, PreciseCLAHE pickles into DataLoader
workers (spawn) and is registered by albumentations under ``microcnn.data.clahe.PreciseCLAHE``, the name
``A.to_dict`` writes and ``A.from_dict`` looks up.

Example:
    >>> t = PreciseCLAHE(clip_limit=2.0, p=1.0)
    >>> out = t(image=np.array([[256, 257], [258, 259]], np.float32) / 65535)["image"]   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np


class PreciseCLAHE(A.CLAHE):
    """``A.CLAHE`` (same arguments) that equalises 16-bit and float images at 16-bit precision.

    Input: (H, W[, 1 | 3]) uint8, uint16 or float in [0, 1]; output: the same shape and dtype.
    """

    def apply(self, img: np.ndarray, clip_limit: float, **params: Any) -> np.ndarray:
        if img.dtype == np.uint8 or is_8bit_exact(img):
            return super().apply(img, clip_limit, **params)
        if img.ndim == 3 and img.shape[2] not in (1, 3):
            raise TypeError(f"CLAHE expects 1-channel or 3-channel images; got shape {img.shape}.")
        return clahe_16bit(img, clip_limit=clip_limit, tile_grid_size=tuple(self.tile_grid_size))


def is_8bit_exact(img: np.ndarray) -> bool:
    """True when a float image holds only values k / 255 (8-bit data), so 8-bit CLAHE loses nothing."""
    if img.dtype.kind != "f":
        return False
    return bool(np.array_equal(np.rint(img * 255.0).astype(np.float32) / np.float32(255.0), img))


def clahe_16bit(img: np.ndarray, *, clip_limit: float, tile_grid_size: tuple[int, int]) -> np.ndarray:
    """OpenCV CLAHE at 16-bit precision. img: (H, W[, 1 | 3]) float in [0, 1] or uint16; returns the same
    shape and dtype (float in [0, 1], or uint16)."""
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=tile_grid_size)
    is_float = img.dtype.kind == "f"
    unit = img.astype(np.float32) if is_float else img.astype(np.float32) / np.float32(65535.0)
    if img.ndim == 3 and img.shape[2] == 3:  # lightness only, as A.CLAHE (OpenCV float Lab: L in 0..100)
        lab = cv2.cvtColor(np.ascontiguousarray(unit), cv2.COLOR_RGB2LAB)
        lightness = _to_uint16(lab[..., 0] / 100.0)
        lab[..., 0] = clahe.apply(lightness).astype(np.float32) / np.float32(65535.0 / 100.0)
        out = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0.0, 1.0)
    else:
        plane = _to_uint16(unit.reshape(img.shape[:2]))
        out = (clahe.apply(plane).astype(np.float32) / np.float32(65535.0)).reshape(img.shape)
    return out.astype(img.dtype) if is_float else _to_uint16(out)


def _to_uint16(unit: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(np.clip(unit, 0.0, 1.0) * 65535.0).astype(np.uint16))
