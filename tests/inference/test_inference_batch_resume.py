"""Batch jobs: batches from absolute item indices, SIGKILL + resume bitwise, torchrun shards, flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from microcnn.inference.batch import _shard, predict_archive
from microcnn.inference.h5input import InputArchive
from microcnn.inference.h5out import partial_path
from microcnn.inference.predictor import Predictor

from .batch_support import (
    ENV,
    HWM_KIB,
    Stop,
    assert_bitwise_equal,
    cli,
    datasets,
    make_archive,
    make_model,
    stop_after,
)

HERE = Path(__file__).parent


@pytest.fixture
def one_thread():
    """Match the 1-thread subprocesses (OMP_NUM_THREADS=1): CPU kernels round differently per thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("n", "world", "chunk", "expected"),
    [
        (13, 2, 5, [(0, 10), (10, 13)]),  # 3 chunks: 2 + 1 (the old item split gave [0, 6), [6, 13))
        (24, 2, 3, [(0, 12), (12, 24)]),
        (10, 3, 4, [(0, 4), (4, 8), (8, 10)]),  # 3 chunks of 4, 4, 2 items: one each
        (5, 3, 4, [(0, 4), (4, 5), (5, 5)]),  # 2 chunks for 3 ranks: the last rank gets none
        (5, 1, 16, [(0, 5)]),
    ],
)
def test_shard_boundaries_fall_on_multiples_of_the_chunk(n, world, chunk, expected):
    assert [_shard(n, r, world, chunk) for r in range(world)] == expected  # written out by hand


def test_rows_are_predicted_in_batches_of_their_absolute_chunk(tmp_path):
    """Row i's bits come from the batch [k*chunk, (k+1)*chunk) containing i, also after a resume."""
    src = make_archive(tmp_path / "in.h5", 13, side=24)
    model = make_model(tmp_path / "m.safetensors")
    out = tmp_path / "o.h5"
    with pytest.raises(Stop):  # stop after the first chunk: the resume starts at item 5
        predict_archive(
            [model], src, out, chunk=5, progress=stop_after(5), predictor_kwargs={"device": "cpu"}
        )
    predict_archive([model], src, out, chunk=5, predictor_kwargs={"device": "cpu"})
    predictor, archive = Predictor.from_checkpoint(model, device="cpu"), InputArchive(src)
    with h5py.File(out, "r") as f:
        got = f["mean_probability"][()]
    for first in (0, 5, 10):
        items = archive.read_many(first, min(first + 5, 13))
        expected = [r.probabilities.mean(axis=(1, 2)) for r in predictor.predict_many(items)]
        assert got[first : first + len(items)].tobytes() == np.asarray(expected, np.float32).tobytes()
    archive.close()


