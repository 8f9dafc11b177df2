"""Public entry points: :func:`train`, :func:`evaluate`, :func:`cross_validate` (used by the CLI and the app).

A run folder ``<output_dir>/<name>/`` holds ``config.yaml``, ``split.json``, ``augmentation.json`` (the
albumentations pipeline), ``metrics.csv``, ``curves.png``, ``model.safetensors`` (best epoch) and ``last.pt``
(resume state). Under torchrun every rank calls :func:`train`; rank 0 writes the files.

Example:
    >>> from microcnn.config import load_config
    >>> cfg = load_config("configs/classify_lenet5.yaml", overrides=["train.epochs=1"])   # doctest: +SKIP
    >>> result = train(cfg, run_dir="runs/lenet")                                          # doctest: +SKIP
    >>> result.best["val_accuracy"]                                                        # doctest: +SKIP
    0.83
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microcnn.config import ExperimentConfig, save_config
from microcnn.engine.data import PreparedData, balanced_weights, build_datasets, prepare_data
from microcnn.engine.trainer import Progress, Trainer
from microcnn.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a training run produced: its folder, best weights, per-epoch history and why it stopped."""

    run_dir: Path
    weights: Path | None
    history: list[dict[str, float]]
    best_epoch: int
    best: dict[str, float]
    stopped: str
    metadata: dict[str, Any] = field(default_factory=dict)


