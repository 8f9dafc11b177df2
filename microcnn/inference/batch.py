"""Batch prediction over an HDF5 archive -> an HDF5 results file: streaming, resumable, atomic, sharded.

- Streaming: items are read and results written in chunks of ``chunk`` rows, so memory does not grow with
  the archive. The images of a chunk that share a shape go through the network together
  (``Predictor.predict_many``), so many small images cost a few large forward passes, not one each.
- Resumable: results go to ``<output>.partial``; a ``done`` flag per row is written after each chunk's
  results and flushed. Rerunning the same command after a kill (even SIGKILL) skips finished rows and
  redoes the rest; prediction is deterministic on CPU, so the result equals an uninterrupted run bit for
  bit. The partial file is opened with ``"r+"`` or created with ``"w-"``, never ``"w"``.
- Atomic: ``complete=True`` is written last, the file fsynced and renamed to ``<output>``: the final name
  appears only for a finished job. A second job on the same output fails at once (HDF5 file lock).
- Failures: an item that cannot be read (corrupt chunk, bad values) or predicted is recorded in ``failed``
  / ``error`` with its index and the job goes on; the summary's status is then "partial".
- Scale-out: under torchrun each rank predicts a contiguous shard into ``<output>.rank{r}.h5``; rank 0 then
  joins the shards into ``<output>`` with HDF5 virtual datasets (no copy; keep the shard files beside it).

Exit codes of ``microcnn predict-h5``: 0 complete, 3 partial (some items failed), 2 usage or input error.
The output layout is in :mod:`microcnn.inference.h5out` and docs/batch.md.

Example:
    >>> summary = predict_archive(["m.safetensors"], "archive.h5", "results.h5", chunk=32)  # doctest: +SKIP
    >>> summary.status, summary.failed                                                     # doctest: +SKIP
    ('complete', [])
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError
from microcnn.inference import h5out
from microcnn.inference.predictor import Predictor
from microcnn.io.micrograph import Micrograph

_KILL_ENV = "MICROCNN_TEST_KILL_AFTER_ITEMS"  # tests only: SIGKILL this process after that many items
_SCALE = {"uint8": 255.0, "uint16": 65535.0}


@dataclass
class BatchSummary:
    """What a batch job did: counts, failed item indices (input order), status and the output path."""

    n_items: int
    n_done: int
    n_failed: int
    failed: list[int] = field(default_factory=list)
    status: str = "complete"  # "complete" | "partial" (some items failed)
    output: Path | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "complete" else 3


def sha256_file(path: str | Path, *, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class InputArchive:
    """Lazy, validated access to the images of one HDF5 dataset (N, H, W[, C]); opened once per process.

    For a microcnn archive (``/images``) the true image sizes (``/image_shapes``), pixel sizes and ids are
    used; any other dataset is read as whole (H, W[, C]) frames, uint8/uint16 scaled to [0, 1].
    """

    def __init__(self, path: str | Path, dataset: str = "/images") -> None:
        import h5py

        self.path, self.dataset = Path(path), dataset.strip("/") or "images"
        if not self.path.is_file():
            raise DatasetError(f"Input archive '{self.path}' not found. Check the path.")
        if not h5py.is_hdf5(self.path):
            raise DatasetError(f"'{self.path}' is not an HDF5 file. Give a .h5 archive (microcnn pack).")
        try:
            self.file = h5py.File(self.path, "r")
            ds = self.file[self.dataset]
            self.shape, self.dtype = tuple(ds.shape), str(ds.dtype)
            self._ids = self._read_ids()
        except KeyError:
            keys = sorted(self.file.keys())
            raise DatasetError(
                f"'{self.path}' has no dataset '/{self.dataset}'. Choose one with --dataset; it has: {keys}."
            ) from None
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"'{self.path}' is damaged or truncated and cannot be read ({exc}). "
                               "Re-create or re-copy it.") from None  # fmt: skip
        if len(self.shape) not in (3, 4):
            raise DatasetError(f"/{self.dataset} must hold images (N, H, W[, C]); got shape {self.shape}.")

    def __len__(self) -> int:
        return int(self.shape[0])

    def _read_ids(self) -> list[str]:
        if self.dataset == "images" and "names" in self.file:
            return list(self.file["names"].asstr()[()])
        return [f"{i:06d}" for i in range(self.shape[0])]

    def item_id(self, index: int) -> str:
        return self._ids[index]

    def read(self, index: int) -> Micrograph:
        """Item ``index`` as a Micrograph; raises on a corrupt chunk (fletcher32) or non-finite values."""
        return self._micrographs(index, index + 1)[0]

    def read_many(self, start: int, stop: int) -> list[Micrograph | Exception]:
        """Items ``start..stop-1``: one HDF5 read per dataset when all are sound; otherwise item by item,
        with the exception of each item that cannot be read in its place."""
        try:
            return list(self._micrographs(start, stop))
        except Exception:  # a damaged chunk or bad values somewhere in the block: find which items
            out: list[Micrograph | Exception] = []
            for i in range(start, stop):
                try:
                    out.append(self.read(i))
                except Exception as exc:
                    out.append(exc)
            return out

    def _micrographs(self, start: int, stop: int) -> list[Micrograph]:
        f, n = self.file, stop - start
        shapes = np.tile(np.array(self.shape[1:3]), (n, 1))
        sizes = np.full(n, np.nan)
        if self.dataset == "images":
            if "image_shapes" in f:
                shapes = f["image_shapes"][start:stop]
            if "pixel_size_um" in f:
                sizes = f["pixel_size_um"][start:stop].astype(float)
        rows, cols = int(shapes[:, 0].max()), int(shapes[:, 1].max())
        block = f[self.dataset][start:stop, :rows, :cols]
        scale = _SCALE.get(str(block.dtype))
        out = []
        for raw, (r, c), size in zip(block, shapes, sizes):
            pixels = raw[:r, :c].astype(np.float32)
            if scale:
                pixels /= scale
            if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
                raise ValueError("pixel values must be finite and in [0, 1] (float) or uint8/uint16")
            out.append(Micrograph(pixels=pixels, pixel_size_um=float(size) if np.isfinite(size) and size > 0
                                  else None))  # fmt: skip
        return out

    def close(self) -> None:
        self.file.close()


def _provenance(predictor: Predictor, model_hashes: list[dict[str, str]], archive: InputArchive,
                options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    from microcnn import __version__

    meta = predictor.metadata
    input_hash = sha256_file(archive.path)
    job = {"models": model_hashes, "input_sha256": input_hash, "dataset": archive.dataset, **options}
    return {
        "format": h5out.FORMAT, "format_version": h5out.FORMAT_VERSION, "task": predictor.task,
        "class_names": json.dumps(predictor.class_names),
        "target_names": json.dumps(list(meta.get("target_names") or [])),
        "target_units": json.dumps(list(meta.get("target_units") or [])),
        "models": json.dumps(model_hashes), "microcnn_version": __version__,
        "input_path": str(archive.path.resolve()), "input_size_bytes": archive.path.stat().st_size,
        "input_sha256": input_hash, "dataset": "/" + archive.dataset,
        "preprocessing": json.dumps(meta.get("preprocessing") or {}, default=str),
        "options": json.dumps(options), "method": predictor.method,
        "job_key": hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest(),
    }  # fmt: skip


def _row(result: Any, task: str, save_masks: bool) -> dict[str, Any]:
    """The numbers written for one item (see h5out's layout)."""
    if task == "classification":
        std = result.std if result.std is not None else np.full_like(result.probabilities, np.nan)
        return {"probabilities": result.probabilities, "probabilities_std": std}
    if task == "regression":
        std = result.std if result.std is not None else np.full_like(result.values, np.nan)
        return {"values": result.values, "values_std": std}
    k = len(result.class_names)
    # Fractions by plain counting (every pixel is analysed here); quantify.phase_fractions adds bootstrap
    # confidence intervals, which a batch job over thousands of images does not need per item.
    counts = np.bincount(result.mask.ravel(), minlength=k)[:k]
    row: dict[str, Any] = {
        "phase_fractions": counts / max(1, result.mask.size),
        "mean_probability": result.probabilities.mean(axis=(1, 2)),
        "mean_probability_std": (result.std.mean(axis=(1, 2)) if result.std is not None
                                 else np.full(k, np.nan)),
    }  # fmt: skip
    if save_masks:
        row["mask"] = result.mask
    return row


def _write_row(f: Any, i: int, row: dict[str, Any]) -> None:
    for key, value in row.items():
        if key == "mask":
            rows, cols = value.shape
            if rows > f["masks"].shape[1] or cols > f["masks"].shape[2]:
                raise ValueError(f"mask {value.shape} larger than the masks dataset {f['masks'].shape[1:]}")
            f["masks"][i, :rows, :cols] = value.astype(np.uint8)
            f["image_shapes"][i] = (rows, cols)
        else:
            f[key][i] = value


def _shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous [start, stop) of rank ``rank`` among ``world`` (sizes differ by at most one)."""
    return n * rank // world, n * (rank + 1) // world


def _kill_after() -> int | None:
    value = os.environ.get(_KILL_ENV)
    return int(value) if value else None


def _run_shard(predictor: Predictor, archive: InputArchive, f: Any, start: int, *, chunk: int,
               save_masks: bool, progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    """Predict every row of ``f`` not yet done (row j = input item start + j), flushing per chunk.

    A chunk's images are read together and predicted in batches (``Predictor.predict_many``); its rows are
    written with one HDF5 write per dataset. A chunk is redone whole after a kill, so its batches, and thus
    its results, are the same bit for bit.
    """
    n = f["done"].shape[0]
    done = f["done"][()].astype(bool)
    todo = [j for j in range(n) if not done[j]]
    kill_after, processed = _kill_after(), 0
    for first in range(0, len(todo), chunk):
        rows = todo[first : first + chunk]
        outcomes = _predict_chunk(predictor, archive, [start + j for j in rows], save_masks)
        for j, (_, value) in zip(rows, outcomes):
            if isinstance(value, Exception):  # any failure of one item is recorded; the job goes on
                f["failed"][j] = 1
                f["error"][j] = f"{type(value).__name__}: {value}".encode()[: h5out.ERROR_LEN]
        ids = [archive.item_id(start + j).encode("utf-8")[:128] for j in rows]
        _write_rows(f, rows, ids, outcomes)
        processed += len(rows)
        if kill_after is not None and processed >= kill_after:  # tests: die before this chunk is marked done
            os.kill(os.getpid(), signal.SIGKILL)
        f["done"][_selection(rows)] = 1
        f.flush()  # the done flags after the chunk's results: a kill before this line redoes the chunk
        if progress is not None:
            progress(n - len(todo) + first + len(rows), n)


def _selection(rows: list[int]) -> slice | list[int]:
    """An HDF5 selection of increasing ``rows``: a slice when they are contiguous (one fast write)."""
    return slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else rows


def _predict_chunk(predictor: Predictor, archive: InputArchive, items: list[int],
                   save_masks: bool) -> list[tuple[float, dict[str, Any] | Exception]]:  # fmt: skip
    """(pixel size or NaN, result row or the exception) per item; bad items do not stop the others."""
    read: list[tuple[int, Micrograph]] = []
    out: dict[int, tuple[float, dict[str, Any] | Exception]] = {}
    for i, m in zip(items, _read_items(archive, items)):
        if isinstance(m, Exception):  # a corrupt chunk or bad values: recorded for this item only
            out[i] = (np.nan, m)
        else:
            read.append((i, m))
    try:
        results = predictor.predict_many([m for _, m in read])
        for (i, m), r in zip(read, results):
            out[i] = (_size(m), _row(r, predictor.task, save_masks))
    except Exception:  # find the culprit(s): predict the chunk's items one at a time
        for i, m in read:
            try:
                out[i] = (_size(m), _row(predictor.predict(m), predictor.task, save_masks))
            except Exception as exc:
                out[i] = (_size(m), exc)
    return [out[i] for i in items]


def _read_items(archive: Any, items: list[int]) -> list[Micrograph | Exception]:
    """The items' micrographs (or the exception of each unreadable one); contiguous items: one block read."""
    if hasattr(archive, "read_many") and items[-1] - items[0] + 1 == len(items):
        return archive.read_many(items[0], items[-1] + 1)
    out: list[Micrograph | Exception] = []
    for i in items:
        try:
            out.append(archive.read(i))
        except Exception as exc:
            out.append(exc)
    return out


def _size(m: Micrograph) -> float:
    return float(m.pixel_size_um) if m.pixel_size_um else np.nan


def _write_rows(f: Any, rows: list[int], ids: list[bytes],
                outcomes: list[tuple[float, dict[str, Any] | Exception]]) -> None:  # fmt: skip
    """Write a chunk's ids, pixel sizes and results: one write per dataset (rows of failed items keep NaN)."""
    sel = _selection(rows)
    f["ids"][sel] = np.array(ids, dtype=f["ids"].dtype)
    f["pixel_size_um"][sel] = np.array([size for size, _ in outcomes], dtype=f["pixel_size_um"].dtype)
    good = [(j, v) for j, (_, v) in zip(rows, outcomes) if not isinstance(v, Exception)]
    if not good:
        return
    for key in good[0][1]:
        if key == "mask":
            for j, v in good:
                _write_row(f, j, {"mask": v["mask"]})
        elif len(good) == len(rows):
            f[key][sel] = np.stack([v[key] for _, v in good])
        else:
            for j, v in good:
                f[key][j] = v[key]


def _as_predictor(models: Predictor | str | Path | Sequence[str | Path], kwargs: dict[str, Any]):
    """(Predictor, [{"name", "sha256"}]) from a Predictor or checkpoint path(s)."""
    if isinstance(models, Predictor):
        return models, [{"name": n, "sha256": ""} for n in models.names]
    paths = [Path(models)] if isinstance(models, (str, Path)) else [Path(p) for p in models]
    predictor = Predictor.from_checkpoint(paths, **kwargs)
    return predictor, [{"name": p.name, "sha256": sha256_file(p)} for p in paths]


def _dist_place() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def predict_archive(
    models: Predictor | str | Path | Sequence[str | Path],
    input_path: str | Path,
    output_path: str | Path,
    *,
    dataset: str = "/images",
    chunk: int = 16,
    save_masks: bool = False,
    progress: Callable[[int, int], None] | None = None,
    predictor_kwargs: dict[str, Any] | None = None,
) -> BatchSummary:
    """Predict every image of an HDF5 archive into a results file (see the module docstring).

    Args:
        models: checkpoint path(s) (an ensemble) or a ready :class:`Predictor`.
        input_path: HDF5 file; ``dataset`` names its (N, H, W[, C]) images (default the archive's /images).
        output_path: results file; must not exist. ``<output>.partial`` holds an unfinished job.
        chunk: rows per flush (and per HDF5 chunk): smaller resumes with less lost work.
        save_masks: segmentation: also store each class mask (uint8, 255 = padding).
        progress: callback (items done, items total) of this rank, after each chunk.
        predictor_kwargs: device, tile, overlap, tta, batch_size ... for ``Predictor.from_checkpoint``.

    Under torchrun (a process group initialised), each rank predicts its shard and rank 0 joins them.

    Returns:
        BatchSummary over all ranks (rank 0) or this rank's shard (other ranks).

    Raises:
        DatasetError: the input is missing, not HDF5, truncated, or lacks ``dataset`` (before any work).
        BatchJobError: the output exists, another job writes it, or a partial file is from another job.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 rows; got {chunk}.")
    output = Path(output_path)
    h5out.check_output_free(output)
    archive = InputArchive(input_path, dataset)
    try:
        predictor, hashes = _as_predictor(models, dict(predictor_kwargs or {}))
        return _predict_opened(predictor, hashes, archive, output, chunk=chunk, save_masks=save_masks,
                               progress=progress)  # fmt: skip
    finally:
        archive.close()


def _predict_opened(predictor: Predictor, hashes: list[dict[str, str]], archive: InputArchive, output: Path,
                    *, chunk: int, save_masks: bool, progress: Any) -> BatchSummary:  # fmt: skip
    from microcnn.engine.distributed import barrier

    rank, world = _dist_place()
    options = {"save_masks": save_masks, "tta": len(predictor.transforms) > 1, "tile": predictor.tile,
               "overlap": predictor.overlap, "blend": predictor.blend, "world_size": world}  # fmt: skip
    attrs = _provenance(predictor, hashes, archive, options)
    start, stop = _shard(len(archive), rank, world)
    target = output if world == 1 else h5out.rank_path(output, rank)
    if not target.exists():  # a rank file from a killed joined run is already final
        _write_file(predictor, archive, target, attrs, start, stop, chunk=chunk, save_masks=save_masks,
                    progress=progress)  # fmt: skip
    barrier()
    if world > 1 and rank == 0:
        shards = [h5out.rank_path(output, r) for r in range(world)]
        h5out.write_virtual(output, shards, {**attrs, **_finish_attrs(shards)})
    barrier()
    return _summarise(output if (world == 1 or rank == 0) else target)


def _write_file(predictor: Predictor, archive: InputArchive, target: Path, attrs: dict[str, Any], start: int,
                stop: int, *, chunk: int, save_masks: bool, progress: Any) -> None:  # fmt: skip
    mask_shape = None
    if save_masks and predictor.task == "segmentation":
        mask_shape = (int(archive.shape[1]), int(archive.shape[2]))
    k, t = len(predictor.class_names), predictor._num_targets() if predictor.task == "regression" else 0
    specs = h5out.dataset_specs(predictor.task, stop - start, k=k, t=t, mask_shape=mask_shape)
    f = h5out.open_partial(target, specs=specs, attrs={**attrs, "first_item": start}, chunk=chunk)
    try:
        if "started_at" not in f.attrs:
            f.attrs["started_at"] = _now()
        _run_shard(predictor, archive, f, start, chunk=chunk, save_masks=save_masks, progress=progress)
        failed = f["failed"][()]
        f.attrs["n_items"], f.attrs["n_failed"] = int(failed.size), int(failed.sum())
        f.attrs["status"] = "partial" if failed.any() else "complete"
        f.attrs["finished_at"] = _now()
        f.attrs["complete"] = True  # last
        f.flush()
    finally:
        f.close()
    h5out.publish(h5out.partial_path(target), target)


def _finish_attrs(shards: list[Path]) -> dict[str, Any]:
    import h5py

    starts, ends, n_items, n_failed = [], [], 0, 0
    for p in shards:
        with h5py.File(p, "r") as f:
            starts.append(str(f.attrs["started_at"]))
            ends.append(str(f.attrs["finished_at"]))
            n_items += int(f.attrs["n_items"])
            n_failed += int(f.attrs["n_failed"])
    return {"started_at": min(starts), "finished_at": max(ends), "n_items": n_items, "n_failed": n_failed,
            "status": "partial" if n_failed else "complete"}  # fmt: skip


def _summarise(path: Path) -> BatchSummary:
    import h5py

    with h5py.File(path, "r") as f:
        failed = np.flatnonzero(f["failed"][()]) + int(f.attrs.get("first_item", 0))
        n = int(f["done"].shape[0])
        return BatchSummary(n_items=n, n_done=int(f["done"][()].sum()), n_failed=int(failed.size),
                            failed=[int(i) for i in failed], status="partial" if failed.size else "complete",
                            output=path)  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
