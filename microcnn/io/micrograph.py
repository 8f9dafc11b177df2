"""The ``Micrograph``: pixels plus the facts that must travel with them (pixel size, bit depth, origin)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Micrograph:
    """One image as microcnn sees it.

    Attributes:
        pixels: (H, W) or (H, W, C) float32 in [0, 1]. Rows and columns, not x and y.
        pixel_size_um: edge length of one pixel in micrometres, or None when unknown (then every length
            derived from this image is reported in px).
        source_dtype: dtype name of the stored samples before scaling, e.g. "uint16".
        bit_depth: significant bits of the stored samples (8, 16, 32); floats report 32.
        meta: plain, JSON-friendly metadata (format, page, pixel-size source, instrument tags ...).
    """

    pixels: np.ndarray
    pixel_size_um: float | None = None
    source_dtype: str = "float32"
    bit_depth: int = 32
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixels.shape)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def unit(self) -> str:
        """The unit lengths from this image are reported in: "µm" when the pixel size is known, else "px"."""
        return "µm" if self.pixel_size_um else "px"

    def with_pixels(self, pixels: np.ndarray, **meta: Any) -> Micrograph:
        """A copy with other pixels (e.g. cropped) and extra metadata; pixel size and origin are kept."""
        return replace(self, pixels=pixels, meta={**self.meta, **meta})

    def with_pixel_size(self, pixel_size_um: float | None, source: str = "user") -> Micrograph:
        return replace(self, pixel_size_um=pixel_size_um, meta={**self.meta, "pixel_size_source": source})
