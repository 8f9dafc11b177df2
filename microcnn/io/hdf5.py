"""HDF5 archives of micrographs: the microcnn archive spec, an atomic writer and a lazy reader.

Archive spec (format "microcnn-archive", version 1; also in data/README.md)
--------------------------------------------------------------------------
Datasets (N = number of images; every per-image dataset is chunked one image per chunk, resizable along N,
written with ``fletcher32=True`` so damaged chunks raise on read instead of reading back wrong):

- ``/images``        (N, H, W) or (N, H, W, C), uint8 | uint16 | float32. Integer images are intensities
                     scaled by the dtype maximum (255, 65535) -> [0, 1] on read; float32 is stored as given.
- ``/image_shapes``  (N, 2) int64: true (rows, cols) of each image. Images smaller than (H, W) are padded at
                     the bottom/right with 0 (masks with 255 = "not labelled"); readers crop back.
- ``/masks``         (N, H, W) uint8, optional: class index per pixel, 255 = not labelled.
- ``/labels``        (N,) int64, optional: class index into the ``class_names`` attribute.
- ``/targets``       (N, T) float32, optional: regression targets, columns named by ``target_names``.
- ``/pixel_size_um`` (N,) float64: edge length of one pixel in µm, NaN where unknown.
- ``/names``         (N,) UTF-8 str: image id (file stem), unique.
- ``/sample_id``     (N,) UTF-8 str: physical sample an image comes from ("" = unknown, treated as own id).

Root attributes: ``format``, ``format_version``, ``task`` (classification | segmentation | regression |
unlabelled), ``class_names``, ``target_names``, ``target_units`` (JSON lists), ``pixel_size_um`` (scalar,
only when every image has the same known pixel size; readers that find no ``/pixel_size_um`` dataset use it),
``extra`` (JSON object, e.g. provenance) and ``complete`` (True, written last).

Images of different sizes: one archive has one padded (H, W). Pass ``image_shape`` = the largest (rows,
cols[, C]) and smaller images are padded; ``microcnn pack`` does this for you. Without ``image_shape`` the
first image fixes it and a larger one is refused with a message saying what to do.

Writing is atomic: data go to a temporary file in the same folder (created with mode "x", never "w"),
``complete`` is set last, the file is fsynced and renamed. An existing output is never opened for writing;
it is replaced only with ``overwrite=True``.

Example:
    >>> import numpy as np
    >>> from microcnn.io.hdf5 import ArchiveWriter, open_archive
    >>> with ArchiveWriter("train.h5", task="classification", class_names=["a", "b"]) as w:  # doctest: +SKIP
    ...     w.append(np.zeros((64, 64), np.float32), label=1, pixel_size_um=0.05, name="img0")
    >>> with open_archive("train.h5") as archive:                                            # doctest: +SKIP
    ...     sample = archive.read(0)       # {"image": (64, 64) float32 in [0, 1], "label": 1, ...}
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError
from microcnn.io.atomic import fsync_path
from microcnn.registry import check_choice

FORMAT = "microcnn-archive"
FORMAT_VERSION = 1
TASKS = ("classification", "segmentation", "regression", "unlabelled")
IMAGE_DTYPES = ("uint8", "uint16", "float32")
IGNORE_INDEX = 255
_GROW = 64  # rows added per resize; trimmed to the true count on close


class ArchiveWriter:
    """Write images (+ masks, labels or targets) into a new archive, atomically.

    Args:
        path: output ``.h5`` file. Refused when it exists, unless ``overwrite=True``.
        task: "classification" (needs ``label``), "segmentation" (needs ``mask``), "regression" (needs
            ``target``) or "unlabelled" (images only).
        image_shape: padded (rows, cols) or (rows, cols, channels) of every image; None = the first image's.
        class_names: names of class indices (classification labels, segmentation mask values).
        target_names / target_units: names and units of the regression target columns.
        image_dtype: storage dtype. Float images in [0, 1] are scaled to it; integer images must fit it.
        overwrite: replace an existing ``path`` on successful close.
        extra: JSON-serialisable dict stored as the ``extra`` attribute (provenance, generator settings).

    Example:
        >>> with ArchiveWriter("seg.h5", task="segmentation", class_names=["matrix", "precipitate"]) as w:
        ...     w.append(pixels, mask=mask, pixel_size_um=0.02, name="spot1")  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path,
        *,
        task: str,
        image_shape: tuple[int, ...] | None = None,
        class_names: Sequence[str] | None = None,
        target_names: Sequence[str] | None = None,
        target_units: Sequence[str] | None = None,
        image_dtype: str = "uint8",
        overwrite: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.task = check_choice("archive task", task, TASKS)
        self.image_dtype = check_choice("archive image dtype", str(image_dtype), IMAGE_DTYPES)
        self.image_shape = _check_image_shape(image_shape)
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.target_names = [str(t) for t in target_names] if target_names is not None else None
        self.target_units = [str(u) for u in target_units] if target_units is not None else None
        if self.task == "regression" and not self.target_names:
            raise DatasetError("A regression archive needs target_names (one per target column); got none.")
        if self.target_units is not None and len(self.target_units) != len(self.target_names or []):
            raise DatasetError(
                f"target_units must have one unit per target; got {len(self.target_units)} units for "
                f"{len(self.target_names or [])} targets. Use '' for unitless targets."
            )
        self.overwrite = overwrite
        self.extra = dict(extra or {})
        if self.path.exists() and not overwrite:
            raise DatasetError(
                f"Output '{self.path}' already exists. Choose another name or pass overwrite=True "
                "(CLI: --overwrite)."
            )
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._file: Any = None
        self._count = 0
        self._names: set[str] = set()
        self._shapes: list[tuple[int, int]] = []
        self._pixel_sizes: list[float] = []

    # -- context manager -------------------------------------------------------------------------------
    def __enter__(self) -> ArchiveWriter:
        import h5py

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self._tmp, "x")  # "x": never truncate a file someone else may hold
        self._file.attrs["format"] = FORMAT
        self._file.attrs["format_version"] = FORMAT_VERSION
        self._file.attrs["task"] = self.task
        self._file.attrs["complete"] = False
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __len__(self) -> int:
        return self._count

    # -- writing ---------------------------------------------------------------------------------------
    def append(
        self,
        image: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        label: int | None = None,
        target: Sequence[float] | np.ndarray | None = None,
        pixel_size_um: float | None = None,
        sample_id: str | None = None,
        name: str | None = None,
    ) -> int:
        """Add one image; return its index.

        Args:
            image: (H, W) or (H, W, C); float in [0, 1], or an integer dtype that fits ``image_dtype``.
            mask: (H, W) integer class indices (255 = not labelled); required for segmentation.
            label: class index; required for classification.
            target: (T,) floats in ``target_units``; required for regression.
            pixel_size_um: µm per pixel, None when unknown (stored as NaN).
            sample_id: physical sample the image comes from ("" / None = unknown).
            name: unique image id; default ``"{index:06d}"``.
        """
        if self._file is None:
            raise DatasetError("ArchiveWriter.append() called outside 'with ArchiveWriter(...) as w:'.")
        index = self._count
        name = _unique_name(name, index, self._names)
        stored = _to_storage(np.asarray(image), self.image_dtype, name)
        if self.image_shape is None:
            self.image_shape = tuple(stored.shape)
        rows, cols = _check_fits(stored.shape, self.image_shape, name)
        if index == 0:
            self._create_datasets()
        self._ensure_capacity(index + 1)
        self._file["images"][index] = _pad(stored, self.image_shape[:2], 0)
        self._write_labels(index, name, (rows, cols), mask=mask, label=label, target=target)
        size = _pixel_size(pixel_size_um, name)
        self._file["pixel_size_um"][index] = size
        self._file["names"][index] = name
        self._file["sample_id"][index] = "" if sample_id is None else str(sample_id)
        self._file["image_shapes"][index] = (rows, cols)
        self._shapes.append((rows, cols))
        self._pixel_sizes.append(size)
        self._count += 1
        return index

    def _write_labels(self, index: int, name: str, hw: tuple[int, int], **given: Any) -> None:
        needed = {"segmentation": "mask", "classification": "label", "regression": "target"}.get(self.task)
        for key, value in given.items():
            if value is not None and key != needed:
                raise DatasetError(f"Image '{name}': a {self.task} archive stores no '{key}'; got one.")
        if needed is None:
            return
        value = given[needed]
        if value is None:
            raise DatasetError(f"Image '{name}': a {self.task} archive needs '{needed}' for every image.")
        if needed == "mask":
            self._file["masks"][index] = _pad(
                _check_mask(value, hw, name), self.image_shape[:2], IGNORE_INDEX
            )
        elif needed == "label":
            self._file["labels"][index] = _check_label(value, self.class_names, name)
        else:
            self._file["targets"][index] = _check_target(value, len(self.target_names or []), name)

    def _create_datasets(self) -> None:
        import h5py

        f, shape = self._file, tuple(self.image_shape)
        _per_image(f, "images", shape, self.image_dtype)
        _per_image(f, "image_shapes", (2,), "int64")
        _per_image(f, "pixel_size_um", (), "float64", fill=np.nan)
        _per_image(f, "names", (), h5py.string_dtype())
        _per_image(f, "sample_id", (), h5py.string_dtype())
        if self.task == "segmentation":
            _per_image(f, "masks", shape[:2], "uint8", fill=IGNORE_INDEX)
        elif self.task == "classification":
            _per_image(f, "labels", (), "int64", fill=-1)
        elif self.task == "regression":
            _per_image(f, "targets", (len(self.target_names or []),), "float32", fill=np.nan)

    def _ensure_capacity(self, n: int) -> None:
        if self._file["images"].shape[0] >= n:
            return
        for key in self._file:
            self._file[key].resize(n + _GROW - 1, axis=0)

    # -- finishing -------------------------------------------------------------------------------------
    def close(self) -> Path:
        """Trim, write the attributes, set ``complete`` last, fsync and rename into place; return the path."""
        if self._file is None:
            return self.path
        if self._count == 0:
            self.abort()
            raise DatasetError(f"No image was appended; '{self.path}' was not written.")
        for key in self._file:
            self._file[key].resize(self._count, axis=0)
        self._write_attrs()
        self._file.attrs["complete"] = True
        self._file.flush()
        self._file.close()
        self._file = None
        fsync_path(self._tmp)
        _publish(self._tmp, self.path, overwrite=self.overwrite)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; the output path is left untouched."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)

    def _write_attrs(self) -> None:
        attrs = self._file.attrs
        attrs["class_names"] = json.dumps(self.class_names or [])
        attrs["target_names"] = json.dumps(self.target_names or [])
        attrs["target_units"] = json.dumps(self.target_units or [""] * len(self.target_names or []))
        attrs["extra"] = json.dumps(self.extra)
        sizes = np.asarray(self._pixel_sizes)
        if np.all(np.isfinite(sizes)) and np.all(sizes == sizes[0]):
            attrs["pixel_size_um"] = float(sizes[0])


