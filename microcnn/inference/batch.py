"""Batch prediction over an HDF5 archive -> an HDF5 results file: streaming, resumable, atomic, sharded.

- Streaming: items are read and results written in chunks of ``chunk`` rows, so memory does not grow with
  the archive (no per-item list is kept; ids and ``done`` flags are read per chunk). The images of a chunk
  that share a shape go through the network together (``Predictor.predict_many``).
- Reproducible batching: a batch's floating-point result depends (in the last bits) on which images share
  it, so batches are formed from absolute item indices: chunk k is always items ``[k*chunk, (k+1)*chunk)``,
  whatever was done before a resume, and torchrun shard boundaries fall on multiples of ``chunk``. The
  chunk is part of the job key: a resume with another ``chunk`` is refused.
- One writer: the job first takes an exclusive ``flock`` on ``<output>.lock``
  (:mod:`microcnn.inference.joblock`), before hashing the input or loading a model, so a second job fails
  at once, also where HDF5 file locking is off or unsupported.
- Resumable: results go to ``<output>.partial``; a ``done`` flag per row is written after each chunk's
  results and flushed. Rerunning the same command after a kill (even SIGKILL) skips finished chunks and
  redoes the rest; prediction is deterministic on CPU, so the result equals an uninterrupted run bit for
  bit. The input is hashed once, when the partial file is created; a resume checks its path, size and
  mtime (cheap) and reuses the stored hash, and the same check runs again before the job completes.
- Atomic: ``complete=True`` is written last, the file fsynced and renamed to ``<output>``: the final name
  appears only for a finished job. Rerunning a finished job (same job key) reports it as done.
- Failures: an item that cannot be read (corrupt chunk, bad values) or predicted is recorded in ``failed``
  / ``error`` with its index and the job goes on; the summary's status is then "partial".
- Scale-out: under torchrun each rank predicts a contiguous, chunk-aligned shard into
  ``<output>.rank{r}.h5``; rank 0 then joins the shards into ``<output>`` with HDF5 virtual datasets (no
  copy; keep the shard files beside it).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import ConfigError, MicrocnnError
from microcnn.inference import h5out
from microcnn.inference.h5input import InputArchive, input_identity, sha256_file
from microcnn.inference.h5out import BatchJobError
from microcnn.inference.joblock import JobLock, lock_path
from microcnn.inference.predictor import Predictor
from microcnn.io.micrograph import Micrograph

__all__ = ["BatchSummary", "InputArchive", "predict_archive", "sha256_file"]

_KILL_ENV = "MICROCNN_TEST_KILL_AFTER_ITEMS"  # tests only: SIGKILL this process after that many items
_BOOKKEEPING = ("done", "failed", "error", "ids", "pixel_size_um", "masks", "image_shapes")


@dataclass
class BatchSummary:
    """What a batch job did: counts, failed item indices (input order), status and the output path.

    ``already_done`` is True when the output was already the finished result of this very job (nothing
    was predicted again).
    """

    n_items: int
    n_done: int
    n_failed: int
    failed: list[int] = field(default_factory=list)
    status: str = "complete"  # "complete" | "partial" (some items failed)
    output: Path | None = None
    already_done: bool = False

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "complete" else 3


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
    probs = result.probabilities
    row: dict[str, Any] = {
        "phase_fractions": counts / max(1, result.mask.size),
        "mean_probability": probs.mean(axis=(1, 2)) if probs is not None else np.full(k, np.nan),
        "mean_probability_std": (result.std.mean(axis=(1, 2)) if result.std is not None
                                 else np.full(k, np.nan)),
    }  # fmt: skip
    if save_masks:
        row["mask"] = result.mask
    return row


def _shard(n: int, rank: int, world: int, chunk: int = 1) -> tuple[int, int]:
    """Contiguous [start, stop) of rank ``rank`` among ``world``, on chunk boundaries.

    The ``ceil(n / chunk)`` chunks are shared out (counts differ by at most one, the last ranks get fewer
    or none), so every rank's batches are exactly the chunks a single process forms: 13 items, chunk 5,
    2 ranks -> [0, 10) and [10, 13).
    """
    chunks = -(-n // chunk)

    def edge(r: int) -> int:
        return min(n, -(-chunks * r // world) * chunk)

    return edge(rank), edge(rank + 1)


def _kill_after() -> int | None:
    value = os.environ.get(_KILL_ENV)
    return int(value) if value else None


def _count_done(done: Any, block: int = 1 << 20) -> int:
    """Number of rows flagged done, read in blocks (memory does not grow with the archive)."""
    return sum(int(done[i : i + block].sum()) for i in range(0, done.shape[0], block))


def _flagged_rows(flags: Any, block: int = 1 << 20) -> list[int]:
    """Indices of the rows set in a (N,) uint8 dataset, read in blocks (memory grows only with the hits)."""
    return [i + int(j) for i in range(0, flags.shape[0], block) for j in np.flatnonzero(flags[i : i + block])]


def _run_shard(predictor: Any, archive: InputArchive, f: Any, start: int, *, chunk: int,
               save_masks: bool, progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    """Predict every chunk of ``f`` not yet done (row j = input item start + j), flushing per chunk.

    ``start`` is a multiple of ``chunk``, so the rows ``[first, first + chunk)`` are always the same
    absolute chunk of the input: a chunk is redone whole after a kill, with the same batches, and thus the
    same results bit for bit.
    """
    n = f["done"].shape[0]
    n_done = _count_done(f["done"])
    if progress is not None:
        progress(n_done, n)
    kill_after, processed = _kill_after(), 0
    for first in range(0, n, chunk):
        stop = min(first + chunk, n)
        flags = f["done"][first:stop]
        if flags.all():
            continue
        n_done -= int(flags.sum())
        items = list(range(start + first, start + stop))
        outcomes = _predict_chunk(predictor, archive, items, save_masks)
        _write_rows(f, first, archive.item_ids(start + first, start + stop), outcomes)
        processed += stop - first
        if kill_after is not None and processed >= kill_after:  # tests: die before this chunk is marked done
            os.kill(os.getpid(), signal.SIGKILL)
        f["done"][first:stop] = 1
        f.flush()  # the done flags after the chunk's results: a kill before this line redoes the chunk
        n_done += stop - first
        if progress is not None:
            progress(n_done, n)


def _predict_chunk(predictor: Any, archive: Any, items: list[int],
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


def _write_rows(f: Any, first: int, ids: list[str],
                outcomes: list[tuple[float, dict[str, Any] | Exception]]) -> None:  # fmt: skip
    """Write the rows ``first..`` of one chunk, every dataset in one write (failed rows get the fill value).

    Every row of the chunk is overwritten, so a chunk redone after a kill leaves nothing of the first try.
    """
    sel = slice(first, first + len(outcomes))
    values = [v for _, v in outcomes]
    f["ids"][sel] = np.array([s.encode("utf-8")[:128] for s in ids], dtype=f["ids"].dtype)
    f["pixel_size_um"][sel] = np.array([size for size, _ in outcomes], dtype=f["pixel_size_um"].dtype)
    f["failed"][sel] = np.array([isinstance(v, Exception) for v in values], dtype=np.uint8)
    errors = [f"{type(v).__name__}: {v}".encode()[: h5out.ERROR_LEN] if isinstance(v, Exception) else b""
              for v in values]  # fmt: skip
    f["error"][sel] = np.array(errors, dtype=f["error"].dtype)
    for key in (k for k in f if k not in _BOOKKEEPING):
        ds = f[key]
        fill = np.full(ds.shape[1:], ds.fillvalue, dtype=ds.dtype)
        ds[sel] = np.stack([fill if isinstance(v, Exception) else np.asarray(v[key], ds.dtype)
                            for v in values])  # fmt: skip
    if "masks" in f:
        _write_masks(f, first, values)


def _write_masks(f: Any, first: int, values: list[dict[str, Any] | Exception]) -> None:
    masks = f["masks"]
    shapes = np.zeros((len(values), 2), dtype=np.int32)
    for n, v in enumerate(values):
        row = np.full(masks.shape[1:], 255, dtype=np.uint8)
        if not isinstance(v, Exception):
            rows, cols = v["mask"].shape
            if rows > masks.shape[1] or cols > masks.shape[2]:
                raise ValueError(f"mask {v['mask'].shape} larger than the masks dataset {masks.shape[1:]}")
            row[:rows, :cols] = v["mask"]
            shapes[n] = (rows, cols)
        masks[first + n] = row
    f["image_shapes"][first : first + len(values)] = shapes


def _weights_sha256(model: Any) -> str:
    """SHA-256 over a module's state dict (names and raw tensor bytes): identifies in-memory weights."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _as_predictor(models: Any, kwargs: dict[str, Any]) -> tuple[Any, list[dict[str, str]]]:
    """(predictor, [{"name", "sha256"}]) from a ready predictor (CNN or classical) or checkpoint path(s)."""
    if hasattr(models, "predict_many"):
        members = getattr(models, "models", [])
        return models, [{"name": n, "sha256": "", "weights_sha256": _weights_sha256(m)}
                        for n, m in zip(models.names, members)]  # fmt: skip
    paths = [Path(models)] if isinstance(models, (str, Path)) else [Path(p) for p in models]
    predictor = Predictor.from_checkpoint(paths, **kwargs)
    return predictor, [{"name": p.name, "sha256": sha256_file(p)} for p in paths]


