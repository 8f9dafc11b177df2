"""What did the network look at? Class activation maps, feature maps and first-layer kernels.

- :func:`grad_cam`: a heat map (H, W) in [0, 1] of the input regions that raise one output, computed with
  pytorch-grad-cam (Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Score-CAM, Eigen-CAM) at the
  model's ``cam_layer`` (or any layer). Targets: a class (classification), an output value (regression),
  or a class summed over a region (segmentation: the whole predicted region of that class by default).
- :func:`feature_maps`: the activations of any layers for one image, via forward hooks.
- :func:`first_layer_kernels`: the weights of the first convolution, the filters a student can look at.

Gradients are needed, so these functions run the model outside ``torch.inference_mode`` (in eval mode).

Choosing a method: Grad-CAM, Grad-CAM++ and XGrad-CAM weight each channel by its *average* gradient, so
when the same feature occurs inside and outside the region the output depends on (a position-dependent
head, e.g. Flatten + Linear), they light up both. HiResCAM and LayerCAM weight gradients element-wise and
stay in the deciding region. With features that know their position (CoordConv, deep nets) and a global
pooling head, all of them agree (tests/analysis/test_explain.py trains such a CNN and checks > 50 % of
the map's mass in a region covering 14 % of the image).

Example:
    >>> from microcnn.models import build_model
    >>> net = build_model("resnet18", in_channels=1, num_classes=3)
    >>> heat = grad_cam(net, torch.rand(1, 1, 64, 64), target=2)   # doctest: +SKIP
    >>> heat.shape, heat.dtype                                     # doctest: +SKIP
    ((64, 64), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from microcnn.registry import check_choice, unknown_name_error

CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam", "eigencam")


def _cam_class(method: str) -> Any:
    import pytorch_grad_cam as pgc

    check_choice("CAM method", method, CAM_METHODS)
    return {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "hirescam": pgc.HiResCAM,
        "xgradcam": pgc.XGradCAM,
        "layercam": pgc.LayerCAM,
        "scorecam": pgc.ScoreCAM,
        "eigencam": pgc.EigenCAM,
    }[method]


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """A layer given by module, by dotted name (``"features.3"``), or None for ``model.cam_layer``."""
    if isinstance(layer, nn.Module):
        return layer
    if layer is None:
        cam_layer = getattr(model, "cam_layer", None)
        if not isinstance(cam_layer, nn.Module):
            raise ValueError(
                f"{type(model).__name__} has no 'cam_layer'; pass layer= as one of: {_conv_names(model)[:8]}."
            )
        return cam_layer
    names = dict(model.named_modules())
    if layer not in names:
        raise unknown_name_error("layer", str(layer), [n for n in names if n])
    return names[layer]


def _conv_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one preprocessed image (C, H, W) or (1, C, H, W); got {tuple(x.shape)}.")
    return x.float()


def _task_target(model: nn.Module, x: torch.Tensor, target: int | None, region: np.ndarray | None) -> Any:
    """The pytorch-grad-cam target for the model's task; None target = the predicted class / output 0."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget

    task = getattr(model, "task", "classification")
    if task == "segmentation":
        with torch.no_grad():
            logits = model(x)[0]
        pred = logits.argmax(0).cpu().numpy()
        category = int(np.bincount(pred.ravel()).argmax()) if target is None else int(target)
        _check_index("class", category, logits.shape[0])
        mask = (pred == category) if region is None else np.asarray(region, dtype=bool)
        if mask.shape != tuple(logits.shape[-2:]):
            raise ValueError(f"region must be a (H, W) = {tuple(logits.shape[-2:])} mask; got {mask.shape}.")
        return SemanticSegmentationTarget(category, mask.astype(np.float32))
    if region is not None:
        raise ValueError(f"region= applies to segmentation models only; this model's task is '{task}'.")
    with torch.no_grad():
        out = model(x)
    if target is None:
        target = int(out[0].argmax()) if task == "classification" else 0
    _check_index("class" if task == "classification" else "output", int(target), out.shape[1])
    # ClassifierOutputTarget selects column `target` of the (N, K) output: a class logit, or for regression
    # the value of target t (the mean half of a heteroscedastic [mean | logvar] output).
    return ClassifierOutputTarget(int(target))


def _check_index(what: str, index: int, count: int) -> None:
    if not 0 <= index < count:
        raise ValueError(f"target {what} index must be in 0..{count - 1}; got {index}.")


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    *,
    target: int | None = None,
    region: np.ndarray | None = None,
    method: str = "gradcam",
    layer: str | nn.Module | None = None,
) -> np.ndarray:
    """Class activation map of one image.

    Args:
        model: a microcnn model (``task`` and ``cam_layer`` attributes) or any CNN with ``layer`` given.
        x: (C, H, W) or (1, C, H, W) float32, preprocessed as for prediction.
        target: class index (classification, segmentation), output index (regression); None = predicted
            class (classification), the most frequent predicted class (segmentation), output 0 (regression).
        region: segmentation only: (H, W) bool mask of the pixels whose class score is explained;
            default = the pixels predicted as ``target``.
        method: one of :data:`CAM_METHODS`.
        layer: module, dotted module name, or None for ``model.cam_layer``.

    Returns:
        (H, W) float32 in [0, 1] at the input's rows/cols (min-max scaled; all zero if nothing contributes).

    Example:
        >>> heat = grad_cam(net, image, target=1, method="gradcam++")   # doctest: +SKIP
    """
    cam_cls = _cam_class(method)
    x = _batch(x)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            targets = [_task_target(model, x, target, region)]
            with cam_cls(model=model, target_layers=[resolve_layer(model, layer)]) as cam:
                heat = cam(input_tensor=x.clone(), targets=targets)
    finally:
        model.train(was_training)
    return np.nan_to_num(np.asarray(heat[0], dtype=np.float32)).clip(0.0, 1.0)


def feature_maps(
    model: nn.Module, x: torch.Tensor, *, layer_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Activations of the named layers (default: every Conv2d) for one image.

    Args:
        model: any module.
        x: (C, H, W) or (1, C, H, W) float32 preprocessed image.
        layer_names: dotted module names (see ``model.named_modules()``).

    Returns:
        {name: (C_l, h_l, w_l) float32 array}, in forward order of ``layer_names``.
    """
    x = _batch(x)
    names = list(layer_names) if layer_names is not None else _conv_names(model)
    modules = {name: resolve_layer(model, name) for name in names}
    captured: dict[str, np.ndarray] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out[0].detach().float().cpu().numpy())
        )
        for name, module in modules.items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: captured[name] for name in names if name in captured}


def first_layer_kernels(model: nn.Module) -> np.ndarray:
    """(C_out, C_in, k_rows, k_cols) float32 weights of the model's first Conv2d."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu().numpy().copy()
    raise ValueError(f"{type(model).__name__} has no Conv2d layer, so it has no first-layer kernels.")