# -- helpers of the writer -----------------------------------------------------------------------------
def _check_image_shape(shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise DatasetError(f"image_shape must be (rows, cols) or (rows, cols, channels) >= 1; got {shape}.")
    return shape


def _unique_name(name: str | None, index: int, seen: set[str]) -> str:
    name = f"{index:06d}" if name is None else str(name)
    if name in seen:
        raise DatasetError(f"Image name '{name}' is used twice; names (image ids) must be unique.")
    seen.add(name)
    return name


def _to_storage(image: np.ndarray, dtype: str, name: str) -> np.ndarray:
    """Convert ``image`` to the storage dtype without silent loss (16-bit is never squeezed to 8-bit)."""
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise DatasetError(f"Image '{name}' must be (H, W) or (H, W, C) with H, W >= 1; got {image.shape}.")
    if image.dtype.kind == "f":
        if not np.all(np.isfinite(image)):
            raise DatasetError(f"Image '{name}' contains NaN or inf; clean it before archiving.")
        if dtype == "float32":
            return image.astype(np.float32)
        if image.min() < 0 or image.max() > 1:
            raise DatasetError(
                f"Image '{name}': float pixels must lie in [0, 1] to be stored as {dtype}; got "
                f"[{image.min():.4g}, {image.max():.4g}]. Use image_dtype='float32' to store them as given."
            )
        top = np.iinfo(dtype).max
        return np.rint(image.astype(np.float64) * top).astype(dtype)
    if image.dtype.kind in "uib":
        return _int_to_storage(image, dtype, name)
    raise DatasetError(f"Image '{name}' has unsupported dtype {image.dtype}; use uint8, uint16 or float.")


def _int_to_storage(image: np.ndarray, dtype: str, name: str) -> np.ndarray:
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    if image.dtype == np.dtype(dtype):
        return image
    if dtype == "float32":
        top = np.iinfo(image.dtype).max
        return (image.astype(np.float64) / top).astype(np.float32)
    if image.dtype == np.uint8 and dtype == "uint16":
        return image.astype(np.uint16) * 257  # 255 -> 65535 exactly
    raise DatasetError(
        f"Image '{name}' is {image.dtype} but the archive stores {dtype}; that would change or lose "
        f"intensities. Create the archive with image_dtype='{image.dtype}' (uint8/uint16) or pass floats "
        "in [0, 1]."
    )


def _check_fits(shape: tuple[int, ...], padded: tuple[int, ...], name: str) -> tuple[int, int]:
    if len(shape) != len(padded) or shape[2:] != padded[2:]:
        raise DatasetError(f"Image '{name}' has shape {shape}; this archive holds images of shape {padded}.")
    if shape[0] > padded[0] or shape[1] > padded[1]:
        raise DatasetError(
            f"Image '{name}' is {shape[0]}x{shape[1]} px, larger than this archive's "
            f"{padded[0]}x{padded[1]}. "
            "Pass image_shape=(max rows, max cols) when creating it (smaller images are padded), or resize "
            "the images first (microcnn pack does the former for you)."
        )
    return int(shape[0]), int(shape[1])


def _pad(array: np.ndarray, hw: tuple[int, ...], value: int) -> np.ndarray:
    pad_rows, pad_cols = hw[0] - array.shape[0], hw[1] - array.shape[1]
    if pad_rows == 0 and pad_cols == 0:
        return array
    widths = [(0, pad_rows), (0, pad_cols)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, constant_values=value)


def _check_mask(mask: Any, hw: tuple[int, int], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != hw:
        raise DatasetError(f"Mask of '{name}' is {mask.shape}; it must match its image's (rows, cols) {hw}.")
    if mask.dtype.kind not in "uib" or mask.min(initial=0) < 0 or mask.max(initial=0) > IGNORE_INDEX:
        raise DatasetError(
            f"Mask of '{name}' must hold integer class indices 0..254 (255 = not labelled); got dtype "
            f"{mask.dtype}, range [{mask.min()}, {mask.max()}]."
        )
    return mask.astype(np.uint8)


def _check_label(label: Any, class_names: list[str] | None, name: str) -> int:
    if isinstance(label, bool) or not isinstance(label, int | np.integer):
        raise DatasetError(f"Label of '{name}' must be an integer class index; got {label!r}.")
    if label < 0 or (class_names is not None and label >= len(class_names)):
        count = len(class_names) if class_names is not None else "any"
        raise DatasetError(
            f"Label of '{name}' is {label}; expected 0..{count} - 1 (class_names={class_names})."
        )
    return int(label)


def _check_target(target: Any, count: int, name: str) -> np.ndarray:
    values = np.asarray(target, dtype=np.float32).reshape(-1)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise DatasetError(f"Target of '{name}' must be {count} finite numbers; got {np.asarray(target)!r}.")
    return values


def _pixel_size(value: float | None, name: str) -> float:
    if value is None:
        return float("nan")
    value = float(value)
    if np.isnan(value):
        return value
    if not np.isfinite(value) or value <= 0:
        raise DatasetError(f"pixel_size_um of '{name}' must be a positive number of µm or None; got {value}.")
    return value


def _per_image(f: Any, key: str, item_shape: tuple[int, ...], dtype: Any, *, fill: Any = None) -> None:
    """A dataset (N, *item_shape), one item per chunk, resizable along N, Fletcher-32 checksummed.

    Variable-length strings (names, sample ids) cannot carry HDF5 filters, so they go without checksum.
    """
    import h5py

    is_str = h5py.check_string_dtype(np.dtype(dtype)) is not None
    f.create_dataset(
        key,
        shape=(0, *item_shape),
        maxshape=(None, *item_shape),
        chunks=(1, *item_shape) if item_shape else (1024,),
        dtype=dtype,
        fletcher32=not is_str,
        fillvalue=fill,
    )


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished temporary file into place; without ``overwrite`` never clobber (atomic link)."""
    if overwrite:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails atomically when path appeared meanwhile
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            raise DatasetError(f"Output '{path}' appeared while writing; nothing was replaced.") from None
        except OSError:
            if path.exists():
                raise DatasetError(f"Output '{path}' already exists; nothing was replaced.") from None
            os.replace(tmp, path)  # filesystem without hard links
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


# The reader (open_archive, read_archive_info, ArchiveReader) lives in hdf5_reader.py to keep modules small.
from microcnn.io.hdf5_reader import ArchiveReader, open_archive, read_archive_info  # noqa: E402

__all__ = ["ArchiveReader", "ArchiveWriter", "open_archive", "read_archive_info"]
