"""Result objects shared by every analysis method (CNN, ensemble, classical baseline).

A CNN, an ensemble with test-time augmentation and a classical threshold all hand back the same plain
objects, so that everything downstream (quantification, CSV/JSON export, the app, batch jobs) works with
either. They hold numpy arrays only (no torch) and export to JSON with ``.to_dict()``: numbers carry their
units, large arrays are summarised (shape, dtype, per-class statistics), never dumped.

Example:
    >>> import numpy as np
    >>> from microcnn.analysis.results import SegmentationResult
    >>> r = SegmentationResult(mask=np.array([[0, 1], [1, 255]]), class_names=["matrix", "pore"],
    ...                        pixel_size_um=0.5, method="otsu")
    >>> r.unit, r.to_dict()["pixel_counts"]
    ('µm', {'matrix': 1, 'pore': 2})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microcnn.errors import MicrocnnError

IGNORE_INDEX = 255  # mask value for "not analysed / not labelled" (see DESIGN.md)


class AnalysisError(MicrocnnError, ValueError):
    """An analysis input has the wrong shape, type or content (e.g. nothing left to analyse)."""


def jsonable(value: Any) -> Any:
    """Turn numpy scalars into Python numbers and summarise arrays as {shape, dtype} (recursively)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"array_shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def _check_pixel_size(pixel_size_um: float | None) -> None:
    if pixel_size_um is not None and not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise AnalysisError(
            f"pixel_size_um must be a positive number of µm, or None when unknown; got {pixel_size_um!r}."
        )


