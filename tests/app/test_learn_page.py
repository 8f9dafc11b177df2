"""Learn page: the playground's numbers agree with the convolution output-size formula; sections render."""

from __future__ import annotations

import math

import numpy as np

from .helpers import array, chart


def conv_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1  # textbook formula (Dumoulin & Visin 2016)


def test_playground_output_size_follows_the_formula(new_session) -> None:
    at = new_session("learn")
    assert not at.exception
    at.slider(key="learn.stride").set_value(2)
    at.slider(key="learn.padding").set_value(0)
    at.slider(key="learn.dilation").set_value(2).run()
    assert not at.exception
    expected = conv_size(96, 3, 2, 0, 2)  # 96 px crop, 3x3 kernel -> 46
    captions = " ".join(c.value for c in at.caption)
    assert f"{expected} × {expected} px" in captions
    assert f"= {expected}" in at.latex[-1].value


def test_edited_kernel_is_used(new_session) -> None:
    at = new_session("learn")
    at.selectbox(key="learn.kernel_preset").select("sharpen").run()  # [[0,-1,0],[-1,5,-1],[0,-1,0]]
    # edit five cells of the table into the identity kernel (a single 1 in the centre)
    edits = {0: {"c1": 0.0}, 1: {"c0": 0.0, "c1": 1.0, "c2": 0.0}, 2: {"c1": 0.0}}
    state = {"edited_rows": edits, "added_rows": [], "deleted_rows": []}
    at.session_state["learn.kernel_edit.sharpen"] = state
    at.slider(key="learn.stride").set_value(1)
    at.slider(key="learn.padding").set_value(1)
    at.slider(key="learn.dilation").set_value(1).run()
    assert not at.exception
    kernel = np.array(at.session_state["learn.kernel"])
    np.testing.assert_array_equal(kernel, np.eye(3)[1:2].T @ np.eye(3)[1:2])
    image = array(chart(at, "learn.conv_in")["data"][0]["z"])
    out = array(chart(at, "learn.conv_out")["data"][0]["z"])
    assert out.shape == image.shape == (96, 96)  # stride 1, padding 1: n_out = n
    np.testing.assert_array_equal(out, image)  # identity kernel: the output is the input


def test_regularization_runs_four_variants(new_session) -> None:
    at = new_session("learn")
    at.slider(key="learn.reg_epochs").set_value(50)
    at.button(key="learn.reg_run").click().run()
    assert not at.exception
    curves = at.session_state["learn.regularization"]
    assert list(curves) == ["plain", "dropout 0.5", "batch norm", "both"]
    assert all(len(c["val_loss"]) == 50 for c in curves.values())
    # 40 points, chance level is ln 2: the unregularised net must fit its training set below that.
    assert curves["plain"]["train_loss"][-1] < math.log(2)


def test_describe_table_parameters_of_lenet5(new_session) -> None:
    import pytest

    pytest.importorskip("microcnn.models.describe", reason="describe has not landed yet")
    at = new_session("learn")
    at.selectbox(key="learn.model").select("lenet5")
    at.number_input(key="learn.size").set_value(32).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    # LeCun et al. 1998 / the models brief: LeNet-5 on 1x32x32 with 10 classes has 61,706 parameters
    param_col = next(c for c in table.columns if "param" in c.lower())
    assert int(table[param_col].sum()) == 61_706


def test_feature_maps_of_lenet5_follow_lecun_1998(new_session) -> None:
    at = new_session("learn")
    at.selectbox(key="learn.inside_model").select("lenet5").run()
    at.button(key="learn.inside_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.session_state["learn.maps"]
    # LeCun et al. 1998: 32x32 input -> C1 6@28x28 (5x5 valid) -> S2 -> C3 16@10x10
    shapes = [m.shape for m in shown["maps"].values()]
    assert shapes[:2] == [(6, 28, 28), (16, 10, 10)]
    assert shown["kernels"].shape == (6, 1, 5, 5)
    layers = at.dataframe[-1].value
    assert list(layers["channels"])[:2] == [6, 16]
    at.button(key="learn.inside_cam").click().run()
    assert not at.exception and not at.error
    cam = at.session_state["learn.maps"]["cam"]
    assert cam.shape == (32, 32) and cam.min() >= 0.0 and cam.max() <= 1.0


def test_feature_maps_of_a_trained_checkpoint(project, new_session) -> None:
    from .test_analyze_cnn import save_model

    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 2, "base_channels": 4}
    model = save_model(project, "seg", spec, {"task": "segmentation", "class_names": ["a", "b"]})
    at = new_session("learn")
    at.selectbox(key="learn.inside_model").select("runs/seg/model.safetensors").run()
    at.button(key="learn.inside_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = at.session_state["learn.maps"]
    first = next(iter(shown["maps"].values()))
    # "same" 3x3 convolution: rows/cols of the 96 px sample kept; base_channels = 4 feature maps
    assert first.shape == (4, 96, 96)
    assert shown["kernels"].shape == (4, 1, 3, 3)

    # the layer table of the checkpoint too, next to the formulas
    at.selectbox(key="learn.model").select("runs/seg/model.safetensors").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value  # the first table of the page: the layer table
    param_col = next(c for c in table.columns if "param" in c.lower())
    assert int(table[param_col].sum()) == sum(p.numel() for p in model.parameters())
    assert any("runs/seg/model.safetensors" in c.value and "1×64×64" in c.value for c in at.caption)
    assert any(r"n_\text{out}" in formula.value for formula in at.latex)
