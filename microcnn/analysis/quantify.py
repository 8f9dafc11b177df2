"""Numbers from a phase map: phase fractions with confidence intervals, object sizes, size summaries.

Every length is in µm when the pixel size is known and in px otherwise, and the unit is part of each
column name (``area_um2`` / ``area_px2``, ``equivalent_diameter_um`` / ``equivalent_diameter_px``), so a
number can never lose its unit on the way to a CSV file. Stereology (ASTM E112 grain size, porosity,
boundary length per area, two-point correlation) lives in :mod:`microcnn.analysis.stereology` and is
re-exported here; :func:`quantify` collects everything for one :class:`SegmentationResult`
(see :mod:`microcnn.analysis.report`).

Example:
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> mask = np.zeros((64, 64), np.uint8); mask[disk((32, 32), 10)] = 1
    >>> df = measure_objects(mask, pixel_size_um=0.5)
    >>> float(df["equivalent_diameter_um"][0].round())   # 2 × 10 px × 0.5 µm/px
    10.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from microcnn.analysis.results import IGNORE_INDEX, AnalysisError, SegmentationResult
from microcnn.analysis.stereology import (
    astm_grain_size,
    boundary_length_per_area,
    porosity,
    two_point_correlation,
)
from microcnn.registry import check_choice

__all__ = [
    "astm_grain_size",
    "boundary_length_per_area",
    "measure_objects",
    "phase_fractions",
    "porosity",
    "size_histogram",
    "size_summary",
    "two_point_correlation",
]

UNIT_LABELS = {"um": "µm", "um2": "µm²", "px": "px", "px2": "px²", "deg": "°"}


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A Generator from a Generator, a seed, or None (= seed 0, so that results are reproducible)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)


def _mask_and_names(result_or_mask: SegmentationResult | np.ndarray, class_names: list[str] | None):
    if isinstance(result_or_mask, SegmentationResult):
        return result_or_mask, result_or_mask.mask, class_names or result_or_mask.class_names
    mask = np.asarray(result_or_mask)
    if mask.ndim != 2:
        raise AnalysisError(f"mask must be a 2-D (H, W) array of class indices; got shape {mask.shape}.")
    mask = mask.astype(np.int64)
    valid = mask[mask != IGNORE_INDEX]
    k = int(valid.max()) + 1 if valid.size else 1
    return None, mask, class_names or [f"class {i}" for i in range(k)]


def _tile_counts(mask: np.ndarray, k: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile class pixel counts (n_tiles, K) and analysed pixel counts (n_tiles,); empty tiles dropped."""
    h, w = mask.shape
    rows = np.arange(h)[:, None] // tile
    cols = np.arange(w)[None, :] // tile
    tile_id = (rows * (-(-w // tile)) + cols).ravel()
    flat = mask.ravel()
    keep = flat != IGNORE_INDEX
    n_tiles = int(tile_id.max()) + 1
    counts = np.zeros((n_tiles, k), np.int64)
    np.add.at(counts, (tile_id[keep], flat[keep]), 1)
    valid = counts.sum(axis=1)
    return counts[valid > 0], valid[valid > 0]


def _bootstrap_ci(counts, valid, *, n_boot: int, ci: float, rng: np.random.Generator):
    """Percentile CI of the pooled fraction when whole tiles are resampled with replacement."""
    idx = rng.integers(0, len(valid), size=(n_boot, len(valid)))
    fractions = counts[idx].sum(axis=1) / valid[idx].sum(axis=1)[:, None]
    alpha = (1.0 - ci) / 2.0
    return np.quantile(fractions, alpha, axis=0), np.quantile(fractions, 1.0 - alpha, axis=0)


def phase_fractions(
    result_or_mask: SegmentationResult | np.ndarray,
    *,
    class_names: list[str] | None = None,
    tile: int | None = None,
    n_boot: int = 1000,
    rng: np.random.Generator | int | None = None,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Area fraction of each phase with a bootstrap confidence interval over tiles.

    The fraction is (pixels of the phase) / (analysed pixels); 255 is ignored. The CI comes from a
    bootstrap over non-overlapping square tiles (default side: a quarter of the shorter image side, so
    at least 16 tiles): tiles are resampled with replacement ``n_boot`` times and the pooled fraction's
    percentile interval is reported. Resampling tiles instead of pixels keeps the spatial correlation of
    the microstructure, so the CI is honest for clustered phases. With fewer than 4 tiles no CI is given.
    When the result carries probabilities, ``fraction_prob`` is the mean probability of the phase (the
    expected fraction) and, with ``std``, ``fraction_prob_std`` is the mean per-pixel spread over the
    ensemble/TTA members (an upper bound on the members' spread of the fraction). When it carries the
    per-sample fractions (``result.member_fractions``, S >= 2 ensemble members x TTA symmetries),
    ``members_std`` is their population standard deviation and ``ensemble_ci_low`` / ``ensemble_ci_high``
    the normal interval ``mean ± z·std`` (z = 1.96 for 95 %, clipped to [0, 1]): the model uncertainty of
    the fraction, next to the sampling uncertainty of the bootstrap.

    Args:
        result_or_mask: a SegmentationResult or an (H, W) integer mask of class indices.
        class_names: names for the classes (default: the result's, or "class i").
        tile: tile side in px for the bootstrap.
        n_boot: number of bootstrap resamples.
        rng: Generator or seed (None = seed 0, reproducible).
        ci: confidence level, e.g. 0.95.

    Returns:
        DataFrame, one row per phase: phase, fraction, ci_low, ci_high, method_of_ci
        [, fraction_prob [, fraction_prob_std]] [, members_mean, members_std, ensemble_ci_low,
        ensemble_ci_high, method_of_ensemble_ci]. Fractions are dimensionless in [0, 1].

    Example:
        >>> mask = np.zeros((40, 40), np.uint8); mask[:, :10] = 1
        >>> phase_fractions(mask, class_names=["matrix", "pore"])["fraction"].tolist()
        [0.75, 0.25]
    """
    if not 0.0 < ci < 1.0:
        raise AnalysisError(f"ci must be a confidence level between 0 and 1 (e.g. 0.95); got {ci}.")
    result, mask, names = _mask_and_names(result_or_mask, class_names)
    total = np.bincount(mask[mask != IGNORE_INDEX].ravel(), minlength=len(names))
    if total.sum() == 0:
        raise AnalysisError("every pixel of the mask is 255 (not analysed); there is nothing to quantify.")
    if len(total) > len(names):
        raise AnalysisError(f"mask has classes up to {len(total) - 1} but only {len(names)} class_names.")
    side = tile or max(1, min(mask.shape) // 4)
    counts, valid = _tile_counts(mask, len(names), side)
    df = pd.DataFrame({"phase": names, "fraction": total / total.sum()})
    if len(valid) >= 4:
        low, high = _bootstrap_ci(counts, valid, n_boot=n_boot, ci=ci, rng=as_rng(rng))
        how = f"bootstrap over {len(valid)} tiles of {side}x{side} px ({n_boot} resamples, {ci:.0%})"
    elif tile is not None:
        raise AnalysisError(
            f"tile={tile} px leaves {len(valid)} tiles; a CI needs at least 4. Use a smaller tile."
        )
    else:
        low = high = np.full(len(names), np.nan)
        how = f"not computed: only {len(valid)} tile(s) in a {mask.shape[0]}x{mask.shape[1]} px image"
    df["ci_low"], df["ci_high"], df["method_of_ci"] = low, high, how
    if result is not None and result.probabilities is not None:
        keep = mask != IGNORE_INDEX
        df["fraction_prob"] = [float(p[keep].mean()) for p in result.probabilities]
        if result.std is not None:
            df["fraction_prob_std"] = [float(s[keep].mean()) for s in result.std]
    if result is not None and result.member_fractions is not None and len(result.member_fractions) > 1:
        _add_ensemble_interval(df, result.member_fractions, ci)
    return df


def _add_ensemble_interval(df: pd.DataFrame, members: np.ndarray, ci: float) -> None:
    """Columns members_mean, members_std (population) and the normal interval mean ± z·std in [0, 1]."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + ci / 2.0)
    mean, std = members.mean(axis=0), members.std(axis=0)
    df["members_mean"], df["members_std"] = mean, std
    df["ensemble_ci_low"] = np.clip(mean - z * std, 0.0, 1.0)
    df["ensemble_ci_high"] = np.clip(mean + z * std, 0.0, 1.0)
    df["method_of_ensemble_ci"] = (f"mean ± {z:.3f}·std over {len(members)} samples (ensemble members x "
                                   f"TTA), {ci:.0%}")  # fmt: skip


def _as_labels(binary_or_labels: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    arr = np.asarray(binary_or_labels)
    if arr.ndim != 2:
        raise AnalysisError(f"expected a 2-D (H, W) binary mask or label image; got shape {arr.shape}.")
    if arr.dtype == bool or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) <= 1):
        return label(arr.astype(bool), connectivity=2)  # 8-connected particles
    if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0:
        raise AnalysisError(
            f"expected a boolean mask or a non-negative integer label image; got dtype {arr.dtype}."
        )
    return arr


def _length_columns(table: dict[str, np.ndarray], scale: float, unit: str) -> dict[str, np.ndarray]:
    major, minor = table["axis_major_length"], table["axis_minor_length"]
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.where(minor > 0, major / np.where(minor > 0, minor, 1.0), np.nan)
    return {
        "label": table["label"],
        f"area_{unit}2": table["area"] * scale**2,
        f"equivalent_diameter_{unit}": table["equivalent_diameter_area"] * scale,
        f"perimeter_{unit}": table["perimeter"] * scale,
        f"major_axis_{unit}": major * scale,
        f"minor_axis_{unit}": minor * scale,
        "aspect_ratio": aspect,
        # skimage: angle from the row axis to the major axis, counter-clockwise; we report it from the
        # column (horizontal) axis, counter-clockwise as seen on screen, in (-90, 90].
        "orientation_deg": np.degrees(table["orientation"]) - 90.0 * np.sign(table["orientation"]),
        "centroid_row_px": table["centroid-0"],
        "centroid_col_px": table["centroid-1"],
    }


def measure_objects(
    binary_or_labels: np.ndarray,
    *,
    pixel_size_um: float | None = None,
    min_area_px: int = 4,
    exclude_border: bool = False,
) -> pd.DataFrame:
    """Size and shape of every particle / grain (scikit-image ``regionprops_table``).

    Args:
        binary_or_labels: (H, W) boolean mask (or 0/1 integers; 8-connected objects are labelled) or an
            integer label image (0 = background).
        pixel_size_um: µm per px; lengths are then in µm and areas in µm², else in px and px².
        min_area_px: objects smaller than this many pixels are dropped (noise).
        exclude_border: drop objects touching the image edge (their size is unknown).

    Returns:
        One row per object: label, area_<u>2, equivalent_diameter_<u>, perimeter_<u>, major_axis_<u>,
        minor_axis_<u>, aspect_ratio (major/minor), orientation_deg (major axis vs the horizontal,
        counter-clockwise on screen), centroid_row_px, centroid_col_px; <u> is "um" or "px".
        ``df.attrs["unit"]`` is "µm" or "px".
    """
    from skimage.measure import regionprops_table
    from skimage.segmentation import clear_border

    labels = _as_labels(binary_or_labels)
    if exclude_border:
        labels = clear_border(labels)
    props = (
        "label",
        "area",
        "equivalent_diameter_area",
        "perimeter",
        "axis_major_length",
        "axis_minor_length",
        "orientation",
        "centroid",
    )
    table = regionprops_table(labels, properties=props)
    unit = "um" if pixel_size_um else "px"
    df = pd.DataFrame(_length_columns(table, float(pixel_size_um or 1.0), unit))
    df = df[table["area"] >= min_area_px].reset_index(drop=True)
    df.attrs["unit"] = UNIT_LABELS[unit]
    return df


def unit_of(column: str) -> str:
    """The display unit encoded in a column name: "area_um2" -> "µm²", "aspect_ratio" -> "" (none)."""
    return UNIT_LABELS.get(column.rsplit("_", 1)[-1], "")


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: list[float]) -> np.ndarray:
    # numpy's quantile has no weights for the linear method; a cumulative-weight interpolation is enough.
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(qs, cum, v)


def size_summary(df: pd.DataFrame, column: str, *, basis: str = "number") -> dict[str, Any]:
    """n, mean, median, std, D10/D50/D90 of one size column, with its unit.

    ``basis="number"``: every object counts once (D50 = median). ``basis="area"``: objects are weighted by
    their area (the area-weighted D50 of image analysis, closer to sieve/laser sizing).

    Example:
        >>> df = pd.DataFrame({"equivalent_diameter_um": [1.0, 2.0, 3.0]})
        >>> s = size_summary(df, "equivalent_diameter_um")
        >>> s["d50"], s["unit"]
        (2.0, 'µm')
    """
    check_choice("size basis", basis, ("number", "area"))
    if column not in df.columns:
        raise AnalysisError(f"no column '{column}' in the table; columns are {list(df.columns)}.")
    values = df[column].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    out: dict[str, Any] = {"column": column, "unit": unit_of(column), "basis": basis, "n": int(values.size)}
    if values.size == 0:
        return {**out, **dict.fromkeys(("mean", "median", "std", "d10", "d50", "d90"), float("nan"))}
    if basis == "area":
        area_col = next((c for c in df.columns if c.startswith("area_")), None)
        if area_col is None:
            raise AnalysisError("basis='area' needs an area_um2 or area_px2 column in the table.")
        weights = df.loc[np.isfinite(df[column]), area_col].to_numpy(dtype=np.float64)
    else:
        weights = np.ones_like(values)
    d10, d50, d90 = (
        _weighted_quantiles(values, weights, [0.1, 0.5, 0.9])
        if basis == "area"
        else np.percentile(values, [10, 50, 90])
    )
    return {
        **out,
        "mean": float(np.average(values, weights=weights)),
        "median": float(np.median(values)),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "d10": float(d10),
        "d50": float(d50),
        "d90": float(d90),
    }


def size_histogram(df: pd.DataFrame, column: str, *, bins: int = 20, log: bool = False) -> pd.DataFrame:
    """Histogram of one size column: bin_low_<u>, bin_high_<u>, count, fraction (of the number of objects).

    ``log=True`` uses logarithmically spaced bins (useful for broad, log-normal size distributions).
    """
    if column not in df.columns:
        raise AnalysisError(f"no column '{column}' in the table; columns are {list(df.columns)}.")
    values = df[column].to_numpy(dtype=np.float64)
    values = values[np.isfinite(values)]
    suffix = column.rsplit("_", 1)[-1] if unit_of(column) else "value"
    if values.size == 0:
        return pd.DataFrame({f"bin_low_{suffix}": [], f"bin_high_{suffix}": [], "count": [], "fraction": []})
    if log and values.min() > 0:
        edges = np.geomspace(values.min(), values.max() * (1 + 1e-9), bins + 1)
    else:
        edges = np.histogram_bin_edges(values, bins=bins)
    counts, edges = np.histogram(values, bins=edges)
    return pd.DataFrame(
        {
            f"bin_low_{suffix}": edges[:-1],
            f"bin_high_{suffix}": edges[1:],
            "count": counts,
            "fraction": counts / values.size,
        }
    )
