"""ResNet-18/34/50 from torchvision's builders, adapted to any ``in_channels`` and ``num_classes``.

Weights are never downloaded: ``weights=None`` always, and ``weights_path`` loads a local state dict
(``.safetensors``, or ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``) such as a torchvision
ImageNet file the user saved. Adapting a 3-channel file:

- ``conv1``: for ``in_channels=k != 3`` the RGB kernels are averaged and scaled by 3/k, then repeated k
  times, so a gray image repeated over k channels gives the same response as the RGB net on a gray image
  (for k = 1 this is the sum over R, G, B).
- ``fc``: when the file's head has another number of classes, it is left out and the new head keeps its
  fresh initialisation (the usual fine-tuning start). Any other missing or unexpected key is an error.

Example:
    >>> net = ResNetClassifier(depth=18, in_channels=1, num_classes=4)
    >>> net.num_features
    512
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn

from microcnn.errors import ModelFileError
from microcnn.models.classifiers import Classifier
from microcnn.models.zoo import register_model

RESNET_BUILDERS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
}


def build_torchvision_resnet(depth: int, in_channels: int, num_classes: int) -> torchvision.models.ResNet:
    """torchvision's ResNet with ``weights=None``; conv1 replaced when ``in_channels != 3``; no fc at 0."""
    if depth not in RESNET_BUILDERS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BUILDERS)}; got {depth}.")
    net = RESNET_BUILDERS[depth](weights=None, num_classes=max(num_classes, 1))
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if num_classes == 0:
        net.fc = nn.Identity()
    return net


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file; never unpickles objects. Corrupt files -> ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file not found: {path}. Give the path of a .safetensors or .pth file."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # each library raises its own types for corrupt files
        raise ModelFileError(f"Corrupt or unsupported weights file {path.name}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path.name} does not hold a state dict (name -> tensor).")
    return state


def adapt_resnet_state(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Fit a torchvision-layout state dict to ``net``: adapt conv1 (see module doc), drop a mismatched fc."""
    own = net.state_dict()
    state = {k.removeprefix("net."): v for k, v in state.items()}
    w = state.get("conv1.weight")
    target = own["conv1.weight"]
    if w is not None and w.shape != target.shape and w.shape[1] == 3:
        k = target.shape[1]
        state["conv1.weight"] = (w.mean(dim=1, keepdim=True) * 3.0 / k).repeat(1, k, 1, 1)
    for key in ("fc.weight", "fc.bias"):
        if key in state and (key not in own or state[key].shape != own[key].shape):
            del state[key]
    return state


def load_resnet_weights(net: nn.Module, path: str | Path) -> None:
    """Load a local torchvision-layout file into ``net`` (a torchvision ResNet), adapting conv1 and fc."""
    state = adapt_resnet_state(read_state_dict(path), net)
    result = net.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"{Path(path).name} does not fit this ResNet: missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}. Is it a ResNet of the same depth?"
        )


class ResNetClassifier(Classifier):
    """ResNet (He et al. 2016) classifier; the torchvision network is ``self.net``. Needs >= 32 px."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, *, depth: int = 18, weights_path: str | None = None
    ) -> None:
        super().__init__(in_channels, num_classes, min_input_size=32, output_stride=32)
        self.net = build_torchvision_resnet(depth, in_channels, num_classes)
        if weights_path:
            load_resnet_weights(self.net, weights_path)
        self.num_features = 2048 if depth == 50 else 512

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        super().forward_features(x)  # input checks only (features is Identity)
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) float32 -> logits (N, num_classes)."""
        features = self.forward_features(x)
        return self.net.fc(torch.flatten(self.net.avgpool(features), 1))


for _depth in RESNET_BUILDERS:
    register_model(f"resnet{_depth}", task="classification")(partial(ResNetClassifier, depth=_depth))
