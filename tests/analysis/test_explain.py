"""Explanations: Grad-CAM peaks where the decision is made; feature maps; first-layer kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from microcnn.analysis.explain import CAM_METHODS, feature_maps, first_layer_kernels, grad_cam

SIZE = 24
REGION = (slice(0, 10), slice(14, 24))  # top-right corner: the only place that decides the label


class _Net(nn.Module):
    """Hand-built classifier: class-1 logit = how much bright structure lies in REGION (nothing else counts).

    features: channel 0 = 3x3 mean (bright-structure detector), channel 1 = its negative; ReLU.
    head: a Linear layer whose class-1 weights are 1 on channel 0 inside REGION and 0 everywhere else.
    """

    task = "classification"

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU())
        self.cam_layer = self.features[1]
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * SIZE * SIZE, 2))
        decisive = torch.zeros(2, SIZE, SIZE)
        decisive[0][REGION] = 1.0
        with torch.no_grad():
            self.features[0].weight.copy_(torch.stack([torch.ones(1, 3, 3), -torch.ones(1, 3, 3)]) / 9)
            self.features[0].bias.zero_()
            self.head[1].weight.zero_()
            self.head[1].weight[1] = decisive.flatten()
            self.head[1].bias.copy_(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _image(rng: np.random.Generator, *, blobs: list[tuple[int, int]]) -> torch.Tensor:
    img = np.abs(rng.normal(0.0, 0.05, (SIZE, SIZE)))
    for r, c in blobs:
        img[r : r + 4, c : c + 4] += 1.0
    return torch.from_numpy(img.astype(np.float32))[None]


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    return _Net().eval()


def _in_region(r: int, c: int) -> bool:
    return REGION[0].start <= r < REGION[0].stop and REGION[1].start <= c < REGION[1].stop


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
def test_cam_peaks_in_the_region_that_decides_the_label(trained, method):
    rng = np.random.default_rng(99)
    for blob in [(2, 16), (5, 19), (1, 15)]:
        heat = grad_cam(trained, _image(rng, blobs=[blob]), target=1, method=method)
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        r, c = np.unravel_index(np.argmax(heat), heat.shape)
        assert _in_region(int(r), int(c))
        assert heat[blob[0] + 1 : blob[0] + 3, blob[1] + 1 : blob[1] + 3].min() > 0.5


def test_hirescam_ignores_the_same_structure_outside_the_decisive_region(trained):
    """Element-wise gradients x activations (HiResCAM) separate two identical blobs; plain Grad-CAM, which
    averages gradients over the map, cannot (a documented property of the method, not checked here)."""
    heat = grad_cam(trained, _image(np.random.default_rng(5), blobs=[(3, 17), (15, 3)]), target=1,
                    method="hirescam")  # fmt: skip
    assert heat[4:6, 18:20].min() > 0.8
    assert heat[14:20, 2:8].max() < 0.05


def test_default_target_is_the_predicted_class(trained):
    img = _image(np.random.default_rng(1), blobs=[(2, 16)])  # strong evidence for class 1
    assert int(trained(img[None]).argmax()) == 1
    np.testing.assert_array_equal(grad_cam(trained, img), grad_cam(trained, img, target=1))


def test_segmentation_cam_uses_the_region_of_the_class():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1))
    net.task = "segmentation"
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        net[0].weight[1, 0, 1, 1] = 1.0  # class-1 logit = the pixel value
    img = torch.zeros(1, 16, 16)
    img[0, 2:6, 2:6] = 1.0
    img[0, 10:14, 10:14] = 1.0
    region = np.zeros((16, 16), dtype=bool)
    region[2:6, 2:6] = True
    heat = grad_cam(net, img, target=1, region=region, layer=net[0], method="hirescam")
    assert heat[2:6, 2:6].min() > 0.9  # the explained region lights up...
    assert heat[10:14, 10:14].max() < 0.1  # ...the same structure outside it does not


def test_target_index_out_of_range_is_refused(trained):
    with pytest.raises(ValueError, match=r"0\.\.1"):
        grad_cam(trained, torch.zeros(1, SIZE, SIZE), target=5)


def test_unknown_method_suggests_the_closest(trained):
    with pytest.raises(ValueError, match="gradcam"):
        grad_cam(trained, torch.zeros(1, SIZE, SIZE), method="gradcamm")
    assert "scorecam" in CAM_METHODS


def test_feature_maps_have_the_layer_shapes_and_equal_a_manual_forward(trained):
    x = torch.rand(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    maps = feature_maps(trained, x, layer_names=["features.0", "features.1"])
    assert list(maps) == ["features.0", "features.1"]
    assert maps["features.0"].shape == (2, SIZE, SIZE)
    with torch.no_grad():
        expected = torch.relu(trained.features[0](x))[0].numpy()
    np.testing.assert_allclose(maps["features.1"], expected, atol=1e-6)
    assert set(feature_maps(trained, x)) == {"features.0"}  # default: every Conv2d


def test_first_layer_kernels_are_the_first_conv_weights(trained):
    k = first_layer_kernels(trained)
    assert k.shape == (2, 1, 3, 3)
    np.testing.assert_array_equal(k, trained.features[0].weight.detach().numpy())
    with pytest.raises(ValueError, match="no Conv2d"):
        first_layer_kernels(nn.Linear(2, 2))


# -- acceptance: a CNN *trained* on a task where one region decides, with distractors in both classes -----

TASK_SIZE = 24
DECIDING = (slice(0, 9), slice(15, 24))  # top-right 9 x 9 px: 14 % of the image


def _task_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """Noise; class 1 has a bright 3x3 blob inside DECIDING; 0-3 identical blobs outside it in both classes
    (a varying number, so the network cannot absorb them into a bias)."""
    img = rng.normal(0.0, 0.1, (TASK_SIZE, TASK_SIZE))
    if label:
        r, c = rng.integers(0, 7), rng.integers(15, 22)
        img[r : r + 3, c : c + 3] += 1.0
    for _ in range(int(rng.integers(0, 4))):
        while True:
            r, c = (int(v) for v in rng.integers(0, TASK_SIZE - 2, 2))
            if not (r < 9 and c + 3 > 15):  # entirely outside the deciding region
                break
        img[r : r + 3, c : c + 3] += 1.0
    return img.astype(np.float32)


class _Coords(nn.Module):
    """Appends row and column coordinates in [-1, 1] (CoordConv), so features can know where they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        rows = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
        cols = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([x, rows, cols], dim=1)