def _dist_place() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _on_all_ranks(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on this rank; if it fails on any rank, every rank raises (none waits for a rank that
    gave up at the next barrier)."""
    error, value = None, None
    try:
        value = fn(*args)
    except MicrocnnError as exc:
        error = exc
    _, world = _dist_place()
    if world > 1:
        import torch.distributed as dist

        messages: list[str | None] = [None] * world
        dist.all_gather_object(messages, None if error is None else str(error))
        failed = next(((r, m) for r, m in enumerate(messages) if m), None)
        if error is None and failed is not None:
            raise BatchJobError(f"Rank {failed[0]} stopped the job: {failed[1]}")
    if error is not None:
        raise error
    return value


def _shared_input_hash(stored: str | None, path: Path) -> str:
    """The input's SHA-256: a stored one (this job's own shard file) if any rank has it, else hashed once
    (by rank 0 under torchrun, then broadcast)."""
    rank, world = _dist_place()
    if world == 1:
        return stored or sha256_file(path)
    import torch.distributed as dist

    known: list[str | None] = [None] * world
    dist.all_gather_object(known, stored)
    found = next((h for h in known if h), None)
    if found:
        return found
    box = [sha256_file(path) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _options(predictor: Any, *, chunk: int, save_masks: bool, world: int) -> dict[str, Any]:
    """Everything that changes the numbers (or the layout) of the output; part of the job key."""
    names = ("tile", "overlap", "blend", "batch_size", "batch_pixels")
    found = {name: getattr(predictor, name, None) for name in names}
    found["channels_last"] = bool(getattr(predictor, "channels_last", False))
    tta, rescale = len(getattr(predictor, "transforms", ())) > 1, bool(getattr(predictor, "rescale", False))
    device = str(getattr(predictor, "device", "cpu"))
    # CPU kernels split work by thread and round accordingly: the thread count is part of the numbers
    threads = _cpu_threads() if device == "cpu" and getattr(predictor, "models", None) else None
    return {"save_masks": save_masks, "tta": tta, **found, "rescale": rescale, "device": device,
            "cpu_threads": threads, "world_size": world, "chunk": chunk}  # fmt: skip


def _cpu_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _job_attrs(predictor: Any, hashes: list[dict[str, str]], archive: InputArchive,
               options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Provenance attributes (all but the input hash and times) and the job key.

    The job is identified by the models' sha256, the input's path, size and mtime (not its hash, so that
    a resume need not re-read it), the dataset, the options and the microcnn version.
    """
    from microcnn import __version__

    meta, identity = predictor.metadata, input_identity(archive.path)
    job = {"models": hashes, "method": predictor.method, "input": identity, "dataset": "/" + archive.dataset,
           "options": options, "microcnn_version": __version__}  # fmt: skip
    job_json = json.dumps(job, sort_keys=True)
    return {
        "format": h5out.FORMAT, "format_version": h5out.FORMAT_VERSION, "task": predictor.task,
        "class_names": json.dumps(predictor.class_names),
        "target_names": json.dumps(list(meta.get("target_names") or [])),
        "target_units": json.dumps(list(meta.get("target_units") or [])),
        "models": json.dumps(hashes), "microcnn_version": __version__,
        "input_path": identity["path"], "input_size_bytes": identity["size_bytes"],
        "dataset": "/" + archive.dataset,
        "preprocessing": json.dumps(meta.get("preprocessing") or {}, default=str),
        "options": json.dumps(options), "method": predictor.method,
        "job": job_json, "job_key": hashlib.sha256(job_json.encode()).hexdigest(),
    }  # fmt: skip


