"""Parametric generators of two-phase microstructures, one per morphology class.

Each generator takes the structure's shape (rows, cols) and an ``np.random.Generator`` and returns a
:class:`Structure`: the exact phase mask (uint8, 0 = matrix, 1 = second phase; for equiaxed grains
0 = grain interior, 1 = grain boundary), optional grain labels used only for rendering (channelling
contrast), the sign of the second phase's contrast, and the parameters actually used. Every parameter is
keyword-only; ``None`` means "draw it from the documented range with ``rng``". Lengths are in pixels.

Example:
    >>> import numpy as np
    >>> from microcnn.synth.generators import GENERATORS
    >>> s = GENERATORS.build("porous", shape=(64, 64), rng=np.random.default_rng(0), porosity=0.5)
    >>> s.mask.dtype, s.mask.shape, round(float(s.mask.mean()), 2)
    (dtype('uint8'), (64, 64), 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.segmentation import find_boundaries

from microcnn.registry import Registry

# Stable order: the classification label of a class is its position here.
CLASS_NAMES: tuple[str, ...] = (
    "equiaxed_grains",
    "lamellar",
    "spheroidal_particles",
    "widmanstatten",
    "porous",
    "dual_phase",
)

GENERATORS = Registry("generator")

Shape = tuple[int, int]


@dataclass(frozen=True)
class Structure:
    """What a generator returns.

    Attributes:
        mask: (H, W) uint8 phase mask, values in {0, 1}.
        grains: (H, W) int32 grain / colony labels (>= 1) for rendering contrast, or None.
        contrast: +1 when the second phase images brighter than the matrix (particles, cementite),
            -1 when darker (pores), 0 to let the renderer draw the sign.
        params: the parameters used (drawn or given), JSON-friendly floats.
    """

    mask: np.ndarray
    grains: np.ndarray | None = None
    contrast: int = 1
    params: dict[str, float] = field(default_factory=dict)


def _pick(value: float | None, low: float, high: float, rng: np.random.Generator) -> float:
    """``value`` when given, otherwise a uniform draw in [low, high)."""
    return float(rng.uniform(low, high)) if value is None else float(value)


def smooth_noise(shape: Shape, sigma: float | tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A Gaussian random field: white noise smoothed with ``sigma`` px, rescaled to zero mean, unit std."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    std = field_.std()
    return (field_ - field_.mean()) / (std if std > 0 else 1.0)


def voronoi_labels(
    shape: Shape, n_seeds: int, rng: np.random.Generator, *, warp_px: float = 0.0, lloyd: int = 0
) -> np.ndarray:
    """Poisson-Voronoi tessellation of ``shape``: (H, W) int32 labels 1..n_seeds.

    ``warp_px`` displaces the query points by a smooth random field of that amplitude so that boundaries
    wave like real grain boundaries; ``lloyd`` steps of Lloyd relaxation make the cells more equiaxed.
    """
    rows, cols = shape
    n_seeds = max(int(n_seeds), 2)
    seeds = rng.uniform((0, 0), (rows, cols), size=(n_seeds, 2))
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float64)
    if warp_px > 0:
        sigma = max(rows, cols) / 24
        rr = rr + warp_px * smooth_noise(shape, sigma, rng)
        cc = cc + warp_px * smooth_noise(shape, sigma, rng)
    points = np.column_stack([rr.ravel(), cc.ravel()])
    labels = cKDTree(seeds).query(points, workers=1)[1].reshape(shape).astype(np.int32) + 1
    for _ in range(lloyd):
        counts = np.bincount(labels.ravel(), minlength=n_seeds + 1)[1:]
        sums_r = np.bincount(labels.ravel(), rr.ravel(), minlength=n_seeds + 1)[1:]
        sums_c = np.bincount(labels.ravel(), cc.ravel(), minlength=n_seeds + 1)[1:]
        filled = (counts > 0)[:, None]
        centroids = np.column_stack([sums_r, sums_c]) / np.maximum(counts, 1)[:, None]
        seeds = np.where(filled, centroids, seeds)  # an empty cell keeps its seed
        labels = cKDTree(seeds).query(points, workers=1)[1].reshape(shape).astype(np.int32) + 1
    return labels


def _n_cells(shape: Shape, diameter_px: float) -> int:
    """Number of cells of equivalent diameter ``diameter_px`` that tile ``shape``."""
    return round(shape[0] * shape[1] / (np.pi / 4 * diameter_px**2))


@GENERATORS.register("equiaxed_grains")
def equiaxed_grains(
    shape: Shape,
    *,
    rng: np.random.Generator,
    grain_diameter_px: float | None = None,
    boundary_width_px: int | None = None,
) -> Structure:
    """Equiaxed grains: a Lloyd-relaxed Voronoi tessellation; mask 1 = grain boundaries.

    Ranges when drawn: grain diameter 14-40 px, boundary width 2 or 3 px.
    """
    d = _pick(grain_diameter_px, 14, 40, rng)
    width = int(rng.integers(2, 4)) if boundary_width_px is None else int(boundary_width_px)
    grains = voronoi_labels(shape, _n_cells(shape, d), rng, warp_px=d / 8, lloyd=1)
    mask = find_boundaries(grains, mode="thick" if width >= 2 else "inner")
    if width > 2:
        mask = ndimage.binary_dilation(mask, iterations=width - 2)
    params = {"grain_diameter_px": d, "boundary_width_px": float(width)}
    return Structure(mask.astype(np.uint8), grains, contrast=0, params=params)


@GENERATORS.register("lamellar")
def lamellar(
    shape: Shape,
    *,
    rng: np.random.Generator,
    colony_diameter_px: float | None = None,
    spacing_px: tuple[float, float] | None = None,
    lamella_fraction: float | None = None,
    orientation_deg: float | None = None,
) -> Structure:
    """Pearlite-like lamellar colonies: each Voronoi colony has its own orientation, spacing and phase.

    Ranges when drawn: colony diameter 50-130 px, interlamellar spacing per colony in 5-12 px
    (``spacing_px=(lo, hi)``; lo = hi fixes it), cementite (mask 1) fraction 0.15-0.35, orientation of
    the lamella normal 0-180° per colony (``orientation_deg`` gives every colony the same one, measured
    from the row axis towards the column axis). Lamellae wave slightly (a smooth phase perturbation).
    """
    d = _pick(colony_diameter_px, 50, 130, rng)
    lo, hi = spacing_px if spacing_px is not None else (5.0, 12.0)
    f = _pick(lamella_fraction, 0.15, 0.35, rng)
    colonies = voronoi_labels(shape, _n_cells(shape, d), rng, warp_px=d / 10)
    n = int(colonies.max())
    if orientation_deg is None:
        theta = rng.uniform(0, np.pi, n + 1)[colonies]
    else:
        theta = np.full(shape, np.deg2rad(orientation_deg))
    spacing = rng.uniform(lo, hi, n + 1)[colonies]
    phase = rng.uniform(0, 1, n + 1)[colonies]
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]]
    wobble = 0.25 * smooth_noise(shape, 6.0, rng)
    s = (rr * np.cos(theta) + cc * np.sin(theta)) / spacing + phase + wobble
    mask = np.mod(s, 1.0) < f
    params = {"colony_diameter_px": d, "spacing_min_px": lo, "spacing_max_px": hi, "lamella_fraction": f}
    if orientation_deg is not None:
        params["orientation_deg"] = float(orientation_deg)
    return Structure(mask.astype(np.uint8), colonies, contrast=1, params=params)


def _stamp_superellipses(
    mask: np.ndarray, centres: np.ndarray, radii: np.ndarray, *, exponent: float, angle: float
) -> None:
    """Set to 1 the pixels inside each superellipse |u/r|^p + |v/r|^p <= 1 (rotated by ``angle``).

    Hand-written: skimage.draw has disks and ellipses but no superellipse (cuboidal gamma-prime) shape.
    """
    rows, cols = mask.shape
    ca, sa = np.cos(angle), np.sin(angle)
    for (r0, c0), rad in zip(centres, radii):
        ext = int(np.ceil(rad * 1.42)) + 1
        r_lo, r_hi = max(int(r0) - ext, 0), min(int(r0) + ext + 1, rows)
        c_lo, c_hi = max(int(c0) - ext, 0), min(int(c0) + ext + 1, cols)
        if r_lo >= r_hi or c_lo >= c_hi:
            continue
        rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi]
        u = ((rr - r0) * ca + (cc - c0) * sa) / rad
        v = (-(rr - r0) * sa + (cc - c0) * ca) / rad
        mask[r_lo:r_hi, c_lo:c_hi] |= (np.abs(u) ** exponent + np.abs(v) ** exponent) <= 1.0


@GENERATORS.register("spheroidal_particles")
def spheroidal_particles(
    shape: Shape,
    *,
    rng: np.random.Generator,
    particle_fraction: float | None = None,
    mean_radius_px: float | None = None,
    radius_cv: float | None = None,
    squareness: float | None = None,
) -> Structure:
    """Spheroidite / gamma-prime-like particles in a matrix, with a log-normal size distribution.

    Ranges when drawn: target area fraction 0.08-0.30 (before overlaps), mean radius 2.5-8 px, radius
    coefficient of variation 0.15-0.45, squareness 2 (round) to 4 (cuboidal, aligned like gamma-prime).
    """
    f = _pick(particle_fraction, 0.08, 0.30, rng)
    r_mean = _pick(mean_radius_px, 2.5, 8.0, rng)
    cv = _pick(radius_cv, 0.15, 0.45, rng)
    p = _pick(squareness, 2.0, 4.0, rng)
    s2 = np.log1p(cv**2)
    n = max(round(f * shape[0] * shape[1] / (np.pi * r_mean**2 * (1 + cv**2))), 1)
    radii = r_mean * np.exp(rng.normal(-s2 / 2, np.sqrt(s2), n))
    centres = rng.uniform((0, 0), shape, size=(n, 2))
    mask = np.zeros(shape, dtype=bool)
    _stamp_superellipses(mask, centres, np.maximum(radii, 0.8), exponent=p, angle=rng.uniform(0, np.pi / 2))
    params = {"particle_fraction": f, "mean_radius_px": r_mean, "radius_cv": cv, "squareness": p}
    return Structure(mask.astype(np.uint8), None, contrast=1, params=params)


def _stamp_laths(
    mask: np.ndarray,
    grains: np.ndarray,
    centres: np.ndarray,
    angles: np.ndarray,
    *,
    length: float,
    width: float,
) -> None:
    """Draw rotated rectangles (laths), each clipped to the parent grain that holds its centre."""
    rows, cols = mask.shape
    ext = int(np.ceil(length / 2)) + 1
    for (r0, c0), ang in zip(centres, angles):
        r_lo, r_hi = max(int(r0) - ext, 0), min(int(r0) + ext + 1, rows)
        c_lo, c_hi = max(int(c0) - ext, 0), min(int(c0) + ext + 1, cols)
        rr, cc = np.mgrid[r_lo:r_hi, c_lo:c_hi]
        along = (rr - r0) * np.cos(ang) + (cc - c0) * np.sin(ang)
        across = -(rr - r0) * np.sin(ang) + (cc - c0) * np.cos(ang)
        inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        parent = grains[min(int(r0), rows - 1), min(int(c0), cols - 1)]
        mask[r_lo:r_hi, c_lo:c_hi] |= inside & (grains[r_lo:r_hi, c_lo:c_hi] == parent)


@GENERATORS.register("widmanstatten")
def widmanstatten(
    shape: Shape,
    *,
    rng: np.random.Generator,
    prior_grain_diameter_px: float | None = None,
    lath_length_px: float | None = None,
    lath_width_px: float | None = None,
    lath_fraction: float | None = None,
) -> Structure:
    """Widmanstätten-like laths: needles in 1-3 variants 60° apart per prior grain, stopped at its boundary.

    Ranges when drawn: prior grain diameter 80-200 px, lath length 25-90 px, width 1.5-4 px, target lath
    fraction 0.15-0.35 (before overlaps).
    """
    d = _pick(prior_grain_diameter_px, 80, 200, rng)
    length = _pick(lath_length_px, 25, 90, rng)
    width = _pick(lath_width_px, 1.5, 4.0, rng)
    f = _pick(lath_fraction, 0.15, 0.35, rng)
    grains = voronoi_labels(shape, _n_cells(shape, d), rng, warp_px=d / 12)
    n_grains = int(grains.max())
    base = rng.uniform(0, np.pi, n_grains + 1)
    n_variants = rng.integers(1, 4, n_grains + 1)
    n = max(round(f * shape[0] * shape[1] / (length * width)), 1)
    centres = rng.uniform((0, 0), shape, size=(n, 2))
    parent = grains[centres[:, 0].astype(int), centres[:, 1].astype(int)]
    variant = np.floor(rng.uniform(0, 1, n) * n_variants[parent])
    angles = base[parent] + variant * np.pi / 3 + rng.normal(0, 0.03, n)
    mask = np.zeros(shape, dtype=bool)
    _stamp_laths(mask, grains, centres, angles, length=length, width=width)
    params = {
        "prior_grain_diameter_px": d,
        "lath_length_px": length,
        "lath_width_px": width,
        "lath_fraction": f,
    }
    return Structure(mask.astype(np.uint8), grains, contrast=1, params=params)


@GENERATORS.register("porous")
def porous(
    shape: Shape,
    *,
    rng: np.random.Generator,
    porosity: float | None = None,
    correlation_px: float | None = None,
    anisotropy: float | None = None,
) -> Structure:
    """Porous network: a thresholded Gaussian random field; mask 1 = pores (imaged dark).

    The threshold is the field's (1 - porosity) quantile, so the pore fraction equals ``porosity`` to
    within one pixel's worth of ties. ``anisotropy`` = correlation length along rows / along columns.
    Ranges when drawn: porosity 0.45-0.80, correlation length 2-8 px, anisotropy 0.5-2.
    """
    phi = _pick(porosity, 0.45, 0.80, rng)
    if not 0.0 < phi < 1.0:
        raise ValueError(f"porosity must be in (0, 1); got {phi}. Pass e.g. porosity=0.5.")
    corr = _pick(correlation_px, 2.0, 8.0, rng)
    aniso = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))) if anisotropy is None else float(anisotropy)
    sigma = (corr * np.sqrt(aniso), corr / np.sqrt(aniso))
    field_ = smooth_noise(shape, sigma, rng)
    flat = np.sort(field_, axis=None)
    threshold = flat[min(round((1.0 - phi) * flat.size), flat.size - 1)]
    mask = field_ >= threshold
    params = {"porosity_target": phi, "correlation_px": corr, "anisotropy": aniso}
    return Structure(mask.astype(np.uint8), None, contrast=-1, params=params)


@GENERATORS.register("dual_phase")
def dual_phase(
    shape: Shape,
    *,
    rng: np.random.Generator,
    grain_diameter_px: float | None = None,
    island_fraction: float | None = None,
) -> Structure:
    """Dual-phase steel: islands (mask 1, e.g. martensite) made of whole ferrite grains, edges roughened.

    Ranges when drawn: ferrite grain diameter 15-35 px, island fraction 0.15-0.40 (chosen grains' area).
    """
    d = _pick(grain_diameter_px, 15, 35, rng)
    f = _pick(island_fraction, 0.15, 0.40, rng)
    grains = voronoi_labels(shape, _n_cells(shape, d), rng, warp_px=d / 6, lloyd=1)
    n = int(grains.max())
    areas = np.bincount(grains.ravel(), minlength=n + 1)[1:]
    order = rng.permutation(n)
    chosen = order[: int(np.searchsorted(np.cumsum(areas[order]), f * grains.size)) + 1] + 1
    islands = np.isin(grains, chosen).astype(np.float64)
    rough = ndimage.gaussian_filter(islands, 1.5) + 0.15 * smooth_noise(shape, 1.5, rng)
    mask = rough > 0.5
    params = {"grain_diameter_px": d, "island_fraction": f}
    return Structure(mask.astype(np.uint8), grains, contrast=1, params=params)
