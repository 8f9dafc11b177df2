"""From the ``data`` / ``augment`` config sections to training and validation datasets.

``data.source`` is a dataset folder, an ``.h5`` archive, or ``"synthetic"``: then ``microcnn.synth`` writes a
folder once into ``data.cache_dir`` (named after the synthetic parameters; written to a temporary folder
and renamed, so a killed generation never leaves a half cache) and that folder is used.

Training samples get the augmentation pipeline seeded per (seed, epoch, index), so the same sample of the
same epoch is augmented identically in any worker and after a resume.

Example:
    >>> prepared = prepare_data(load_config("configs/segment_unet_bilinear.yaml"))   # doctest: +SKIP
    >>> train_set, val_set = build_datasets(cfg, prepared)                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.config import ExperimentConfig
from microcnn.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """The opened dataset (no transform), its split and the facts a model file records."""

    dataset: Any
    split: dict[str, list[str]]
    train_idx: list[int]
    val_idx: list[int]
    class_names: list[str]
    target_names: list[str]
    target_units: list[str]
    in_channels: int
    image_size: tuple[int, int]
    pixel_size_um: float | None
    source: str
    data_hash: str
    split_hash: str
    labels: list[int] = field(default_factory=list)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _hash_file(h: Any, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def data_hash(dataset: Any) -> str:
    """16 hex digits of SHA-256 over what the model learns from, so the hash changes when the data does.

    A folder: class / target names and, per sample, id, label, target, pixel size, group and the bytes of
    its image and mask files. An ``.h5`` archive: the bytes of the file. Anything else: names and ids.
    The location of the data is not part of it (a copied folder keeps its hash).
    """
    h = hashlib.sha256()
    names = [getattr(dataset, "class_names", []), getattr(dataset, "target_names", [])]
    h.update(json.dumps(names, default=str).encode())
    records = getattr(dataset, "records", None)
    path = getattr(dataset, "path", None)
    if records is not None:
        for r in records:
            h.update(json.dumps([r.id, r.label, r.target, r.pixel_size_um, r.group], default=str).encode())
            for file in (r.image, r.mask):
                if file is not None:
                    _hash_file(h, Path(file))
    elif path is not None and Path(path).is_file():
        _hash_file(h, Path(path))
    else:
        h.update(json.dumps(list(dataset.ids())).encode())
    return h.hexdigest()[:16]


def synthetic_folder(cfg: ExperimentConfig) -> Path:
    """The cache folder of ``data.source: synthetic``, generated when missing (rank 0 only under DDP)."""
    from microcnn.engine.distributed import barrier
    from microcnn.synth.dataset import make_dataset, resolve_choices
    from microcnn.synth.writer import write_dataset

    s = cfg.data.synthetic
    try:
        kinds, props = resolve_choices(cfg.task, s.kinds, s.targets)
    except ValueError as exc:
        raise ConfigError(f"data.synthetic: {exc}") from None
    params = {
        "task": cfg.task,
        "n": s.n,
        "size": s.size,
        "seed": s.seed,
        "kinds": kinds,
        "targets": props,
        "info_bar": s.info_bar,
    }
    folder = Path(cfg.data.cache_dir) / f"{cfg.task}-n{s.n}-s{s.size}-seed{s.seed}-{_digest(params)[:8]}"
    import torch.distributed as dist

    if not folder.exists() and (not dist.is_initialized() or dist.get_rank() == 0):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        samples = make_dataset(
            cfg.task,
            n=s.n,
            size=s.size,
            seed=s.seed,
            kinds=kinds,
            properties=props,
            info_bar_rows=20 if s.info_bar else 0,
        )
        try:
            write_dataset(samples, tmp / "data", task=cfg.task, targets=props, provenance=params)
            (tmp / "data").rename(folder)
        except FileExistsError:
            pass  # another process finished first; its folder is identical
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("Synthetic %s data (%d images of %d px) written to %s", cfg.task, s.n, s.size, folder)
    barrier()
    return folder


def open_source(cfg: ExperimentConfig) -> Any:
    """The dataset of ``data.source`` without a transform (images as float32 numpy arrays)."""
    from microcnn.data.datasets import open_dataset

    d = cfg.data
    source = synthetic_folder(cfg) if d.source == "synthetic" else Path(d.source)
    if not source.exists():
        raise DatasetError(
            f"data.source '{d.source}' not found (relative paths resolve against the current folder, "
            f"{Path.cwd()}). Give a dataset folder, an .h5 archive or 'synthetic'."
        )
    options: dict[str, Any] = {}
    if source.is_dir():
        options = {"group_column": d.group_column, "pixel_size_column": d.pixel_size_column}
        if d.samples_csv:
            options["samples_csv"] = d.samples_csv
        if d.target_units:
            options["target_units"] = d.target_units
    return open_dataset(source, task=cfg.task, class_names=d.class_names, **options)


def _split(cfg: ExperimentConfig, dataset: Any) -> dict[str, list[str]]:
    from microcnn.data.splits import load_split, make_splits

    if cfg.data.split:
        split = load_split(cfg.data.split)
        if isinstance(split, list):
            raise ConfigError(f"data.split '{cfg.data.split}' holds k folds; `microcnn cv` uses those.")
        return split
    return make_splits(
        dataset.ids(), groups=dataset.groups(), val_fraction=cfg.data.val_fraction, seed=cfg.seed
    )


def _facts(dataset: Any) -> tuple[int, tuple[int, int], float | None]:
    """(in_channels, (rows, cols), pixel size in µm) read from the first sample."""
    first = dataset[0]
    image = np.asarray(first["image"])
    size = float(first.get("pixel_size_um", math.nan))
    channels = 1 if image.ndim == 2 else image.shape[-1]
    return channels, (int(image.shape[0]), int(image.shape[1])), (size if math.isfinite(size) else None)


def _labels(dataset: Any) -> list[int]:
    records = getattr(dataset, "records", None)
    if records is not None:
        return [int(r.label) for r in records]
    return [int(dataset[i]["label"]) for i in range(len(dataset))]


def prepare_data(cfg: ExperimentConfig, *, split: dict[str, list[str]] | None = None) -> PreparedData:
    """Open ``data.source``, split it (``split`` given, ``data.split`` file, or seeded group-aware split)."""
    from microcnn.data.datasets import indices_of

    dataset = open_source(cfg)
    if len(dataset) == 0:
        raise DatasetError(f"data.source '{cfg.data.source}' holds no images.")
    split = split or _split(cfg, dataset)
    in_channels, image_size, pixel = _facts(dataset)
    names = list(getattr(dataset, "class_names", []) or [])
    return PreparedData(
        dataset=dataset,
        split=split,
        train_idx=indices_of(dataset, split["train"]),
        val_idx=indices_of(dataset, split.get("val", [])),
        class_names=names,
        target_names=list(cfg.data.target_names or getattr(dataset, "target_names", []) or []),
        target_units=list(getattr(dataset, "target_units", []) or []),
        in_channels=in_channels,
        image_size=image_size,
        pixel_size_um=pixel,
        source=str(cfg.data.source),
        data_hash=data_hash(dataset),
        split_hash=_digest(split),
        labels=_labels(dataset) if cfg.task == "classification" else [],
    )


class AugmentedSubset:
    """``indices`` of ``dataset`` through ``transform``; with ``patches_per_image`` > 1 each image appears
    that many times per epoch (a new random crop each time). ``get(i, epoch=e)`` reseeds the pipeline from
    (seed, e, i) first, so augmentation is reproducible per sample."""

    def __init__(
        self, dataset: Any, indices: list[int], transform: Any, *, seed: int, repeats: int = 1
    ) -> None:
        self.dataset, self.indices, self.transform = dataset, list(indices), transform
        self.seed, self.repeats = int(seed), int(repeats)

    def __len__(self) -> int:
        return len(self.indices) * self.repeats

    def get(self, i: int, *, epoch: int = 0) -> dict[str, Any]:
        sample = self.dataset[self.indices[i // self.repeats]]
        seed = np.random.SeedSequence([self.seed, int(epoch), int(i)]).generate_state(1)[0]
        self.transform.reseed(int(seed))
        out = self.transform(sample)
        return {k: v for k, v in out.items() if k not in ("group",)}

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.get(i, epoch=0)


def build_datasets(cfg: ExperimentConfig, prepared: PreparedData) -> tuple[AugmentedSubset, AugmentedSubset]:
    """(training set with augmentation and crops, validation set with whole images, no augmentation)."""
    from microcnn.data.transforms import build_transforms

    train_tf = build_transforms(cfg.augment, train=True, patch_size=cfg.data.patch_size, seed=cfg.seed)
    eval_tf = build_transforms(cfg.augment, train=False)
    train = AugmentedSubset(
        prepared.dataset, prepared.train_idx, train_tf, seed=cfg.seed, repeats=cfg.data.patches_per_image
    )
    val = AugmentedSubset(prepared.dataset, prepared.val_idx, eval_tf, seed=cfg.seed)
    return train, val


def balanced_weights(cfg: ExperimentConfig, prepared: PreparedData) -> list[float] | None:
    """Per training sample 1 / (count of its class), when ``train.balanced_sampling`` is on."""
    if not cfg.train.balanced_sampling:
        return None
    if cfg.task != "classification":
        raise ConfigError("train.balanced_sampling applies to classification only.")
    labels = [prepared.labels[i] for i in prepared.train_idx]
    counts = Counter(labels)
    return [1.0 / counts[c] for c in labels for _ in range(cfg.data.patches_per_image)]