class _TinyCNN(nn.Module):
    """CoordConv -> two 3x3 conv + ReLU -> global max pool -> linear: position enters only through the
    features, so a faithful CAM at the last conv layer must point at the deciding region."""

    task = "classification"

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(_Coords(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())  # fmt: skip
        self.cam_layer = self.features[-1]
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def task_net() -> nn.Module:
    """Trained for 300 Adam steps on 256 images (~3 s on one thread); seeded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster and does not fight other work for cores
    try:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, 256)
        x = torch.from_numpy(np.stack([_task_image(rng, int(y)) for y in labels]))[:, None]
        y = torch.from_numpy(labels)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = _TinyCNN()
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for step in range(300):
            idx = torch.randint(0, len(y), (32,), generator=torch.Generator().manual_seed(step))
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_cam_of_a_trained_cnn_puts_most_mass_in_the_region_that_decides(task_net, method):
    rng = np.random.default_rng(1)
    images = [_task_image(rng, 1) for _ in range(8)]
    with torch.no_grad():
        assert (task_net(torch.from_numpy(np.stack(images))[:, None]).argmax(1) == 1).all()  # it learnt
    area = (DECIDING[0].stop - DECIDING[0].start) * (DECIDING[1].stop - DECIDING[1].start) / TASK_SIZE**2
    shares = []
    for img in images:
        heat = grad_cam(task_net, torch.from_numpy(img)[None], target=1, method=method)
        shares.append(float(heat[DECIDING].sum() / heat.sum()))
        r, c = np.unravel_index(np.argmax(heat), heat.shape)
        assert DECIDING[0].start <= r < DECIDING[0].stop and DECIDING[1].start <= c < DECIDING[1].stop
    assert area < 0.15 and min(shares) > 0.5 and np.mean(shares) > 0.8, shares


class _RegionMeans(nn.Module):
    """Heteroscedastic regressor: output 0 = mean feature over REGION_A, output 1 = over REGION_B."""

    task = "regression"

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())
        self.cam_layer = self.features[1]
        with torch.no_grad():
            self.features[0].weight.fill_(1.0)
            self.features[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x)[:, 0]
        return torch.stack([a[:, :8, :8].mean(dim=(1, 2)), a[:, 12:, 12:].mean(dim=(1, 2))], dim=1)


@pytest.mark.parametrize("method", ["hirescam", "layercam"])
def test_regression_cam_peaks_in_the_region_the_target_averages(method):
    """Identical blobs in both regions and outside: each target's CAM lies in its own region only."""
    img = torch.zeros(1, 20, 20)
    for r, c in [(2, 2), (14, 14), (2, 14), (14, 2)]:  # in region A, in region B, two elsewhere
        img[0, r : r + 3, c : c + 3] = 1.0
    net = _RegionMeans()
    for target, (rows, cols) in [(0, (slice(0, 8), slice(0, 8))), (1, (slice(12, 20), slice(12, 20)))]:
        heat = grad_cam(net, img, target=target, method=method)
        assert heat[rows, cols].sum() / heat.sum() > 0.99
        r, c = np.unravel_index(np.argmax(heat), heat.shape)
        assert rows.start <= r < rows.stop and cols.start <= c < cols.stop
