"""A short, boring training loop: epochs, AMP, clipping, accumulation, validation, checkpoints, early stop.

Task logic (loss, metrics, what a batch means) lives in :mod:`microcnn.engine.tasks`; data preparation and
run folders in :mod:`microcnn.engine.api`. The loop writes, in ``run_dir`` (rank 0 only):
``metrics.csv`` (one row per epoch), ``curves.png``, ``model.safetensors`` (best epoch by the monitored
metric) and ``last.pt`` (everything needed to resume: model, optimizer, scheduler, AMP scaler, epoch, step,
sample offset in the epoch, micro-batch split, every RNG state, history).

An optimizer step takes ``train.accumulate`` batches; each micro-batch's mean loss is weighted by
``local_n * world_size / step_n`` (:func:`microcnn.engine.distributed.loss_weight`), so every sample of the
step counts equally: a short last step, a short last batch and an uneven split between DDP ranks give the
gradient of the plain mean over the step's samples.

Faults: a non-finite loss or gradient stops training naming the step (``nan_policy: stop``) or drops that
step (``skip``: the step still counts in ``state.step`` and in step-based schedules, and in
``state.skipped_steps``); CUDA out-of-memory cuts each batch into twice as many micro-batches (down to
``train.min_batch_size``) whose gradients are accumulated, so optimizer steps and schedules are unchanged.
A DataLoader worker that dies raises :class:`microcnn.engine.sampling.DataLoaderWorkerError` at once.

Example:
    >>> trainer = Trainer(net, task, cfg, device=torch.device("cpu"), run_dir="runs/x")   # doctest: +SKIP
    >>> result = trainer.fit(train_set, val_set)                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microcnn.config import ExperimentConfig
from microcnn.engine import checkpoint, rng
from microcnn.engine.device import amp_dtype
from microcnn.engine.distributed import DistInfo, all_reduce_sum, loss_weight
from microcnn.engine.metrics import lower_is_better
from microcnn.engine.optim import build_optimizer, build_scheduler
from microcnn.engine.report import write_curves, write_metrics_csv
from microcnn.engine.sampling import (
    EpochBatches,
    EpochView,
    make_loader,
    shard_indices,
    worker_deaths,
)
from microcnn.engine.tasks import Task
from microcnn.errors import MicrocnnError

log = logging.getLogger(__name__)
Progress = Callable[[int, int, dict[str, Any]], None]


class NonFiniteError(MicrocnnError, FloatingPointError):
    """The loss or the gradients became NaN/inf (the message names the step)."""


class OutOfMemoryFloorError(MicrocnnError, RuntimeError):
    """CUDA ran out of memory even at the smallest allowed batch size."""


@dataclasses.dataclass
class TrainState:
    """Loop position and bookkeeping, saved in ``last.pt``.

    ``step`` counts optimizer steps, including those skipped for a non-finite loss or gradient (also counted
    in ``skipped_steps``); ``offset`` is the number of samples of the epoch already used; ``splits`` the
    micro-batches per batch after out-of-memory halvings (``batch_size`` the resulting largest micro-batch).
    """

    epoch: int = 0
    offset: int = 0
    step: int = 0
    batch_size: int = 8
    splits: int = 1
    best_value: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    skipped_steps: int = 0
    elapsed_s: float = 0.0  # wall clock spent in fit() (train.max_minutes), over all resumes
    epoch_s: float = 0.0  # wall clock of the last epoch (training + validation)
    loss_sum: float = 0.0
    loss_count: int = 0
    stopped: str = ""
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]
    stopped: str
    steps: int


class Trainer:
    """Fit ``model`` on a task with the ``train`` / ``optim`` / ``schedule`` sections of ``cfg``.

    Args:
        model: the network (moved to ``device`` and ``cfg.train.dtype``; wrapped in DDP when distributed).
        task: the task object (loss, metrics, steps).
        cfg: the experiment config.
        device: from :func:`microcnn.engine.device.select_device`.
        run_dir: where files go; None = write nothing.
        dist: this process's rank info.
        metadata: stored in ``model.safetensors`` (model spec, class names, ...), plus metrics and epoch.
        progress: ``progress(epoch, step, info)`` after each optimizer step (info["phase"] = "train") and
            each epoch (info["phase"] = "epoch", with the epoch's metrics).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        cfg: ExperimentConfig,
        *,
        device: torch.device,
        run_dir: str | Path | None = None,
        dist: DistInfo | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.cfg, self.tcfg = cfg, cfg.train
        self.task, self.device, self.progress = task, device, progress
        self.dist = dist or DistInfo()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metadata = dict(metadata or {})
        self.dtype = torch.float64 if cfg.train.dtype == "float64" else torch.float32
        self.raw = model.to(device=device, dtype=self.dtype)
        if cfg.train.channels_last:
            self.raw = self.raw.to(memory_format=torch.channels_last)
        self.model = self._wrap(self.raw)
        self.amp = amp_dtype(device, cfg.train.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp is torch.float16)
        self.optimizer = build_optimizer(self.raw.parameters(), cfg.optim)
        self.scheduler: Any = None
        self.interval = "epoch"
        self.state = TrainState(batch_size=cfg.train.batch_size)
        minutes = cfg.train.max_minutes
        if minutes is not None and not minutes > 0:
            raise MicrocnnError(f"train.max_minutes must be a positive number of minutes; got {minutes}.")
        self.budget_s = None if minutes is None else 60.0 * minutes
        self._last_tick = self._epoch_start = time.perf_counter()
        es = cfg.train.early_stopping
        self.monitor = es.metric if es.metric.startswith(("val_", "train_")) else f"val_{es.metric}"
        self.minimize = lower_is_better(self.monitor) if es.mode == "auto" else es.mode == "min"
        task.metrics.to(device)

    def _warn(self, message: str, *args: Any) -> None:
        if self.dist.is_main:  # one warning per run, not one per rank
            log.warning(message, *args)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.tcfg.compile else model

    # ----------------------------------------------------------------------------------------- data
    def _setup_data(self, train_set: Any, val_set: Any | None, weights: list[float] | None) -> None:
        self.sampler = EpochBatches(
            len(train_set),
            batch_size=self.tcfg.batch_size,
            accumulate=self.tcfg.accumulate,
            seed=self.cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            weights=weights,
        )
        self.train_loader = make_loader(EpochView(train_set), self.sampler, self.cfg, self.device)
        self.val_loader = None
        if val_set is not None and len(val_set) > 0:
            share = torch.utils.data.Subset(
                val_set, shard_indices(len(val_set), self.dist.rank, self.dist.world_size)
            )
            size = self.tcfg.eval_batch_size or self.tcfg.batch_size
            batches = [list(range(i, min(i + size, len(share)))) for i in range(0, len(share), size)]
            self.val_loader = make_loader(share, batches, self.cfg, self.device)

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, non_blocking=True)
                if value.is_floating_point():
                    value = value.to(self.dtype)
                if key == "image" and self.tcfg.channels_last and value.ndim == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
            out[key] = value
        return out

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    # ------------------------------------------------------------------------------------------ fit
    def fit(
        self,
        train_set: Any,
        val_set: Any | None = None,
        *,
        resume: bool = False,
        sample_weights: list[float] | None = None,
    ) -> FitResult:
        """Train for ``cfg.train.epochs`` (or until early stopping / ``max_steps``); return the history.

        ``train_set[i]`` (or ``train_set.get(i, epoch=e)``) returns a sample dict of tensors;
        ``sample_weights`` (one per sample) turns on class-balanced sampling with replacement.
        """
        if len(train_set) < self.dist.world_size:
            raise MicrocnnError(f"The training set has {len(train_set)} samples; need >= 1 per process.")
        self._setup_data(train_set, val_set, sample_weights)
        if self.val_loader is None and self.monitor.startswith("val_"):
            self._warn("No validation set: %s is not available; monitoring train_loss instead.", self.monitor)
            self.monitor, self.minimize = "train_loss", True
        self.scheduler, self.interval = build_scheduler(
            self.optimizer,
            self.cfg.schedule,
            epochs=self.tcfg.epochs,
            steps_per_epoch=len(self.sampler.steps()),  # at the configured batch size, from sample 0
            mode="min" if self.minimize else "max",
            budget_s=self.budget_s,
            clock=self.clock,
        )
        if resume:
            self.restore(self.run_dir / "last.pt")
        self._last_tick = time.perf_counter()  # time between a stop and its resume does not count
        with worker_deaths():
            while self.state.epoch < self.tcfg.epochs and not self.state.stopped:
                if self.budget_s is not None and self.clock() + self.state.epoch_s > self.budget_s:
                    self.state.stopped = "max_minutes"  # the next epoch would end past the budget
                    log.info("Stopped: another epoch would end past train.max_minutes.")
                    break
                self._epoch_start = self.clock() if self.budget_s is not None else 0.0
                complete = self._train_epoch()
                self._end_epoch(complete=complete)
        return self._result()

    def clock(self) -> float:
        """Wall-clock seconds spent in :meth:`fit` (all resumes), the same on every rank (their mean)."""
        now = time.perf_counter()
        self.state.elapsed_s += now - self._last_tick
        self._last_tick = now
        if self.dist.active:
            return all_reduce_sum([self.state.elapsed_s], self.device)[0] / self.dist.world_size
        return self.state.elapsed_s

    def _result(self) -> FitResult:
        s = self.state
        best = next((r for r in s.history if r["epoch"] == s.best_epoch), s.history[-1] if s.history else {})
        return FitResult(s.history, s.best_epoch, best, s.stopped or "epochs", s.step)

    def _train_epoch(self) -> bool:
        """Run the rest of the current epoch; False when ``max_steps`` cut it short."""
        self.sampler.epoch = self.state.epoch
        while True:
            self.sampler.offset, self.sampler.splits = self.state.offset, self.state.splits
            try:
                return self._run_steps()
            except torch.OutOfMemoryError:
                self._on_oom()  # the open step restarts from its first sample with smaller micro-batches

    def _run_steps(self) -> bool:
        self.model.train()
        steps = self.sampler.steps()
        batches, done, total = iter(self.train_loader), 0, sum(len(step) for step in steps)
        for k, step in enumerate(steps):
            step_n = sum(len(b) for b in step)
            self._step(batches, len(step), step_n)
            if self.scheduler is not None and self.interval == "step":
                self.scheduler.step()  # also after a skipped step: the lr follows the position in the data
            self.state.offset += step_n
            done += len(step)
            self._after_step(done, total)
            if self.state.stopped:
                return k == len(steps) - 1
        return True

    def _step(self, batches: Iterator[dict[str, Any]], micro: int, step_n: int) -> None:
        """Forward and backward over the ``micro`` batches of one optimizer step, then the update."""
        sums, ok = [0.0, 0], True
        for i in range(micro):
            batch = next(batches)  # consumed even after a non-finite loss, to stay in step with the data
            if ok:
                ok = self._backward(self._to_device(batch), sums, last=i == micro - 1, step_n=step_n)
        if ok and self._optimizer_step():
            self.state.loss_sum += sums[0]
            self.state.loss_count += int(sums[1])
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.state.skipped_steps += 1

    def _backward(self, batch: dict[str, Any], sums: list[float], *, last: bool, step_n: int) -> bool:
        n = int(batch["image"].shape[0])
        sync = contextlib.nullcontext() if last or not self.dist.active else self.model.no_sync()
        with sync:
            with self._autocast():
                loss = self.task.training_step(self.model, batch)
            if not self._finite(loss, "loss"):
                return False
            self.scaler.scale(loss * loss_weight(n, self.dist.world_size, step_n)).backward()
        sums[0], sums[1] = sums[0] + float(loss.detach()) * n, sums[1] + n
        return True

    def _finite(self, value: torch.Tensor, what: str) -> bool:
        ok = bool(torch.isfinite(value.detach()).all())
        if self.dist.active:  # every rank must take the same branch
            ok = all_reduce_sum([0.0 if ok else 1.0], self.device)[0] == 0.0
        if ok:
            return True
        where = f"step {self.state.step + 1} (epoch {self.state.epoch + 1})"
        if self.tcfg.nan_policy == "stop":
            raise NonFiniteError(
                f"Non-finite {what} (NaN or inf) at {where}; training stopped and no non-finite weights were "
                "saved. Lower optim.lr, set train.clip_grad_norm, check the data, or set "
                "train.nan_policy: skip to drop such steps."
            )
        self._warn("Non-finite %s at %s: step skipped (nan_policy: skip).", what, where)
        return False

    def _optimizer_step(self) -> bool:
        self.scaler.unscale_(self.optimizer)
        clip = self.tcfg.clip_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), clip if clip else math.inf)
        if not self.scaler.is_enabled() and not self._finite(norm, "gradients"):
            return False  # with fp16 the GradScaler skips non-finite steps itself
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def _after_step(self, batch: int, batches: int) -> None:
        s = self.state
        s.step += 1
        if self.progress is not None:
            info = {"phase": "train", "batch": batch, "batches": batches, "lr": self._lr()}
            info["loss"] = s.loss_sum / max(s.loss_count, 1)
            self.progress(s.epoch, s.step, info)
        every = self.tcfg.checkpoint_every_steps
        if every and s.step % every == 0:
            self.save_resume()
        if self.tcfg.max_steps is not None and s.step >= self.tcfg.max_steps:
            s.stopped = "max_steps"

    def _on_oom(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        s, size = self.state, self.tcfg.batch_size
        old, new = math.ceil(size / s.splits), math.ceil(size / (2 * s.splits))
        floor = max(self.tcfg.min_batch_size, 1)
        if self.dist.active or new < floor or new == old:
            why = "distributed runs cannot shrink one rank's batch" if self.dist.active else f"floor {floor}"
            raise OutOfMemoryFloorError(
                f"Out of memory at batch size {old} ({why}). Lower train.batch_size or data.patch_size, "
                "use train.amp, or a smaller model."
            )
        s.splits, s.batch_size = 2 * s.splits, new
        self._warn(
            "Out of memory at batch size %d: halved to %d; each batch of %d now runs as %d micro-batches "
            "with accumulated gradients (optimizer steps and schedules unchanged); the epoch continues.",
            old,
            new,
            size,
            s.splits,
        )

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------------ epoch end, eval
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and metrics over the validation set (reduced over ranks), keys prefixed "val_"."""
        if self.val_loader is None:
            return {}
        self.raw.eval()
        self.task.metrics.reset()
        total, count = 0.0, 0
        for batch in self.val_loader:
            batch = self._to_device(batch)
            with self._autocast():
                loss = self.task.validation_step(self.raw, batch)
            n = int(batch["image"].shape[0])
            total, count = total + float(loss) * n, count + n
        total, count = all_reduce_sum([total, count], self.device)
        metrics = self.task.metrics.compute()
        return {"val_loss": total / max(count, 1), **{f"val_{k}": v for k, v in metrics.items()}}

    def _end_epoch(self, *, complete: bool = True) -> None:
        """Validate, log, save. An epoch cut short by ``max_steps`` keeps its position for a resume and
        changes nothing a resumed run would count again: no epoch-based schedule step, no early-stopping
        count, no best model (only a provisional ``model.safetensors`` while no epoch has completed)."""
        s = self.state
        loss_sum, count = all_reduce_sum([s.loss_sum, s.loss_count], self.device)
        row = {
            "epoch": s.epoch + 1,
            "step": s.step,
            "lr": self._lr(),
            "train_loss": loss_sum / count if count else math.nan,
        }
        row.update(self.validate())
        if self.budget_s is not None:
            s.epoch_s = self.clock() - self._epoch_start
        s.history.append(row)
        improved = complete and self._close_epoch(row)
        self._write_epoch_files(row, save_model=improved or (not complete and s.best_epoch == 0))
        self.save_resume()
        if self.progress is not None:
            self.progress(s.epoch, s.step, {"phase": "epoch", **row})

    def _close_epoch(self, row: dict[str, float]) -> bool:
        """Schedule step, best epoch, early stopping of a completed epoch; True when it is the new best."""
        s, value = self.state, row.get(self.monitor, math.nan)
        improved = self._improved(value)
        if self.scheduler is not None and self.interval == "epoch":
            plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            self.scheduler.step(value) if plateau else self.scheduler.step()
        s.epoch, s.offset, s.loss_sum, s.loss_count = s.epoch + 1, 0, 0.0, 0
        if improved:
            s.best_value, s.best_epoch, s.bad_epochs = value, row["epoch"], 0
        else:
            s.bad_epochs += 1
        patience = self.tcfg.early_stopping.patience
        if patience and s.bad_epochs >= patience and not s.stopped:
            s.stopped = "early_stopping"
            log.info("Early stopping: %s did not improve for %d epochs.", self.monitor, patience)
        return improved

    def _improved(self, value: float) -> bool:
        best, delta = self.state.best_value, self.tcfg.early_stopping.min_delta
        if not math.isfinite(value):
            return False
        if not math.isfinite(best):
            return True
        return value < best - delta if self.minimize else value > best + delta

    def _write_epoch_files(self, row: dict[str, float], *, save_model: bool) -> None:
        if self.run_dir is None or not self.dist.is_main:
            return
        write_metrics_csv(self.state.history, self.run_dir / "metrics.csv")
        write_curves(self.state.history, self.run_dir / "curves.png", monitor=self.monitor)
        if save_model:
            meta = {**self.metadata, "metrics": row, "epoch": row["epoch"], "monitor": self.monitor}
            meta["partial_epoch"] = row["epoch"] > self.state.epoch  # provisional: epoch not completed
            checkpoint.save_weights(self.raw, self.run_dir / "model.safetensors", meta)

    # ------------------------------------------------------------------------------------- resume
    def resume_state(self) -> dict[str, Any]:
        """Everything :meth:`restore` needs, as tensors / numbers / strings (weights_only-loadable)."""
        return {
            "model": self.raw.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "trainer": dataclasses.asdict(self.state),
            "rng": rng.capture(),
        }

    def save_resume(self) -> None:
        if self.run_dir is not None and self.dist.is_main:
            checkpoint.save_resume_state(self.resume_state(), self.run_dir / "last.pt")
        if self.dist.active:
            torch.distributed.barrier()

    def restore(self, path: str | Path) -> None:
        """Load ``last.pt`` (weights_only) into model, optimizer, scheduler, scaler, loop state and every RNG
        (torch CPU and CUDA, NumPy's and Python's global generators)."""
        state = checkpoint.load_resume_state(path)
        checkpoint.load_state_strict(self.raw, state["model"], where=str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(**state["trainer"])
        # a row of an epoch cut short by max_steps is replaced when that epoch completes
        self.state.history = [row for row in self.state.history if row["epoch"] <= self.state.epoch]
        # files of earlier versions held the torch states only
        rng.restore(state.get("rng") or {"torch": state["torch_rng"], "cuda": state.get("cuda_rng")})
        self.state.stopped = ""
        log.info("Resumed from %s at epoch %d, step %d.", path, self.state.epoch + 1, self.state.step)
