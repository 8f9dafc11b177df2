"""predict-h5 for every task: classification and regression (± std), an ensemble of two --model files,
classical methods (--method); each row against the per-image Predictor / analysis functions."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from microcnn.analysis import multi_otsu, otsu, quantify, watershed_particles
from microcnn.cli import main as cli_main
from microcnn.inference.batch import predict_archive
from microcnn.inference.classical import ClassicalPredictor
from microcnn.inference.h5input import InputArchive
from microcnn.inference.predictor import Predictor

from .batch_support import make_archive, make_model

N = 7
CLF_SPEC = {"name": "tinyvgg", "in_channels": 1, "num_classes": 3, "input_size": 32}
CLF_META = {"task": "classification", "class_names": ["a", "b", "c"], "preprocessing": {}}
REG_META = {"task": "regression", "target_names": ["porosity", "tortuosity"], "target_units": ["1", "1"],
            "preprocessing": {}}  # fmt: skip


def _reg_spec(heteroscedastic: bool) -> dict:
    return {"name": "regressor", "in_channels": 1, "num_targets": 2, "backbone": "tinyvgg",
            "backbone_kwargs": {"input_size": 32}, "heteroscedastic": heteroscedastic}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("tasks")
    return {
        "dir": d,
        "input": make_archive(d / "in.h5", N, side=32),
        "clf": [make_model(d / f"c{s}.safetensors", seed=s, spec=CLF_SPEC, meta=CLF_META) for s in (1, 2)],
        "reg": [
            make_model(d / f"r{s}.safetensors", seed=s, spec=_reg_spec(False), meta=REG_META) for s in (1, 2)
        ],
        "hetero": make_model(d / "h.safetensors", seed=4, spec=_reg_spec(True), meta=REG_META),
    }


def _items(path) -> list:
    archive = InputArchive(path)
    try:
        return archive.read_many(0, len(archive))
    finally:
        archive.close()


def _rows(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f} | {"attrs": dict(f.attrs)}


def test_classification_ensemble_of_two_model_flags_equals_numpy_over_per_image_members(files, tmp_path):
    out = tmp_path / "clf.h5"
    a, b = files["clf"]
    rc = cli_main(["predict-h5", "--model", str(a), "--model", str(b), "--input", str(files["input"]),
                   "--output", str(out), "--device", "cpu", "--chunk", "3"])  # fmt: skip
    assert rc == 0
    got = _rows(out)
    members = np.stack([[Predictor.from_checkpoint(p, device="cpu").predict(m).probabilities for m in
                         _items(files["input"])] for p in (a, b)])  # fmt: skip
    np.testing.assert_allclose(got["probabilities"], members.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(got["probabilities_std"], members.std(axis=0), atol=1e-6)
    assert got["probabilities_std"].max() > 1e-4  # the members really differ
    assert json.loads(got["attrs"]["class_names"]) == ["a", "b", "c"]
    assert [m["name"] for m in json.loads(got["attrs"]["models"])] == ["c1.safetensors", "c2.safetensors"]
    single = tmp_path / "one.h5"
    predict_archive([a], files["input"], single, chunk=3, predictor_kwargs={"device": "cpu"})
    assert np.isnan(_rows(single)["probabilities_std"]).all()  # one model, no TTA: no spread to report


def test_regression_values_and_heteroscedastic_std_equal_the_network_by_hand(files, tmp_path):
    from microcnn.engine.checkpoint import load_model

    out = tmp_path / "reg.h5"
    predict_archive([files["hetero"]], files["input"], out, chunk=4, predictor_kwargs={"device": "cpu"})
    got = _rows(out)
    net, _ = load_model(files["hetero"], device="cpu")
    for i, m in enumerate(_items(files["input"])):
        x = m.pixels.astype(np.float64)
        z = torch.from_numpy(((x - x.mean()) / (x.std() + 1e-4)).astype(np.float32))[None, None]
        with torch.inference_mode():
            mean, logvar = net.eval()(z)[0].split(2)
        np.testing.assert_allclose(got["values"][i], mean.numpy(), atol=1e-5)
        np.testing.assert_allclose(got["values_std"][i], np.exp(logvar.numpy()) ** 0.5, rtol=1e-4)
    assert json.loads(got["attrs"]["target_names"]) == ["porosity", "tortuosity"]


def test_regression_ensemble_std_is_the_spread_of_the_members(files, tmp_path):
    out = tmp_path / "reg2.h5"
    predict_archive(files["reg"], files["input"], out, chunk=4, predictor_kwargs={"device": "cpu"})
    got = _rows(out)
    members = np.stack([[Predictor.from_checkpoint(p, device="cpu").predict(m).values for m in
                         _items(files["input"])] for p in files["reg"]])  # fmt: skip
    np.testing.assert_allclose(got["values"], members.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(got["values_std"], members.std(axis=0), atol=1e-6)


@pytest.mark.parametrize(
    ("method", "reference"),
    [
        ("otsu", lambda m: otsu(m)),
        ("multi_otsu", lambda m: multi_otsu(m, classes=3)),
        ("watershed", lambda m: watershed_particles(m)),
    ],
)
def test_classical_methods_in_batch_equal_the_analysis_functions(files, tmp_path, method, reference):
    out = tmp_path / f"{method}.h5"
    summary = predict_archive(ClassicalPredictor(method, classes=3), files["input"], out, chunk=3,
                              save_masks=True)  # fmt: skip
    assert summary.status == "complete"
    got = _rows(out)
    for i, m in enumerate(_items(files["input"])):
        expected = reference(m)
        np.testing.assert_allclose(
            got["phase_fractions"][i], quantify(expected).fractions["fraction"], atol=1e-12
        )
        np.testing.assert_array_equal(got["masks"][i], expected.mask)
    assert got["attrs"]["method"] == ClassicalPredictor(method, classes=3).method
    assert json.loads(got["attrs"]["models"]) == [] and np.isnan(got["mean_probability"]).all()


def test_method_flag_on_the_command_line(files, tmp_path, capsys):
    out = tmp_path / "mo.h5"
    args = ["predict-h5", "--input", str(files["input"]), "--output", str(out), "--chunk", "4"]
    assert cli_main([*args, "--method", "multi_otsu", "--classes", "4"]) == 0
    assert json.loads(_rows(out)["attrs"]["class_names"]) == ["phase 0", "phase 1", "phase 2", "phase 3"]
    assert cli_main([*args, "--method", "otsu", "--model", str(files["clf"][0])]) == 2
    assert "needs no model" in capsys.readouterr().err
    assert cli_main(args) == 2  # neither --model nor a classical method
    assert "Give --model" in capsys.readouterr().err
