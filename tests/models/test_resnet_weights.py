"""ResNet weights from local files: torchvision layout, adapted to 1 channel and a new head."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from microcnn.errors import ModelFileError
from microcnn.models import build_model


@pytest.fixture(scope="module")
def rgb_net():
    torch.manual_seed(3)
    return torchvision.models.resnet18(weights=None).eval()  # stands in for an ImageNet file the user saved


@pytest.fixture
def pth_file(rgb_net, tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(rgb_net.state_dict(), path)
    return path


def test_same_layout_loads_exactly(rgb_net, pth_file):
    net = build_model("resnet18", in_channels=3, num_classes=1000, weights_path=str(pth_file)).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), rgb_net(x), rtol=0, atol=0)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_gray_model_from_rgb_file_equals_rgb_net_on_gray_image(rgb_net, tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in rgb_net.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    net = build_model("resnet18", in_channels=1, num_classes=4, weights_path=str(path)).eval()
    # conv1 of the 1-channel net = sum of the RGB kernels (documented rule, k = 1)
    torch.testing.assert_close(net.net.conv1.weight, rgb_net.conv1.weight.sum(1, keepdim=True))
    assert net.net.fc.weight.shape == (4, 512)  # new head, fresh
    gray = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ours = net.forward_features(gray)
        theirs = rgb_net.layer4(
            rgb_net.layer3(rgb_net.layer2(rgb_net.layer1(rgb_net.maxpool(rgb_net.relu(rgb_net.bn1(
                rgb_net.conv1(gray.repeat(1, 3, 1, 1)))))))))  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_two_channel_model_keeps_the_gray_response(rgb_net, pth_file):
    net = build_model("resnet18", in_channels=2, num_classes=4, weights_path=str(pth_file)).eval()
    gray = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        a = net.net.conv1(gray.repeat(1, 2, 1, 1))
        b = rgb_net.conv1(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_resnet_unet_encoder_weights(rgb_net, pth_file):
    net = build_model("resnet_unet", encoder_weights_path=str(pth_file))
    torch.testing.assert_close(net.encoder.layer3[0].conv1.weight, rgb_net.layer3[0].conv1.weight)


def test_wrong_architecture_names_the_keys(pth_file):
    with pytest.raises(ModelFileError, match=r"missing \['layer1\.2"):
        build_model("resnet34", weights_path=str(pth_file))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _Payload(marker)}, path)
    with pytest.raises(ModelFileError, match="Corrupt or unsupported"):
        build_model("resnet18", weights_path=str(path))
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"\x00" * 10, b"not a model at all"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_corrupt_files_are_refused(tmp_path, content, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="Corrupt or unsupported"):
        build_model("resnet18", weights_path=str(path))


def test_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="Weights file not found"):
        build_model("resnet18", weights_path=str(tmp_path / "nope.pth"))
