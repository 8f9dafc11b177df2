"""Predictor: checkpoint preprocessing, tiled == whole, ensemble/TTA uncertainty, results by task."""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pytest
import torch
from torch import nn

from microcnn.errors import ModelFileError
from microcnn.inference.predictor import Predictor
from microcnn.io.micrograph import Micrograph

from .batch_support import HWM_KIB


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


def test_predict_many_on_the_cpu_passes_at_most_cpu_batch_pixels_per_forward():
    """The default tile 1024 and batch_size 2 would allow 2 x 1024² px a pass (a GPU's budget); the CPU caps
    it at 2^17 px: 2^17 / 256² = 2 images of 256², 2^17 / 64² = 32 of 64² per pass."""
    from microcnn.inference.predictor import CPU_BATCH_PIXELS

    meta = {**SEG_META, "class_names": ["a", "b", "c"]}
    net = Smoother()
    seen = _counting(net)
    predictor = Predictor([net], meta, device="cpu")
    assert CPU_BATCH_PIXELS == 2**17 and predictor.batch_pixels == 2**17
    predictor.predict_many([_micrograph(256, 256, seed=i) for i in range(5)])
    assert [s[0] for s in seen] == [2, 2, 1]
    seen.clear()
    predictor.predict_many([_micrograph(64, 64, seed=i) for i in range(40)])
    assert [s[0] for s in seen] == [32, 8]
    seen.clear()  # an explicit budget wins: 3 x 256² px -> 3 + 2
    Predictor([net], meta, device="cpu", batch_pixels=3 * 256 * 256).predict_many(
        [_micrograph(256, 256, seed=i) for i in range(5)]
    )
    assert [s[0] for s in seen] == [3, 2]
    seen.clear()  # a budget under one image still passes one image at a time
    Predictor([net], meta, device="cpu", batch_pixels=100).predict_many(
        [_micrograph(32, 32), _micrograph(32, 32)]
    )
    assert [s[0] for s in seen] == [1, 1]
    with pytest.raises(ValueError, match=r"batch_pixels .* positive int; got 0"):
        Predictor([net], meta, device="cpu", batch_pixels=0)


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


# -- preprocessing from the checkpoint, rescaling, TTA and ensembles against independent computations -------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


NORMALIZE = {"augment": [{"name": "Normalize", "mean": 0.5, "std": 0.25}]}  # as training configs store it


