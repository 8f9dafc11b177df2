"""Reading microcnn HDF5 archives: validation, a summary for ``microcnn inspect``, a lazy per-worker reader.

The spec is in :mod:`microcnn.io.hdf5` and data/README.md. The reader never keeps an open handle across
``pickle`` (DataLoader workers with the spawn start method) or ``fork``: the file is opened on the first read
in each process. Nothing here loads a whole dataset into memory; every read is one image (one chunk).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError

FORMAT = "microcnn-archive"
_LABEL_KEYS = {"segmentation": "masks", "classification": "labels", "regression": "targets"}
_SCALE = {"uint8": 255.0, "uint16": 65535.0}


class ArchiveNotFoundError(DatasetError, FileNotFoundError):
    """The archive path does not exist."""


def _open(path: Path) -> Any:
    """Open ``path`` read-only, turning every low-level failure into a DatasetError that says what to do."""
    import h5py

    if not path.is_file():
        raise ArchiveNotFoundError(
            f"Archive '{path}' not found. Check the path, or create it with 'microcnn pack'."
        )
    if not h5py.is_hdf5(path):
        raise DatasetError(
            f"'{path}' is not an HDF5 file. Give a .h5 archive made by 'microcnn pack' or 'microcnn synth', "
            "or a folder of images."
        )
    try:
        return h5py.File(path, "r")
    except BlockingIOError:
        raise DatasetError(
            f"'{path}' is open for writing by another process (a job still running?). Wait until it finishes."
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"'{path}' is damaged or truncated and cannot be opened ({exc}). Re-create it (microcnn pack)."
        ) from None


def _validate(f: Any, path: Path, *, require_complete: bool) -> None:
    if f.attrs.get("format") != FORMAT or "images" not in f:
        raise DatasetError(
            f"'{path}' is an HDF5 file but not a microcnn archive (needs attribute format='{FORMAT}' and an "
            "/images dataset). Convert your images with 'microcnn pack FOLDER OUT.h5'."
        )
    if require_complete and not bool(f.attrs.get("complete", False)):
        raise DatasetError(
            f"Archive '{path}' is incomplete: its writer did not finish (crashed, or a job still running). "
            "Re-run the command that writes it."
        )
    n = f["images"].shape[0]
    for key in f:
        if f[key].shape[0] != n:
            raise DatasetError(
                f"Archive '{path}' is inconsistent: /{key} has {f[key].shape[0]} rows, /images {n}."
            )


def _json_attr(f: Any, key: str) -> list[Any]:
    value = f.attrs.get(key)
    if value is None:
        return []
    return list(json.loads(value)) if isinstance(value, str | bytes) else [str(v) for v in value]


def _summary(f: Any, path: Path) -> dict[str, Any]:
    images = f["images"]
    task = str(f.attrs.get("task", "unlabelled"))
    info: dict[str, Any] = {
        "path": str(path),
        "format_version": int(f.attrs.get("format_version", 0)),
        "complete": bool(f.attrs.get("complete", False)),
        "task": task,
        "count": int(images.shape[0]),
        "image_shape": tuple(int(s) for s in images.shape[1:]),
        "image_dtype": str(images.dtype),
        "channels": int(images.shape[3]) if images.ndim == 4 else 1,
        "class_names": _json_attr(f, "class_names"),
        "target_names": _json_attr(f, "target_names"),
        "target_units": _json_attr(f, "target_units"),
        "datasets": sorted(f.keys()),
        "extra": json.loads(f.attrs.get("extra", "{}")),
    }
    sizes = _pixel_sizes(f)
    known = sizes[np.isfinite(sizes)]
    info["pixel_size_um"] = {
        "known": int(known.size),
        "unknown": int(sizes.size - known.size),
        "min": float(known.min()) if known.size else None,
        "max": float(known.max()) if known.size else None,
    }
    if "image_shapes" in f and f["image_shapes"].shape[0]:
        shapes = f["image_shapes"][()]
        info["rows_range"] = (int(shapes[:, 0].min()), int(shapes[:, 0].max()))
        info["cols_range"] = (int(shapes[:, 1].min()), int(shapes[:, 1].max()))
    if "labels" in f:
        counts = np.bincount(f["labels"][()].clip(0), minlength=len(info["class_names"]))
        info["label_counts"] = {_class_name(info["class_names"], i): int(c) for i, c in enumerate(counts)}
    if "sample_id" in f:
        info["samples"] = len({s for s in f["sample_id"].asstr()[()] if s})
    return info


def _class_name(names: list[str], index: int) -> str:
    return names[index] if index < len(names) else str(index)


def _pixel_sizes(f: Any) -> np.ndarray:
    """(N,) float64 µm per pixel, NaN where unknown: the per-image dataset, else the scalar attribute."""
    n = f["images"].shape[0]
    if "pixel_size_um" in f:
        return np.asarray(f["pixel_size_um"][()], dtype=np.float64)
    return np.full(n, float(f.attrs.get("pixel_size_um", np.nan)), dtype=np.float64)


def read_archive_info(path: str | Path, *, require_complete: bool = True) -> dict[str, Any]:
    """Validate an archive and summarise it without reading any image.

    Returns a dict with ``count``, ``task``, ``image_shape`` (padded rows, cols[, C]), ``image_dtype``,
    ``class_names``, ``target_names``, ``target_units``, ``pixel_size_um`` (known/unknown/min/max in µm),
    ``rows_range``/``cols_range`` (true sizes), ``label_counts`` (classification), ``samples`` (distinct
    sample ids), ``complete`` and ``extra``.

    Example:
        >>> read_archive_info("train.h5")["count"]  # doctest: +SKIP
        24
    """
    path = Path(path)
    with _open(path) as f:
        _validate(f, path, require_complete=require_complete)
        return _summary(f, path)


class ArchiveReader:
    """Random access to the samples of one archive; safe to pickle into DataLoader workers.

    ``__init__`` validates the file and reads its summary, then closes it. The handle used by :meth:`read`
    is opened on first use in each process and dropped on pickling.

    Example:
        >>> with open_archive("seg.h5") as archive:  # doctest: +SKIP
        ...     s = archive.read(0)   # {"image": (H, W) float32, "mask": (H, W) int64, "id": ..., ...}
    """

    def __init__(self, path: str | Path, *, require_complete: bool = True) -> None:
        self.path = Path(path)
        self.info = read_archive_info(self.path, require_complete=require_complete)
        self.task = self.info["task"]
        self._file: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.info["count"])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, None
        return state

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def _handle(self) -> Any:
        if self._file is None or self._pid != os.getpid():  # first use in this process (or after fork)
            self._file, self._pid = _open(self.path), os.getpid()
        return self._file

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not -n <= int(index) < n:
            raise IndexError(f"Index {index} is out of range for archive '{self.path}' with {n} images.")
        return int(index) % n

    def read(self, index: int) -> dict[str, Any]:
        """Sample ``index``: {"image": (H, W[, C]) float32 in [0, 1] (true size, padding removed),
        "mask": (H, W) int64 | "label": int | "target": (T,) float32, "pixel_size_um": float (NaN when
        unknown), "id": str, "group": str (the sample id, or the image id when unknown)}."""
        index = self._check_index(index)
        f = self._handle()
        rows, cols = self._true_shape(f, index)
        raw = f["images"][index, :rows, :cols]
        scale = _SCALE.get(str(raw.dtype))
        image = (raw.astype(np.float32) / scale) if scale else raw.astype(np.float32)
        name = f["names"].asstr()[index] if "names" in f else f"{index:06d}"
        group = f["sample_id"].asstr()[index] if "sample_id" in f else ""
        sample: dict[str, Any] = {
            "image": image,
            "pixel_size_um": float(_pixel_size_at(f, index)),
            "id": name,
            "group": group or name,
        }
        if "masks" in f:
            sample["mask"] = f["masks"][index, :rows, :cols].astype(np.int64)
        if "labels" in f:
            sample["label"] = int(f["labels"][index])
        if "targets" in f:
            sample["target"] = np.asarray(f["targets"][index], dtype=np.float32)
        return sample

    def ids(self) -> list[str]:
        """Image ids in archive order (reads only the small /names dataset)."""
        f = self._handle()
        return list(f["names"].asstr()[()]) if "names" in f else [f"{i:06d}" for i in range(len(self))]

    def groups(self) -> list[str]:
        """Sample id of each image, the image id where unknown (for group-aware splits)."""
        f, ids = self._handle(), self.ids()
        if "sample_id" not in f:
            return ids
        return [g or i for g, i in zip(f["sample_id"].asstr()[()], ids, strict=True)]

    def mask_counts(self, *, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Pixels per mask value over the archive ("not labelled" for 255), one mask read at a time."""
        f = self._handle()
        totals = np.zeros(256, dtype=np.int64)
        for i in range(len(self)):
            rows, cols = self._true_shape(f, i)
            totals += np.bincount(f["masks"][i, :rows, :cols].ravel(), minlength=256)
            if progress:
                progress(i + 1, len(self))
        names = self.info["class_names"]
        out = {_class_name(names, v): int(totals[v]) for v in np.flatnonzero(totals[:255])}
        if totals[255]:
            out["not labelled"] = int(totals[255])
        return out

    @staticmethod
    def _true_shape(f: Any, index: int) -> tuple[int, int]:
        if "image_shapes" in f:
            rows, cols = f["image_shapes"][index]
            return int(rows), int(cols)
        return int(f["images"].shape[1]), int(f["images"].shape[2])


def _pixel_size_at(f: Any, index: int) -> float:
    if "pixel_size_um" in f:
        return float(f["pixel_size_um"][index])
    return float(f.attrs.get("pixel_size_um", np.nan))


def open_archive(path: str | Path, *, require_complete: bool = True) -> ArchiveReader:
    """Validate and open an archive for reading (use as a context manager). See :class:`ArchiveReader`."""
    return ArchiveReader(path, require_complete=require_complete)
