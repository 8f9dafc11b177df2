"""Batch jobs: one writer (flock, independent of HDF5 locking), job identity, damage vs lock errors,
finished jobs recognised, input hashed once, provenance."""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import microcnn
from microcnn.cli import main as cli_main
from microcnn.inference import batch, h5out
from microcnn.inference.batch import predict_archive
from microcnn.inference.h5out import BatchJobError, partial_path
from microcnn.inference.joblock import JobLock, lock_path

from .batch_support import Stop, assert_bitwise_equal, make_archive, make_model, stop_after

CPU = {"device": "cpu"}
PREPROCESSING = {"augment": [{"name": "Normalize", "mean": 0.5, "std": 0.25}], "in_channels": 1}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("jobs")
    meta = {"task": "segmentation", "class_names": ["matrix", "pore"], "preprocessing": PREPROCESSING}
    return {"dir": d, "input": make_archive(d / "in.h5", 12, side=24),
            "model": make_model(d / "m.safetensors", meta=meta)}  # fmt: skip


@pytest.fixture(scope="module")
def baseline(job) -> Path:
    out = job["dir"] / "baseline.h5"
    predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    return out


def _interrupted(job: dict, out: Path, *, chunk: int = 4, items: int = 4) -> None:
    """Leave a partial file as a crash would: the job stops once ``items`` rows are done."""
    with pytest.raises(Stop):
        predict_archive([job["model"]], job["input"], out, chunk=chunk, progress=stop_after(items),
                        predictor_kwargs=CPU)  # fmt: skip
    assert partial_path(out).exists() and not out.exists()


