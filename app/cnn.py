"""CNN models in the app: cached, read-only loading; prediction; Grad-CAM; the image-level result views.

Models are the ``.safetensors`` files that app/model_files lists (data/models/, runs/<run>/), named by
their path relative to the project folder and resolved by ``model_files.resolve`` (never outside those
folders). ``loaded_model`` is an ``st.cache_resource`` keyed by path + modification time (a retrained or
replaced file is loaded again), shared by every session: it is only used in ``eval()`` mode under
``torch.inference_mode`` (the Predictor). Grad-CAM and feature maps need gradients or forward hooks, so
they run on a private copy of the cached model, never on the shared one.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import torch

import microcnn

CNN = "cnn"  # the method name of "a CNN model" next to the classical method names


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def loaded_model(path: str, mtime_ns: int) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode on CPU, card metadata) of a weights file; ``mtime_ns`` is only the cache key."""
    from microcnn.engine.checkpoint import load_model

    model, meta = load_model(path, device="cpu")
    model.requires_grad_(False)
    # NHWC once here (the Predictor's default layout), so a Predictor never re-lays out the shared model
    return model.eval().to(memory_format=torch.channels_last), meta


def load(project: Path, name: str) -> tuple[Any, dict[str, Any]]:
    """The cached (model, metadata) of model ``name`` (relative to ``project``; checked by resolve)."""
    import model_files

    path = model_files.resolve(project, name)
    return loaded_model(str(path), path.stat().st_mtime_ns)


def private_copy(model: Any) -> Any:
    """A copy that may get hooks and gradients without touching the shared cached model."""
    return copy.deepcopy(model).requires_grad_(True).eval()


def fit_channels(image: microcnn.Micrograph, in_channels: int) -> tuple[microcnn.Micrograph, str | None]:
    """Match the image's channels to the model's: RGB -> gray (luminance, said so) or gray -> 3 copies."""
    pixels = image.pixels
    have = 1 if pixels.ndim == 2 else pixels.shape[2]
    if have == in_channels:
        return image, None
    if in_channels == 1:
        from skimage.color import rgb2gray

        gray = rgb2gray(pixels[..., :3]).astype(np.float32)
        return image.with_pixels(gray), "The colour image was converted to gray (luminance) for this model."
    if in_channels == 3 and have == 1:
        rgb = np.repeat(pixels[..., None], 3, axis=2)
        return image.with_pixels(rgb), "The gray image was repeated into 3 channels for this model."
    raise microcnn.MicrocnnError(
        f"The model expects {in_channels}-channel images; this image has {have}. Use a model trained on "
        "images like this one."
    )


def predict(
    project: Path, name: str, image: microcnn.Micrograph, *, tta: bool, rescale: bool = False
) -> tuple[Any, str | None]:
    """(Segmentation-/Classification-/RegressionResult, note) of ``image`` with model ``name``.

    ``result.method`` names the architecture and the model, e.g. "unet:phase_segmenter" (see
    ``model_files.label``). ``rescale``: resample to the model's training pixel size first (the Predictor
    maps a phase map back to the image's own rows and columns).
    """
    import model_files

    from microcnn.inference.predictor import Predictor

    model, meta = load(project, name)
    in_channels = int(
        (meta.get("preprocessing") or {}).get("in_channels") or getattr(model, "in_channels", 1)
    )
    fitted, note = fit_channels(image, in_channels)
    predictor = Predictor(
        [model], meta, device="cpu", tta=tta, rescale=rescale, names=[model_files.label(name)]
    )
    return predictor.predict(fitted), note


def grad_cam(project: Path, name: str, image: microcnn.Micrograph, *, target: int, method: str) -> np.ndarray:
    """(H, W) float32 in [0, 1]: Grad-CAM of output ``target`` at the image's rows/cols."""
    from microcnn.analysis.explain import grad_cam as cam
    from microcnn.inference.predictor import Predictor

    model, meta = load(project, name)
    in_channels = int((meta.get("preprocessing") or {}).get("in_channels") or 1)
    fitted, _ = fit_channels(image, in_channels)
    x, _ = Predictor([model], meta, device="cpu").preprocess(fitted)
    return cam(private_copy(model), x, target=target, method=method)


def scale_mismatch(image_um: float | None, trained_um: Any) -> float | None:
    """image / training pixel size when both are known and differ by more than 5 %, else None."""
    if not image_um or not isinstance(trained_um, int | float) or trained_um <= 0:
        return None
    ratio = float(image_um) / float(trained_um)
    return ratio if abs(ratio - 1.0) > 0.05 else None


def uncertainty_map(result: Any) -> np.ndarray | None:
    """(H, W) spread (std over TTA samples) of the probability of each pixel's predicted class, or None."""
    if getattr(result, "std", None) is None:
        return None
    mask = np.asarray(result.mask).astype(np.intp)
    return np.take_along_axis(np.asarray(result.std), mask[None], axis=0)[0]


def heatmap_figure(array: np.ndarray, title: str, *, scale: str = "viridis") -> go.Figure:
    fig = px.imshow(array, color_continuous_scale=scale, title=title)
    fig.update_layout(height=360, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    return fig


def show_classification(outcome: dict[str, Any]) -> None:
    """Predicted class and a bar chart of the class probabilities (± std when TTA is on)."""
    frame = pd.DataFrame(outcome["table"])
    st.metric("Predicted class", outcome["predicted"], help=outcome["report"]["method"])
    has_std = "std" in frame
    fig = px.bar(
        frame, x="class", y="probability", error_y="std" if has_std else None, range_y=[0, 1],
        title="Class probabilities" + (" (± std over TTA)" if has_std else ""),
    )  # fmt: skip
    fig.update_layout(height=320)
    st.plotly_chart(fig, key="analyze.class_bars")
    st.dataframe(frame, hide_index=True, key="analyze.class_table")


def show_regression(outcome: dict[str, Any]) -> None:
    """One metric per predicted property with its unit and ± std (TTA / heteroscedastic head)."""
    frame = pd.DataFrame(outcome["table"])
    cols = st.columns(max(1, len(frame)))
    for col, row in zip(cols, frame.to_dict("records")):
        unit = "" if row["unit"] in ("1", "") else f" {row['unit']}"
        spread = f" ± {row['std']:.3g}" if pd.notna(row.get("std")) else ""
        col.metric(row["property"], f"{row['value']:.4g}{spread}{unit}")
    st.dataframe(frame, hide_index=True, key="analyze.regression_table")
    st.caption(
        "'1' = dimensionless. ± is one standard deviation (spread over TTA samples and model variance)."
    )


def image_level_bundle(
    result: Any, *, name: str, note: str | None, provenance: dict[str, Any]
) -> dict[str, Any]:
    """The session bundle of a classification or regression result (see results_view.analyze).

    ``provenance``: file, model file, options, pixel size and its source, info-bar crop (the report's head).
    """
    report = {**provenance, **result.to_dict()}
    if isinstance(result, microcnn.ClassificationResult):
        table = {"class": list(result.class_names), "probability": result.probabilities.tolist()}
        if result.std is not None:
            table["std"] = result.std.tolist()
        kind, extra = "classification", {"predicted": result.predicted}
    else:
        table = {"property": list(result.target_names), "value": result.values.tolist(),
                 "unit": list(result.target_units)}  # fmt: skip
        table["std"] = result.std.tolist() if result.std is not None else [np.nan] * len(result.values)
        kind, extra = "regression", {}
    return {
        "kind": kind,
        "name": name,
        "table": table,
        "report": report,
        "notes": [note] if note else [],
        **extra,
    }
