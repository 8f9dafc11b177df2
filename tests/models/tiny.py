"""Small configurations of every registered model, for fast CPU tests (name -> (kwargs, input size px))."""

from __future__ import annotations

_VGG = {
    "num_classes": 3,
    "widths": (4, 8, 8, 8, 8),
    "hidden": 16,
    "pool_size": 1,
    "dropout": 0.0,
    "norm": "batch",
}
_ALEX = {"num_classes": 3, "stem": "small", "widths": (8,) * 5, "hidden": 16, "pool_size": 1, "dropout": 0.0}

TINY: dict[str, tuple[dict, int]] = {
    "lenet5": ({"num_classes": 3}, 32),
    "tinyvgg": ({"num_classes": 3, "input_size": 32, "hidden": 6}, 32),
    "alexnet": (_ALEX, 32),
    "vgg11": (_VGG, 32),
    "vgg13": (_VGG, 32),
    "vgg16": (_VGG, 32),
    "vgg19": (_VGG, 32),
    "googlenet": ({"num_classes": 3, "width": 0.0625, "dropout": 0.0}, 32),
    "resnet18": ({"num_classes": 3}, 32),
    "resnet34": ({"num_classes": 3}, 32),
    "resnet50": ({"num_classes": 3}, 32),
    "unet": ({"num_classes": 2, "depth": 2, "base_channels": 4}, 32),
    "segnet": ({"num_classes": 2, "depth": 2, "base_channels": 4}, 32),
    "fcn": ({"num_classes": 2, "depth": 3, "base_channels": 4}, 32),
    "resnet_unet": ({"num_classes": 2, "decoder_channels": [16, 8, 8, 8, 8]}, 32),
    "regressor": (
        {
            "num_targets": 2,
            "backbone": "vgg11",
            "hidden": [16],
            "backbone_kwargs": {"widths": (4, 8, 8, 8, 8)},
        },
        32,
    ),
}
