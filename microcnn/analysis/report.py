"""One call from a phase map to every number: :func:`quantify` -> :class:`QuantReport`.

Works the same for a CNN's result and a classical baseline's (both are a :class:`SegmentationResult`).

Example:
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> from microcnn.analysis.results import SegmentationResult
    >>> mask = np.zeros((80, 80), np.uint8)
    >>> for centre in [(20, 20), (20, 60), (60, 40)]:
    ...     mask[disk(centre, 8)] = 1
    >>> r = SegmentationResult(mask=mask, class_names=["matrix", "particle"], pixel_size_um=0.25)
    >>> rep = quantify(r)
    >>> rep.to_dict()["objects"]["n"], rep.to_dict()["objects"]["equivalent_diameter"]["unit"]
    (3, 'µm')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from microcnn.analysis.quantify import measure_objects, phase_fractions, size_summary
from microcnn.analysis.results import AnalysisError, SegmentationResult, jsonable
from microcnn.analysis.stereology import astm_grain_size, boundary_length_per_area
from microcnn.registry import check_choice


@dataclass
class QuantReport:
    """Everything measured on one segmentation, with units.

    Attributes:
        fractions: phase fractions with CIs (see :func:`phase_fractions`).
        objects: one row per particle (see :func:`measure_objects`), or None when no particle class.
        size: :func:`size_summary` of the equivalent diameter, or None.
        astm: :func:`astm_grain_size` result, or None (no boundary class, or no pixel size).
        boundary_length_per_area: L_A in ``boundary_length_unit`` (µm⁻¹ or px⁻¹).
        notes: what was skipped and why, in words.
    """

    method: str
    pixel_size_um: float | None
    unit: str
    fractions: pd.DataFrame
    objects: pd.DataFrame | None = None
    size: dict[str, Any] | None = None
    astm: dict[str, Any] | None = None
    boundary_length_per_area: float = float("nan")
    notes: list[str] = field(default_factory=list)

    @property
    def boundary_length_unit(self) -> str:
        return f"{self.unit}⁻¹"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: numbers with units; the per-object table is summarised (use ``objects`` for CSV)."""
        out: dict[str, Any] = {
            "method": self.method,
            "pixel_size_um": self.pixel_size_um,
            "unit": self.unit,
            "phase_fractions": jsonable(self.fractions.to_dict(orient="records")),
            "boundary_length_per_area": {
                "value": jsonable(self.boundary_length_per_area),
                "unit": self.boundary_length_unit,
            },
            "notes": list(self.notes),
        }
        if self.objects is not None:
            out["objects"] = {"n": len(self.objects), "equivalent_diameter": jsonable(self.size)}
        if self.astm is not None:
            out["astm_e112"] = jsonable(self.astm)
        return out


def _class_index(result: SegmentationResult, cls: int | str) -> int:
    if isinstance(cls, str):
        return result.class_names.index(check_choice("class", cls, result.class_names))
    if not 0 <= int(cls) < len(result.class_names):
        raise AnalysisError(f"class index {cls} is out of range 0..{len(result.class_names) - 1}.")
    return int(cls)


def _particle_labels(result: SegmentationResult, particle_class: int | str | None) -> np.ndarray | None:
    """Labels from a watershed (meta["labels"]), else the mask of the particle class, else None."""
    labels = result.meta.get("labels")
    if particle_class is None and isinstance(labels, np.ndarray) and labels.shape == result.mask.shape:
        return labels
    if particle_class is None and len(result.class_names) == 2:
        particle_class = 1
    if particle_class is None:
        return None
    return result.mask == _class_index(result, particle_class)


def _boundary_class(result: SegmentationResult, boundary_class: int | str | None) -> int | None:
    if boundary_class is not None:
        return _class_index(result, boundary_class)
    named = [i for i, n in enumerate(result.class_names) if "boundar" in n.lower()]
    return named[0] if named else None


def quantify(
    result: SegmentationResult,
    *,
    particle_class: int | str | None = None,
    boundary_class: int | str | None = None,
    min_area_px: int = 4,
    exclude_border: bool = False,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
) -> QuantReport:
    """Phase fractions, particle sizes, ASTM grain size and L_A of one segmentation, in µm or px.

    Args:
        result: a SegmentationResult (CNN or classical).
        particle_class: class (name or index) whose connected regions are the particles. Default: the
            watershed labels in ``result.meta["labels"]`` if present, else class 1 of a two-class map.
        boundary_class: class of grain boundaries for ASTM E112. Default: a class whose name contains
            "boundary"; ASTM G also needs ``result.pixel_size_um``.
        min_area_px, exclude_border: passed to :func:`measure_objects`.
        n_boot, rng: passed to :func:`phase_fractions` (bootstrap CI).
    """
    report = QuantReport(
        method=result.method,
        pixel_size_um=result.pixel_size_um,
        unit=result.unit,
        fractions=phase_fractions(result, n_boot=n_boot, rng=rng),
        boundary_length_per_area=boundary_length_per_area(result.mask, pixel_size_um=result.pixel_size_um),
    )
    labels = _particle_labels(result, particle_class)
    if labels is None:
        report.notes.append("no particle class: give particle_class=... to measure particles")
    else:
        report.objects = measure_objects(
            labels, pixel_size_um=result.pixel_size_um, min_area_px=min_area_px, exclude_border=exclude_border
        )
        report.size = size_summary(
            report.objects, f"equivalent_diameter_{'um' if result.pixel_size_um else 'px'}"
        )
    boundary = _boundary_class(result, boundary_class)
    if boundary is not None and result.pixel_size_um is None:
        report.notes.append("ASTM E112 grain size skipped: the pixel size is unknown")
    elif boundary is not None:
        report.astm = astm_grain_size(result.mask == boundary, pixel_size_um=result.pixel_size_um)
    return report
