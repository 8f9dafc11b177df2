"""Stereology on phase and grain-boundary maps: ASTM E112 grain size, porosity, L_A, two-point correlation.

Lengths are in µm when ``pixel_size_um`` is given, else in px. 255 in a mask means "not analysed" and is
left out of every count.

Example:
    >>> import numpy as np
    >>> rows, cols = np.mgrid[0:200, 0:200]
    >>> grains = (rows + 10) // 20 * 100 + (cols + 10) // 20 + 1     # square grains, side 20 px
    >>> g = astm_grain_size(grains, pixel_size_um=1.0, angles_deg=(0, 90))
    >>> round(g["mean_intercept_um"], 1), round(g["G"], 2)
    (20.0, 8.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from microcnn.analysis.results import IGNORE_INDEX, AnalysisError
from microcnn.registry import check_choice


def astm_g_from_intercept(mean_intercept_um: float) -> float:
    """ASTM E112-13 grain-size number from the mean lineal intercept: G = −6.643856·log10(ℓ̄ in mm) − 3.288."""
    return float(-6.643856 * np.log10(mean_intercept_um / 1000.0) - 3.288)


def _grain_labels(boundary_mask_or_labels: np.ndarray) -> np.ndarray:
    """Grain labels with every pixel assigned to a grain (zero-width boundaries between labels).

    bool or 0/1 arrays are boundary masks (True on boundaries): grains are the 4-connected regions between
    them. Other integer arrays are grain labels, 0 = boundary or unlabelled. Boundary pixels are then given
    to the nearest grain (skimage ``expand_labels``), so a test line passing a junction still sees every
    grain it crosses, and a thick boundary counts once.
    """
    from skimage.measure import label
    from skimage.segmentation import expand_labels

    arr = np.asarray(boundary_mask_or_labels)
    if arr.ndim != 2:
        raise AnalysisError(
            f"expected a 2-D (H, W) boundary mask or grain label image; got shape {arr.shape}."
        )
    if arr.dtype == bool or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) <= 1):
        labels = label(~arr.astype(bool), connectivity=1)
    elif np.issubdtype(arr.dtype, np.integer):
        labels = arr.astype(np.int64)
    else:
        raise AnalysisError(
            f"expected a boolean boundary mask (True on boundaries) or an integer grain label image "
            f"(0 = boundary/unlabelled); got dtype {arr.dtype}."
        )
    if not labels.any():
        raise AnalysisError("the map has no grains (all boundary or all 0); check the boundary class.")
    return expand_labels(labels, distance=max(labels.shape)) if (labels == 0).any() else labels


def _four_connected(rows: np.ndarray, cols: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pixel indices along a path with repeats removed and every diagonal step split in two.

    A path that steps diagonally could slip through an 8-connected, 1-px boundary without touching it;
    the inserted pixel (next row, previous column) makes the path 4-connected.
    """
    r, c = np.rint(rows).astype(int), np.rint(cols).astype(int)
    if closed:
        r, c = np.append(r, r[0]), np.append(c, c[0])
    keep = np.concatenate([[True], (np.diff(r) != 0) | (np.diff(c) != 0)])
    r, c = r[keep], c[keep]
    diagonal = np.flatnonzero((np.diff(r) != 0) & (np.diff(c) != 0))
    r, c = np.insert(r, diagonal + 1, r[diagonal + 1]), np.insert(c, diagonal + 1, c[diagonal])
    return (r[:-1], c[:-1]) if closed and r.size > 1 else (r, c)


