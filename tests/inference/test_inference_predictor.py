"""Predictor: checkpoint preprocessing, tiled == whole, ensemble/TTA uncertainty, results by task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from microcnn.errors import ModelFileError
from microcnn.inference.predictor import Predictor
from microcnn.io.micrograph import Micrograph


class Pointwise(nn.Module):
    """1x1 convolution segmenter: logits = w * x + b per pixel (easy to compute by hand)."""

    task = "segmentation"
    in_channels = 1

    def __init__(self, w: list[float], b: list[float]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, len(w), 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(w).view(-1, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Smoother(nn.Module):
    task = "segmentation"
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConstantRegressor(nn.Module):
    """Heteroscedastic regressor that ignores the image: [mean | logvar] = the given numbers."""

    task = "regression"
    in_channels = 1

    def __init__(self, mean: float, logvar: float) -> None:
        super().__init__()
        self.out = nn.Parameter(torch.tensor([mean, logvar]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out.expand(x.shape[0], 2)


SEG_META = {"task": "segmentation", "class_names": ["matrix", "pore"], "model": {"name": "pointwise"}}


def _micrograph(rows: int, cols: int, seed: int = 0, pixel_size_um: float | None = 0.5) -> Micrograph:
    pixels = np.random.default_rng(seed).random((rows, cols), dtype=np.float32)
    return Micrograph(pixels=pixels, pixel_size_um=pixel_size_um)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Per-image standardisation as albumentations documents it: (x - mean) / (std + 1e-4)."""
    x = x.astype(np.float64)
    return (x - x.mean()) / (x.std() + 1e-4)


def test_segmentation_probabilities_equal_a_hand_computed_softmax():
    m = _micrograph(70, 90)
    result = Predictor([Pointwise([1.0, -1.0], [0.0, 0.5])], SEG_META, device="cpu", tile=32).predict(m)
    z = _standardise(m.pixels)
    p_pore = 1.0 / (1.0 + np.exp(-((-z + 0.5) - z)))  # softmax of two logits = sigmoid of the difference
    np.testing.assert_allclose(result.probabilities[1], p_pore, atol=1e-5)
    np.testing.assert_array_equal(result.mask, (p_pore > 0.5).astype(np.uint8))
    assert result.class_names == ["matrix", "pore"] and result.pixel_size_um == 0.5 and result.std is None


def test_tiled_prediction_equals_whole_image_prediction():
    meta = {**SEG_META, "class_names": ["a", "b", "c"]}
    m = _micrograph(150, 190, seed=1)
    whole = Predictor([Smoother()], meta, device="cpu", tile=256).predict(m)
    tiled = Predictor([Smoother()], meta, device="cpu", tile=48, overlap=0.5, batch_size=3).predict(m)
    err = np.abs(tiled.probabilities - whole.probabilities)
    assert err.max() < 0.01 and err.mean() < 1e-4
    assert (tiled.mask == whole.mask).mean() > 0.999


def test_identical_members_give_zero_std_and_different_members_positive():
    m = _micrograph(40, 40, seed=2)
    same = Predictor([Pointwise([1, -1], [0, 0]), Pointwise([1, -1], [0, 0])], SEG_META, device="cpu")
    assert np.count_nonzero(same.predict(m).std) == 0
    diff = Predictor([Pointwise([1, -1], [0, 0]), Pointwise([2, -1], [0, 1])], SEG_META, device="cpu")
    std = diff.predict(m).std
    assert std.shape == (2, 40, 40) and (std > 0).mean() > 0.99


def test_tta_of_an_orientation_free_model_changes_nothing_and_reports_zero_spread():
    m = _micrograph(33, 47, seed=3)
    plain = Predictor([Pointwise([1, -1], [0, 0])], SEG_META, device="cpu").predict(m)
    tta = Predictor([Pointwise([1, -1], [0, 0])], SEG_META, device="cpu", tta=True).predict(m)
    np.testing.assert_allclose(tta.probabilities, plain.probabilities, atol=1e-6)
    assert tta.std.max() < 1e-6 and tta.meta["tta"] is True


