"""Predict a list of image files into a folder: ``predictions.csv`` + mask and overlay PNGs (segmentation).

CSV columns: ``file``, ``status`` ("ok" | "failed"), ``error``, ``rows``, ``cols``, ``pixel_size_um``,
``unit`` and per task: ``p_<class>`` [``std_<class>``] and ``predicted`` (classification);
``<target> [<unit>]`` [``<target>_std [<unit>]``] (regression); ``fraction_<class>`` and
``mean_std_<class>`` (segmentation). For segmentation each image also gets ``<stem>_mask.png`` (uint8 class
indices, 0..K-1, 255 = not analysed) and ``<stem>_overlay.png`` (the micrograph with the classes tinted).

A file that cannot be read or predicted gets a "failed" row with the reason; the others go on.

Example:
    >>> rows = predict_files(Predictor.from_checkpoint("m.safetensors"), ["a.tif"], "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.analysis.render import overlay
from microcnn.analysis.results import ClassificationResult, RegressionResult, SegmentationResult
from microcnn.errors import MicrocnnError
from microcnn.inference.predictor import Predictor


# Distinguishable tints (RGB 0..1) for up to 8 classes, then repeated; class 0 is left untinted.
def expand_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted); a missing path is an error."""
    from microcnn.data.folders import IMAGE_SUFFIXES

    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            out.append(item)
        else:
            raise MicrocnnError(f"'{item}' is neither a file nor a folder. Check the path.")
    if not out:
        raise MicrocnnError(f"No image files found in {[str(i) for i in items]} (suffixes {IMAGE_SUFFIXES}).")
    return out


def _columns(result: Any) -> dict[str, Any]:
    if isinstance(result, ClassificationResult):
        row = {f"p_{c}": float(p) for c, p in zip(result.class_names, result.probabilities)}
        if result.std is not None:
            row |= {f"std_{c}": float(s) for c, s in zip(result.class_names, result.std)}
        return row | {"predicted": result.predicted}
    if isinstance(result, RegressionResult):
        row = {}
        for i, (name, unit) in enumerate(zip(result.target_names, result.target_units)):
            row[f"{name} [{unit}]"] = float(result.values[i])
            if result.std is not None:
                row[f"{name}_std [{unit}]"] = float(result.std[i])
        return row
    k = len(result.class_names)
    counts = np.bincount(result.mask[result.mask != 255].ravel(), minlength=k)[:k]
    row = {f"fraction_{c}": float(n) / max(1, counts.sum()) for c, n in zip(result.class_names, counts)}
    if result.std is not None:
        row |= {f"mean_std_{c}": float(s.mean()) for c, s in zip(result.class_names, result.std)}
    return row


def _write_pngs(out_dir: Path, stem: str, pixels: np.ndarray, result: SegmentationResult) -> None:
    from PIL import Image

    Image.fromarray(result.mask.astype(np.uint8)).save(out_dir / f"{stem}_mask.png")
    Image.fromarray(overlay(pixels, result.mask, opacity=0.4)).save(out_dir / f"{stem}_overlay.png")


def predict_files(
    predictor: Predictor,
    files: Sequence[str | Path],
    out_dir: str | Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    crop_bar: bool = True,
) -> list[dict[str, Any]]:
    """Predict each file, write ``out_dir/predictions.csv`` (+ PNGs for segmentation); return the rows.

    With ``crop_bar`` (default) an SEM data bar found at the bottom of a frame
    (:func:`microcnn.io.infobar.detect_info_bar`) is cut off first, as the app does: its text and flat
    background would otherwise skew the per-image intensity standardisation. The CSV records the rows cut
    (``info_bar_rows``); masks and overlays then cover the micrograph above the bar.
    """
    from microcnn.io.images import read_micrograph
    from microcnn.io.infobar import crop_info_bar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for n, path in enumerate(map(Path, files), start=1):
        row: dict[str, Any] = {"file": str(path), "status": "ok", "error": ""}
        try:
            micrograph = read_micrograph(path)
            rows_before = micrograph.height
            if crop_bar:
                micrograph = crop_info_bar(micrograph)
            row["info_bar_rows"] = rows_before - micrograph.height
            result = predictor.predict(micrograph)
            row |= {"rows": micrograph.height, "cols": micrograph.width,
                    "pixel_size_um": micrograph.pixel_size_um or "", "unit": micrograph.unit}  # fmt: skip
            row |= _columns(result)
            if isinstance(result, SegmentationResult):
                _write_pngs(out, path.stem, micrograph.pixels, result)
        except (MicrocnnError, ValueError, OSError) as exc:
            row |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        if progress is not None:
            progress(n, len(files))
    _write_csv(out / "predictions.csv", rows)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