def test_checkpoint_normalize_is_applied_instead_of_per_image_standardisation(tmp_path):
    """The preprocessing saved with the model, (x - 0.5) / 0.25, is what the network sees."""
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
    with torch.random.fork_rng():
        torch.manual_seed(11)
        net = build_model(spec).eval()
    meta = {"model": spec, "task": "segmentation", "class_names": ["a", "b"], "preprocessing": NORMALIZE}
    save_weights(net, tmp_path / "n.safetensors", meta)
    m = _micrograph(24, 40, seed=7)
    got = Predictor.from_checkpoint(tmp_path / "n.safetensors", device="cpu").predict(m).probabilities
    z = torch.from_numpy((m.pixels - 0.5) / 0.25)[None, None]
    with torch.inference_mode():
        expected = torch.softmax(net(z), dim=1)[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # a 1x1 convolution with known weights: p(pore) = sigmoid(l1 - l0), l = w * (x - 0.5) / 0.25 + b
    point = Predictor([Pointwise([2.0, -1.0], [0.0, 0.3])], {**SEG_META, "preprocessing": NORMALIZE},
                      device="cpu").predict(m)  # fmt: skip
    zn = (m.pixels.astype(np.float64) - 0.5) / 0.25
    np.testing.assert_allclose(point.probabilities[1], _sigmoid((-zn + 0.3) - 2.0 * zn), atol=1e-6)
    standardised = _sigmoid((-_standardise(m.pixels) + 0.3) - 2.0 * _standardise(m.pixels))
    assert np.abs(point.probabilities[1] - standardised).max() > 0.05  # the two pipelines really differ


class RegionClassifier(nn.Module):
    """Logits [0, 3 * mean of the top half rows, max]: depend on layout and scale, computable by hand."""

    task = "classification"
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x[:, 0, : x.shape[2] // 2].mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(top), 3.0 * top, x.amax(dim=(1, 2, 3))], dim=1)


def _expected_rescaled(pixels: np.ndarray, factor: float) -> np.ndarray:
    """skimage's rescale as the Predictor documents it (bilinear, anti-aliased when shrinking), clipped."""
    from skimage.transform import rescale

    return np.clip(rescale(pixels.astype(np.float32), factor, order=1, anti_aliasing=factor < 1), 0.0, 1.0)


@pytest.mark.parametrize(("image_um", "factor"), [(0.5, 0.5), (2.0, 2.0)])
def test_rescale_to_the_training_pixel_size_equals_skimage_and_the_pipeline_by_hand(image_um, factor):
    m = _micrograph(64, 80, seed=8, pixel_size_um=image_um)
    meta = {**SEG_META, "pixel_size_um": 1.0}
    seg = Predictor([Pointwise([1.0, -1.0], [0.0, 0.5])], meta, device="cpu", rescale=True).predict(m)
    z = _standardise(_expected_rescaled(m.pixels, factor))
    p_small = torch.from_numpy(_sigmoid((-z + 0.5) - z).astype(np.float32))[None, None]
    back = torch.nn.functional.interpolate(p_small, size=(64, 80), mode="bilinear")[0, 0].numpy()
    assert seg.probabilities.shape == (2, 64, 80) and seg.meta["rescale_factor"] == factor
    np.testing.assert_allclose(seg.probabilities[1], back, atol=1e-5)
    clf_meta = {"task": "classification", "class_names": ["a", "b", "c"], "pixel_size_um": 1.0}
    clf = Predictor([RegionClassifier()], clf_meta, device="cpu", rescale=True).predict(m)
    logits = np.array([0.0, 3.0 * z[: z.shape[0] // 2].mean(), z.max()])
    np.testing.assert_allclose(clf.probabilities, np.exp(logits) / np.exp(logits).sum(), atol=1e-5)
    plain = Predictor([RegionClassifier()], clf_meta, device="cpu").predict(m)
    assert np.abs(plain.probabilities - clf.probabilities).max() > 1e-3  # rescaling changed the answer


class RightNeighbour(nn.Module):
    """Segmenter: class-1 logit = the right neighbour's value (0 past the border); not D4-equivariant."""

    task = "segmentation"
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, (1, 3), padding=(0, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0, 0, 2] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _d4_copies(z: np.ndarray):
    """(k, flip, copy) for the 8 symmetries as numpy writes them: fliplr first, then rot90 k times."""
    for flip in (False, True):
        for k in range(4):
            yield k, flip, np.rot90(np.fliplr(z) if flip else z, k)


def test_tta_of_a_non_equivariant_model_is_the_hand_average_over_the_eight_copies():
    m = _micrograph(12, 17, seed=9)
    z = _standardise(m.pixels)
    maps = []
    for k, flip, copy in _d4_copies(z):
        right = np.zeros_like(copy)
        right[:, :-1] = copy[:, 1:]
        back = np.rot90(_sigmoid(right), -k)  # softmax of [0, l] = sigmoid(l); map back: unrotate, unflip
        maps.append(np.fliplr(back) if flip else back)
    seg = Predictor([RightNeighbour()], SEG_META, device="cpu", tta=True).predict(m)
    np.testing.assert_allclose(seg.probabilities[1], np.mean(maps, axis=0), atol=1e-6)
    np.testing.assert_allclose(seg.std[1], np.std(maps, axis=0), atol=1e-6)
    assert seg.std[1].max() > 0.05  # the copies really disagree
    quarter = [np.exp([0.0, c[: c.shape[0] // 2, : c.shape[1] // 2].mean()]) for _, _, c in _d4_copies(z)]
    probs = [q / q.sum() for q in quarter]

    class QuadrantClassifier(nn.Module):
        task, in_channels = "classification", 1

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x[:, 0, : x.shape[2] // 2, : x.shape[3] // 2].mean(dim=(1, 2))
            return torch.stack([torch.zeros_like(q), q], dim=1)

    meta = {"task": "classification", "class_names": ["a", "b"]}
    clf = Predictor([QuadrantClassifier()], meta, device="cpu", tta=True).predict(m)
    np.testing.assert_allclose(clf.probabilities, np.mean(probs, axis=0), atol=1e-6)
    np.testing.assert_allclose(clf.std, np.std(probs, axis=0), atol=1e-6)


@pytest.mark.parametrize("tile", [64, 24])  # whole image in one pass; tiled with blended overlaps
def test_ensemble_of_two_checkpoints_is_the_numpy_mean_and_std_of_its_members(tmp_path, tile):
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
    meta = {
        "model": spec,
        "task": "segmentation",
        "class_names": ["a", "b"],
        "preprocessing": {"augment": []},
    }
    paths = []
    for seed in (1, 2):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            paths.append(save_weights(build_model(spec).eval(), tmp_path / f"m{seed}.safetensors", meta))
    m = _micrograph(40, 44, seed=10)
    kwargs = {"device": "cpu", "tile": tile, "overlap": 0.5}
    both = Predictor.from_checkpoint(paths, **kwargs).predict(m)
    members = np.stack([Predictor.from_checkpoint(p, **kwargs).predict(m).probabilities for p in paths])
    np.testing.assert_allclose(both.probabilities, members.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(both.std, members.std(axis=0), atol=1e-6)
    assert both.std.max() > 1e-3 and both.method.endswith("m1.safetensors,m2.safetensors")
    # each member's expected phase fractions: the mean of its own probability map
    np.testing.assert_allclose(both.member_fractions, members.mean(axis=(2, 3)), atol=1e-6)


def test_member_fractions_of_two_pointwise_members_by_hand():
    m = _micrograph(20, 30, seed=12)
    z = _standardise(m.pixels)
    members = [Pointwise([1.0, -1.0], [0.0, 0.0]), Pointwise([1.0, -1.0], [0.0, 1.0])]
    result = Predictor(members, SEG_META, device="cpu").predict(m)
    pore = [_sigmoid(-2.0 * z).mean(), _sigmoid(1.0 - 2.0 * z).mean()]  # softmax of (z, -z + b)
    np.testing.assert_allclose(result.member_fractions, [[1 - pore[0], pore[0]], [1 - pore[1], pore[1]]],
                               atol=1e-6)  # fmt: skip
    batched = Predictor(members, SEG_META, device="cpu").predict_many([m, m])
    np.testing.assert_allclose(batched[1].member_fractions, result.member_fractions, atol=1e-6)
    assert Predictor(members[:1], SEG_META, device="cpu").predict(m).member_fractions is None


def test_predict_many_preprocesses_each_image_once():
    predictor = Predictor([Smoother()], {**SEG_META, "class_names": ["a", "b", "c"]}, device="cpu", tile=32)
    calls: list[tuple[int, ...]] = []
    transform = predictor._transform
    predictor._transform = lambda sample: calls.append(sample["image"].shape) or transform(sample)
    predictor.predict_many([_micrograph(70, 50, seed=1), _micrograph(20, 20, seed=2), _micrograph(20, 20)])
    assert calls == [(70, 50), (20, 20), (20, 20)]  # the large image (tiled alone) too, only once


_TILING_RSS = """
import sys
import numpy as np, torch
from torch import nn
from microcnn.inference.predictor import Predictor
from microcnn.io.micrograph import Micrograph
side, tile, batch, hidden = (int(v) for v in sys.argv[1:5])
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, 2, 3, padding=1)).eval()
net.task, net.in_channels = "segmentation", 1
p = Predictor([net], {"task": "segmentation", "class_names": ["a", "b"]}, device="cpu", tile=tile,
              batch_size=batch)
p.predict(Micrograph(pixels=np.random.default_rng(1).random((384, 384), dtype=np.float32)))  # warm-up
pixels = np.random.default_rng(0).random((side, side), dtype=np.float32)
before = hwm_kib()
r = p.predict(Micrograph(pixels=pixels))
print(before, hwm_kib(), r.mask.shape[0])
"""


def test_tiled_prediction_memory_is_bounded_by_the_image_and_one_tile_batch():
    """2048² px, 16 hidden channels: the whole image through the network would need 16 x 2048² x 4 B =
    256 MiB for one activation alone; tiled, the growth stays within the per-pixel arrays (preprocessed
    image, K-channel sum, weight map, arg-max, mask: < 48 B/px = 192 MiB) plus 4 activations' worth of one
    tile batch."""
    import subprocess
    import sys

    side, tile, batch, hidden = 2048, 256, 2, 16
    cmd = [sys.executable, "-c", HWM_KIB + _TILING_RSS, *(str(v) for v in (side, tile, batch, hidden))]
    env = {"OMP_NUM_THREADS": "2", "MALLOC_MMAP_THRESHOLD_": "65536", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before_kib, after_kib, rows = (int(v) for v in proc.stdout.split())
    bound = 48 * side * side + 4 * batch * (hidden + 3) * tile * tile * 4
    assert rows == side and (after_kib - before_kib) * 1024 < bound, (after_kib - before_kib, bound // 1024)


def test_channels_last_layout_gives_the_nchw_probabilities_to_float_rounding():
    # The same U-Net weights in both memory layouts; the NCHW forward (torch's reference layout) is the
    # independent value. channels_last is an execution detail: only float rounding may differ.
    from microcnn.models import build_model

    torch.manual_seed(0)
    net = build_model("unet", in_channels=1, num_classes=3, depth=2, base_channels=4)
    meta = {"task": "segmentation", "class_names": ["a", "b", "c"], "model": {"name": "unet"}}
    image = Micrograph(pixels=np.random.default_rng(0).random((40, 56), dtype=np.float32))
    fast, plain = (Predictor([deepcopy(net)], meta, device="cpu", channels_last=cl) for cl in (True, False))
    assert fast.channels_last and not plain.channels_last
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.models[0].parameters()
               if p.ndim == 4)  # fmt: skip
    a, b = fast.predict(image), plain.predict(image)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
    assert a.meta["channels_last"] and not b.meta["channels_last"]