def test_regression_std_follows_the_law_of_total_variance():
    meta = {"task": "regression", "target_names": ["porosity"], "target_units": ["1"]}
    members = [ConstantRegressor(0.2, float(np.log(0.01))), ConstantRegressor(0.4, float(np.log(0.03)))]
    result = Predictor(members, meta, device="cpu").predict(_micrograph(32, 32))
    assert result.values[0] == pytest.approx(0.3)
    # spread of means: var(0.2, 0.4) = 0.01; mean predicted variance (0.01 + 0.03) / 2 = 0.02
    assert result.std[0] == pytest.approx(np.sqrt(0.03), rel=1e-5)
    assert result.target_units == ["1"] and result.meta["heteroscedastic"] is True


def test_classification_of_a_large_image_averages_fixed_size_tiles():
    from microcnn.models import build_model

    net = build_model("tinyvgg", in_channels=1, num_classes=3, input_size=32)
    meta = {"task": "classification", "class_names": ["a", "b", "c"]}
    m = _micrograph(64, 96, seed=4)
    result = Predictor([net], meta, device="cpu", overlap=0.0).predict(m)
    z = torch.from_numpy(_standardise(m.pixels).astype(np.float32))
    with torch.inference_mode():
        tiles = torch.stack([z[r : r + 32, c : c + 32][None] for r in (0, 32) for c in (0, 32, 64)])
        expected = torch.softmax(net.eval()(tiles), 1).mean(0).numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    assert result.probabilities.sum() == pytest.approx(1.0)


def test_rescale_to_training_pixel_size_and_back():
    meta = {**SEG_META, "pixel_size_um": 1.0}
    seen: list[tuple[int, ...]] = []
    model = Pointwise([1, -1], [0, 0])
    model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    result = Predictor([model], meta, device="cpu", rescale=True).predict(
        _micrograph(64, 80, pixel_size_um=0.5)
    )
    assert seen[0][-2:] == (32, 40)  # 0.5 µm pixels -> 1.0 µm pixels: half the rows and cols
    assert result.mask.shape == (64, 80) and result.pixel_size_um == 0.5
    with pytest.raises(ValueError, match="both pixel sizes"):
        Predictor([model], meta, device="cpu", rescale=True).predict(_micrograph(8, 8, pixel_size_um=None))


def test_colour_image_for_a_gray_model_is_refused_with_the_fix():
    rgb = Micrograph(pixels=np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="as_gray=True"):
        Predictor([Pointwise([1, -1], [0, 0])], SEG_META, device="cpu").predict(rgb)


def test_from_checkpoint_round_trip_and_disagreeing_members(tmp_path):
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
    net = build_model(spec).eval()
    meta = {
        "model": spec,
        "task": "segmentation",
        "class_names": ["a", "b"],
        "preprocessing": {"augment": []},
    }
    save_weights(net, tmp_path / "a.safetensors", meta)
    save_weights(net, tmp_path / "b.safetensors", {**meta, "class_names": ["x", "y"]})
    m = _micrograph(24, 24, seed=5)
    loaded = Predictor.from_checkpoint(tmp_path / "a.safetensors", device="cpu").predict(m)
    direct = Predictor([net], meta, device="cpu").predict(m)
    np.testing.assert_array_equal(loaded.probabilities, direct.probabilities)
    assert loaded.method.endswith("a.safetensors")
    with pytest.raises(ModelFileError, match="class_names"):
        Predictor.from_checkpoint([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], device="cpu")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="overlap"):
        Predictor([Pointwise([1, -1], [0, 0])], SEG_META, device="cpu", overlap=1.5)
    with pytest.raises(ValueError, match="at least one model"):
        Predictor([], SEG_META, device="cpu")


