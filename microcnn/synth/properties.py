"""Physics labels measured on a phase mask: area fractions, sizes (µm) and transport through the pores.

Every label is an exact consequence of the mask: the phase fraction is the mask's mean, sizes are what
``skimage.measure.regionprops`` measures, and transport comes from TauFactor's steady-state diffusion solve.

Conventions (stated once, used everywhere):
- Pixels with value 255 in a mask are "not labelled" (e.g. under an info bar) and are left out.
- Objects are 4-connected components (``skimage.measure.label(..., connectivity=1)``): particles /
  islands / laths / pores are the components of ``mask == 1``; for ``equiaxed_grains`` the grains are the
  components of ``mask == 0`` (the interiors between boundaries). Objects cut by the image edge count.
- Transport is solved along axis 0 (top row to bottom row) through ``mask == 1``. A structure whose pores
  do not connect the top row to the bottom row has ``percolates = 0``, ``deff_ratio = 0.0`` and
  ``tortuosity = inf`` (never NaN); CSV/regression writers refuse such samples as tortuosity targets.

Example:
    >>> import numpy as np
    >>> from microcnn.synth.properties import measure
    >>> mask = np.zeros((8, 8), np.uint8); mask[:, :2] = 1
    >>> measure(mask, kind="porous", pixel_size_um=0.1, names=["phase_fraction", "deff_ratio"])
    {'phase_fraction': 0.25, 'deff_ratio': 0.25, 'percolates': 1.0}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microcnn.registry import check_choice

UNITS: dict[str, str] = {
    "phase_fraction": "1",
    "mean_diameter_um": "µm",
    "n_objects": "1",
    "porosity": "1",
    "tortuosity": "1",
    "deff_ratio": "1",
    "percolates": "1",
}
PROPERTY_NAMES: tuple[str, ...] = tuple(UNITS)
TRANSPORT = ("porosity", "tortuosity", "deff_ratio", "percolates")
IGNORE = 255


def phase_fraction(mask: np.ndarray) -> float:
    """Area fraction of phase 1 among labelled pixels (255 excluded); unitless."""
    labelled = mask[mask != IGNORE]
    return float(np.mean(labelled == 1)) if labelled.size else 0.0


def objects_of(mask: np.ndarray, kind: str) -> np.ndarray:
    """(H, W) bool: the phase whose connected components are the measured objects for ``kind``."""
    return (mask == 0) if kind == "equiaxed_grains" else (mask == 1)


def equivalent_diameters_px(mask: np.ndarray, kind: str) -> np.ndarray:
    """Equivalent circle diameters sqrt(4 A / pi) in px of the 4-connected objects, one per object."""
    from skimage.measure import label, regionprops_table

    labels = label(objects_of(mask, kind), connectivity=1)
    table = regionprops_table(labels, properties=("equivalent_diameter_area",))
    return np.asarray(table["equivalent_diameter_area"], dtype=np.float64)


def percolates(pores: np.ndarray) -> bool:
    """True when a 4-connected path of ``pores`` links row 0 to the last row (the solve direction)."""
    from skimage.measure import label

    labels = label(pores, connectivity=1)
    top = set(np.unique(labels[0])) - {0}
    return bool(top & set(np.unique(labels[-1])))


def solver_device() -> str:
    """Device for TauFactor: "cuda" when available, else "cpu" (always passed explicitly)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def transport(pores: np.ndarray, *, device: str | None = None) -> dict[str, float]:
    """Tortuosity factor and D_eff/D_0 through ``pores`` along axis 0, with TauFactor.

    Args:
        pores: (H, W) bool or {0, 1} array, 1 = conducting (pore) phase.
        device: "cpu" or "cuda"; None picks :func:`solver_device`.

    Returns:
        {"porosity", "percolates" (0/1), "tortuosity" (>= 1, inf if not percolating),
        "deff_ratio" (D_eff / D_0 = porosity / tortuosity; 0.0 if not percolating)}.
    """
    import contextlib
    import io

    import taufactor
    import torch

    pores = np.asarray(pores).astype(np.uint8)
    porosity = float(pores.mean())
    if not percolates(pores):
        return {"porosity": porosity, "percolates": 0.0, "tortuosity": float("inf"), "deff_ratio": 0.0}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # TOOLING.md: 2 threads under load can slow a solve 100x
    try:
        solver = taufactor.Solver(pores, device=device or solver_device())
        with contextlib.redirect_stdout(io.StringIO()):  # TauFactor prints convergence warnings
            tau = float(np.asarray(solver.solve(verbose=False)).ravel()[0])
        deff = float(np.asarray(solver.D_rel).ravel()[0])
    finally:
        torch.set_num_threads(threads)
    return {"porosity": porosity, "percolates": 1.0, "tortuosity": tau, "deff_ratio": deff}


def measure(
    mask: np.ndarray, *, kind: str, pixel_size_um: float, names: Sequence[str], device: str | None = None
) -> dict[str, float]:
    """The requested properties of ``mask`` (see module docstring for conventions).

    Args:
        mask: (H, W) uint8, 0/1 with optional 255 rows (not labelled; cropped away before measuring).
        kind: morphology class name (decides which phase holds the measured objects).
        pixel_size_um: µm per pixel, converts diameters from px to µm.
        names: properties from :data:`PROPERTY_NAMES`. Asking for any transport property adds
            "percolates" so a non-percolating sample is always flagged.

    Returns:
        name -> float, in :data:`UNITS`.
    """
    for name in names:
        check_choice("property", name, PROPERTY_NAMES)
    region = mask[np.any(mask != IGNORE, axis=1)]
    out: dict[str, float] = {}
    if "phase_fraction" in names:
        out["phase_fraction"] = phase_fraction(region)
    if "mean_diameter_um" in names or "n_objects" in names:
        diameters = equivalent_diameters_px(region, kind)
        if "mean_diameter_um" in names:
            out["mean_diameter_um"] = float(diameters.mean() * pixel_size_um) if diameters.size else 0.0
        if "n_objects" in names:
            out["n_objects"] = float(diameters.size)
    wanted = [n for n in TRANSPORT if n in names]
    if wanted:
        physics = (
            transport(region == 1, device=device)
            if {"tortuosity", "deff_ratio"} & set(wanted)
            else {"porosity": phase_fraction(region), "percolates": float(percolates(region == 1))}
        )
        out.update({n: physics[n] for n in [*wanted, "percolates"] if n in physics})
    return out
