"""Quantification in physical units and classical baselines.

- results: SegmentationResult / ClassificationResult / RegressionResult, shared by CNNs and baselines.
- quantify: phase fractions with bootstrap CIs, per-object sizes (µm or px), size summaries/histograms.
- stereology: ASTM E112 grain size (intercepts), porosity, boundary length per area, two-point correlation.
- classical: Otsu, multi-Otsu, adaptive threshold, watershed (registry ``CLASSICAL``).
- report: ``quantify(result) -> QuantReport`` collecting all of the above.

This package uses numpy, scipy, scikit-image and pandas; never torch or streamlit.

Example:
    >>> import numpy as np
    >>> from microcnn.analysis import otsu, quantify
    >>> img = np.zeros((64, 64), np.float32); img[16:48, 16:48] = 1.0
    >>> rep = quantify(otsu(img, pixel_size_um=0.5))
    >>> float(rep.fractions["fraction"][1]), rep.unit
    (0.25, 'µm')
"""

from microcnn.analysis.classical import (
    CLASSICAL,
    adaptive_threshold,
    multi_otsu,
    otsu,
    split_touching,
    watershed_particles,
)
from microcnn.analysis.quantify import measure_objects, phase_fractions, size_histogram, size_summary
from microcnn.analysis.report import QuantReport, quantify
from microcnn.analysis.results import (
    IGNORE_INDEX,
    AnalysisError,
    ClassificationResult,
    RegressionResult,
    SegmentationResult,
)
from microcnn.analysis.stereology import (
    astm_g_from_intercept,
    astm_grain_size,
    boundary_length_per_area,
    porosity,
    two_point_correlation,
)

__all__ = [
    "CLASSICAL",
    "IGNORE_INDEX",
    "AnalysisError",
    "ClassificationResult",
    "QuantReport",
    "RegressionResult",
    "SegmentationResult",
    "adaptive_threshold",
    "astm_g_from_intercept",
    "astm_grain_size",
    "boundary_length_per_area",
    "measure_objects",
    "multi_otsu",
    "otsu",
    "phase_fractions",
    "porosity",
    "quantify",
    "size_histogram",
    "size_summary",
    "split_touching",
    "two_point_correlation",
    "watershed_particles",
]