def _check_class_array(name: str, arr: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if arr is not None and tuple(arr.shape) != shape:
        raise AnalysisError(
            f"{name} must have shape (K, H, W) = {shape} to match the mask and class_names; "
            f"got {tuple(arr.shape)}."
        )


@dataclass(frozen=True)
class SegmentationResult:
    """A phase map with everything needed to quantify it.

    Attributes:
        mask: (H, W) integer class indices; 255 = not analysed (ignored by every statistic).
        class_names: K names, index i names class i.
        probabilities: (K, H, W) float32 per-class probabilities, or None (classical methods).
        std: (K, H, W) float32 spread of the probabilities over ensemble members / TTA, or None.
        pixel_size_um: edge length of one pixel in µm, or None (then lengths are reported in px).
        method: how the mask was made, e.g. "otsu" or "unet:model.safetensors".
        meta: JSON-friendly extras (thresholds, number of members ...); arrays such as a particle label
            image (meta["labels"], (H, W) int) may be stored and are summarised by ``to_dict``.
        member_fractions: (S, K) float, or None: the expected phase fractions (mean class probability
            over the image) of each of S samples (ensemble member x TTA symmetry); their spread gives the
            ensemble interval of :func:`~microcnn.analysis.quantify.phase_fractions`.
    """

    mask: np.ndarray
    class_names: list[str]
    probabilities: np.ndarray | None = None
    std: np.ndarray | None = None
    pixel_size_um: float | None = None
    method: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)
    member_fractions: np.ndarray | None = None

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
            raise AnalysisError(
                f"mask must be a 2-D integer array of class indices (H, W); got shape {mask.shape}, "
                f"dtype {mask.dtype}. Convert a boolean mask with mask.astype(np.uint8)."
            )
        k = len(self.class_names)
        valid = mask[mask != IGNORE_INDEX]
        if valid.size and (valid.min() < 0 or valid.max() >= k):
            raise AnalysisError(
                f"mask values must be class indices 0..{k - 1} (or 255 = not analysed) for the {k} "
                f"class_names {list(self.class_names)}; found values {valid.min()}..{valid.max()}."
            )
        _check_pixel_size(self.pixel_size_um)
        _check_class_array("probabilities", self.probabilities, (k, *mask.shape))
        _check_class_array("std", self.std, (k, *mask.shape))
        if self.member_fractions is not None:
            members = np.asarray(self.member_fractions, dtype=np.float64)
            if members.ndim != 2 or members.shape[1] != k:
                raise AnalysisError(f"member_fractions must have shape (S, K) = (S, {k}): one row of K "
                                    f"fractions per sample; got {members.shape}.")  # fmt: skip
            object.__setattr__(self, "member_fractions", members)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "class_names", [str(c) for c in self.class_names])

    @property
    def unit(self) -> str:
        """Length unit of what is measured from this result: "µm" when the pixel size is known, else "px"."""
        return "µm" if self.pixel_size_um else "px"

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary: shape, classes, pixel counts, mean spread; arrays are not dumped."""
        counts = np.bincount(self.mask[self.mask != IGNORE_INDEX].ravel(), minlength=len(self.class_names))
        out: dict[str, Any] = {
            "type": "segmentation",
            "method": self.method,
            "shape_px": list(self.shape),
            "pixel_size_um": self.pixel_size_um,
            "unit": self.unit,
            "class_names": list(self.class_names),
            "pixel_counts": {n: int(c) for n, c in zip(self.class_names, counts)},
            "not_analysed_px": int(np.sum(self.mask == IGNORE_INDEX)),
            "has_probabilities": self.probabilities is not None,
        }
        if self.std is not None:
            out["mean_std"] = {n: float(s.mean()) for n, s in zip(self.class_names, self.std)}
        out["meta"] = jsonable(self.meta)
        return out


@dataclass(frozen=True)
class ClassificationResult:
    """Class probabilities for one whole image (e.g. its morphology).

    Attributes:
        probabilities: (K,) float, summing to 1.
        class_names: K names.
        std: (K,) spread over ensemble members / TTA, or None.
        method: how it was made, e.g. "resnet18:model.safetensors".
    """

    probabilities: np.ndarray
    class_names: list[str]
    std: np.ndarray | None = None
    method: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = np.asarray(self.probabilities, dtype=np.float64)
        if p.shape != (len(self.class_names),):
            raise AnalysisError(
                f"probabilities must have shape (K,) = ({len(self.class_names)},) to match class_names; "
                f"got {p.shape}."
            )
        object.__setattr__(self, "probabilities", p)
        if self.std is not None:
            object.__setattr__(self, "std", np.asarray(self.std, dtype=np.float64).reshape(p.shape))

    @property
    def predicted(self) -> str:
        """Name of the most probable class."""
        return self.class_names[int(np.argmax(self.probabilities))]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "classification",
            "method": self.method,
            "predicted": self.predicted,
            "probabilities": {n: float(p) for n, p in zip(self.class_names, self.probabilities)},
        }
        if self.std is not None:
            out["std"] = {n: float(s) for n, s in zip(self.class_names, self.std)}
        out["meta"] = jsonable(self.meta)
        return out


@dataclass(frozen=True)
class RegressionResult:
    """Predicted properties of one image with their units and spread.

    Attributes:
        values: (T,) float, one per target.
        target_names: T names, e.g. ["porosity", "tortuosity"].
        target_units: T unit strings, e.g. ["1", "1"] ("1" = dimensionless).
        std: (T,) spread over ensemble members / TTA, or None.
        method: how it was made.
    """

    values: np.ndarray
    target_names: list[str]
    target_units: list[str]
    std: np.ndarray | None = None
    method: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64).reshape(-1)
        t = len(self.target_names)
        if v.shape != (t,) or len(self.target_units) != t:
            raise AnalysisError(
                f"values, target_names and target_units must have the same length; got {v.size} values, "
                f"{t} names, {len(self.target_units)} units."
            )
        object.__setattr__(self, "values", v)
        if self.std is not None:
            object.__setattr__(self, "std", np.asarray(self.std, dtype=np.float64).reshape(v.shape))

    def to_dict(self) -> dict[str, Any]:
        targets = {}
        for i, name in enumerate(self.target_names):
            entry: dict[str, Any] = {"value": float(self.values[i]), "unit": self.target_units[i]}
            if self.std is not None:
                entry["std"] = float(self.std[i])
            targets[name] = entry
        return {"type": "regression", "method": self.method, "targets": targets, "meta": jsonable(self.meta)}
