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
  A solve that does not converge raises :class:`TransportNotConverged`: no unconverged value is stored.
- TauFactor runs on the CPU unless ``device`` says "cuda" or "auto" (CPU labels are bit-identical on
  every machine; GPU ones agree to ~1e-3).

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

from microcnn.errors import MicrocnnError
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
DEVICES = ("cpu", "cuda", "auto")
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


class TransportNotConverged(MicrocnnError, RuntimeError):
    """TauFactor stopped at its iteration limit before converging: the tortuosity is not stored."""


def solver_device(device: str = "cpu") -> str:
    """The TauFactor device for ``device``.

    "cpu" (the default: bit-identical labels on every machine, as the committed samples need), "cuda"
    (refused when CUDA is not available: never a quiet fallback) or "auto" (cuda when available, else
    cpu; a GPU solve agrees with the CPU one to about 1e-3 in tau, not bit for bit).
    """
    if check_choice("TauFactor device", device, DEVICES) == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if device == "cuda" and not available:
        raise ValueError(
            "TauFactor device 'cuda' was asked for but CUDA is not available; use 'cpu' or 'auto'."
        )
    return device


def transport(
    pores: np.ndarray, *, device: str = "cpu", iter_limit: int = 10_000, conv_crit: float = 1e-2
) -> dict[str, float]:
    """Tortuosity factor and D_eff/D_0 through ``pores`` along axis 0, with TauFactor.

    Args:
        pores: (H, W) bool or {0, 1} array, 1 = conducting (pore) phase.
        device: "cpu", "cuda" or "auto" (see :func:`solver_device`).
        iter_limit: TauFactor's iteration limit (porous 64² samples converge in ~500, 256² in ~2,000).
        conv_crit: TauFactor's convergence criterion (relative flux spread between layers).

    Returns:
        {"porosity", "percolates" (0/1), "tortuosity" (>= 1, inf if not percolating),
        "deff_ratio" (D_eff / D_0 = porosity / tortuosity; 0.0 if not percolating)}.

    Raises:
        TransportNotConverged: the solver reached ``iter_limit`` without converging (its value is not
            returned: an unconverged tortuosity is never stored as a label).
    """
    pores = np.asarray(pores).astype(np.uint8)
    porosity = float(pores.mean())
    if not percolates(pores):
        return {"porosity": porosity, "percolates": 0.0, "tortuosity": float("inf"), "deff_ratio": 0.0}
    solver, tau = _solve(pores, solver_device(device), iter_limit=iter_limit, conv_crit=conv_crit)
    if not solver.converged:
        raise TransportNotConverged(
            f"TauFactor did not converge within iter_limit={iter_limit} iterations (conv_crit={conv_crit}) "
            f"on a {pores.shape[0]}×{pores.shape[1]} structure of porosity {porosity:.3f} (last tau "
            f"{'none yet' if tau is None else f'{tau:.4g}'}). Raise iter_limit; the unconverged value is "
            "not stored."
        )
    deff = float(np.asarray(solver.D_rel).ravel()[0])
    return {"porosity": porosity, "percolates": 1.0, "tortuosity": tau, "deff_ratio": deff}


def _solve(pores: np.ndarray, device: str, *, iter_limit: int, conv_crit: float):
    """Run TauFactor on one thread (TOOLING.md: 2 threads under load can slow a solve 100×); its progress
    prints (including "Warning: not converged", which the caller turns into an error) are captured."""
    import contextlib
    import io

    import taufactor
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        solver = taufactor.Solver(pores, device=device)
        with contextlib.redirect_stdout(io.StringIO()):
            result = solver.solve(verbose=False, iter_limit=iter_limit, conv_crit=conv_crit)
    finally:
        torch.set_num_threads(threads)
    return solver, None if result is None else float(np.asarray(result).ravel()[0])


def measure(
    mask: np.ndarray, *, kind: str, pixel_size_um: float, names: Sequence[str], device: str = "cpu"
) -> dict[str, float]:
    """The requested properties of ``mask`` (see module docstring for conventions).

    Args:
        mask: (H, W) uint8, 0/1 with optional 255 rows (not labelled; cropped away before measuring).
        kind: morphology class name (decides which phase holds the measured objects).
        pixel_size_um: µm per pixel, converts diameters from px to µm.
        names: properties from :data:`PROPERTY_NAMES`. Asking for any transport property adds
            "percolates" so a non-percolating sample is always flagged.
        device: TauFactor device, "cpu" (default), "cuda" or "auto" (see :func:`solver_device`).

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
