"""Splits: seeded, disjoint, complete, group-aware; k-fold; JSON round trip; real uhcs sample labels."""

from __future__ import annotations

import csv
import json

import pytest

from microcnn.data.splits import kfold_splits, load_split, make_splits, save_split
from microcnn.errors import DatasetError

IDS = [f"im{i}" for i in range(10)]
GROUPS = ["g0", "g0", "g0", "g1", "g1", "g2", "g3", "g3", "g4", "g5"]


def _side_of(split):
    return {i: side for side, members in split.items() for i in members}


def test_make_splits_sizes_and_disjoint():
    split = make_splits(IDS, val_fraction=0.2, test_fraction=0.1, seed=3)
    # round(0.2 * 10) = 2 val, round(0.1 * 10) = 1 test, 7 train
    assert [len(split[k]) for k in ("train", "val", "test")] == [7, 2, 1]
    assert sorted(i for members in split.values() for i in members) == sorted(IDS)
    assert split == make_splits(IDS, val_fraction=0.2, test_fraction=0.1, seed=3)
    others = [make_splits(IDS, val_fraction=0.2, seed=s)["val"] for s in range(5)]
    assert len({tuple(v) for v in others}) > 1  # the seed matters


def test_make_splits_keeps_groups_together():
    for seed in range(10):
        side = _side_of(make_splits(IDS, groups=GROUPS, val_fraction=0.3, test_fraction=0.2, seed=seed))
        for g in set(GROUPS):
            assert len({side[i] for i, gi in zip(IDS, GROUPS, strict=True) if gi == g}) == 1


def test_kfold_partition_and_balance():
    folds = kfold_splits(IDS, k=5, seed=0)
    assert [len(f["val"]) for f in folds] == [2] * 5
    assert sorted(i for f in folds for i in f["val"]) == sorted(IDS)
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and len(f["train"]) + len(f["val"]) == 10


def test_kfold_groups_never_split():
    folds = kfold_splits(IDS, k=3, groups=GROUPS, seed=1)
    for f in folds:
        val_groups = {g for i, g in zip(IDS, GROUPS, strict=True) if i in f["val"]}
        train_groups = {g for i, g in zip(IDS, GROUPS, strict=True) if i in f["train"]}
        assert not val_groups & train_groups


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: kfold_splits(IDS, k=7, groups=GROUPS), r"\[2, 6\]"),
        (lambda: make_splits(IDS, val_fraction=0.6, test_fraction=0.5), "< 1"),
        (lambda: make_splits(["a", "a"]), "unique"),
        (lambda: make_splits(["a", "b"], groups=["x"]), "one entry per id"),
        (lambda: make_splits(["a", "b"], groups=["x", "x"], val_fraction=0.5), "No group is left"),
    ],
)
def test_bad_split_requests(call, match):
    with pytest.raises(DatasetError, match=match):
        call()


def test_save_load_round_trip(tmp_path):
    split = make_splits(IDS, val_fraction=0.2, seed=0)
    assert load_split(save_split(tmp_path / "split.json", split, seed=0)) == split
    folds = kfold_splits(IDS, k=2, seed=0)
    assert load_split(save_split(tmp_path / "folds.json", folds)) == folds
    bad = {"format": "microcnn-split", "split": {"train": ["a"], "val": ["a"]}}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="both"):
        load_split(tmp_path / "bad.json")


@pytest.mark.shared_data
def test_group_kfold_on_uhcs_keeps_sample_labels_apart(uhcs_dir):
    with (uhcs_dir / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["file"] for r in rows]
    groups = [r["sample_label"] for r in rows]
    assert len(ids) == 24 and len(set(groups)) == 12
    folds = kfold_splits(ids, k=6, groups=groups, seed=0)
    label_of = dict(zip(ids, groups, strict=True))
    assert sorted(i for f in folds for i in f["val"]) == sorted(ids)
    for f in folds:
        assert not {label_of[i] for i in f["val"]} & {label_of[i] for i in f["train"]}
