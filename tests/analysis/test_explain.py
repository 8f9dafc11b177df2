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
