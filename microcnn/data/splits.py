"""Seeded, group-aware train/val/test splits and k-fold cross-validation, saved as JSON.

A *group* is the physical sample an image comes from (``sample_id``): all images of one group always land
on the same side, so a model is never validated on a sample it has seen. Without groups every image is its
own group. The same ids, groups and seed give the same split on every machine (NumPy's PCG64 generator).

Hand-written rather than scikit-learn's GroupShuffleSplit/GroupKFold: scikit-learn is not a dependency of
microcnn, and the assignment below is a few lines; it also balances image counts, which GroupShuffleSplit
does not (it splits by number of groups).

Example:
    >>> split = make_splits(["a", "b", "c", "d"], groups=["s1", "s1", "s2", "s3"], val_fraction=0.25, seed=0)
    >>> sorted(split)
    ['test', 'train', 'val']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import DatasetError

SPLIT_FORMAT = "microcnn-split"


def _groups_of(ids: Sequence[str], groups: Sequence[str] | None) -> dict[str, list[str]]:
    """{group: [ids]} in first-seen order; checks that ids are unique and groups match ids one to one."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"Image ids must be unique to split them; repeated: {dupes}.")
    if groups is None:
        return {i: [i] for i in ids}
    if len(groups) != len(ids):
        raise DatasetError(f"groups must have one entry per id; got {len(groups)} groups for {len(ids)} ids.")
    out: dict[str, list[str]] = {}
    for i, g in zip(ids, groups, strict=True):
        out.setdefault(str(g) if g not in (None, "") else i, []).append(i)
    return out


def _shuffled(by_group: dict[str, list[str]], seed: int) -> list[str]:
    names = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(names))
    return [names[k] for k in order]


def make_splits(
    ids: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Split ids into {"train", "val", "test"} lists (each in input order), keeping groups together.

    Groups are shuffled with ``seed`` and given to test, then val, until each holds at least
    ``round(fraction * N)`` images (at least one group when the fraction is > 0); the rest is train.
    With large groups the realised fractions can exceed the requested ones.

    Example:
        >>> make_splits([f"im{i}" for i in range(10)], val_fraction=0.2, seed=1)["val"]  # doctest: +SKIP
        ['im2', 'im7']
    """
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise DatasetError(f"{label} must be in [0, 1); got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(f"val_fraction + test_fraction must be < 1; got {val_fraction + test_fraction}.")
    by_group = _groups_of(ids, groups)
    n = sum(len(v) for v in by_group.values())
    order = _shuffled(by_group, seed)
    side: dict[str, str] = {}
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        wanted, taken = max(1, round(fraction * n)) if fraction > 0 else 0, 0
        while taken < wanted and order:
            group = order.pop(0)
            side[group] = name
            taken += len(by_group[group])
    if not order:
        raise DatasetError(
            f"No group is left for training: {len(by_group)} groups cannot fill val_fraction={val_fraction} "
            f"and test_fraction={test_fraction}. Lower the fractions or add samples."
        )
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for group, members in by_group.items():
        split[side.get(group, "train")].extend(members)
    return _in_input_order(split, ids)


def kfold_splits(
    ids: Sequence[str], *, k: int = 5, groups: Sequence[str] | None = None, seed: int = 0
) -> list[dict[str, list[str]]]:
    """k folds as [{"train": [...], "val": [...]}, ...]; each id is in exactly one val list.

    Groups are shuffled with ``seed``, then dealt largest first to the fold holding the fewest images, so
    fold sizes differ by at most the size of one group.

    Example:
        >>> folds = kfold_splits([f"im{i}" for i in range(6)], k=3, seed=0)
        >>> [len(f["val"]) for f in folds]
        [2, 2, 2]
    """
    by_group = _groups_of(ids, groups)
    if not isinstance(k, int) or k < 2 or k > len(by_group):
        raise DatasetError(f"k must be an integer in [2, {len(by_group)}] (number of groups); got {k}.")
    order = _shuffled(by_group, seed)
    order.sort(key=lambda g: -len(by_group[g]))  # stable: ties keep the seeded order
    folds: list[list[str]] = [[] for _ in range(k)]
    for group in order:
        smallest = min(range(k), key=lambda f: len(folds[f]))
        folds[smallest].extend(by_group[group])
    all_ids = [i for members in by_group.values() for i in members]
    out = []
    for val in folds:
        held = set(val)
        out.append(_in_input_order({"train": [i for i in all_ids if i not in held], "val": val}, ids))
    return out


def _in_input_order(split: dict[str, list[str]], ids: Sequence[str]) -> dict[str, list[str]]:
    rank = {str(i): n for n, i in enumerate(ids)}
    return {key: sorted(values, key=rank.__getitem__) for key, values in split.items()}


def save_split(
    path: str | Path, split: dict[str, list[str]] | list[dict[str, list[str]]], **info: Any
) -> Path:
    """Write a split (or a list of folds) as JSON; ``info`` (e.g. seed=0) is stored alongside."""
    path = Path(path)
    payload = {"format": SPLIT_FORMAT, "version": 1, "info": info}
    payload["folds" if isinstance(split, list) else "split"] = split
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return path


def load_split(path: str | Path) -> dict[str, list[str]] | list[dict[str, list[str]]]:
    """Read a file written by :func:`save_split`; checks that no id is on two sides of a split."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"Cannot read split file '{path}': {exc}. Write it with save_split().") from None
    if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
        raise DatasetError(f'\'{path}\' is not a microcnn split file (needs "format": "{SPLIT_FORMAT}").')
    splits = payload.get("folds", payload.get("split"))
    for part in splits if isinstance(splits, list) else [splits]:
        seen: dict[str, str] = {}
        for side, members in part.items():
            for i in members:
                if i in seen:
                    raise DatasetError(f"Split file '{path}': id '{i}' is in both '{seen[i]}' and '{side}'.")
                seen[i] = side
    return splits