def complete_model_spec(cfg: ExperimentConfig, prepared: PreparedData) -> dict[str, Any]:
    """``cfg.model`` plus what the data decides when not given: in_channels, num_classes / num_targets."""
    from microcnn.models.zoo import accepted_kwargs, model_task

    spec = dict(cfg.model)
    name = spec["name"]
    try:
        task = model_task(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if task != cfg.task:
        raise ConfigError(f"model '{name}' is a {task} model but the config's task is '{cfg.task}'.")
    accepted = accepted_kwargs(name)
    fill: dict[str, Any] = {"in_channels": prepared.in_channels}
    rows, cols = prepared.image_size
    side = cfg.data.patch_size or (rows if rows == cols else None)
    if side is not None:
        fill["input_size"] = side  # fixed-size heads (LeNet-5, TinyVGG) are built for the training size
    if cfg.task == "regression":
        fill["num_targets"] = len(prepared.target_names)
    else:
        fill["num_classes"] = len(prepared.class_names)
    for key, value in fill.items():
        if key in accepted and key not in spec:
            spec[key] = value
    return spec


def _metadata(cfg: ExperimentConfig, prepared: PreparedData, spec: dict[str, Any]) -> dict[str, Any]:
    from microcnn import __version__

    normalize = [a for a in cfg.augment if a.get("name") == "Normalize"]
    return {
        "microcnn_version": __version__,
        "model": spec,
        "task": cfg.task,
        "class_names": prepared.class_names,
        "target_names": prepared.target_names,
        "target_units": prepared.target_units,
        "normalisation": normalize[0] if normalize else "per-image standardisation (zero mean, unit std)",
        "preprocessing": {
            "in_channels": prepared.in_channels,
            "patch_size": cfg.data.patch_size,
            "augment": cfg.augment,
        },
        "pixel_size_um": prepared.pixel_size_um,
        "data_source": prepared.source,
        "data_hash": prepared.data_hash,
        "split_hash": prepared.split_hash,
        "experiment": cfg.name,
        "seed": cfg.seed,
    }


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    last = run_dir / "last.pt"
    if resume and not last.is_file():
        raise ConfigError(f"Nothing to resume: '{last}' does not exist. Start without --resume.")
    if not resume and last.exists():
        raise ConfigError(
            f"Run folder '{run_dir}' already holds a run. Continue it with --resume, or choose another name "
            "(--set name=...) or --run-dir."
        )


# settings that may change between a run and its resume (they do not change what was computed so far)
RESUMABLE_CHANGES = (
    "train.epochs",
    "train.max_steps",
    "train.max_minutes",
    "train.early_stopping",
    "train.device",
    "train.checkpoint_every_steps",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "output_dir",
)


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("model", "loss"):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def check_resume_config(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Refuse to resume with a config that differs from the run's ``config.yaml`` beyond
    :data:`RESUMABLE_CHANGES` (a resumed run would silently mix two experiments)."""
    from microcnn.config import load_config

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    old, new = _flatten(load_config(saved).to_dict()), _flatten(cfg.to_dict())
    changed = [
        k
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k) and not k.startswith(RESUMABLE_CHANGES)
    ]
    if changed:
        raise ConfigError(
            f"Cannot resume '{run_dir}' with a different config: {', '.join(changed)} changed "
            f"(e.g. {changed[0]}: {old.get(changed[0])!r} -> {new.get(changed[0])!r}). Only "
            f"{', '.join(RESUMABLE_CHANGES)} may change; start a new run for the rest."
        )


def _write_run_files(cfg: ExperimentConfig, prepared: PreparedData, train_set: Any, run_dir: Path) -> None:
    from microcnn.data.splits import save_split
    from microcnn.data.transforms import save_pipeline

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    save_split(run_dir / "split.json", prepared.split, seed=cfg.seed, source=prepared.source)
    save_pipeline(train_set.transform, run_dir / "augmentation.json")


def train(
    cfg: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    split: dict[str, list[str]] | None = None,
) -> RunResult:
    """Train the experiment ``cfg``; files go to ``run_dir`` (default ``<output_dir>/<name>``).

    Args:
        cfg: the experiment (:func:`microcnn.config.load_config`).
        run_dir: run folder; it must not hold a run unless ``resume``.
        resume: continue from ``run_dir/last.pt``.
        progress: ``progress(epoch, step, info)`` (see :class:`~microcnn.engine.trainer.Trainer`).
        split: {"train": ids, "val": ids} instead of ``data.split`` / a seeded split (cross-validation).
    """
    from microcnn.engine.device import seeded_run

    with seeded_run(cfg.seed, deterministic=cfg.train.deterministic):
        return _train_seeded(cfg, run_dir=run_dir, resume=resume, progress=progress, split=split)


def _train_seeded(
    cfg: ExperimentConfig,
    *,
    run_dir: str | Path | None,
    resume: bool,
    progress: Progress | None,
    split: dict[str, list[str]] | None,
) -> RunResult:
    from microcnn.engine.device import select_device
    from microcnn.engine.distributed import device_for_rank, init_distributed
    from microcnn.engine.tasks import build_task
    from microcnn.models import build_model

    dist = init_distributed(cfg.train.device)
    device = device_for_rank(select_device(cfg.train.device), dist)
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.output_dir) / cfg.name
    _check_run_dir(run_dir, resume)
    if resume:
        check_resume_config(cfg, run_dir)
    prepared = prepare_data(cfg, split=split)
    spec = complete_model_spec(cfg, prepared)
    model = build_model(dict(spec))
    task = build_task(
        cfg.task,
        loss=cfg.loss,
        class_names=prepared.class_names,
        target_names=prepared.target_names,
        l1=cfg.optim.l1,
        l2=cfg.optim.l2,
    )
    train_set, val_set = build_datasets(cfg, prepared)
    if dist.is_main:
        _write_run_files(cfg, prepared, train_set, run_dir)
    metadata = _metadata(cfg, prepared, spec)
    trainer = Trainer(
        model, task, cfg, device=device, run_dir=run_dir, dist=dist, metadata=metadata, progress=progress
    )
    weights_for_sampling = balanced_weights(cfg, prepared)
    try:
        fit = trainer.fit(
            train_set, val_set if len(val_set) else None, resume=resume, sample_weights=weights_for_sampling
        )
    except RuntimeError as exc:
        if "deterministic implementation" not in str(exc):
            raise
        raise ConfigError(
            f"train.deterministic is on, but a layer of model '{spec['name']}' has no deterministic kernel "
            f"({str(exc).split(' does not')[0]}). Set train.deterministic: false for this model."
        ) from None
    weights = run_dir / "model.safetensors"
    return RunResult(
        run_dir,
        weights if weights.exists() else None,
        fit.history,
        fit.best_epoch,
        fit.best,
        fit.stopped,
        metadata,
    )


def evaluate(
    model_path: str | Path,
    data: str | Path,
    *,
    batch_size: int = 1,
    device: str = "auto",
    progress: Any = None,
    tta: bool = False,
) -> dict[str, Any]:
    """Metrics of a saved model (``model.safetensors``) on a dataset folder or ``.h5`` archive.

    Returns {"n": images, "loss": mean loss, <metric>: value, ..., "confusion_matrix": [[...]] (classes)}.
    ``progress(done, total)`` is called after each batch. ``tta``: score the average over the 8 flips and
    rotations of each image (:class:`microcnn.inference.tta.Averaged`; 8x the compute); the loss is then
    that of the averaged probabilities.

    Example:
        >>> evaluate("runs/seg/model.safetensors", "data/samples/segmentation")["mean_iou"]  # doctest: +SKIP
        0.91
    """
    import torch

    from microcnn.data.datasets import open_dataset
    from microcnn.data.transforms import build_transforms
    from microcnn.engine.checkpoint import load_model
    from microcnn.engine.device import select_device
    from microcnn.engine.tasks import build_task

    dev = select_device(device)
    model, meta = load_model(model_path, device=dev)
    task_name = meta.get("task")
    augment = (meta.get("preprocessing") or {}).get("augment") or []
    names = meta.get("class_names") if task_name == "classification" else None
    dataset = open_dataset(
        data, task=task_name, class_names=names, transform=build_transforms(augment, train=False)
    )
    task = build_task(
        task_name, class_names=meta.get("class_names") or [], target_names=meta.get("target_names") or []
    )
    task.metrics.to(dev)
    if tta:
        from microcnn.inference.tta import Averaged

        model = Averaged(model, task_name, num_targets=len(meta.get("target_names") or []) or None)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    total, count = 0.0, 0
    with torch.inference_mode():
        for done, batch in enumerate(loader, start=1):
            batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss = task.validation_step(model, batch)
            total, count = total + float(loss) * len(batch["image"]), count + len(batch["image"])
            if progress is not None:
                progress(done, len(loader))
    out: dict[str, Any] = {"n": count, "loss": total / max(count, 1), **task.metrics.compute()}
    if task_name != "regression":
        out["confusion_matrix"] = task.metrics.confusion_matrix().tolist()
    return out


@dataclass
class CVResult:
    """Per-fold best metrics, their mean and sample standard deviation (ddof = 1)."""

    folds: list[dict[str, float]]
    mean: dict[str, float]
    std: dict[str, float]
    run_dir: Path


def cross_validate(
    cfg: ExperimentConfig,
    *,
    folds: int | None = None,
    run_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> CVResult:
    """k-fold, group-aware cross-validation: one training run per fold in ``run_dir/fold_<i>``.

    Folds come from ``data.split`` when it holds folds (``folds`` must then be None or their number), else
    ``kfold_splits(ids, k=folds or 5, groups, seed)``.
    """
    from microcnn.data.splits import save_split

    splits = _cv_splits(cfg, folds)
    root = Path(run_dir) if run_dir is not None else Path(cfg.output_dir) / f"{cfg.name}-cv{len(splits)}"
    root.mkdir(parents=True, exist_ok=True)
    save_split(root / "folds.json", splits, seed=cfg.seed)
    rows = []
    for i, split in enumerate(splits):
        log.info("Fold %d of %d", i + 1, len(splits))
        result = train(cfg, run_dir=root / f"fold_{i}", progress=progress, split=split)
        rows.append({"fold": i, **{k: v for k, v in result.best.items() if isinstance(v, int | float)}})
    return summarise_folds(rows, root)


def _cv_splits(cfg: ExperimentConfig, folds: int | None) -> list[dict[str, list[str]]]:
    """The folds of ``data.split`` when it holds folds, else ``folds`` (default 5) drawn group-aware."""
    from microcnn.data.splits import kfold_splits, load_split
    from microcnn.engine.data import open_source

    saved = load_split(cfg.data.split) if cfg.data.split else None
    if isinstance(saved, list):
        if folds is not None and folds != len(saved):
            raise ConfigError(
                f"--folds {folds} conflicts with data.split '{cfg.data.split}', which holds {len(saved)} "
                f"folds. Drop --folds (or give --folds {len(saved)}) to use them, or --set data.split=null "
                f"to draw {folds} new folds."
            )
        return saved
    if saved is not None:
        log.warning(
            "data.split '%s' holds one train/val split, not folds; cross-validation draws its own folds.",
            cfg.data.split,
        )
    dataset = open_source(cfg)
    return kfold_splits(dataset.ids(), k=folds or 5, groups=dataset.groups(), seed=cfg.seed)


def summarise_folds(rows: list[dict[str, float]], root: Path) -> CVResult:
    """Mean and sample standard deviation (ddof = 1) of each metric over folds; writes ``cv_summary.csv``
    into ``root`` (one row per fold, then "mean" and "std (ddof=1)")."""
    from microcnn.engine.report import write_metrics_csv

    keys = [k for k in rows[0] if k not in ("fold", "epoch", "step", "lr")]
    mean, std = {}, {}
    for key in keys:
        values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
        mean[key] = sum(values) / len(values) if values else math.nan
        var = sum((v - mean[key]) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else math.nan
        std[key] = math.sqrt(var) if math.isfinite(var) else math.nan
    write_metrics_csv(
        [*rows, {"fold": "mean", **mean}, {"fold": "std (ddof=1)", **std}], root / "cv_summary.csv"
    )
    return CVResult(rows, mean, std, root)
