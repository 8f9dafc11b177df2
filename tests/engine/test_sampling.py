"""The resumable sharded batch sampler: rank shares, resume offsets, class-balanced draws."""

from __future__ import annotations

from collections import Counter

from microcnn.engine.sampling import EpochBatches, shard_indices


def _indices(sampler):
    return [[i for _, i in batch] for batch in sampler]


def _flat(sampler):
    return [i for batch in sampler for _, i in batch]


def test_ranks_split_each_global_batch():
    one = EpochBatches(10, batch_size=4, seed=3)
    ranks = [EpochBatches(10, batch_size=4, seed=3, rank=r, world_size=2) for r in range(2)]
    merged = [a + b for a, b in zip(*map(_indices, ranks), strict=True)]
    assert merged == _indices(one)
    assert sorted(_flat(one)) == list(range(10))  # a permutation: each sample once


def test_offset_resumes_inside_an_epoch_and_epochs_differ():
    s = EpochBatches(10, batch_size=4, seed=3)
    s.epoch = 1
    full = _flat(s)
    s.offset = 4
    assert _flat(s) == full[4:]
    s.epoch, s.offset = 2, 0
    assert _flat(s) != full


def test_balanced_weights_draw_classes_equally():
    labels = [0] * 90 + [1] * 10
    counts = Counter(labels)
    s = EpochBatches(100, batch_size=100, seed=0, weights=[1 / counts[c] for c in labels])
    drawn = Counter(labels[i] for batch in _indices(s) for i in batch)
    assert abs(drawn[1] - 50) < 15  # binomial(100, 0.5): sd 5


def test_eval_shards_cover_everything_once():
    assert sorted(shard_indices(7, 0, 3) + shard_indices(7, 1, 3) + shard_indices(7, 2, 3)) == list(range(7))


def test_steps_group_batches_and_splits_keep_the_samples_of_each_step():
    s = EpochBatches(10, batch_size=4, accumulate=2, seed=3)
    order = s.order(0)
    whole = s.steps()
    assert whole == [[order[0:4], order[4:8]], [order[8:10]]]  # steps of 8 and 2 samples
    s.splits = 2  # after one out-of-memory halving: each batch in two micro-batches
    halved = s.steps()
    assert [[len(b) for b in step] for step in halved] == [[2, 2, 2, 2], [1, 1]]
    flat = [[i for b in step for i in b] for step in whole]
    assert [[i for b in step for i in b] for step in halved] == flat
    s.splits = 3  # an odd batch cut as evenly as possible: 4 -> 2 + 1 + 1, 2 -> 1 + 1 (no empty part)
    assert [[len(b) for b in step] for step in s.steps()] == [[2, 1, 1, 2, 1, 1], [1, 1]]
    assert len(s) == 8 and sum(len(b) for b in s) == 10
