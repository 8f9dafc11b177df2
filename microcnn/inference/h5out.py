"""Batch prediction results file: layout, crash-safe creation and resume, shards joined virtually.

Layout of ``results.h5`` (one row per input image, row i = input item i; documented in docs/batch.md):

==========================  ==============  ========================================================
dataset                     shape, dtype    meaning
==========================  ==============  ========================================================
done                        (N,) uint8      1 once the row is final (resume skips it)
failed                      (N,) uint8      1 if the item could not be read or predicted
error                       (N,) S200       the reason, for failed rows
ids                         (N,) S128       the item's id (archive /names, else its index)
pixel_size_um               (N,) float64    µm per pixel of the input, NaN when unknown
probabilities[_std]         (N, K) float32  classification: mean class probabilities (and spread)
values[_std]                (N, T) float32  regression: properties (and std, law of total variance)
phase_fractions             (N, K) float64  segmentation: area fraction of each class in the mask
mean_probability[_std]      (N, K) float32  segmentation: mean per-class probability (and spread)
masks, image_shapes         (N, H, W) uint8 segmentation with save_masks: class mask, 255 = padding
==========================  ==============  ========================================================

Rows of failed items hold NaN. Every dataset is chunked explicitly and written with ``fletcher32`` (masks
also gzip), so flipped bytes raise an error on read instead of reading back wrong. Attributes: format,
format_version, task, class_names, target_names, target_units (JSON), provenance (models with sha256,
microcnn version, input path/size/sha256, dataset, preprocessing, options, started_at, finished_at), and
``complete`` — set last, just before the file is renamed from ``<output>.partial`` to its final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import MicrocnnError
from microcnn.io.atomic import replace_durably

FORMAT = "microcnn-predictions"
FORMAT_VERSION = 1
ERROR_LEN = 200


class BatchJobError(MicrocnnError):
    """The batch job cannot start or continue (output exists, another job holds it, mismatched resume)."""


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def rank_path(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.name}.rank{rank}.h5")


def dataset_specs(task: str, n: int, *, k: int, t: int, mask_shape: tuple[int, int] | None) -> dict[str, Any]:
    """name -> (shape, dtype, fill) of every per-item dataset for this task."""
    nan = np.nan
    specs: dict[str, Any] = {
        "done": ((n,), "u1", 0),
        "failed": ((n,), "u1", 0),
        "error": ((n,), f"S{ERROR_LEN}", b""),
        "ids": ((n,), "S128", b""),
        "pixel_size_um": ((n,), "f8", nan),
    }
    if task == "classification":
        specs |= {"probabilities": ((n, k), "f4", nan), "probabilities_std": ((n, k), "f4", nan)}
    elif task == "regression":
        specs |= {"values": ((n, t), "f4", nan), "values_std": ((n, t), "f4", nan)}
    else:
        specs |= {
            "phase_fractions": ((n, k), "f8", nan),
            "mean_probability": ((n, k), "f4", nan),
            "mean_probability_std": ((n, k), "f4", nan),
        }
        if mask_shape is not None:
            specs |= {"masks": ((n, *mask_shape), "u1", 255), "image_shapes": ((n, 2), "i4", 0)}
    return specs


def _create_datasets(f: Any, specs: dict[str, Any], chunk: int) -> None:
    for name, (shape, dtype, fill) in specs.items():
        rows = max(1, min(chunk, shape[0])) if name != "masks" else 1
        extra: dict[str, Any] = {"compression": "gzip", "shuffle": True} if name == "masks" else {}
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]), fletcher32=True,
                         fillvalue=fill, **extra)  # fmt: skip


def open_partial(path: Path, *, specs: dict[str, Any], attrs: dict[str, Any], chunk: int) -> Any:
    """Open ``<path>.partial`` to resume (same job only) or create it with ``"w-"`` (never ``"w"``).

    Raises:
        BatchJobError: another process is writing it, or it belongs to a different job (other input or
            models): the message says which file to delete.
    """
    import h5py

    tmp = partial_path(path)
    if tmp.exists():
        try:
            f = h5py.File(tmp, "r+")
        except BlockingIOError:
            raise BatchJobError(f"Another job is writing '{tmp}' (the file is locked). Wait for it to finish "
                                "or stop it; two jobs must not write one output.") from None  # fmt: skip
        except OSError as exc:
            damaged = tmp.with_name(tmp.name + ".damaged")
            os.replace(tmp, damaged)
            raise BatchJobError(f"The unfinished output '{tmp}' is damaged ({exc}); it was moved to "
                                f"'{damaged}'. Run the command again to start over.") from None  # fmt: skip
        _check_same_job(f, tmp, attrs)
        return f
    try:
        f = h5py.File(tmp, "w-")
    except (BlockingIOError, FileExistsError, OSError) as exc:
        raise BatchJobError(
            f"Another job is writing '{tmp}' ({exc}). Two jobs must not write one output."
        ) from None
    for key, value in attrs.items():
        f.attrs[key] = value
    f.attrs["complete"] = False
    _create_datasets(f, specs, chunk)
    f.flush()
    return f


def _check_same_job(f: Any, tmp: Path, attrs: dict[str, Any]) -> None:
    for key in ("job_key",):
        if f.attrs.get(key) != attrs.get(key):
            f.close()
            raise BatchJobError(
                f"'{tmp}' is an unfinished output of a different job (other input, models or options). "
                "Delete it to start over, or run the original command to finish it."
            )


def publish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path`` atomically, fsync the folder."""
    replace_durably(tmp, path)


def check_output_free(path: Path) -> None:
    """The final output must not exist yet (it is never overwritten or truncated)."""
    if path.exists():
        raise BatchJobError(
            f"Output '{path}' already exists (a finished job). Choose another --output or delete it first."
        )


def write_virtual(path: Path, shard_paths: Sequence[Path], attrs: dict[str, Any]) -> None:
    """Join rank shards into ``path`` with HDF5 virtual datasets (no data copied; shards must stay beside it).

    Shards are referenced by file name relative to ``path``'s folder.
    """
    import h5py

    tmp = partial_path(path)
    if tmp.exists():
        tmp.unlink()  # only rank 0 builds the join; a stale one from a killed run is safe to drop
    with h5py.File(shard_paths[0], "r") as first:
        names = list(first.keys())
    sizes, dtypes, shapes = [], {}, {}
    for p in shard_paths:
        with h5py.File(p, "r") as f:
            sizes.append(f["done"].shape[0])
            for name in names:
                dtypes[name], shapes[name] = f[name].dtype, f[name].shape[1:]
    total = int(sum(sizes))
    with h5py.File(tmp, "w-") as out:
        for name in names:
            layout = h5py.VirtualLayout(shape=(total, *shapes[name]), dtype=dtypes[name])
            start = 0
            for p, size in zip(shard_paths, sizes):
                if size:
                    layout[start : start + size] = h5py.VirtualSource(
                        p.name, name, shape=(size, *shapes[name])
                    )
                start += size
            out.create_virtual_dataset(name, layout)
        for key, value in attrs.items():
            out.attrs[key] = value
        out.attrs["shards"] = json.dumps([p.name for p in shard_paths])
        out.attrs["complete"] = True
    publish(tmp, path)