def _hold_lock(path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Another process holding an exclusive flock on ``path`` (a running job), written with plain fcntl."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid %d on testhost' % os.getpid()); "
            "print('locked', flush=True); time.sleep(60)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_job_fails_fast_before_hashing_the_input_or_loading_models(job, tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    _interrupted(job, out)
    before = partial_path(out).read_bytes()
    monkeypatch.setattr(batch, "sha256_file", lambda *_a, **_k: pytest.fail("hashed before taking the lock"))
    holder = _hold_lock(lock_path(out))
    try:
        t0 = time.perf_counter()
        with pytest.raises(BatchJobError, match=r"Another job \(pid \d+ on testhost\) is writing"):
            # a model path that does not exist: loading it would fail with another error
            predict_archive([tmp_path / "missing.safetensors"], job["input"], out, chunk=4)
        assert time.perf_counter() - t0 < 2.0
    finally:
        holder.kill()
        holder.wait()
    assert partial_path(out).read_bytes() == before and not out.exists()


def test_lock_excludes_a_second_job_even_with_hdf5_file_locking_off(job, tmp_path, monkeypatch, baseline):
    """HDF5_USE_FILE_LOCKING=FALSE (common on clusters) switches HDF5's own exclusion off; ours stays."""
    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")
    out, refusals = tmp_path / "o.h5", []

    def progress(done: int, _total: int) -> None:  # job A, midway: job B starts on the same output
        if 0 < done < 12 and not refusals:
            with pytest.raises(BatchJobError, match="Another job") as info:
                predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
            refusals.append(str(info.value))

    predict_archive([job["model"]], job["input"], out, chunk=4, progress=progress, predictor_kwargs=CPU)
    assert len(refusals) == 1
    assert_bitwise_equal(out, baseline)  # job A finished undisturbed
    assert not lock_path(out).exists()


def test_a_reader_holding_the_partial_open_is_not_mistaken_for_damage(job, tmp_path):
    out = tmp_path / "o.h5"
    _interrupted(job, out)
    reader = subprocess.Popen(  # h5py "r" takes HDF5's shared lock: our "r+" open then fails
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r'); print('open', "
         "flush=True); time.sleep(60)", str(partial_path(out))], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert reader.stdout.readline().strip() == "open"
        with pytest.raises(BatchJobError, match=r"open in another process.*left as it is"):
            predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    finally:
        reader.kill()
        reader.wait()
    assert partial_path(out).exists() and not partial_path(out).with_suffix(".partial.damaged").exists()


def test_lock_errors_of_hdf5_and_of_the_file_system_are_not_damage(job, tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    _interrupted(job, out)
    real_file = h5py.File

    def no_lock(path, mode="r", *args, **kwargs):  # NFS without lockd: ENOLCK on the r+ open
        if mode == "r+":
            raise OSError(errno.ENOLCK, "Unable to synchronously open file (unable to lock file, errno = 37)")
        return real_file(path, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", no_lock)
    with pytest.raises(BatchJobError, match="left as it is"):
        predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    monkeypatch.undo()
    assert partial_path(out).exists() and not list(tmp_path.glob("*.damaged"))
    import fcntl

    def enolck(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", enolck)
    with pytest.raises(BatchJobError, match="does not support file locks"):
        predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    assert partial_path(out).exists()


def test_a_really_damaged_partial_is_moved_aside_and_the_job_starts_over(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    partial_path(out).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))  # an HDF5 signature, then nothing
    (tmp_path / "o.h5.partial.new").write_bytes(b"half-built")  # left by a kill during creation
    summary = predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    assert summary.status == "complete"
    damaged = tmp_path / "o.h5.partial.damaged"
    assert damaged.read_bytes() == b"\x89HDF\r\n\x1a\n" + bytes(200)
    assert_bitwise_equal(out, baseline)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5", "o.h5.partial.damaged"]


def test_a_stale_lock_file_left_by_a_kill_does_not_block(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    lock_path(out).write_text("pid 999999 on a host that was killed\n")  # no process holds it
    predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    assert_bitwise_equal(out, baseline)
    assert not lock_path(out).exists()


def test_lock_file_replaced_between_open_and_lock_is_detected(tmp_path):
    path = tmp_path / "x.lock"
    first = JobLock(path).acquire()
    with pytest.raises(BatchJobError, match="Another job"):
        JobLock(path).acquire()
    first.release()
    assert not path.exists()
    with JobLock(path):  # free again after release
        assert path.read_text().startswith("pid ")


def test_rerun_of_a_finished_job_reports_done_and_another_job_is_refused(job, tmp_path, capsys):
    out = tmp_path / "o.h5"
    args = ["predict-h5", "--model", str(job["model"]), "--input", str(job["input"]), "--output", str(out),
            "--device", "cpu", "--chunk", "4"]  # fmt: skip
    assert cli_main(args) == 0
    data = out.read_bytes()
    capsys.readouterr()
    assert cli_main(args) == 0  # e.g. after a kill right after the final rename
    assert "already finished by an earlier run of this job" in capsys.readouterr().out
    assert cli_main([*args, "--tta"]) == 2  # another job: refused, the output untouched
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == data


def test_resume_with_another_chunk_is_refused_with_the_fix(job, tmp_path, baseline):
    out = tmp_path / "o.h5"
    _interrupted(job, out, chunk=4, items=4)
    with pytest.raises(BatchJobError, match=r"started with chunk=4; this run has chunk=3.*--chunk 4"):
        predict_archive([job["model"]], job["input"], out, chunk=3, predictor_kwargs=CPU)
    predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    assert_bitwise_equal(out, baseline)


def test_input_is_hashed_once_and_a_resume_checks_it_is_unchanged(job, tmp_path, monkeypatch):
    src = tmp_path / "in.h5"
    src.write_bytes(job["input"].read_bytes())
    out, hashed = tmp_path / "o.h5", []
    real = batch.sha256_file
    monkeypatch.setattr(batch, "sha256_file", lambda p, **k: hashed.append(Path(p).name) or real(p, **k))
    with pytest.raises(Stop):
        predict_archive([job["model"]], src, out, chunk=4, progress=stop_after(4), predictor_kwargs=CPU)
    predict_archive([job["model"]], src, out, chunk=4, predictor_kwargs=CPU)  # resume: stored hash reused
    assert hashed.count("in.h5") == 1
    with h5py.File(out, "r") as f:
        assert f.attrs["input_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    out2 = tmp_path / "o2.h5"
    with pytest.raises(Stop):
        predict_archive([job["model"]], src, out2, chunk=4, progress=stop_after(4), predictor_kwargs=CPU)
    with h5py.File(src, "a") as f:  # the input changes between the kill and the resume
        f.attrs["edited"] = 1
    with pytest.raises(BatchJobError, match=r"different job \(input.mtime_ns"):
        predict_archive([job["model"]], src, out2, chunk=4, predictor_kwargs=CPU)


def test_provenance_attributes_match_independent_values(job, tmp_path):
    out = tmp_path / "o.h5"
    before = dt.datetime.now(dt.timezone.utc)
    predict_archive([job["model"]], job["input"], out, chunk=4, predictor_kwargs=CPU)
    after = dt.datetime.now(dt.timezone.utc)
    with h5py.File(out, "r") as f:
        attrs = dict(f.attrs)
    model_sha = hashlib.sha256(job["model"].read_bytes()).hexdigest()
    assert json.loads(attrs["models"]) == [{"name": "m.safetensors", "sha256": model_sha}]
    assert attrs["input_sha256"] == hashlib.sha256(job["input"].read_bytes()).hexdigest()
    assert attrs["input_size_bytes"] == len(job["input"].read_bytes())
    assert attrs["input_path"] == str(job["input"].resolve()) and attrs["dataset"] == "/images"
    assert attrs["microcnn_version"] == microcnn.__version__
    assert json.loads(attrs["preprocessing"]) == PREPROCESSING  # what was saved into the checkpoint
    options = json.loads(attrs["options"])
    assert options["chunk"] == 4 and options["world_size"] == 1 and options["tta"] is False
    started, finished = (dt.datetime.fromisoformat(attrs[k]) for k in ("started_at", "finished_at"))
    assert before <= started <= finished <= after and started.tzinfo is not None
    assert attrs["n_items"] == 12 and attrs["status"] == "complete" and bool(attrs["complete"])
    assert attrs["job_key"] == hashlib.sha256(attrs["job"].encode()).hexdigest()


def test_is_our_output_checks_the_signature_and_the_format(tmp_path):
    junk, other = tmp_path / "junk.h5", tmp_path / "other.h5"
    junk.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with h5py.File(other, "w") as f:
        f["done"] = np.zeros(3)
    assert not h5out.is_our_output(junk) and not h5out.is_our_output(other)
    assert not h5out.is_our_output(tmp_path / "missing.h5")
