"""Learn page, "Inside a CNN": feature maps of every convolution, first-layer kernels and Grad-CAM of a zoo
model (untrained, as built) or of a trained model file, for the sample image or an uploaded one.

Numbers come from ``microcnn.analysis.explain`` (forward hooks, pytorch-grad-cam); this module only picks
the model and the input and lays the arrays out for plotting. Trained models come from the shared cache
(app/cnn.py) and are used through a private copy, because hooks and gradients must not touch the shared one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

import microcnn

MAX_SIDE = 128  # px: the input is centre-cropped to this side so every layer shows at once on a CPU
MAX_CHANNELS = 16  # channels shown per layer


def zoo_model(name: str, side: int) -> Any:
    """Untrained zoo model ``name`` for 1-channel input (fixed-size heads built for ``side`` px)."""
    from microcnn.models import build_model
    from microcnn.models.zoo import accepted_kwargs

    kwargs: dict[str, Any] = {"in_channels": 1}
    if "input_size" in accepted_kwargs(name):
        kwargs["input_size"] = side
    return build_model(name, **kwargs).eval()


def centre_crop(pixels: np.ndarray, side: int) -> np.ndarray:
    """(H, W[, C]) -> the central (min(H, side), min(W, side)[, C]) window (rows, cols)."""
    r0, c0 = (max(0, (n - side) // 2) for n in pixels.shape[:2])
    return pixels[r0 : r0 + side, c0 : c0 + side]


def gray(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    if pixels.ndim == 2:
        return pixels, None
    from skimage.color import rgb2gray

    return rgb2gray(pixels[..., :3]).astype(np.float32), "The colour image was converted to gray (luminance)."


def model_input(model: Any, pixels: np.ndarray, meta: dict[str, Any] | None) -> tuple[Any, np.ndarray]:
    """((1, H, W) preprocessed tensor, the (H, W) crop it came from) for ``model``.

    Crop side: the model's fixed input size if it has one, else at most MAX_SIDE px. Preprocessing: the
    checkpoint's own (Predictor.preprocess) for a trained model, per-image standardisation for a zoo model.
    """
    from microcnn.data.transforms import build_transforms

    side = int(getattr(model, "exact_input_size", None) or MAX_SIDE)
    crop = centre_crop(pixels, side)
    minimum = int(getattr(model, "min_input_size", 1) or 1)
    if min(crop.shape[:2]) < minimum:
        raise microcnn.MicrocnnError(
            f"This model needs images of at least {minimum}x{minimum} px; the image is {crop.shape[0]}x"
            f"{crop.shape[1]} px. Choose a larger image."
        )
    if meta is not None:
        from microcnn.inference.predictor import Predictor

        x, _ = Predictor([model], meta, device="cpu").preprocess(microcnn.Micrograph(crop, None))
        return x, crop
    return build_transforms([], train=False)({"image": crop})["image"], crop


def inspect(model: Any, x: Any) -> dict[str, Any]:
    """Feature maps of every Conv2d ({name: (C, h, w)}) and the first-layer kernels (C_out, C_in, k, k)."""
    from microcnn.analysis.explain import feature_maps, first_layer_kernels

    return {"maps": feature_maps(model, x), "kernels": first_layer_kernels(model)}


def channels_figure(maps: np.ndarray, title: str) -> go.Figure:
    """The first MAX_CHANNELS channels of a (C, h, w) map (or kernels (C, k, k)) in a grid of panels."""
    shown = np.asarray(maps[:MAX_CHANNELS], dtype=np.float32)
    fig = px.imshow(shown, facet_col=0, facet_col_wrap=8, color_continuous_scale="gray", title=title)
    fig.for_each_annotation(lambda a: a.update(text=f"ch {int(a.text.split('=')[-1])}"))
    fig.update_layout(height=180 * ((len(shown) + 7) // 8) + 40, coloraxis_showscale=False,
                      margin={"l": 0, "r": 0, "t": 40, "b": 0})  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def layer_rows(maps: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per layer: name, channels, rows, cols (px of the feature map)."""
    return [
        {"layer": n, "channels": m.shape[0], "rows": m.shape[1], "cols": m.shape[2]} for n, m in maps.items()
    ]


def source_label(name: str) -> str:
    return f"trained: {name}" if name.endswith(".safetensors") else f"zoo (untrained): {name}"


def run_name(name: str) -> str:
    return Path(name).parent.name or name
