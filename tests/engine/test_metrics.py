"""Metrics against hand counts on known masks, labels and values."""

from __future__ import annotations

import math

import pytest
import torch

from microcnn.engine.metrics import build_metrics, lower_is_better, metric_fn


def _onehot_logits(pred: torch.Tensor, classes: int) -> torch.Tensor:
    """Predicted class indices (N, ...) -> logits (N, C, ...) whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(pred, classes).movedim(-1, 1).float()


def test_iou_of_two_known_masks():
    truth = torch.tensor([[[0, 0, 1, 1, 255]]])
    pred = torch.tensor([[[0, 1, 1, 1, 0]]])  # the last pixel is not labelled: ignored
    m = build_metrics("segmentation", class_names=["a", "b"])
    m.update(_onehot_logits(pred, 2), truth)
    out = m.compute()
    # class a: TP 1, FP 0, FN 1 -> IoU 1/2, Dice 2/3; class b: TP 2, FP 1, FN 0 -> IoU 2/3, Dice 4/5
    assert out["iou_a"] == pytest.approx(0.5) and out["iou_b"] == pytest.approx(2 / 3)
    assert out["dice_a"] == pytest.approx(2 / 3) and out["dice_b"] == pytest.approx(0.8)
    assert out["mean_iou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert out["mean_dice"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert out["pixel_accuracy"] == pytest.approx(3 / 4)
    assert m.confusion_matrix().tolist() == [[1, 1], [0, 2]]


def test_segmentation_accumulates_and_skips_absent_classes():
    m = build_metrics("segmentation", class_names=["a", "b", "c"])
    for truth, pred in (([0, 0], [0, 0]), ([1, 1], [1, 0])):  # class c never occurs
        m.update(_onehot_logits(torch.tensor([[pred]]), 3), torch.tensor([[truth]]))
    out = m.compute()
    assert math.isnan(out["iou_c"])
    assert out["mean_iou"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # a: TP2 FP1; b: TP1 FN1
    m.reset()
    m.update(_onehot_logits(torch.tensor([[[2]]]), 3), torch.tensor([[[2]]]))
    assert m.compute()["mean_iou"] == 1.0


def test_classification_accuracy_and_macro_f1():
    m = build_metrics("classification", class_names=["0", "1", "2"])
    m.update(_onehot_logits(torch.tensor([0, 2, 2, 1]), 3), torch.tensor([0, 1, 2, 2]))
    out = m.compute()
    # F1: class 0 = 1, class 1 = 0 (TP 0), class 2 = 2*1 / (2*1 + 1 + 1) = 0.5
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["macro_f1"] == pytest.approx(0.5)


def test_classification_against_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    g = torch.Generator().manual_seed(0)
    truth, pred = torch.randint(0, 4, (60,), generator=g), torch.randint(0, 4, (60,), generator=g)
    m = build_metrics("classification", class_names=["a", "b", "c", "d"])
    m.update(_onehot_logits(pred[:25], 4), truth[:25])
    m.update(_onehot_logits(pred[25:], 4), truth[25:])
    assert m.confusion_matrix().tolist() == confusion_matrix(truth, pred, labels=[0, 1, 2, 3]).tolist()
    out = m.compute()
    assert out["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))


def test_regression_mae_rmse_r2_per_target():
    m = build_metrics("regression", target_names=["p", "q"])
    y = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0], [4.0, 1.0]])
    yhat = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0], [6.0, 0.0]])
    m.update(yhat[:2], y[:2])
    m.update(yhat[2:], y[2:])
    out = m.compute()
    # p: errors 0,0,0,2 -> MAE 0.5, RMSE sqrt(4/4) = 1, R2 = 1 - 4/5 (SS_tot = 2.25+0.25+0.25+2.25)
    assert out["mae_p"] == pytest.approx(0.5) and out["rmse_p"] == pytest.approx(1.0)
    assert out["r2_p"] == pytest.approx(0.2)
    # q: one error of 1 -> MAE 0.25, RMSE 0.5, R2 = 1 - 1/1
    assert out["mae_q"] == pytest.approx(0.25) and out["rmse_q"] == pytest.approx(0.5)
    assert out["r2_q"] == pytest.approx(0.0)
    assert out["mae"] == pytest.approx(0.375)


def test_heteroscedastic_output_uses_the_mean_half():
    m = build_metrics("regression", target_names=["p"])
    m.update(torch.tensor([[1.0, 5.0], [3.0, -5.0]]), torch.tensor([[1.0], [2.0]]))
    assert m.compute()["mae_p"] == pytest.approx(0.5)


def test_direction_and_registry():
    assert lower_is_better("val_loss") and lower_is_better("val_rmse_porosity")
    assert not lower_is_better("val_mean_iou") and not lower_is_better("val_r2")
    with pytest.raises(ValueError, match="Did you mean 'iou'"):
        metric_fn("iuo")
