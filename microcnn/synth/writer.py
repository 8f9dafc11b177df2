"""Write synthetic samples as a dataset folder (the documented layouts) or as an HDF5 archive.

Folder layout (``<root>`` must be new or empty):
- ``dataset.json``: {"task", "class_names", "target_names", "target_units", "pixel_size_um"}
- ``samples.csv``: ``file,sample_id,pixel_size_um,kind,label,<properties...>`` (``file`` relative to root;
  a property a sample does not have is an empty cell; a non-percolating tortuosity is written ``inf``)
- classification: ``<class_name>/synth_000000.png`` (a folder for each of the six classes)
- segmentation: ``images/synth_000000.png`` + ``masks/synth_000000.png`` (uint8 class-index PNG, 255 =
  not labelled)
- regression: ``images/synth_000000.png`` + ``targets.csv`` (``file,<target1>,...``)
- ``synth.json``: how it was made (seed, size, kinds, properties, skipped samples).

Images are 8-bit greyscale PNG (round(255 * intensity)); PNGs carry no timestamp, so the same seed gives
byte-identical files. For regression with a "tortuosity" target, samples whose pores do not percolate
(tortuosity = inf) are skipped and counted in ``synth.json`` ("skipped"); their ids are left as gaps.

Example:
    >>> from microcnn.synth import make_dataset
    >>> from microcnn.synth.writer import write_folder
    >>> summary = write_folder(make_dataset("segmentation", n=2, size=32, seed=0), "out", task="segmentation")
    ...                                                                     # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError
from microcnn.registry import check_choice
from microcnn.synth.dataset import TASKS, SynthSample
from microcnn.synth.generators import CLASS_NAMES
from microcnn.synth.properties import PROPERTY_NAMES, UNITS

SEGMENTATION_CLASSES = ("matrix", "second_phase")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W) uint8, round(255 * x)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a (H, W) uint8 array as a greyscale PNG without timestamps (deterministic bytes)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode="L").save(path, format="PNG", compress_level=6)


def sample_name(index: int) -> str:
    return f"synth_{index:06d}"


def _fmt(value: float) -> str:
    """CSV text of a float: shortest repr that round-trips; integers without '.0'; inf as 'inf'."""
    if math.isinf(value):
        return "inf"
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def _prepare_root(root: Path, task: str) -> None:
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"output folder {root} exists and is not empty; choose a new --out path.")
    root.mkdir(parents=True, exist_ok=True)
    if task == "classification":
        for name in CLASS_NAMES:
            (root / name).mkdir()


def skip_for_targets(sample: SynthSample, task: str, targets: Sequence[str]) -> bool:
    """Regression samples whose requested target is infinite (non-percolating tortuosity) are not written."""
    if task != "regression":
        return False
    return any(not math.isfinite(sample.properties.get(t, math.nan)) for t in targets)


def _write_sample(root: Path, sample: SynthSample, name: str, task: str) -> str:
    """Save one sample's PNG(s); return its ``file`` path relative to root (POSIX)."""
    rel = f"{sample.kind}/{name}.png" if task == "classification" else f"images/{name}.png"
    save_png(root / rel, to_uint8(sample.image))
    if task == "segmentation":
        save_png(root / "masks" / f"{name}.png", sample.mask)
    return rel


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _dump_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_folder(
    samples: Iterable[SynthSample],
    root: str | Path,
    *,
    task: str,
    targets: Sequence[str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``samples`` under ``root`` in the folder layout of ``task`` (see module docstring).

    Args:
        samples: the samples; the i-th gets the name ``synth_{i:06d}``.
        root: a new or empty folder.
        task: "classification", "segmentation" or "regression".
        targets: regression target names (property names); required for regression.
        provenance: extra facts stored in ``synth.json`` (seed, size, command...).

    Returns:
        {"written": int, "skipped": [sample ids], "root": str}.
    """
    check_choice("task", task, TASKS)
    targets = tuple(targets or ())
    if task == "regression" and not targets:
        raise ValueError(f"regression needs target names; choose from {', '.join(PROPERTY_NAMES)}.")
    root = Path(root)
    _prepare_root(root, task)
    rows: list[tuple[str, str, SynthSample]] = []
    skipped: list[str] = []
    for index, sample in enumerate(samples):
        name = sample_name(index)
        if skip_for_targets(sample, task, targets):
            skipped.append(name)
            continue
        rows.append((_write_sample(root, sample, name, task), name, sample))
    _write_tables(root, rows, task=task, targets=targets)
    pixel = rows[0][2].pixel_size_um if rows else None
    _dump_json(root / "dataset.json", _dataset_json(task, targets, pixel))
    _dump_json(root / "synth.json", {**(provenance or {}), "written": len(rows), "skipped": skipped})
    return {"written": len(rows), "skipped": skipped, "root": str(root)}


def _dataset_json(task: str, targets: Sequence[str], pixel_size_um: float | None) -> dict[str, Any]:
    class_names = {"classification": list(CLASS_NAMES), "segmentation": list(SEGMENTATION_CLASSES)}
    return {
        "task": task,
        "class_names": class_names.get(task),
        "target_names": list(targets) if task == "regression" else None,
        "target_units": [UNITS[t] for t in targets] if task == "regression" else None,
        "pixel_size_um": pixel_size_um,
    }


def _write_tables(
    root: Path, rows: list[tuple[str, str, SynthSample]], *, task: str, targets: Sequence[str]
) -> None:
    present = {k for _, _, s in rows for k in s.properties}
    props = [p for p in PROPERTY_NAMES if p in present]
    header = ["file", "sample_id", "pixel_size_um", "kind", "label", *props]
    table = [
        [f, sid, _fmt(s.pixel_size_um), s.kind, str(s.label)]
        + [_fmt(s.properties[p]) if p in s.properties else "" for p in props]
        for f, sid, s in rows
    ]
    _write_csv(root / "samples.csv", header, table)
    if task == "regression":
        target_rows = [[f] + [_fmt(s.properties[t]) for t in targets] for f, _, s in rows]
        _write_csv(root / "targets.csv", ["file", *targets], target_rows)


def write_dataset(
    samples: Iterable[SynthSample],
    out: str | Path,
    *,
    task: str,
    targets: Sequence[str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write to an HDF5 archive when ``out`` ends in .h5/.hdf5, else to a folder (:func:`write_folder`)."""
    if Path(out).suffix.lower() in (".h5", ".hdf5"):
        from microcnn.synth.h5 import write_hdf5

        return write_hdf5(samples, out, task=task, targets=targets, provenance=provenance)
    return write_folder(samples, out, task=task, targets=targets, provenance=provenance)
