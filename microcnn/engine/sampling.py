"""A resumable, rank-sharded batch sampler and the epoch-aware dataset view it feeds.

Written here because torch's samplers cannot start in the middle of an epoch (``DistributedSampler`` and
``RandomSampler`` always begin at sample 0) and resume needs exactly that. The epoch's order is drawn from
``torch.Generator().manual_seed(seed * 1_000_003 + epoch)``, so it depends on (seed, epoch) only: the same
after a restart, with any number of workers. Each global batch of ``batch_size`` samples is cut into
``world_size`` contiguous parts, one per rank, so N processes see exactly the samples one process would.

An optimizer step takes ``accumulate`` consecutive batches. After a CUDA out-of-memory halving each batch is
cut into ``splits`` near-equal micro-batches, so the steps (which samples, how many per step) stay those
of the configured batch size and step-based schedules stay right.

The sampler yields ``(epoch, index)`` keys; :class:`EpochView` passes the epoch to datasets that want it
(random crops and augmentations seeded per (epoch, index)) and plain indices to the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from microcnn.errors import MicrocnnError


class DataLoaderWorkerError(MicrocnnError, RuntimeError):
    """A DataLoader worker process died (killed for memory, or crashed in native code)."""


class EpochBatches(Sampler):
    """Batches of ``(epoch, index)`` keys for this rank, from sample ``offset`` of epoch ``epoch`` on.

    Args:
        n: dataset length.
        batch_size: global batch (all ranks together).
        accumulate: batches per optimizer step (see :meth:`steps`).
        seed: base seed of the order.
        rank, world_size: this process's share.
        shuffle: random order (training) or 0..n-1 (evaluation).
        weights: (n,) sampling weights for class-balanced sampling (with replacement); None = permutation.
    """

    def __init__(
        self,
        n: int,
        *,
        batch_size: int,
        accumulate: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.accumulate = max(int(accumulate), 1)
        self.splits = 1  # micro-batches per batch (doubled by each out-of-memory halving)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.epoch = 0
        self.offset = 0  # samples of this epoch already consumed (globally)

    def order(self, epoch: int) -> list[int]:
        """The epoch's sample order (global, identical on every rank)."""
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(epoch))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        return torch.randperm(self.n, generator=g).tolist()

    def global_batches(self) -> list[list[int]]:
        """The remaining global batches of the current epoch (from ``offset``)."""
        rest = self.order(self.epoch)[self.offset :]
        return [rest[i : i + self.batch_size] for i in range(0, len(rest), self.batch_size)]

    def steps(self) -> list[list[list[int]]]:
        """The remaining optimizer steps of the epoch, each a list of global micro-batches.

        A step is ``accumulate`` batches (fewer at the end of the epoch), each batch cut into ``splits``
        near-equal parts; a micro-batch too small to give every rank a sample is left out (DDP needs all
        ranks to step).
        """
        batches = self.global_batches()
        out = []
        for i in range(0, len(batches), self.accumulate):
            micro = [p for b in batches[i : i + self.accumulate] for p in _cut(b, self.splits)]
            micro = [p for p in micro if len(p) >= self.world_size]
            if micro:
                out.append(micro)
        return out

    def _share(self, batch: list[int]) -> list[int]:
        return _cut(batch, self.world_size)[self.rank]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in self.steps():
            for batch in step:
                yield [(self.epoch, i) for i in self._share(batch)]

    def __len__(self) -> int:
        return sum(len(step) for step in self.steps())


def _cut(batch: list[int], parts: int) -> list[list[int]]:
    """``batch`` in ``parts`` contiguous pieces whose lengths differ by at most one (first ones longer)."""
    base, extra = divmod(len(batch), parts)
    starts = [r * base + min(r, extra) for r in range(parts + 1)]
    return [batch[starts[r] : starts[r + 1]] for r in range(parts)]


class EpochView(Dataset):
    """``dataset[(epoch, i)]``: calls ``dataset.get(i, epoch=epoch)`` where defined, else ``dataset[i]``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        get = getattr(self.dataset, "get", None)
        return get(index, epoch=epoch) if callable(get) else self.dataset[index]


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Evaluation share of a rank: every ``world_size``-th sample (no padding, no duplicates)."""
    return list(range(rank, n, world_size))


def make_loader(dataset: Any, batches: Any, cfg: Any, device: torch.device) -> torch.utils.data.DataLoader:
    """A DataLoader over ``batches`` (a batch sampler or a list of index lists) with the ``data`` section's
    workers, pinned memory (CUDA only) and persistent workers; its own generator keeps the global RNG
    untouched (so resuming does not depend on how many loaders were made)."""
    from microcnn.data.datasets import seed_worker

    workers = cfg.data.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=cfg.data.pin_memory and device.type == "cuda",
        persistent_workers=cfg.data.persistent_workers and workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


@contextlib.contextmanager
def worker_deaths() -> Iterator[None]:
    """torch's "DataLoader worker (pid ...) exited unexpectedly" -> :class:`DataLoaderWorkerError`."""
    try:
        yield
    except RuntimeError as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "DataLoader worker" not in str(exc):
            raise
        raise DataLoaderWorkerError(
            f"A DataLoader worker process died ({exc}). This is usually the kernel killing it for memory "
            "(RAM, or /dev/shm in a container) or a crash in image decoding. Lower data.num_workers or "
            "train.batch_size, enlarge /dev/shm (docker --shm-size), or set data.num_workers=0 to see the "
            "error in the main process; then continue with --resume."
        ) from exc
