"""Learn page: the playground's numbers agree with the convolution output-size formula; sections render."""

from __future__ import annotations

import math

import numpy as np


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
    at.selectbox(key="learn.kernel_preset").select("identity").run()
    kernel = np.array(at.session_state["learn.kernel"])
    np.testing.assert_array_equal(kernel, np.eye(3)[1:2].T @ np.eye(3)[1:2])  # single 1 in the centre


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