def test_ten_seeded_sigkills_from_outside_then_resume_equal_an_uninterrupted_run_bitwise(tmp_path):
    src = make_archive(tmp_path / "in.h5", 160, side=24)  # same-shaped: 40 batches of 4 through predict_many
    model = make_model(tmp_path / "m.safetensors")
    cmd = [sys.executable, str(HERE / "batch_kill_driver.py"), str(model), str(src), str(tmp_path),
           "--chunk", "4", "--kills", "10", "--seed", "7"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["baseline_status"] == 0 and report["final_status"] == 0, proc.stderr[-3000:]
    kills = report["kills"]
    assert len(kills) == 10  # really SIGKILLed from outside, ten times
    done = [k["done_rows"] for k in kills if k["done_rows"] >= 0]
    assert max(done, default=0) > 0 and len(set(done)) > 3  # kills cut the job at many different points
    if report["finished_early"] == 0:  # (a run that finished before its kill restarts the job from zero)
        assert done == sorted(done)  # progress survives the kills
    assert not any(k["final_exists"] for k in kills)  # the final name appears only when complete
    assert_bitwise_equal(tmp_path / "resumed.h5", tmp_path / "baseline.h5")


@pytest.mark.slow
def test_ten_sigkills_at_item_counts_then_resume_equal_an_uninterrupted_run_bitwise(tmp_path):
    """The in-process kill hook (after k items, before the chunk is marked done), through the CLI."""
    src, model = make_archive(tmp_path / "in.h5", 24), make_model(tmp_path / "m.safetensors")
    args = ["--model", str(model), "--input", str(src), "--device", "cpu", "--chunk", "2", "--save-masks"]
    assert cli(*args, "--output", str(tmp_path / "base.h5")).returncode == 0
    out = tmp_path / "o.h5"
    for k in np.random.default_rng(7).integers(1, 4, size=10):
        proc = cli(*args, "--output", str(out), env={**ENV, "MICROCNN_TEST_KILL_AFTER_ITEMS": str(k)})
        assert proc.returncode == -9, proc.stderr
        assert not out.exists() and partial_path(out).exists()
    assert cli(*args, "--output", str(out)).returncode == 0
    assert_bitwise_equal(out, tmp_path / "base.h5")


def test_two_rank_torchrun_equals_one_rank_with_uneven_chunks(tmp_path, one_thread):
    src = make_archive(tmp_path / "in.h5", 13, side=24)  # same-shaped: 13 items, chunk 5 -> 5 + 5 + 3
    model = make_model(tmp_path / "m.safetensors")
    single = tmp_path / "single.h5"
    predict_archive([model], src, single, chunk=5, save_masks=True, predictor_kwargs={"device": "cpu"})
    out = tmp_path / "o.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "microcnn", "predict-h5", "--model", str(model), "--input", str(src),
           "--output", str(out), "--device", "cpu", "--chunk", "5", "--save-masks"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(out, "r") as f:
        assert (
            f.attrs["complete"] and f.attrs["n_items"] == 13 and json.loads(f.attrs["options"])["chunk"] == 5
        )
        for name in f:
            assert f[name].is_virtual, name
            for source in f[name].virtual_sources():  # the shards' datasets carry the checksums
                with h5py.File(tmp_path / source.file_name, "r") as shard:
                    assert shard[source.dset_name].fletcher32, (source.file_name, name)
        assert (
            f.attrs["input_sha256"]
            and f.attrs["input_sha256"] == h5py.File(single, "r").attrs["input_sha256"]
        )
    assert [h5py.File(tmp_path / f"o.h5.rank{r}.h5", "r")["done"].shape[0] for r in (0, 1)] == [10, 3]
    assert_bitwise_equal(out, single)
    assert datasets(out)["done"].all()


_PEAK = """
import sys
from microcnn.inference.batch import predict_archive
from microcnn.inference.predictor import Predictor
model, small, large, out = sys.argv[1:5]
predictor = Predictor.from_checkpoint(model, device="cpu")
for n in range(2):  # warm-up: lazy imports, HDF5 and allocator pools
    predict_archive(predictor, small, out + f".warm{n}.h5", chunk=16, save_masks=True)
before = hwm_kib()
predict_archive(predictor, large, out + ".large.h5", chunk=16, save_masks=True)
print(before, hwm_kib())
"""


def test_peak_memory_does_not_grow_with_the_number_of_items(tmp_path):
    """Coarse guard (the 200 vs 2,000 benchmark is benchmarks/bench_batch.py): 20 vs 400 images of 128².

    Keeping each item's probability map (2 x 128² float32 = 128 KiB, 50 MiB for 400 items) would exceed
    the bound, 20 % of the larger archive's image bytes (400 x 128² float32 x 0.2 = 5 MiB). glibc's
    mmap threshold is fixed so that freed buffers are returned instead of growing the heap, which makes the
    peak RSS reflect live memory (measured: +0.7 MiB here; with the adaptive threshold +8 MiB of noise).
    """
    model = make_model(tmp_path / "m.safetensors")
    small = make_archive(tmp_path / "s.h5", 20, side=128, dtype="float32")
    large = make_archive(tmp_path / "l.h5", 400, side=128, dtype="float32")
    with h5py.File(large, "r") as f:
        image_bytes = f["images"].size * f["images"].dtype.itemsize
    cmd = [sys.executable, "-c", HWM_KIB + _PEAK, str(model), str(small), str(large), str(tmp_path / "out")]
    env = {**ENV, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before_kib, after_kib = (int(v) for v in proc.stdout.split())
    assert (after_kib - before_kib) * 1024 < 0.2 * image_bytes, (before_kib, after_kib, image_bytes)