def _big_image_check(side: int) -> None:
    rng = np.random.default_rng(6)
    raw = rng.integers(0, 65536, size=(side, side), dtype=np.uint16)
    m = Micrograph(pixels=raw.astype(np.float32) / 65535.0, source_dtype="uint16", bit_depth=16)
    result = Predictor([Pointwise([1, -1], [0, 0])], SEG_META, device="cpu", tile=512, batch_size=4).predict(
        m
    )
    # normalised with the statistics of the whole image (not per tile): check a corner by hand
    full_mean, full_std = float(m.pixels.mean(dtype=np.float64)), float(m.pixels.std(dtype=np.float64))
    zc = (m.pixels[:64, :64].astype(np.float64) - full_mean) / (full_std + 1e-4)
    np.testing.assert_allclose(result.probabilities[1, :64, :64], 1 / (1 + np.exp(2 * zc)), atol=1e-4)
    assert result.mask.shape == (side, side)


def test_1024_16bit_image_runs_tiled():
    _big_image_check(1024)


@pytest.mark.slow
def test_8192_16bit_image_runs_tiled_in_bounded_memory():
    _big_image_check(8192)


def _counting(model: nn.Module) -> list[tuple[int, ...]]:
    seen: list[tuple[int, ...]] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    return seen


def test_predict_many_batches_same_shaped_images_and_equals_predict_one_by_one():
    meta = {**SEG_META, "class_names": ["a", "b", "c"]}
    net = Smoother()
    seen = _counting(net)
    predictor = Predictor([net], meta, device="cpu", tile=64, batch_size=2)
    # 20 of 32x32, 3 of 40x24, one of 100x90 (larger than the 64 px tile: tiled alone)
    images = [_micrograph(32, 32, seed=i) for i in range(20)] + [
        _micrograph(40, 24, seed=30 + i) for i in range(3)
    ]
    images.insert(5, _micrograph(100, 90, seed=99))
    many = predictor.predict_many(images)
    batched = [s for s in seen if s[0] > 1 or s[-2:] != (64, 64)]
    # budget batch_size * tile^2 = 2 * 64 * 64 = 8192 px: 8 images of 32x32 per pass -> 8 + 8 + 4;
    # 8192 // (40*24) = 8 -> the three 40x24 images in one pass
    assert [s[0] for s in batched if s[-2:] == (32, 32)] == [8, 8, 4]
    assert [s[0] for s in batched if s[-2:] == (40, 24)] == [3]
    seen.clear()
    single = [predictor.predict(m) for m in images]
    assert len(many) == len(single) == 24
    for a, b in zip(many, single):
        assert a.mask.shape == b.mask.shape
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
        assert (a.mask == b.mask).mean() > 0.999


def test_predict_many_image_level_tasks_equal_predict():
    from microcnn.models import build_model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build_model("tinyvgg", in_channels=1, num_classes=3, input_size=32)
    clf = Predictor([net], {"task": "classification", "class_names": ["a", "b", "c"]}, device="cpu", tta=True)
    images = [_micrograph(32, 32, seed=i) for i in range(5)] + [_micrograph(64, 96, seed=9)]
    for a, b in zip(clf.predict_many(images), [clf.predict(m) for m in images]):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        np.testing.assert_allclose(a.std, b.std, atol=1e-6)
    meta = {"task": "regression", "target_names": ["porosity"], "target_units": ["1"]}
    members = [ConstantRegressor(0.2, float(np.log(0.01))), ConstantRegressor(0.4, float(np.log(0.03)))]
    reg = Predictor(members, meta, device="cpu").predict_many([_micrograph(32, 32, seed=i) for i in range(3)])
    for r in reg:  # law of total variance, as for predict(): sqrt(0.01 + 0.02)
        assert r.values[0] == pytest.approx(0.3) and r.std[0] == pytest.approx(np.sqrt(0.03), rel=1e-5)
