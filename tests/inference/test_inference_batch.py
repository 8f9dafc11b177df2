"""HDF5 batch prediction: values, failures, locking, atomicity, SIGKILL + resume, torchrun sharding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from microcnn.errors import DatasetError
from microcnn.inference.batch import predict_archive
from microcnn.inference.h5out import BatchJobError, partial_path
from microcnn.inference.predictor import Predictor
from microcnn.io.hdf5 import ArchiveWriter
from microcnn.io.hdf5_reader import open_archive

N_ITEMS = 24
SPEC = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
META = {
    "model": SPEC,
    "task": "segmentation",
    "class_names": ["matrix", "pore"],
    "preprocessing": {"augment": []},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def make_archive(path: Path, n: int, *, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with ArchiveWriter(path, task="segmentation", image_shape=(32, 32), class_names=["matrix", "pore"]) as w:
        for i in range(n):
            rows, cols = (int(v) for v in rng.integers(20, 33, 2))
            image = rng.random((rows, cols)).astype(np.float32)
            w.append(image, mask=np.zeros((rows, cols), np.uint8), pixel_size_um=0.25, name=f"img{i:03d}")
    return path


def make_model(path: Path) -> Path:
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = build_model(SPEC).eval()
    save_weights(net, path, META)
    return path


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("batch")
    return {"dir": d, "input": make_archive(d / "in.h5", N_ITEMS), "model": make_model(d / "m.safetensors")}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "microcnn", "predict-h5", *args]
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=120)


def cli_job(job: dict[str, Path], out: Path, *extra: str, env: dict[str, str] | None = None):
    return cli("--model", str(job["model"]), "--input", str(job["input"]), "--output", str(out),
               "--device", "cpu", "--chunk", "3", "--save-masks", *extra, env=env)  # fmt: skip


def datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def assert_bitwise_equal(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for key in da:
        assert da[key].dtype == db[key].dtype, key
        assert da[key].tobytes() == db[key].tobytes(), f"/{key} differs"


@pytest.fixture(scope="module")
def baseline(job) -> Path:
    out = job["dir"] / "baseline.h5"
    proc = cli_job(job, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_results_equal_per_image_prediction_and_hand_counted_fractions(job, tmp_path):
    out = tmp_path / "r.h5"
    summary = predict_archive([job["model"]], job["input"], out, chunk=5, save_masks=True,
                              predictor_kwargs={"device": "cpu"})  # fmt: skip
    assert (summary.status, summary.n_done, summary.failed, summary.exit_code) == ("complete", N_ITEMS, [], 0)
    predictor = Predictor.from_checkpoint(job["model"], device="cpu")
    with h5py.File(out, "r") as f, open_archive(job["input"]) as archive:
        assert f.attrs["complete"] and f.attrs["task"] == "segmentation"
        assert f.attrs["input_size_bytes"] == job["input"].stat().st_size
        for i in (0, 7, N_ITEMS - 1):
            sample = archive.read(i)
            from microcnn.io.micrograph import Micrograph

            r = predictor.predict(Micrograph(pixels=sample["image"], pixel_size_um=0.25))
            rows, cols = sample["image"].shape
            counts = [(r.mask == k).sum() / r.mask.size for k in range(2)]
            np.testing.assert_allclose(f["phase_fractions"][i], counts, atol=1e-12)
            np.testing.assert_array_equal(f["masks"][i, :rows, :cols], r.mask)
            assert (f["masks"][i, rows:, :] == 255).all() and tuple(f["image_shapes"][i]) == (rows, cols)
            assert f["ids"][i].decode() == f"img{i:03d}" and f["pixel_size_um"][i] == 0.25
        assert all(f[k].fletcher32 for k in f)
    assert not partial_path(out).exists()


def test_a_corrupt_item_is_recorded_and_the_rest_completes(job, tmp_path):
    src = tmp_path / "bad.h5"
    shutil.copy(job["input"], src)
    with h5py.File(src, "r") as f:
        info = f["images"].id.get_chunk_info_by_coord((5, 0, 0))
    with open(src, "r+b") as fh:  # flip bytes inside item 5's chunk: fletcher32 must catch it
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff\x00\xff\x00")
    proc = cli("--model", str(job["model"]), "--input", str(src), "--output", str(tmp_path / "o.h5"),
               "--device", "cpu")  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "failed items (1): 5" in proc.stdout
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert list(np.flatnonzero(f["failed"][()])) == [5] and f.attrs["status"] == "partial"
        assert b"OSError" in f["error"][5] or b"RuntimeError" in f["error"][5]
        assert np.isnan(f["phase_fractions"][5]).all() and np.isfinite(f["phase_fractions"][6]).all()


@pytest.mark.parametrize("content", [b"not an hdf5 file at all", "truncated"])
def test_bad_input_is_refused_before_any_work(job, tmp_path, content):
    bad = tmp_path / "in.h5"
    if content == "truncated":
        data = job["input"].read_bytes()
        bad.write_bytes(data[: len(data) // 3])
    else:
        bad.write_bytes(content)
    with pytest.raises(DatasetError, match=r"not an HDF5 file|damaged or truncated"):
        predict_archive([job["model"]], bad, tmp_path / "o.h5", predictor_kwargs={"device": "cpu"})
    assert list(tmp_path.iterdir()) == [bad]  # no output, no partial file


def test_missing_dataset_names_the_available_ones(job, tmp_path):
    with pytest.raises(DatasetError, match=r"no dataset '/nope'.*images"):
        predict_archive([job["model"]], job["input"], tmp_path / "o.h5", dataset="/nope")


def test_existing_output_is_never_overwritten(job, tmp_path):
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    with pytest.raises(BatchJobError, match="already exists"):
        predict_archive([job["model"]], job["input"], out, predictor_kwargs={"device": "cpu"})
    assert out.read_bytes() == b"precious"


def test_second_job_on_the_same_output_fails_fast_without_damage(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    shutil.copy(baseline, partial_path(out))  # stands in for a running job's file (same job key)
    size = partial_path(out).stat().st_size
    holder = subprocess.Popen(  # the running job: another process holding the file open for writing
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r+'); print('locked', "
         "flush=True); time.sleep(60)", str(partial_path(out))], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BatchJobError, match="Another job is writing"):
            predict_archive([job["model"]], job["input"], out, chunk=3, save_masks=True,
                            predictor_kwargs={"device": "cpu"})  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert partial_path(out).stat().st_size == size and not out.exists()


def test_partial_file_of_another_job_is_not_mixed_in(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    shutil.copy(baseline, partial_path(out))
    with pytest.raises(BatchJobError, match="different job"):
        predict_archive([job["model"]], job["input"], out, chunk=3, save_masks=False,  # other options
                        predictor_kwargs={"device": "cpu"})  # fmt: skip


def _kill_and_resume(job: dict[str, Path], out: Path, kills: list[int]) -> None:
    """Kill after k items (chunks of 2: k = 1 dies mid-chunk, k = 3 after one flushed chunk), then finish."""
    done = []
    for k in kills:
        proc = cli_job(job, out, "--chunk", "2", env={**ENV, "MICROCNN_TEST_KILL_AFTER_ITEMS": str(k)})
        assert proc.returncode == -9, proc.stderr  # really SIGKILLed
        assert not out.exists() and partial_path(out).exists()  # final name only when complete
        with h5py.File(partial_path(out), "r") as f:
            done.append(int(f["done"][()].sum()))
    assert done == sorted(done) and done[-1] > 0  # progress survives the kills and is never lost
    proc = cli_job(job, out, "--chunk", "2")
    assert proc.returncode == 0, proc.stderr


def test_sigkill_and_resume_equals_an_uninterrupted_run_bitwise(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    rng = np.random.default_rng(2024)
    _kill_and_resume(job, out, [int(k) for k in rng.integers(1, 6, size=3)])
    assert_bitwise_equal(out, baseline)


@pytest.mark.slow
def test_ten_seeded_sigkills_then_resume_equals_an_uninterrupted_run_bitwise(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    rng = np.random.default_rng(7)
    _kill_and_resume(job, out, [int(k) for k in rng.integers(1, 4, size=10)])
    assert_bitwise_equal(out, baseline)


def test_two_rank_torchrun_equals_one_rank(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "microcnn", "predict-h5", "--model", str(job["model"]), "--input", str(job["input"]),
           "--output", str(out), "--device", "cpu", "--chunk", "3", "--save-masks"]  # fmt: skip
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(out, "r") as f:
        assert f["phase_fractions"].is_virtual and f.attrs["complete"] and f.attrs["n_items"] == N_ITEMS
    assert_bitwise_equal(out, baseline)


def test_memory_does_not_grow_with_the_archive(job, tmp_path):
    """Coarse guard (the real 200 vs 2,000 comparison is benchmarks/bench_batch.py)."""
    predictor = Predictor.from_checkpoint(job["model"], device="cpu")
    peaks = []
    for n in (10, 60):
        src = make_archive(tmp_path / f"in{n}.h5", n, seed=n)
        predict_archive(predictor, src, tmp_path / f"w{n}.h5", chunk=5)  # warm-up of lazy imports
        tracemalloc.start()
        predict_archive(predictor, src, tmp_path / f"o{n}.h5", chunk=5, save_masks=True)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0] + 200_000


def test_an_item_the_model_refuses_is_isolated_from_its_batch(job):
    """predict_many fails for the chunk (a colour image for a gray model): each item is retried alone."""
    from microcnn.inference.batch import _predict_chunk
    from microcnn.io.micrograph import Micrograph

    rng = np.random.default_rng(5)
    images = {i: rng.random((24, 24), dtype=np.float32) for i in range(4)}
    images[2] = rng.random((24, 24, 3), dtype=np.float32)

    class Archive:
        def read(self, i: int) -> Micrograph:
            if i == 3:
                raise OSError("corrupt chunk")
            return Micrograph(pixels=images[i], pixel_size_um=0.5)

    predictor = Predictor.from_checkpoint(job["model"], device="cpu")
    outcomes = _predict_chunk(predictor, Archive(), [0, 1, 2, 3], save_masks=True)
    assert [type(v).__name__ for _, v in outcomes] == ["dict", "dict", "ValueError", "OSError"]
    assert [size for size, _ in outcomes[:3]] == [0.5, 0.5, 0.5] and np.isnan(outcomes[3][0])
    for i in (0, 1):  # the good items hold what predicting them alone gives
        alone = predictor.predict(Micrograph(pixels=images[i], pixel_size_um=0.5))
        np.testing.assert_array_equal(outcomes[i][1]["mask"], alone.mask)
