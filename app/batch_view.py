"""Batch page helpers: a zip or folder of images -> an HDF5 archive, results.h5 -> a table, plots and CSV.

Prediction itself is ``microcnn.inference.batch.predict_archive`` (streaming, resumable, atomic, failed
items recorded); this module only prepares its input from loose images and reads its output back.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

import microcnn
from microcnn.errors import (
    CorruptFileError,
    DatasetError,
    ImageTooLargeError,
    MicrographError,
    UnsupportedFormatError,
)
from microcnn.io.images import check_pixel_budget

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (any depth), in name order; hidden files skipped."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]


PILLOW_PLUGINS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP"}  # magic-byte format -> the one Pillow plugin
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF / TIFF tag 274 values that swap rows and columns on display


def header_shape(path: Path) -> tuple[int, int]:
    """(rows, cols) of an image in display orientation, from its header only (no pixel is decoded).

    The format is chosen by magic bytes (``microcnn.io.images.sniff_format``); PNG, JPEG and BMP headers are
    read by their Pillow plugin, TIFF by tifffile (first page). Raises MicrographError for a file that is no
    image we read (the message names the reason).
    """
    from microcnn.io.images import sniff_format

    with open(path, "rb") as fh:
        fmt = sniff_format(fh.read(16))
    try:
        if fmt == "tiff":
            rows, cols, orientation = _tiff_header(path)
        elif fmt in PILLOW_PLUGINS:
            rows, cols, orientation = _pillow_header(path, PILLOW_PLUGINS[fmt])
        else:
            raise UnsupportedFormatError(f"{fmt.upper()} files are not read in a batch; convert to TIFF.")
    except MicrographError:
        raise
    except Exception as exc:  # any header parser error: the file is damaged or not that format
        raise CorruptFileError(
            f"its {fmt.upper()} header cannot be read ({exc}); re-export the image"
        ) from None
    return (cols, rows) if orientation in SWAPPING_ORIENTATIONS else (rows, cols)


def _tiff_header(path: Path) -> tuple[int, int, int]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        return int(page.imagelength), int(page.imagewidth), int(page.tags.valueof(274, 1) or 1)


def _pillow_header(path: Path, plugin: str) -> tuple[int, int, int]:
    import warnings

    from PIL import Image

    with warnings.catch_warnings():  # Pillow's bomb warning: our own budget below decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=[plugin]) as im:
                return int(im.height), int(im.width), int(im.getexif().get(0x0112, 1) or 1)
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"its header declares a huge image ({exc})") from None


def plan_archive(
    files: list[Path], root: Path, *, max_pixels: int, max_total_pixels: int
) -> tuple[list[tuple[Path, tuple[int, int]]], tuple[int, int], list[str]]:
    """Headers only: (images to pack with their (rows, cols), padded (rows, cols), notes on left-out files).

    An image over ``max_pixels`` is left out (named in the notes). When the padded archive, n x rows x cols
    with every image padded to the largest, is over ``max_total_pixels``, DatasetError: nothing is decoded.
    """
    planned, notes = [], []
    for path in files:
        name = path.relative_to(root).as_posix()
        try:
            rows, cols = header_shape(path)
            check_pixel_budget(rows, cols, max_pixels=max_pixels)
        except MicrographError as exc:
            notes.append(f"{name} left out: {exc}")
            continue
        planned.append((path, (rows, cols)))
    if not planned:
        raise DatasetError("None of the images could be read:\n" + "\n".join(notes))
    padded = (max(s[0] for _, s in planned), max(s[1] for _, s in planned))
    total = len(planned) * padded[0] * padded[1]
    if total > max_total_pixels:
        raise DatasetError(
            f"The {len(planned)} images make an archive of {len(planned)} x {padded[0]} x {padded[1]} px = "
            f"{total:,} px (each padded to the largest), over the batch budget of {max_total_pixels:,} px. "
            "Split them into smaller batches (or group images of one size), or use the CLI "
            "(`microcnn pack` + `microcnn predict-h5`) for large jobs."
        )
    return planned, padded, notes


def images_to_archive(
    root: Path,
    out: Path,
    *,
    max_pixels: int,
    max_total_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, list[str]]:
    """Write every readable image under ``root`` to an "unlabelled" archive ``out`` (uint16, padded).

    Sizes come from the headers first (:func:`plan_archive`: per-image and total pixel budgets, nothing
    decoded when the batch is too large); then the images are decoded and written one at a time, so only
    one is in memory. Images that cannot be read are left out and named in the returned notes.
    Returns (archive, notes).
    """
    from microcnn.io.hdf5 import ArchiveWriter

    files = image_files(root)
    if not files:
        raise DatasetError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in the zip or folder.")
    planned, padded, notes = plan_archive(
        files, root, max_pixels=max_pixels, max_total_pixels=max_total_pixels
    )
    decoded = _decoded(planned, root, notes)  # a generator: one image in memory at a time
    first = next(decoded, None)
    if first is None:
        raise DatasetError("None of the images could be read:\n" + "\n".join(notes))
    channels = first[2].pixels.shape[2:]  # the first good image fixes gray or colour
    shape = (*padded, *channels)
    with ArchiveWriter(out, task="unlabelled", image_shape=shape, image_dtype="uint16") as writer:
        for i, name, m in itertools.chain([first], decoded):
            if m.pixels.shape[2:] != channels:
                raise DatasetError("The images mix gray and colour; give one kind per batch.")
            writer.append(m.pixels, pixel_size_um=m.pixel_size_um, name=name)
            if progress is not None:
                progress(i + 1, len(planned))
    return out, notes


def _decoded(
    planned: list[tuple[Path, tuple[int, int]]], root: Path, notes: list[str]
) -> Iterator[tuple[int, str, microcnn.Micrograph]]:
    """(index, name, Micrograph) of each planned image that decodes, one at a time; failures go to notes.

    The pixel budget of each image is the rows x cols its header declared (checked again before decoding).
    """
    for i, (path, (rows, cols)) in enumerate(planned):
        name = path.relative_to(root).as_posix()
        try:
            micrograph = microcnn.read_micrograph(path, max_pixels=max(1, rows * cols))
        except MicrographError as exc:
            notes.append(f"{name} left out: {exc}")
            continue
        yield i, name, micrograph


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
