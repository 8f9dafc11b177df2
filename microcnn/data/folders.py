"""Finding the samples of a dataset folder: layouts, dataset.json, samples.csv, labels/targets CSVs, masks.

The layouts are specified in data/README.md. This module only lists files and reads small tables; pixels
are read by :mod:`microcnn.data.datasets` when a sample is asked for.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError
from microcnn.registry import suggest

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".dm3", ".dm4")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
JSON_KEYS = ("task", "class_names", "target_names", "target_units", "pixel_size_um", "palette")


@dataclass(frozen=True)
class Record:
    """One sample on disk. ``pixel_size_um`` is the samples.csv value (None = look in the file)."""

    id: str
    image: Path
    mask: Path | None = None
    label: int | None = None
    target: tuple[float, ...] | None = None
    pixel_size_um: float | None = None
    group: str = ""


def read_dataset_json(root: Path) -> dict[str, Any]:
    """``<root>/dataset.json`` as a dict ({} when absent); unknown keys are refused with a hint."""
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Cannot read '{path}': {exc}. It must be a JSON object.") from None
    if not isinstance(data, dict):
        raise DatasetError(f"'{path}' must hold a JSON object with keys {', '.join(JSON_KEYS)}.")
    for key in data:
        if key not in JSON_KEYS:
            raise DatasetError(
                f"Unknown key '{key}' in {path}.{suggest(key, JSON_KEYS)} Keys: {', '.join(JSON_KEYS)}."
            )
    return data


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by suffix), sorted by name; hidden files skipped."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted((p for p in files if not p.name.startswith(".")), key=lambda p: p.name)


def infer_task(root: Path) -> str:
    """Guess the task from the layout: masks/ -> segmentation, labels.csv or class subfolders ->
    classification, targets.csv -> regression."""
    if (root / "masks").is_dir():
        return "segmentation"
    if (root / "labels.csv").is_file():
        return "classification"
    if (root / "targets.csv").is_file():
        return "regression"
    if class_folders(root):
        return "classification"
    raise DatasetError(
        f"Cannot tell the task of '{root}': expected images/ + masks/ (segmentation), images/ + labels.csv "
        "or one subfolder per class (classification), or images/ + targets.csv (regression). "
        "Pass task=... or add dataset.json with a 'task'. See data/README.md."
    )


def class_folders(root: Path) -> list[Path]:
    skip = {"images", "masks"}
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name not in skip and list_images(p))


def read_table(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV with a header, as dicts; the header must have a 'file' column."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except OSError as exc:
        raise DatasetError(f"Cannot read '{path}': {exc}.") from None
    if "file" not in header:
        raise DatasetError(f"'{path}' needs a 'file' column (relative path or stem); found {header}.")
    return rows


def table_by_key(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Index rows by their 'file' value, its stem and its path without suffix (all three may be used)."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        name = row["file"].strip().replace("\\", "/")
        for key in (name, Path(name).stem, str(Path(name).with_suffix(""))):
            out.setdefault(key, row)
    return out


def lookup(table: dict[str, dict[str, str]], record_id: str, image: Path) -> dict[str, str] | None:
    for key in (record_id, image.name, image.stem):
        if key in table:
            return table[key]
    return None


def parse_pixel_size(text: str | None, where: str) -> float | None:
    """A pixel size cell in µm: '' -> None, a positive number -> float, anything else -> DatasetError."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise DatasetError(f"{where}: pixel size must be a positive number of µm or empty; got {text!r}.")
    return value


def segmentation_records(root: Path) -> list[Record]:
    """images/<stem>.* paired with masks/<stem>.(png|tif|tiff) by stem; every image needs its mask."""
    images = list_images(root / "images")
    if not images:
        raise DatasetError(f"No images found in '{root / 'images'}' (suffixes {', '.join(IMAGE_SUFFIXES)}).")
    masks = {p.stem: p for p in list_images(root / "masks") if p.suffix.lower() in MASK_SUFFIXES}
    missing = [p.name for p in images if p.stem not in masks]
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) in '{root / 'images'}' have no mask in '{root / 'masks'}' with the "
            f"same stem, e.g. {missing[:3]}. Add <stem>.png index masks (255 = not labelled)."
        )
    return [Record(id=p.stem, image=p, mask=masks[p.stem]) for p in images]