def _chord(p0: np.ndarray, u: np.ndarray, t_lo: float, t_hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact traversal of the pixels a straight chord passes through (one sample per pixel visited).

    The chord crosses a pixel edge where a coordinate passes k + 0.5; sampling midway between consecutive
    crossings visits each pixel once, with no step size to tune (hand-written: no library does this).
    """
    events = [np.array([t_lo, t_hi])]
    for axis in (0, 1):
        if abs(u[axis]) > 1e-12:
            ends = sorted((p0[axis] + t_lo * u[axis], p0[axis] + t_hi * u[axis]))
            edges = np.arange(np.ceil(ends[0] - 0.5), np.floor(ends[1] - 0.5) + 1) + 0.5
            events.append((edges - p0[axis]) / u[axis])
    t = np.unique(np.clip(np.concatenate(events), t_lo, t_hi))
    mid = (t[1:] + t[:-1]) / 2.0 if t.size > 1 else t
    return p0[0] + mid * u[0], p0[1] + mid * u[1]


def _test_lines(shape: tuple[int, int], angles_deg, n_lines: int):
    """(rows, cols, closed, length_px) of ``n_lines`` evenly spaced parallel chords per angle.

    Angles are counted from the horizontal (column axis), counter-clockwise as seen on screen. A chord
    runs between pixel centres at the image edge; its length is taken from pixel edge to pixel edge.
    """
    h, w = shape
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float) - centre
    for angle in np.radians(np.asarray(angles_deg, float)):
        u = np.array([-np.sin(angle), np.cos(angle)])  # direction (rows, cols)
        v = np.array([np.cos(angle), np.sin(angle)])  # normal
        s_lo, s_hi = (corners @ v).min(), (corners @ v).max()
        for i in range(n_lines):
            p0 = centre + (s_lo + (i + 0.5) * (s_hi - s_lo) / n_lines) * v
            t_lo, t_hi = -np.inf, np.inf
            for axis, limit in ((0, h - 1), (1, w - 1)):
                if abs(u[axis]) > 1e-12:
                    a, b = sorted(((0 - p0[axis]) / u[axis], (limit - p0[axis]) / u[axis]))
                    t_lo, t_hi = max(t_lo, a), min(t_hi, b)
            if t_hi > t_lo:
                yield (*_chord(p0, u, t_lo, t_hi), False, (t_hi - t_lo) + 1.0, float(angle))


def _test_circles(shape: tuple[int, int], step: float):
    """(rows, cols, closed, length_px) of the three concentric ASTM E112 test circles (radii 3:2:1)."""
    h, w = shape
    r_max = 0.45 * (min(h, w) - 1)
    for radius in (r_max, r_max * 2 / 3, r_max / 3):
        n = max(8, int(np.ceil(2 * np.pi * radius / step)))
        phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
        rows, cols = (h - 1) / 2.0 + radius * np.sin(phi), (w - 1) / 2.0 + radius * np.cos(phi)
        yield rows, cols, True, 2 * np.pi * radius, 0.0


# A return to the grain just left within this many pixels is a staircase step of a pixelised boundary
# (a straight line crossing a digitised boundary at a shallow angle zig-zags across it), not 2 crossings.
# Measured on Poisson-Voronoi grains: counting every label change overestimates P_L by ~20 %; with this
# rule the mean intercept is within 1 % of the theoretical pi / (4 sqrt(lambda)).
_DETOUR_PX = 2


def _count_crossings(grains: np.ndarray, closed: bool) -> int:
    """Grain-boundary crossings along a path of grain labels (closed: the path wraps around)."""
    if closed:
        change = np.flatnonzero(grains != np.roll(grains, 1))
        if change.size == 0:
            return 0
        grains = np.roll(grains, -change[0])  # start at a run boundary
    starts = np.flatnonzero(np.r_[True, grains[1:] != grains[:-1]])
    lengths = np.diff(np.r_[starts, grains.size])
    path: list[int] = []
    run: list[int] = []
    for grain, length in zip(grains[starts].tolist(), lengths.tolist()):
        if len(path) >= 2 and path[-2] == grain and run[-1] <= _DETOUR_PX:
            path.pop()
            run.pop()
            run[-1] += length
        else:
            path.append(grain)
            run.append(length)
    return len(path) - 1 + int(closed and len(path) > 1 and path[0] != path[-1])


def _relative_accuracy(p_per_length: np.ndarray) -> float:
    """ASTM E112 %RA: 95 % CI half-width of the mean P_L over test lines, in % of that mean."""
    from scipy.stats import t

    n = p_per_length.size
    if n < 2 or p_per_length.mean() == 0:
        return float("nan")
    half = t.ppf(0.975, n - 1) * p_per_length.std(ddof=1) / np.sqrt(n)
    return float(100.0 * half / p_per_length.mean())


def _intercept_counts(grain_map: np.ndarray, method: str, angles_deg, n_lines: int, step_px: float):
    """Per test line: intersections P (float), length in px, orientation group (radians; 0 for circles)."""
    h, w = grain_map.shape
    if method == "circles":
        chords = _test_circles((h, w), step_px)
    else:
        chords = _test_lines((h, w), angles_deg, n_lines)
    counts, lengths, groups = [], [], []
    for rows, cols, closed, length, group in chords:
        r_idx, c_idx = _four_connected(rows, cols, closed)
        values = grain_map[np.clip(r_idx, 0, h - 1), np.clip(c_idx, 0, w - 1)]
        counts.append(_count_crossings(values, closed))
        lengths.append(length)
        groups.append(group)
    return np.asarray(counts, float), np.asarray(lengths, float), np.asarray(groups, float)


def astm_grain_size(
    boundary_mask_or_labels: np.ndarray,
    *,
    pixel_size_um: float | None,
    method: str = "lines",
    n_lines: int = 5,
    angles_deg: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0),
    step_px: float = 0.25,
) -> dict[str, Any]:
    """ASTM E112-13 grain-size number G by the intercept procedure.

    Test lines (``method="lines"``: ``n_lines`` parallel chords at each of ``angles_deg``) or the three
    concentric test circles of E112 (``method="circles"``, radii 3:2:1, which average over orientation)
    are laid over the map; the grain-boundary intersections P are counted; ℓ̄ = 1 / P_L with P_L = P per unit
    test length (averaged with equal weight over the line orientations)
    and G = −6.643856·log10(ℓ̄ in mm) − 3.288 (G 8 ↔ ℓ̄ = 20.0 µm). Lines visit every pixel they pass
    through; circles are sampled every ``step_px`` px; both paths are made 4-connected so that a thin
    boundary cannot be slipped through diagonally. A path through a four-grain corner counts 2; a return to
    the grain just left within 2 px counts 0 (a staircase step of the pixelised boundary).

    Args:
        boundary_mask_or_labels: (H, W) boolean boundary mask (True on grain boundaries, any thickness) or
            an integer grain label image (label 0 = boundary/unlabelled). Boundary pixels are given to the
            nearest grain, then each change of grain along a test line is one intersection.
        pixel_size_um: µm per px; required, since G is defined in physical units.

    Returns:
        dict with G, mean_intercept_um, mean_intercept_px, n_intersections, total_length_um, n_test_lines,
        relative_accuracy_pct (ASTM %RA over test lines; E112 asks for ≤ 10 %), method, note.

    Example:
        >>> import numpy as np
        >>> labels = (np.mgrid[0:100, 0:100][1] + 5) // 10 + 1           # vertical bands, 10 px wide
        >>> astm_grain_size(labels, pixel_size_um=2.0, angles_deg=(0,))["mean_intercept_um"]
        20.0
    """
    check_choice("intercept method", method, ("lines", "circles"))
    if pixel_size_um is None or not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise AnalysisError(
            f"ASTM E112 grain size needs the pixel size (G is defined for ℓ̄ in mm); got pixel_size_um="
            f"{pixel_size_um!r}. Pass pixel_size_um=... in µm, e.g. from the scale bar or the image metadata."
        )
    if n_lines < 1 or step_px <= 0:
        raise AnalysisError(f"n_lines must be ≥ 1 and step_px > 0; got n_lines={n_lines}, step_px={step_px}.")
    grain_map = _grain_labels(boundary_mask_or_labels)
    counts, lengths, groups = _intercept_counts(grain_map, method, angles_deg, n_lines, step_px)
    total_p = int(counts.sum())
    if total_p == 0:
        raise AnalysisError(
            f"no grain boundary was crossed by {len(counts)} test lines on a {grain_map.shape[0]}x"
            f"{grain_map.shape[1]} px map: the boundary map is empty or the grains are larger than the "
            "image. Check the boundary class or use a larger field."
        )
    # P_L per orientation (lines) or pooled (circles, isotropic already), then averaged with equal weight
    # per orientation, so that an anisotropic structure is not biased towards the longest chords.
    p_l = [counts[groups == g].sum() / lengths[groups == g].sum() for g in np.unique(groups)]
    mean_px = float(1.0 / np.mean(p_l))
    mean_um = mean_px * float(pixel_size_um)
    return {
        "G": astm_g_from_intercept(mean_um),
        "mean_intercept_um": mean_um,
        "mean_intercept_px": mean_px,
        "n_intersections": total_p,
        "total_length_um": float(lengths.sum() * pixel_size_um),
        "n_test_lines": len(counts),
        "relative_accuracy_pct": _relative_accuracy(counts / lengths),
        "method": f"ASTM E112-13 intercept, {method}",
        "note": ""
        if total_p >= 50
        else f"only {total_p} intersections; E112 asks for about 50 or more per field",
    }


def porosity(mask: np.ndarray, *, pore_class: int = 1) -> float:
    """Area fraction of ``pore_class`` among analysed pixels (255 ignored); dimensionless in [0, 1].

    Example:
        >>> porosity(np.array([[0, 1], [1, 255]], np.uint8))
        0.6666666666666666
    """
    arr = np.asarray(mask)
    arr = arr.astype(np.uint8) if arr.dtype == bool else arr
    valid = arr != IGNORE_INDEX
    if not valid.any():
        raise AnalysisError("every pixel of the mask is 255 (not analysed); porosity is undefined.")
    return float(np.count_nonzero(arr[valid] == pore_class) / np.count_nonzero(valid))


# (row shift, col shift, length of one step in px) of the four Crofton directions 0°, 90°, 45°, 135°
_CROFTON_STEPS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, np.sqrt(2)), (1, -1, np.sqrt(2)))


def _pairs(arr: np.ndarray, dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = arr.shape
    a = arr[: h - dr, max(0, -dc) : w - max(0, dc)]
    b = arr[dr:, max(0, dc) : w - max(0, -dc)]
    return a, b


def boundary_length_per_area(
    mask: np.ndarray, *, pixel_size_um: float | None = None, phase: int | None = None
) -> float:
    """Specific boundary length L_A (boundary length per analysed area), by the Crofton / stereology formula.

    L_A = (π/2)·P_L, with P_L the number of phase changes per unit test-line length averaged over the four
    pixel directions 0°, 45°, 90°, 135° (neighbour pairs with a 255 are skipped). Hand-written because
    skimage's ``perimeter``/``perimeter_crofton`` count the image edge as boundary and know nothing of 255.
    Exact for isotropic structures; a straight boundary along an axis reads about 5 % low.

    Args:
        mask: (H, W) integer class indices (bool accepted), 255 = not analysed.
        pixel_size_um: µm per px; the result is then in µm/µm² (= µm⁻¹), else in px/px² (= px⁻¹).
        phase: count only boundaries of this class (against any other); None = every interphase boundary.
    """
    arr = np.asarray(mask)
    arr = arr.astype(np.uint8) if arr.dtype == bool else arr
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise AnalysisError(f"need a 2-D (H, W) mask of at least 2x2 px; got shape {arr.shape}.")
    p_l = []
    for dr, dc, length in _CROFTON_STEPS:
        a, b = _pairs(arr, dr, dc)
        valid = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
        change = valid & (a != b) if phase is None else valid & ((a == phase) != (b == phase))
        n_valid = np.count_nonzero(valid)
        p_l.append(np.count_nonzero(change) / (n_valid * length) if n_valid else np.nan)
    if np.all(np.isnan(p_l)):
        raise AnalysisError("every pixel of the mask is 255 (not analysed); L_A is undefined.")
    return float(np.pi / 2 * np.nanmean(p_l) / (pixel_size_um or 1.0))


def two_point_correlation(
    mask: np.ndarray,
    phase: int = 1,
    *,
    max_distance_px: int | None = None,
    pixel_size_um: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged two-point correlation S2(r): chance that two points r apart both lie in ``phase``.

    Computed with FFTs on the zero-padded image (no periodic wrap-around) and normalised by the number of
    analysed pixel pairs at each lag, so 255 pixels and the image edge are handled exactly. S2(0) is the
    volume (area) fraction φ; for an uncorrelated structure S2(r) → φ² at large r.

    Returns:
        (r, S2): r = 0, 1, ..., max_distance_px (default: half the shorter side) in px, or in µm when
        ``pixel_size_um`` is given; S2 float64 in [0, 1] (NaN where no pair exists).
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise AnalysisError(f"need a 2-D (H, W) mask; got shape {arr.shape}.")
    h, w = arr.shape
    valid = (arr != IGNORE_INDEX).astype(np.float64)
    indicator = ((arr == phase) & (arr != IGNORE_INDEX)).astype(np.float64)

    def autocorrelation(x: np.ndarray) -> np.ndarray:
        f = np.fft.rfft2(x, s=(2 * h, 2 * w))
        return np.fft.irfft2(f * np.conj(f), s=(2 * h, 2 * w))

    pairs_in, pairs_all = autocorrelation(indicator), autocorrelation(valid)
    lag_r = np.fft.fftfreq(2 * h, 1.0 / (2 * h))[:, None]
    lag_c = np.fft.fftfreq(2 * w, 1.0 / (2 * w))[None, :]
    radius = np.rint(np.hypot(lag_r, lag_c)).astype(int)
    r_max = int(max_distance_px if max_distance_px is not None else min(h, w) // 2)
    keep = radius <= r_max
    num = np.bincount(radius[keep], weights=pairs_in[keep], minlength=r_max + 1)
    den = np.bincount(radius[keep], weights=pairs_all[keep], minlength=r_max + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = np.where(den > 0.5, num / np.maximum(den, 1e-12), np.nan)
    r = np.arange(r_max + 1, dtype=np.float64)
    return (r * pixel_size_um if pixel_size_um else r), np.clip(s2, 0.0, 1.0)
