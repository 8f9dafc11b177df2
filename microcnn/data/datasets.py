"""Torch datasets over image folders and HDF5 archives, plus random patch sampling.

Every dataset returns sample dicts: {"image": (H, W) or (H, W, C) float32 in [0, 1] (before a transform) or
a (C, H, W) float32 tensor (after), "mask": (H, W) int64 | "label": int | "target": (T,) float32,
"pixel_size_um": float (µm per pixel, NaN when unknown), "id": str, "group": str (physical sample)}.

Pixel size priority for folders: samples.csv > the file's own metadata > dataset.json > unknown (NaN).
Archives are opened lazily in each DataLoader worker (never in ``__init__``), so ``num_workers > 0`` works
with the fork and spawn start methods and nothing loads a whole archive into memory.

Example:
    >>> ds = open_dataset("data/uhcs", task="segmentation", transform=build_transforms(None, train=False))
    >>> ds[0]["image"].shape, ds.class_names          # doctest: +SKIP
    (torch.Size([1, 484, 645]), ['0', '1', '2', '3'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from microcnn.data import folders
from microcnn.errors import DatasetError
from microcnn.registry import check_choice

TASKS = ("classification", "segmentation", "regression")
Transform = Callable[[dict[str, Any]], dict[str, Any]]


class FolderDataset(Dataset):
    """Samples of a dataset folder (layouts in data/README.md), read one file at a time.

    Args:
        root: the dataset folder.
        task: "classification" | "segmentation" | "regression"; None = dataset.json "task", else inferred.
        transform: applied to each sample dict (see :func:`microcnn.data.transforms.build_transforms`).
        class_names: class names in index order; default dataset.json, else sorted labels / mask values.
        target_units: units of the regression targets, one per target column (the experiment config's
            ``data.target_units``); default dataset.json "target_units", else "" (unknown).
        samples_csv: table with sample ids and pixel sizes; default ``<root>/samples.csv`` when present.
        group_column / pixel_size_column: its column names (e.g. "sample_label", "um_per_px").
        as_gray: colour rule of ``read_micrograph`` (None = gray when R = G = B).

    Example:
        >>> ds = FolderDataset(uhcs, task="segmentation", samples_csv=uhcs / "metadata.csv",
        ...                    group_column="sample_label", pixel_size_column="um_per_px")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path,
        *,
        task: str | None = None,
        transform: Transform | None = None,
        class_names: Sequence[str] | None = None,
        target_units: Sequence[str] | None = None,
        samples_csv: str | Path | None = None,
        group_column: str = "sample_id",
        pixel_size_column: str = "pixel_size_um",
        as_gray: bool | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"Dataset folder '{self.root}' not found.")
        meta = folders.read_dataset_json(self.root)
        self.task = check_choice("task", task or meta.get("task") or folders.infer_task(self.root), TASKS)
        self.transform = transform
        self.as_gray = as_gray
        self.palette = meta.get("palette")
        self.default_pixel_size_um = folders.parse_pixel_size(meta.get("pixel_size_um"), "dataset.json")
        names = list(class_names) if class_names is not None else meta.get("class_names")
        self.target_names: list[str] = []
        if self.task == "segmentation":
            records = folders.segmentation_records(self.root)
        elif self.task == "classification":
            records, names = folders.classification_records(self.root, names)
        else:
            records, self.target_names = folders.regression_records(self.root)
        self.class_names: list[str] = [str(c) for c in names] if names else []
        units = target_units if target_units is not None else meta.get("target_units")
        self.target_units = _check_units(units, self.target_names, self.root)
        self.records = _attach_samples_table(
            records, self.root, samples_csv, group_column=group_column, pixel_size_column=pixel_size_column
        )

    def __len__(self) -> int:
        return len(self.records)

    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def groups(self) -> list[str]:
        """Physical sample of each image (for group-aware splits); the image id where unknown."""
        return [r.group or r.id for r in self.records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        from microcnn.io.images import read_micrograph

        rec = self.records[index]
        micrograph = read_micrograph(rec.image, pixel_size_um=rec.pixel_size_um, as_gray=self.as_gray)
        size = micrograph.pixel_size_um or self.default_pixel_size_um
        sample: dict[str, Any] = {
            "image": micrograph.pixels,
            "pixel_size_um": float(size) if size else float("nan"),
            "id": rec.id,
            "group": rec.group or rec.id,
        }
        if rec.mask is not None:
            mask = folders.read_mask(rec.mask, palette=self.palette)
            if mask.shape != micrograph.pixels.shape[:2]:
                raise DatasetError(
                    f"Mask '{rec.mask.name}' is {mask.shape} but image '{rec.image.name}' is "
                    f"{micrograph.pixels.shape[:2]} (rows, cols); they must match."
                )
            sample["mask"] = mask
        if rec.label is not None:
            sample["label"] = rec.label
        if rec.target is not None:
            sample["target"] = np.asarray(rec.target, dtype=np.float32)
        return self.transform(sample) if self.transform else sample


def _check_units(units: Sequence[str] | None, names: list[str], root: Path) -> list[str]:
    """One unit string per target column (config ``data.target_units`` or dataset.json); '' = unknown.

    Only regression folders have target columns; for other tasks the units are kept as given (unused).
    """
    if not names:
        return [str(u) for u in units] if units and not isinstance(units, str) else []
    if not units:
        return [""] * len(names)
    if isinstance(units, str) or len(units) != len(names):
        raise DatasetError(
            f"target_units must list one unit per target column of '{root}' ({names}); got {units!r}. "
            "Set data.target_units in the config, target_units in dataset.json, or `microcnn pack "
            f"--target-units` to e.g. {['1'] * len(names)}, with '1' for dimensionless targets."
        )
    return [str(u) for u in units]


def _attach_samples_table(
    records: list[folders.Record],
    root: Path,
    samples_csv: str | Path | None,
    *,
    group_column: str,
    pixel_size_column: str,
) -> list[folders.Record]:
    from dataclasses import replace

    path = Path(samples_csv) if samples_csv is not None else root / "samples.csv"
    if not path.is_file():
        if samples_csv is not None:
            raise DatasetError(f"samples_csv '{path}' not found.")
        return records
    rows = folders.read_table(path)
    header = set(rows[0]) if rows else set()
    for column in (group_column, pixel_size_column):
        if samples_csv is not None and column not in header:
            raise DatasetError(f"Column '{column}' not in {path}; columns: {sorted(header)}.")
    table = folders.table_by_key(rows)
    out = []
    for rec in records:
        row = folders.lookup(table, rec.id, rec.image) or {}
        size = folders.parse_pixel_size(row.get(pixel_size_column), f"{path.name}, file {rec.image.name}")
        out.append(replace(rec, pixel_size_um=size, group=str(row.get(group_column) or "").strip()))
    return out


class H5Dataset(Dataset):
    """Samples of a microcnn HDF5 archive (spec in :mod:`microcnn.io.hdf5`), one chunk read per sample.

    The archive is validated in ``__init__`` (then closed); each worker opens its own handle on first use.

    Example:
        >>> ds = H5Dataset("train.h5", transform=build_transforms(None, train=False))  # doctest: +SKIP
    """

    def __init__(
        self, path: str | Path, *, task: str | None = None, transform: Transform | None = None
    ) -> None:
        from microcnn.io.hdf5 import ArchiveReader

        self.reader = ArchiveReader(path)
        info = self.reader.info
        self.path = Path(path)
        self.task = info["task"]
        if task is not None and task != self.task:
            raise DatasetError(f"Archive '{path}' holds a {self.task} dataset; task '{task}' was asked for.")
        self.transform = transform
        self.class_names: list[str] = list(info["class_names"])
        self.target_names: list[str] = list(info["target_names"])
        self.target_units: list[str] = list(info["target_units"])

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.reader.read(index)
        return self.transform(sample) if self.transform else sample

    def ids(self) -> list[str]:
        return self.reader.ids()

    def groups(self) -> list[str]:
        return self.reader.groups()

    def close(self) -> None:
        self.reader.close()


def open_dataset(
    source: str | Path,
    *,
    task: str | None = None,
    transform: Transform | None = None,
    class_names: Sequence[str] | None = None,
    **folder_options: Any,
) -> FolderDataset | H5Dataset:
    """A dataset from a folder or an ``.h5`` archive (chosen by what ``source`` is).

    ``folder_options`` go to :class:`FolderDataset` (samples_csv, group_column, pixel_size_column, ...).

    Example:
        >>> ds = open_dataset("runs/synth.h5")     # doctest: +SKIP
        >>> len(ds), ds.task                        # doctest: +SKIP
        (200, 'segmentation')
    """
    path = Path(source)
    if path.is_dir():
        return FolderDataset(path, task=task, transform=transform, class_names=class_names, **folder_options)
    if folder_options:
        raise DatasetError(f"Options {sorted(folder_options)} apply to folders only; '{path}' is a file.")
    dataset = H5Dataset(path, task=task, transform=transform)
    if class_names is not None and list(class_names) != dataset.class_names:
        raise DatasetError(
            f"class_names {list(class_names)} differ from the archive's {dataset.class_names}."
        )
    return dataset


def indices_of(dataset: FolderDataset | H5Dataset, ids: Sequence[str]) -> list[int]:
    """Positions of ``ids`` in ``dataset`` (for ``torch.utils.data.Subset`` from a saved split)."""
    where = {name: i for i, name in enumerate(dataset.ids())}
    missing = [i for i in ids if i not in where]
    if missing:
        raise DatasetError(f"{len(missing)} id(s) of the split are not in the dataset, e.g. {missing[:3]}.")
    return [where[i] for i in ids]


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: reseed each worker's transform from torch's worker seed,
    so augmentations differ between workers and repeat for the same DataLoader generator seed."""
    import torch

    info = torch.utils.data.get_worker_info()
    dataset = info.dataset if info is not None else None
    while dataset is not None:
        reseed = getattr(getattr(dataset, "transform", None), "reseed", None)
        if reseed is not None:
            reseed(info.seed % 2**32)
        dataset = getattr(dataset, "dataset", None)  # Subset, PatchDataset
