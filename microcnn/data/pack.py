"""Convert a dataset folder into one HDF5 archive (the library side of ``microcnn pack``).

Two passes over the folder: the first reads every image once to learn the largest (rows, cols), the channel
count and the bit depth (so 16-bit data are stored as uint16, never squeezed to 8 bits); the second writes
the archive with :class:`microcnn.io.hdf5.ArchiveWriter`. Images smaller than the largest are padded and
their true size goes to ``/image_shapes`` (see the spec in :mod:`microcnn.io.hdf5`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from microcnn.errors import DatasetError

Progress = Callable[[int, int], None]
_RANK = {"uint8": 0, "uint16": 1, "float32": 2}


def _storage_dtype(source_dtype: str) -> str:
    """Lossless storage dtype for what read_micrograph decoded: 8-bit integers (scaled by 255) -> uint8,
    16-bit integers (scaled by 65535) -> uint16, anything else (32-bit, floats) -> float32."""
    if source_dtype in ("uint8", "int8", "bool"):
        return "uint8"
    if source_dtype in ("uint16", "int16"):
        return "uint16"
    return "float32"


def probe_folder(dataset: Any, *, progress: Progress | None = None) -> dict[str, Any]:
    """Largest (rows, cols), channel count and storage dtype over the images of a FolderDataset."""
    from microcnn.io.images import read_micrograph

    rows = cols = 0
    channels: set[int] = set()
    dtype = "uint8"
    total = len(dataset.records)
    for done, rec in enumerate(dataset.records, start=1):
        m = read_micrograph(rec.image, as_gray=dataset.as_gray)
        rows, cols = max(rows, m.height), max(cols, m.width)
        channels.add(1 if m.pixels.ndim == 2 else int(m.pixels.shape[2]))
        candidate = _storage_dtype(m.source_dtype)
        dtype = max(dtype, candidate, key=_RANK.__getitem__)
        if progress:
            progress(done, total)
    if len(channels) > 1:
        raise DatasetError(
            f"The folder mixes gray and colour images (channels {sorted(channels)}); one archive holds one "
            "kind. Use --as-gray to store every image as gray, or pack them separately."
        )
    shape = (rows, cols) if channels == {1} else (rows, cols, channels.pop())
    return {"image_shape": shape, "image_dtype": dtype}


def pack_folder(
    folder: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    image_dtype: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    **folder_options: Any,
) -> dict[str, Any]:
    """Write the dataset folder ``folder`` to the archive ``out``; return its summary (read_archive_info).

    Args:
        task: as in :class:`microcnn.data.datasets.FolderDataset` (None = dataset.json / inferred).
        image_dtype: "uint8" | "uint16" | "float32"; None = the smallest that holds every image losslessly.
        overwrite: replace an existing ``out``.
        progress: called with (done, total) after each image written.
        folder_options: samples_csv, group_column, pixel_size_column, as_gray, class_names, target_units.

    Example:
        >>> pack_folder("data/uhcs", "uhcs.h5", task="segmentation")["count"]   # doctest: +SKIP
        24
    """
    from microcnn.data.datasets import FolderDataset
    from microcnn.io.hdf5 import ArchiveWriter, read_archive_info

    if Path(out).exists() and not overwrite:  # say so before reading every image
        raise DatasetError(f"Output '{out}' already exists. Choose another name or pass --overwrite.")
    dataset = FolderDataset(folder, task=task, **folder_options)
    probe = probe_folder(dataset)
    writer = ArchiveWriter(
        out,
        task=dataset.task,
        image_shape=probe["image_shape"],
        class_names=dataset.class_names or None,
        target_names=dataset.target_names or None,
        target_units=dataset.target_units or None,
        image_dtype=image_dtype or probe["image_dtype"],
        overwrite=overwrite,
        extra={"packed_from": Path(folder).name},
    )
    with writer as w:
        for i in range(len(dataset)):
            s = dataset[i]
            size = s["pixel_size_um"]
            w.append(
                s["image"],
                mask=s.get("mask"),
                label=s.get("label"),
                target=s.get("target"),
                pixel_size_um=None if size != size else size,  # NaN -> unknown
                sample_id=dataset.records[i].group or None,
                name=s["id"],
            )
            if progress:
                progress(i + 1, len(dataset))
    return read_archive_info(out)