def predict_archive(
    models: Predictor | str | Path | Sequence[str | Path] | Any,
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
        models: checkpoint path(s) (an ensemble), a ready :class:`Predictor`, or a
            :class:`~microcnn.inference.classical.ClassicalPredictor` (Otsu, watershed ...).
        input_path: HDF5 file; ``dataset`` names its (N, H, W[, C]) images (default the archive's /images).
        output_path: results file. ``<output>.partial`` holds an unfinished job, ``<output>.lock`` the lock.
        chunk: rows per batch, flush and HDF5 chunk: smaller resumes with less lost work. Part of the job:
            a resume must use the same chunk.
        save_masks: segmentation: also store each class mask (uint8, 255 = padding).
        progress: callback (items done, items total) of this rank, at the start and after each chunk.
        predictor_kwargs: device, tile, overlap, tta, batch_size ... for ``Predictor.from_checkpoint``.

    Under torchrun (a process group initialised), each rank predicts its shard and rank 0 joins them.

    Returns:
        BatchSummary over all ranks (rank 0) or this rank's shard (other ranks); ``already_done`` when the
        output already was this job's finished result.

    Raises:
        DatasetError: the input is missing, not HDF5, truncated, or lacks ``dataset`` (before any work).
        BatchJobError: another job holds the output, the output exists from another job, or a partial file
            is from another job (or another chunk).
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number of rows >= 1; got {chunk!r}. Use e.g. 16.")
    output = Path(output_path)
    archive = InputArchive(input_path, dataset)
    rank, world = _dist_place()
    lock = JobLock(lock_path(output if rank == 0 else h5out.rank_path(output, rank)), what=output)
    try:
        _on_all_ranks(lock.acquire)  # first: a second job fails here, before any hashing or model loading
        _on_all_ranks(_refuse_foreign_output, output)
        predictor, hashes = _as_predictor(models, dict(predictor_kwargs or {}))
        options = _options(predictor, chunk=chunk, save_masks=save_masks, world=world)
        attrs = _job_attrs(predictor, hashes, archive, options)
        if _on_all_ranks(h5out.finished_job, output, attrs):
            return replace(_summarise(output), already_done=True)
        return _predict_locked(predictor, archive, output, attrs, chunk=chunk, save_masks=save_masks,
                               progress=progress)  # fmt: skip
    finally:
        lock.release()
        archive.close()


def _refuse_foreign_output(output: Path) -> None:
    """An existing output that is not a results file of ours is refused before any model is loaded."""
    if output.exists() and not h5out.is_our_output(output):
        raise h5out.output_exists_error(output)


def _predict_locked(predictor: Any, archive: InputArchive, output: Path, attrs: dict[str, Any], *,
                    chunk: int, save_masks: bool, progress: Any) -> BatchSummary:  # fmt: skip
    from microcnn.engine.distributed import barrier

    rank, world = _dist_place()
    start, stop = _shard(len(archive), rank, world, chunk)
    target = output if world == 1 else h5out.rank_path(output, rank)
    final, stored = _on_all_ranks(_shard_state, target, attrs)
    attrs = {**attrs, "input_sha256": _shared_input_hash(stored, archive.path)}
    if not final:  # a rank file from a killed joined run may already be final
        _on_all_ranks(_write_file, predictor, archive, target, attrs, (start, stop), chunk, save_masks,
                      progress)  # fmt: skip
    barrier()
    if world > 1 and rank == 0:
        shards = [h5out.rank_path(output, r) for r in range(world)]
        h5out.write_virtual(output, shards, {**attrs, **_finish_attrs(shards)})
    barrier()
    return _summarise(output if (world == 1 or rank == 0) else target)


def _shard_state(target: Path, attrs: dict[str, Any]) -> tuple[bool, str | None]:
    """(this shard's file is already final, the input hash stored in its final or partial file).

    Raises BatchJobError when either file belongs to another job.
    """
    import h5py

    if h5out.finished_job(target, attrs):
        with h5py.File(target, "r") as f:
            return True, str(f.attrs["input_sha256"])
    partial = h5out.partial_path(target)
    if partial.exists() and h5out.is_our_output(partial):
        with h5py.File(partial, "r", locking=False) as f:
            h5out.check_same_job(f, partial, attrs)
            return False, str(f.attrs["input_sha256"])
    return False, None


def _write_file(predictor: Any, archive: InputArchive, target: Path, attrs: dict[str, Any],
                rows: tuple[int, int], chunk: int, save_masks: bool, progress: Any) -> None:  # fmt: skip
    """Predict input items ``rows`` = [start, stop) into ``target`` (via its partial file), then publish."""
    start, stop = rows
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
        _check_input_unchanged(archive.path, attrs, h5out.partial_path(target))
        failed = _flagged_rows(f["failed"])
        f.attrs["n_items"], f.attrs["n_failed"] = int(f["failed"].shape[0]), len(failed)
        f.attrs["status"] = "partial" if failed else "complete"
        f.attrs["finished_at"] = _now()
        f.attrs["complete"] = True  # last
        f.flush()
    finally:
        f.close()
    h5out.publish(h5out.partial_path(target), target)


def _check_input_unchanged(path: Path, attrs: dict[str, Any], partial: Path) -> None:
    """The input's path, size and mtime are still those the job started with (its hash stays valid)."""
    before, now = json.loads(attrs["job"])["input"], input_identity(path)
    if now != before:
        raise BatchJobError(
            f"The input '{path}' changed while the job ran (size/mtime {before['size_bytes']}/"
            f"{before['mtime_ns']} -> {now['size_bytes']}/{now['mtime_ns']}); its results would mix two "
            f"inputs. Delete '{partial}' and run the job again on the final input."
        )


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
        first = int(f.attrs.get("first_item", 0))
        failed = [first + i for i in _flagged_rows(f["failed"])]
        return BatchSummary(n_items=int(f["done"].shape[0]), n_done=_count_done(f["done"]),
                            n_failed=len(failed), failed=failed, status="partial" if failed else "complete",
                            output=path)  # fmt: skip


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
