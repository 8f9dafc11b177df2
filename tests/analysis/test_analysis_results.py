"""Result objects: validation at the boundary, units, JSON export with counts checked by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microcnn.analysis.results import (
    AnalysisError,
    ClassificationResult,
    RegressionResult,
    SegmentationResult,
)


def test_segmentation_result_counts_and_json():
    mask = np.array([[0, 1, 1], [2, 255, 1]], np.uint8)  # by hand: 1 x class 0, 3 x class 1, 1 x class 2
    r = SegmentationResult(
        mask=mask,
        class_names=["a", "b", "c"],
        pixel_size_um=0.5,
        method="otsu",
        meta={"labels": np.zeros((2, 3), np.int32), "threshold": np.float64(0.5)},
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["pixel_counts"] == {"a": 1, "b": 3, "c": 1}
    assert d["not_analysed_px"] == 1
    assert d["unit"] == "µm" and d["shape_px"] == [2, 3]
    assert d["meta"]["labels"] == {"array_shape": [2, 3], "dtype": "int32"}
    assert d["meta"]["threshold"] == 0.5


def test_unit_is_px_without_pixel_size():
    r = SegmentationResult(mask=np.zeros((2, 2), np.uint8), class_names=["a"])
    assert r.unit == "px"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"mask": np.array([[0, 3]]), "class_names": ["a", "b"]}, "0..1"),
        ({"mask": np.zeros((2, 2), bool), "class_names": ["a", "b"]}, "astype"),
        ({"mask": np.zeros(4, np.uint8), "class_names": ["a"]}, "2-D"),
        ({"mask": np.zeros((2, 2), np.uint8), "class_names": ["a"], "pixel_size_um": -1.0}, "positive"),
        (
            {
                "mask": np.zeros((2, 2), np.uint8),
                "class_names": ["a", "b"],
                "probabilities": np.zeros((3, 2, 2), np.float32),
            },
            "(K, H, W)",
        ),
    ],
)
def test_segmentation_result_rejects_bad_input(kwargs, words):
    with pytest.raises(AnalysisError, match=None) as info:
        SegmentationResult(**kwargs)
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_classification_result():
    r = ClassificationResult(probabilities=[0.1, 0.7, 0.2], class_names=["a", "b", "c"], std=[0.0, 0.1, 0.0])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["predicted"] == "b"
    assert d["probabilities"]["b"] == pytest.approx(0.7)
    assert d["std"]["b"] == pytest.approx(0.1)
    with pytest.raises(AnalysisError, match="shape"):
        ClassificationResult(probabilities=[0.5, 0.5], class_names=["a", "b", "c"])


def test_regression_result_keeps_units():
    r = RegressionResult(
        values=[0.3, 1.8], target_names=["porosity", "tortuosity"], target_units=["1", "1"], std=[0.01, 0.2]
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["targets"]["tortuosity"] == {"value": 1.8, "unit": "1", "std": 0.2}
    with pytest.raises(AnalysisError, match="same length"):
        RegressionResult(values=[1.0], target_names=["a", "b"], target_units=["1", "1"])
