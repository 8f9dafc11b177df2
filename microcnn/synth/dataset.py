"""One labelled synthetic micrograph (:func:`generate`) and a deterministic stream (:func:`make_dataset`).

Sample ``i`` of a dataset with seed ``s`` is drawn from ``np.random.SeedSequence(s, spawn_key=(i,))``, so it
is the same whatever ``n`` is, and the same on every machine.

Example:
    >>> import numpy as np
    >>> from microcnn.synth import generate
    >>> s = generate("lamellar", size=64, rng=np.random.default_rng(0))
    >>> s.image.shape, s.mask.dtype, s.label, s.units["mean_diameter_um"]
    ((64, 64), dtype('uint8'), 1, 'µm')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microcnn.registry import check_choice
from microcnn.synth.generators import CLASS_NAMES, GENERATORS
from microcnn.synth.properties import IGNORE, PROPERTY_NAMES, TRANSPORT, UNITS, measure, solver_device
from microcnn.synth.render import info_bar, render_sem

TASKS = ("classification", "segmentation", "regression")
DEFAULT_PIXEL_SIZE_UM = 0.05
INFO_BAR_ROWS = 20
BASIC_PROPERTIES = ("phase_fraction", "mean_diameter_um", "n_objects")


@dataclass(frozen=True)
class SynthSample:
    """A synthetic micrograph with its exact labels.

    Attributes:
        image: (H, W) float32 in [0, 1], SEM-like rendering.
        mask: (H, W) uint8 phase mask: 0 matrix / grain interior, 1 second phase / grain boundary,
            255 not labelled (the info bar rows, when drawn).
        kind: morphology class name, one of ``CLASS_NAMES``.
        label: index of ``kind`` in ``CLASS_NAMES``.
        pixel_size_um: µm per pixel.
        properties: name -> value measured on ``mask`` (see ``microcnn.synth.properties``).
        units: name -> unit of each property ("1" = unitless, "µm").
        params: the generator parameters used (lengths in px).
    """

    image: np.ndarray
    mask: np.ndarray
    kind: str
    label: int
    pixel_size_um: float
    properties: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)


def _shape(size: int | tuple[int, int]) -> tuple[int, int]:
    rows, cols = (size, size) if isinstance(size, int | np.integer) else tuple(size)
    if rows < 16 or cols < 16:
        raise ValueError(f"size must be at least 16 x 16 px; got {rows} x {cols}. Use e.g. size=256.")
    return int(rows), int(cols)


def default_properties(kind: str) -> tuple[str, ...]:
    """Cheap labels measured by default: fraction, mean diameter, object count; porous adds porosity and
    the percolation flag. Tortuosity / D_eff (TauFactor, ~0.1-0.5 s each) only when asked for."""
    return (*BASIC_PROPERTIES, "porosity", "percolates") if kind == "porous" else BASIC_PROPERTIES


def generate(
    kind: str,
    *,
    size: int | tuple[int, int] = 256,
    rng: np.random.Generator,
    pixel_size_um: float | None = None,
    info_bar_rows: int = 0,
    properties: Sequence[str] | None = None,
    device: str = "cpu",
    **params: Any,
) -> SynthSample:
    """Generate one labelled SEM-like micrograph of morphology ``kind``.

    Args:
        kind: one of ``CLASS_NAMES`` ("equiaxed_grains", "lamellar", ...).
        size: rows = cols, or (rows, cols), in px; the info bar (if any) is part of it.
        rng: the only source of randomness.
        pixel_size_um: µm per pixel; None -> ``DEFAULT_PIXEL_SIZE_UM`` (0.05).
        info_bar_rows: > 0 draws a data bar with a scale bar in the bottom rows (mask 255 there); the
            structure and every property then cover only the rows above it.
        properties: names from ``PROPERTY_NAMES``; None -> :func:`default_properties`.
        device: TauFactor device for transport properties: "cpu" (default, bit-identical labels), "cuda"
            or "auto" (cuda when available); see :func:`microcnn.synth.properties.solver_device`.
        **params: generator parameters (see ``microcnn.synth.generators``), e.g. ``porosity=0.5``.

    Example:
        >>> s = generate("porous", size=64, rng=np.random.default_rng(1), porosity=0.6)
        >>> round(s.properties["porosity"], 2)
        0.6
    """
    check_choice("generator", kind, CLASS_NAMES)
    rows, cols = _shape(size)
    pixel = DEFAULT_PIXEL_SIZE_UM if pixel_size_um is None else float(pixel_size_um)
    if not pixel > 0:
        raise ValueError(f"pixel_size_um must be > 0 µm; got {pixel_size_um}. Use e.g. 0.05.")
    if not 0 <= info_bar_rows <= rows - 16:
        raise ValueError(f"info_bar_rows must be in 0..{rows - 16} for {rows} rows; got {info_bar_rows}.")
    names = tuple(default_properties(kind) if properties is None else properties)
    if set(names) & {"tortuosity", "deff_ratio", "porosity"} and kind != "porous":
        raise ValueError(
            f"transport properties {TRANSPORT} are defined for kind 'porous' only; got '{kind}'."
        )
    structure = GENERATORS.build(kind, shape=(rows - info_bar_rows, cols), rng=rng, **params)
    image = render_sem(structure.mask, rng=rng, grains=structure.grains, contrast=structure.contrast)
    mask = structure.mask
    if info_bar_rows:
        image = np.vstack([image, info_bar(cols, pixel, rows=info_bar_rows)])
        mask = np.vstack([mask, np.full((info_bar_rows, cols), IGNORE, np.uint8)])
    props = measure(mask, kind=kind, pixel_size_um=pixel, names=names, device=device)
    return SynthSample(
        image=image,
        mask=mask,
        kind=kind,
        label=CLASS_NAMES.index(kind),
        pixel_size_um=pixel,
        properties=props,
        units={k: UNITS[k] for k in props},
        params=structure.params,
    )


def resolve_choices(
    task: str, kinds: Sequence[str] | None, properties: Sequence[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """Validate ``task``, ``kinds`` and ``properties``; fill the task's defaults.

    Regression defaults to kind "porous" with targets porosity, tortuosity and deff_ratio.
    """
    check_choice("task", task, TASKS)
    if kinds is None:
        kinds = ("porous",) if task == "regression" else CLASS_NAMES
    for kind in kinds:
        check_choice("generator", kind, CLASS_NAMES)
    if properties is None and task == "regression":
        properties = (
            ("porosity", "tortuosity", "deff_ratio") if set(kinds) == {"porous"} else BASIC_PROPERTIES
        )
    for name in properties or ():
        check_choice("property", name, PROPERTY_NAMES)
    if not kinds:
        raise ValueError(f"kinds must name at least one class; choose from {', '.join(CLASS_NAMES)}.")
    return tuple(kinds), None if properties is None else tuple(properties)


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in a dataset seeded ``seed`` (independent of the dataset size)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def make_dataset(
    task: str,
    *,
    n: int,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    kinds: Sequence[str] | None = None,
    properties: Sequence[str] | None = None,
    pixel_size_um: float | None = None,
    info_bar_rows: int = 0,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[SynthSample]:
    """Yield ``n`` samples; sample ``i`` has kind ``kinds[i % len(kinds)]`` (balanced classes).

    Args:
        task: "classification", "segmentation" or "regression" (decides the defaults only).
        n: number of samples.
        size, pixel_size_um, info_bar_rows, device: as in :func:`generate`.
        seed: dataset seed; sample i uses :func:`sample_rng` (seed, i).
        kinds: class names to draw; None -> all six (regression: "porous").
        properties: property names; None -> per-kind defaults (regression: porosity, tortuosity, deff_ratio).
        progress: called with (done, total) after each sample.

    Example:
        >>> [s.kind for s in make_dataset("classification", n=2, size=32, seed=0)]
        ['equiaxed_grains', 'lamellar']
    """
    kinds, properties = resolve_choices(task, kinds, properties)
    solver_device(device)  # refuse an unknown or unavailable device before the first sample
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}.")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        yield generate(
            kind,
            size=size,
            rng=sample_rng(seed, i),
            pixel_size_um=pixel_size_um,
            info_bar_rows=info_bar_rows,
            properties=properties,
            device=device,
        )
        if progress is not None:
            progress(i + 1, n)
