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
microcnn version, input path/size/sha256, dataset, preprocessing, options, started_at, finished_at), the
job description ``job`` (JSON) and its hash ``job_key``, and ``complete`` — set last, just before the file
is renamed from ``<output>.partial`` to its final name.

A partial file is built whole under ``<output>.partial.new`` and renamed, so ``<output>.partial`` always
has every dataset. Everything here assumes the caller holds the job lock (:mod:`.joblock`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import MicrocnnError
from microcnn.io.atomic import replace_durably

log = logging.getLogger(__name__)

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
        if shape[0] == 0:  # an empty shard (more ranks than chunks): HDF5 needs room for one chunk
            extra["maxshape"] = (None, *shape[1:])
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=(rows, *shape[1:]), fletcher32=True,
                         fillvalue=fill, **extra)  # fmt: skip


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def open_partial(path: Path, *, specs: dict[str, Any], attrs: dict[str, Any], chunk: int) -> Any:
    """Open ``<path>.partial`` to resume (same job only) or create it; call while holding the job lock.

    A new partial file is built under ``<path>.partial.new`` (``"w-"``, never ``"w"``) and renamed once
    all its datasets exist, so ``<path>.partial`` is always a whole layout. An existing one is moved to
    ``.damaged`` (and a fresh one started) only when it does not parse as a partial output of ours; a
    failure to *open* a sound one (another process has it open, locks unsupported, permissions) changes
    nothing.

    Raises:
        BatchJobError: it belongs to a different job (the message names what differs), or it cannot be
            opened although it is sound.
    """
    import h5py

    tmp = partial_path(path)
    if tmp.exists():
        try:
            f = h5py.File(tmp, "r+")
        except OSError as exc:
            if is_our_output(tmp):
                raise _open_error(tmp, exc) from None
            damaged = tmp.with_name(tmp.name + ".damaged")
            os.replace(tmp, damaged)
            log.warning("'%s' is damaged (%s); moved it to '%s' and started over.", tmp, exc, damaged)
        else:
            try:
                check_same_job(f, tmp, attrs)
            except BaseException:
                f.close()
                raise
            return f
    return _create_partial(tmp, specs, attrs, chunk)


def _open_error(tmp: Path, exc: OSError) -> BatchJobError:
    text = str(exc).lower()
    if isinstance(exc, BlockingIOError) or "lock" in text:
        return BatchJobError(f"'{tmp}' is open in another process (a reader such as h5py, HDFView or the "
                             f"app?) or its file system refuses HDF5 locks ({exc}); it was left as it is. "
                             "Close the other program and run the command again.")  # fmt: skip
    return BatchJobError(f"'{tmp}' is a sound unfinished output but cannot be opened for writing ({exc}); "
                         "it was left as it is. Check its permissions and free disk space.")  # fmt: skip


def is_our_output(path: Path) -> bool:
    """Whether ``path`` parses as a results file of ours: HDF5 signature, opens, format attribute."""
    import h5py

    try:
        with open(path, "rb") as fh:
            if fh.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                return False
        with h5py.File(path, "r", locking=False) as f:
            return f.attrs.get("format") == FORMAT and "done" in f
    except (OSError, RuntimeError, KeyError):
        return False


def _create_partial(tmp: Path, specs: dict[str, Any], attrs: dict[str, Any], chunk: int) -> Any:
    import h5py

    new = tmp.with_name(tmp.name + ".new")
    new.unlink(missing_ok=True)  # left by a job killed while creating it (we hold the job lock)
    try:
        with h5py.File(new, "w-") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["complete"] = False
            _create_datasets(f, specs, chunk)
    except (BlockingIOError, FileExistsError, OSError) as exc:
        raise BatchJobError(f"Cannot create '{new}' ({exc}). Check the folder's permissions and free space."
                            ) from None  # fmt: skip
    replace_durably(new, tmp)
    return h5py.File(tmp, "r+")


def job_difference(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """'key: stored -> current' for every leaf where two job descriptions differ."""
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += job_difference(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


_RESUME_HINTS = {  # option -> how to resume with the value the file was started with
    "chunk": "rerun with --chunk {was}",
    "cpu_threads": "rerun with OMP_NUM_THREADS={was} (CPU kernels round differently per thread count)",
}


def check_same_job(f: Any, path: Path, attrs: dict[str, Any]) -> None:
    """BatchJobError unless the file ``f`` (at ``path``) was written by the job that ``attrs`` describe.

    The message names what differs; for a chunk or thread count it says how to resume instead.
    """
    if f.attrs.get("job_key") == attrs.get("job_key"):
        return
    try:
        stored, current = json.loads(f.attrs.get("job", "{}")), json.loads(attrs.get("job", "{}"))
    except (TypeError, ValueError):
        stored, current = {}, {}
    diff = job_difference(stored, current)
    keys = [d.split(":")[0] for d in diff]
    for key, hint in _RESUME_HINTS.items():
        if keys == [f"options.{key}"]:  # the only difference: say how to resume
            was, now = stored["options"].get(key), current["options"].get(key)
            raise BatchJobError(
                f"'{path}' was started with {key}={was}; this run has {key}={now}. Results depend on how "
                f"items are batched and computed, so a resume must keep it: {hint.format(was=was)}, or "
                "delete the file to start over."
            )
    what = "; ".join(diff[:4]) if diff else "other input, models or options"
    raise BatchJobError(f"'{path}' is an output of a different job ({what}). Delete it to start over, or run "
                        "the original command to finish it.")  # fmt: skip


def publish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path`` atomically, fsync the folder."""
    replace_durably(tmp, path)


def finished_job(path: Path, attrs: dict[str, Any]) -> bool:
    """True when ``path`` is the finished output of this very job; BatchJobError when it is anything else.

    A kill right after the final rename leaves a finished output: rerunning the same command recognises it
    (by its job key) instead of failing; an output of another job, or any other file, is never touched.
    """
    import h5py

    if not path.exists():
        return False
    if is_our_output(path):
        with h5py.File(path, "r") as f:
            if bool(f.attrs.get("complete", False)) and f.attrs.get("job_key") == attrs.get("job_key"):
                return True
    raise output_exists_error(path)


def output_exists_error(path: Path) -> BatchJobError:
    return BatchJobError(f"Output '{path}' already exists (another job's result, or another file). Choose "
                         "another --output or delete it first.")  # fmt: skip


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
