"""Batch page helpers: a zip of images -> an HDF5 archive, results.h5 -> a table, plots and CSV.

Prediction itself is ``microcnn.inference.batch.predict_archive`` (streaming, resumable, atomic, failed
items recorded); this module only prepares its input from loose images and reads its output back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

import microcnn
from microcnn.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (any depth), in name order; hidden files skipped."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def images_to_archive(
    root: Path,
    out: Path,
    *,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, list[str]]:
    """Write every readable image under ``root`` to an "unlabelled" archive ``out`` (uint16, padded).

    Images that cannot be read are left out and named in the returned notes. Returns (archive, notes).
    """
    from microcnn.io.hdf5 import ArchiveWriter

    files = image_files(root)
    if not files:
        raise DatasetError(f"The zip holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    good: list[tuple[Path, microcnn.Micrograph]] = []
    notes = []
    for path in files:  # a first pass for the padded shape; uploads are capped, so they fit in memory
        try:
            good.append((path, microcnn.read_micrograph(path, max_pixels=max_pixels)))
        except microcnn.MicrographError as exc:
            notes.append(f"{path.relative_to(root).as_posix()} left out: {exc}")
    if not good:
        raise DatasetError("None of the images in the zip could be read:\n" + "\n".join(notes))
    shapes = {m.pixels.shape[2:] for _, m in good}
    if len(shapes) > 1:
        raise DatasetError("The zip mixes gray and colour images; give one kind per batch.")
    rows = max(m.height for _, m in good)
    cols = max(m.width for _, m in good)
    with ArchiveWriter(
        out, task="unlabelled", image_shape=(rows, cols, *shapes.pop()), image_dtype="uint16"
    ) as w:
        for i, (path, m) in enumerate(good):
            w.append(m.pixels, pixel_size_um=m.pixel_size_um, name=path.relative_to(root).as_posix())
            if progress is not None:
                progress(i + 1, len(good))
    return out, notes


def _attr_list(f: Any, key: str) -> list[str]:
    value = f.attrs.get(key)
    if value is None:
        return []
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return [str(v) for v in value]
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def results_table(path: Path) -> tuple[str, pd.DataFrame]:
    """(task, one row per item) from a results.h5 of predict_archive; failed rows keep their error."""
    import h5py

    with h5py.File(path, "r") as f:
        task = str(f.attrs.get("task", ""))
        frame = pd.DataFrame({"id": f["ids"].asstr()[()], "pixel_size_um": f["pixel_size_um"][()]})
        frame["status"] = np.where(f["failed"][()] == 1, "failed", "ok")
        frame["error"] = f["error"].asstr()[()]
        if task == "classification":
            names = _attr_list(f, "class_names")
            probs = f["probabilities"][()]
            for i, name in enumerate(names):
                frame[f"p_{name}"] = probs[:, i]
            best = np.nan_to_num(probs, nan=-1.0).argmax(axis=1)
            frame["predicted"] = np.where(frame["status"] == "ok", np.array(names, dtype=object)[best], "")
        elif task == "regression":
            names, units = _attr_list(f, "target_names"), _attr_list(f, "target_units")
            values, std = f["values"][()], f["values_std"][()]
            for i, name in enumerate(names):
                unit = units[i] if i < len(units) else "1"
                frame[f"{name} [{unit}]"] = values[:, i]
                frame[f"{name}_std [{unit}]"] = std[:, i]
        else:
            names = _attr_list(f, "class_names")
            fractions = f["phase_fractions"][()]
            for i, name in enumerate(names):
                frame[f"fraction_{name}"] = fractions[:, i]
    return task, frame


def distribution_figures(task: str, frame: pd.DataFrame) -> list[go.Figure]:
    """Histograms of the predicted numbers over the finished items (class counts for classification)."""
    ok = frame[frame["status"] == "ok"]
    if ok.empty:
        return []
    if task == "classification":
        counts = ok["predicted"].value_counts().rename_axis("class").reset_index(name="images")
        return [px.bar(counts, x="class", y="images", title="Predicted class per image")]
    if task == "regression":
        columns = [c for c in ok.columns if "[" in c and "_std [" not in c]
    else:
        columns = [c for c in ok.columns if c.startswith("fraction_")]
    figures = []
    for column in columns:
        fig = px.histogram(ok, x=column, nbins=30, title=f"{column} over {len(ok)} images")
        fig.update_layout(height=280, yaxis_title="images")
        figures.append(fig)
    return figures
