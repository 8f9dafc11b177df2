"""HDF5 batch prediction: values, failures, bad input, refusals. Locking and job identity are in
test_inference_batch_jobs.py, resume/scale-out/memory in test_inference_batch_resume.py, the other tasks and
classical methods in test_inference_batch_tasks.py."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from microcnn.cli import main as cli_main
from microcnn.errors import DatasetError
from microcnn.inference.batch import predict_archive
from microcnn.inference.h5out import BatchJobError, partial_path
from microcnn.inference.predictor import Predictor
from microcnn.io.hdf5_reader import open_archive

from .batch_support import Stop, make_archive, make_model, stop_after

N_ITEMS = 24


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("batch")
    return {"dir": d, "input": make_archive(d / "in.h5", N_ITEMS), "model": make_model(d / "m.safetensors")}


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


def test_a_corrupt_item_is_recorded_and_the_rest_completes(job, tmp_path, capsys):
    src = tmp_path / "bad.h5"
    shutil.copy(job["input"], src)
    with h5py.File(src, "r") as f:
        info = f["images"].id.get_chunk_info_by_coord((5, 0, 0))
    with open(src, "r+b") as fh:  # flip bytes inside item 5's chunk: fletcher32 must catch it
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff\x00\xff\x00")
    rc = cli_main(["predict-h5", "--model", str(job["model"]), "--input", str(src), "--output",
                   str(tmp_path / "o.h5"), "--device", "cpu"])  # fmt: skip
    assert rc == 3
    assert "failed items (1): 5" in capsys.readouterr().out
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.h5"]  # no partial file, no lock file left


def test_partial_file_of_another_job_is_not_mixed_in_and_the_message_names_the_difference(job, tmp_path):
    out = tmp_path / "o.h5"
    with pytest.raises(Stop):
        predict_archive([job["model"]], job["input"], out, chunk=3, save_masks=True, progress=stop_after(3),
                        predictor_kwargs={"device": "cpu"})  # fmt: skip
    before = partial_path(out).read_bytes()
    with pytest.raises(BatchJobError, match=r"different job \(options.save_masks: True -> False\)"):
        predict_archive([job["model"]], job["input"], out, chunk=3, save_masks=False,  # other options
                        predictor_kwargs={"device": "cpu"})  # fmt: skip
    assert partial_path(out).read_bytes() == before and not out.exists()


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