def classification_records(root: Path, class_names: list[str] | None) -> tuple[list[Record], list[str]]:
    """Class subfolders, or images/ + labels.csv (columns file,label with label a class name)."""
    if (root / "labels.csv").is_file():
        rows = table_by_key(read_table(root / "labels.csv"))
        images = list_images(root / "images")
        pairs = []
        for p in images:
            row = lookup(rows, p.stem, p)
            if row is None or not row.get("label", "").strip():
                raise DatasetError(
                    f"Image '{p.name}' has no label in {root / 'labels.csv'} (columns file,label)."
                )
            pairs.append((p.stem, p, row["label"].strip()))
    else:
        pairs = [(f"{d.name}/{p.stem}", p, d.name) for d in class_folders(root) for p in list_images(d)]
    if not pairs:
        raise DatasetError(f"No labelled images in '{root}': give class subfolders or images/ + labels.csv.")
    names = list(class_names) if class_names else sorted({label for _, _, label in pairs})
    unknown = sorted({label for _, _, label in pairs} - set(names))
    if unknown:
        raise DatasetError(f"Labels {unknown} are not among class_names {names}; add them or fix the labels.")
    return [Record(id=i, image=p, label=names.index(label)) for i, p, label in pairs], names


def regression_records(root: Path) -> tuple[list[Record], list[str]]:
    """images/ + targets.csv (columns file,<target1>,...); every image needs finite targets."""
    path = root / "targets.csv"
    if not path.is_file():
        raise DatasetError(f"A regression folder needs '{path}' with columns file,<target1>,...")
    rows = read_table(path)
    names = [c for c in rows[0] if c != "file"] if rows else []
    if not names:
        raise DatasetError(f"'{path}' has no target columns besides 'file'.")
    table = table_by_key(rows)
    records = []
    for p in list_images(root / "images"):
        row = lookup(table, p.stem, p)
        try:
            values = tuple(float(row[n]) for n in names) if row else None
        except ValueError:
            values = None
        if values is None or not all(map(math.isfinite, values)):
            raise DatasetError(f"Image '{p.name}' needs finite values for {names} in {path}; got {row}.")
        records.append(Record(id=p.stem, image=p, target=values))
    return records, names


def read_mask(path: Path, *, palette: dict[str, int] | None = None) -> np.ndarray:
    """(H, W) int64 class indices from an index PNG/TIFF, or from an RGB mask through ``palette``
    ({"#RRGGBB": class index}). An RGB mask with equal channels is read as an index mask."""
    from PIL import Image

    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                array = np.asarray(im)  # mode "P" gives the indices themselves, which is what a mask holds
    except Exception as exc:  # any decoder failure is reported the same way
        raise DatasetError(f"Cannot read mask '{path}': {exc}.") from None
    if array.ndim == 3:
        array = _rgb_to_index(array[..., :3], palette, path)
    if array.dtype.kind not in "uib" or array.min(initial=0) < 0 or array.max(initial=0) > 255:
        raise DatasetError(
            f"Mask '{path}' must hold class indices 0..254 (255 = not labelled); got {array.dtype}."
        )
    return array.astype(np.int64)


def _rgb_to_index(rgb: np.ndarray, palette: dict[str, int] | None, path: Path) -> np.ndarray:
    if palette is None:
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return rgb[..., 0]
        raise DatasetError(
            f'Mask \'{path}\' is a colour image; add "palette": {{"#RRGGBB": class_index}} to dataset.json '
            "or save index masks (one class index per pixel)."
        )
    codes = rgb.astype(np.int64) @ np.array([65536, 256, 1])
    out = np.full(codes.shape, -1, dtype=np.int64)
    for colour, index in palette.items():
        out[codes == int(colour.lstrip("#"), 16)] = int(index)
    if (out < 0).any():
        left = np.unique(codes[out < 0])[:5]
        raise DatasetError(f"Mask '{path}' has colours not in the palette: {[f'#{c:06X}' for c in left]}.")
    return out
