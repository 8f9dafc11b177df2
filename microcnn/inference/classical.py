"""Classical baselines behind the Predictor interface, for ``microcnn predict`` / ``predict-h5 --method``.

:class:`ClassicalPredictor` wraps one method of :data:`microcnn.analysis.classical.CLASSICAL` (Otsu,
multi-Otsu, adaptive threshold, watershed) with the attributes and methods that the file and batch
commands use (``task``, ``class_names``, ``metadata``, ``method``, ``predict``, ``predict_many``), so a
baseline needs no training and its numbers land in the same CSV / HDF5 layout as a CNN's. No torch is
involved: results do not depend on batching.

Example:
    >>> import numpy as np
    >>> from microcnn.io.micrograph import Micrograph
    >>> p = ClassicalPredictor("otsu")
    >>> img = np.zeros((8, 8), np.float32); img[:, 4:] = 1.0
    >>> float(p.predict(Micrograph(pixels=img)).mask.mean()), p.class_names
    (0.5, ['background', 'foreground'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from microcnn.analysis.results import SegmentationResult
from microcnn.io.micrograph import Micrograph
from microcnn.registry import check_choice

ALIASES = {"watershed": "watershed_particles", "adaptive": "adaptive_threshold"}
METHODS = ("otsu", "multi_otsu", "adaptive_threshold", "watershed")  # what the CLI offers


class ClassicalPredictor:
    """A classical segmentation method with the Predictor interface (see the module docstring).

    Args:
        method: "otsu" | "multi_otsu" | "adaptive_threshold" | "watershed" (= "watershed_particles").
        classes: number of phases for multi-Otsu (2..8); ignored by the two-phase methods.
        invert: make the dark phase class 1 (otsu, adaptive_threshold, watershed).
    """

    task = "segmentation"
    device = "cpu"

    def __init__(self, method: str, *, classes: int = 3, invert: bool = False) -> None:
        from microcnn.analysis.classical import CLASSICAL

        name = ALIASES.get(method, method)
        check_choice("classical method", name, CLASSICAL.names())
        self.name, self.classes, self.invert = name, int(classes), bool(invert)
        if name == "multi_otsu" and not 2 <= self.classes <= 8:
            raise ValueError(f"classes must be between 2 and 8 for multi-Otsu; got {classes}.")
        self.names = [name]
        self.transforms: tuple[Any, ...] = ()
        self.metadata = {"task": self.task, "class_names": self.class_names, "preprocessing": {},
                         "model": {"name": name, "classes": self.classes, "invert": self.invert}}  # fmt: skip

    @property
    def class_names(self) -> list[str]:
        if self.name == "multi_otsu":
            return [f"phase {i}" for i in range(self.classes)]
        return ["background", "particle" if self.name == "watershed_particles" else "foreground"]

    @property
    def method(self) -> str:
        return f"multi_otsu:{self.classes}" if self.name == "multi_otsu" else self.name

    def _kwargs(self) -> dict[str, Any]:
        return {"classes": self.classes} if self.name == "multi_otsu" else {"invert": self.invert}

    def predict(self, micrograph: Micrograph, **_: Any) -> SegmentationResult:
        """The method's SegmentationResult for one micrograph (its pixel size is kept)."""
        from microcnn.analysis.classical import CLASSICAL

        return CLASSICAL.build(self.name, image=micrograph, **self._kwargs())

    def predict_many(self, micrographs: Sequence[Micrograph]) -> list[SegmentationResult]:
        return [self.predict(m) for m in micrographs]
