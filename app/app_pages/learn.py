"""Learn page (course projects): every CNN idea visible, computed by microcnn.teach and microcnn.models.

Sections: model anatomy (describe table + formulas), convolution playground, pooling and upsampling side
by side, inside a CNN (feature maps, kernels, Grad-CAM of a zoo or trained model), activation functions
with derivatives, an optimizer race, dropout / batch-norm on a tiny run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cnn
import inside
import model_files
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import state
import streamlit as st
import views

import microcnn
from microcnn import teach

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples" / "segmentation" / "images"
CROP = 96  # px side of the image the playground works on (keeps it instant on a 2-core CPU)


@st.cache_data(show_spinner=False, max_entries=8)
def sample_names() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*.png")) if SAMPLES.is_dir() else []


@st.cache_data(show_spinner=False, max_entries=8)
def sample_pixels(name: str) -> np.ndarray:
    """Gray (CROP, CROP) float32 centre crop of a committed synthetic sample (pure function of its name)."""
    import microcnn

    pixels = microcnn.read_micrograph(SAMPLES / name, as_gray=True).pixels
    r0, c0 = (max(0, (n - CROP) // 2) for n in pixels.shape[:2])
    return pixels[r0 : r0 + CROP, c0 : c0 + CROP]


@st.cache_data(show_spinner=False, max_entries=16)
def regularization_curves(dropout: float, batch_norm: bool, epochs: int, seed: int) -> dict:
    return teach.regularization_run(dropout=dropout, batch_norm=batch_norm, epochs=epochs, seed=seed)


def heatmap(
    array: np.ndarray, title: str, *, zmin: float | None = None, zmax: float | None = None
) -> go.Figure:
    fig = px.imshow(array, color_continuous_scale="gray", zmin=zmin, zmax=zmax, title=title)
    fig.update_layout(height=260, margin={"l": 0, "r": 0, "t": 30, "b": 0}, coloraxis_showscale=False)
    return fig


def zoo() -> tuple[Any, Any, Any] | None:
    """(build_model, list_models, describe) when the model zoo and describe are in this build, else None."""
    try:
        from microcnn.models import build_model, list_models
        from microcnn.models.describe import describe
    except ImportError:
        return None
    return build_model, list_models, describe


def model_anatomy() -> None:
    """Layer table (describe) of a zoo model or a trained checkpoint, with the formulas beside it."""
    st.header("Model anatomy")
    found = zoo()
    if found is None:
        st.info("The layer table needs microcnn.models.describe, which is not part of this build yet.")
        formulas()
        return
    trained = [m.name for m in model_files.list_models(state.project_dir())]
    cols = st.columns(3)
    name = cols[0].selectbox(
        "Model", found[1]() + trained, format_func=inside.source_label, key="learn.model"
    )
    channels = int(cols[1].number_input("Channels", 1, 3, 1, key="learn.channels"))
    size = int(cols[2].number_input("Input size (px)", 16, 512, 64, step=16, key="learn.size"))
    table_col, formula_col = st.columns([3, 2])
    with table_col, views.friendly_errors("Describing the model"):
        if name.endswith(".safetensors"):
            table, note = checkpoint_table(name, size)
            st.caption(note)
        else:
            table = describe_table(name, channels, size)
        st.dataframe(table, hide_index=True, key="learn.describe")
    with formula_col:
        formulas()


def checkpoint_table(name: str, size: int) -> tuple[pd.DataFrame, str]:
    """Layer table of trained model ``name`` for its own channels (and fixed input size, if it has one)."""
    path = model_files.resolve(state.project_dir(), name)
    return _checkpoint_table(str(path), path.stat().st_mtime_ns, name, size)


@st.cache_data(show_spinner="Tracing the layers of the checkpoint...", max_entries=16)
def _checkpoint_table(path: str, mtime_ns: int, name: str, size: int) -> tuple[pd.DataFrame, str]:
    """Pure function of the file version (path + mtime). The cached model is shared and describe registers
    forward hooks, so a private copy is traced."""
    from microcnn.models.describe import describe

    shared, meta = cnn.load(state.project_dir(), name)
    channels = int((meta.get("preprocessing") or {}).get("in_channels") or getattr(shared, "in_channels", 1))
    side = int(getattr(shared, "exact_input_size", None) or size)
    table = describe(cnn.private_copy(shared), input_shape=(channels, side, side)).to_dataframe()
    note = f"Trained checkpoint {name}: its own input of {channels}×{side}×{side} (channels × rows × cols)."
    return table, note


@st.cache_data(show_spinner="Building the model and tracing its layers...", max_entries=16)
def describe_table(name: str, channels: int, size: int) -> pd.DataFrame:
    """Per-layer table of zoo model ``name`` for a (channels, size, size) input (pure function)."""
    build_model, _, describe = zoo()
    return describe(
        build_model(name, in_channels=channels), input_shape=(channels, size, size)
    ).to_dataframe()


def formulas() -> None:
    st.markdown(
        "Output size, receptive field and cost of a convolution layer (kernel k, stride s, padding p, "
        "dilation d, jump j = product of earlier strides):"
    )
    st.latex(r"n_\text{out} = \left\lfloor \frac{n + 2p - d(k-1) - 1}{s} \right\rfloor + 1")
    st.latex(r"n_\text{out}^\text{transposed} = (n-1)s - 2p + d(k-1) + \text{output\_padding} + 1")
    st.latex(r"r_\text{out} = r_\text{in} + d(k-1)\,j_\text{in}, \qquad j_\text{out} = j_\text{in}\, s")
    st.latex(r"\text{FLOPs} = 2\,k^2\,C_\text{in}\,C_\text{out}\,H_\text{out}\,W_\text{out} / \text{groups}")
    st.latex(r"\text{params} = k^2\,C_\text{in}\,C_\text{out} / \text{groups} + C_\text{out}\ (\text{bias})")


def pick_image() -> np.ndarray | None:
    names = sample_names()
    if not names:
        st.info("No sample images found in data/samples/segmentation/images.")
        return None
    name = st.selectbox("Sample image (synthetic, committed in data/samples)", names, key="learn.sample")
    return sample_pixels(name)


def kernel_editor() -> np.ndarray:
    preset = st.selectbox(
        "Kernel",
        list(teach.KERNELS),
        index=list(teach.KERNELS).index("Gaussian blur"),
        key="learn.kernel_preset",
    )
    frame = pd.DataFrame(teach.KERNELS[preset], columns=["c0", "c1", "c2"])
    edited = st.data_editor(frame, key=f"learn.kernel_edit.{preset}", width="content")
    kernel = edited.to_numpy(dtype=np.float32)
    st.session_state[state.KEYS.learn_kernel] = kernel.tolist()
    return kernel


def output_size(n: int, k: int, s: int, p: int, d: int) -> int | None:
    try:
        from microcnn.models.describe import conv_output_size
    except ImportError:
        return None
    return int(conv_output_size(n, k, s=s, p=p, d=d))


def convolution_playground(image: np.ndarray) -> np.ndarray | None:
    st.header("Convolution playground")
    left, right = st.columns([1, 2])
    with left:
        kernel = kernel_editor()
        stride = st.slider("Stride", 1, 4, 1, key="learn.stride")
        padding = st.slider("Padding (px)", 0, 3, 1, key="learn.padding")
        dilation = st.slider("Dilation", 1, 3, 1, key="learn.dilation")
        mode = st.radio("Padding mode", ["zeros", "reflect"], horizontal=True, key="learn.padding_mode")
    with views.friendly_errors("Convolution"):
        out = teach.convolve(
            image, kernel, stride=stride, padding=padding, dilation=dilation, padding_mode=mode
        )
        n, k = image.shape[0], kernel.shape[0]
        formula = output_size(n, k, stride, padding, dilation)
        with right:
            a, b = st.columns(2)
            a.plotly_chart(
                heatmap(image, f"input {n}×{image.shape[1]} px", zmin=0, zmax=1), key="learn.conv_in"
            )
            b.plotly_chart(heatmap(out, f"output {out.shape[0]}×{out.shape[1]} px"), key="learn.conv_out")
            value = formula if formula is not None else out.shape[0]
            fraction = rf"\frac{{{n} + 2\cdot{padding} - {dilation}({k}-1) - 1}}{{{stride}}}"
            st.latex(rf"n_\text{{out}} = \left\lfloor {fraction} \right\rfloor + 1 = {value}")
            st.caption(
                f"Output of torch's conv2d: {out.shape[0]} × {out.shape[1]} px; "
                f"values from {out.min():.3g} to {out.max():.3g} (shown min-max scaled)."
            )
        return out
    return None


def pooling_and_upsampling(image: np.ndarray) -> None:
    st.header("Pooling and upsampling")
    side = st.select_slider("Feature map size (px)", [8, 16, 32], value=16, key="learn.pool_side")
    fmap = image[:side, :side]
    pooled = {mode: teach.pool(fmap, mode=mode) for mode in teach.POOL_MODES}
    cols = st.columns(3)
    cols[0].plotly_chart(heatmap(fmap, f"feature map {side}×{side}", zmin=0, zmax=1), key="learn.fmap")
    for col, mode in zip(cols[1:], teach.POOL_MODES):
        col.plotly_chart(
            heatmap(pooled[mode]["output"], f"{mode} pool 2×2 → {side // 2}×{side // 2}", zmin=0, zmax=1),
            key=f"learn.pool.{mode}",
        )
    st.markdown("The max-pooled map brought back to full size by each decoder mode:")
    small = pooled["max"]
    cols = st.columns(len(teach.UPSAMPLE_MODES))
    for col, mode in zip(cols, teach.UPSAMPLE_MODES):
        up = teach.upsample(small["output"], mode=mode, indices=small["indices"], output_shape=fmap.shape)
        col.plotly_chart(heatmap(up, mode, zmin=0, zmax=1), key=f"learn.up.{mode}")
    st.caption(
        "transpose: an untrained stride-2 transposed convolution with a 2×2 kernel of ones (equals "
        "nearest until trained); unpool: each maximum returns to where max-pooling found it."
    )


def activations() -> None:
    st.header("Activation functions and their derivatives")
    names = st.multiselect(
        "Activations",
        list(teach.ACTIVATIONS),
        default=["relu", "tanh", "sigmoid", "gelu"],
        key="learn.activations",
    )
    if not names:
        return
    curves = teach.activation_curves(tuple(names))
    long = pd.concat(
        [
            pd.DataFrame(
                {"x": curves["x"], "f(x)": curves[n]["f"], "f'(x)": curves[n]["df"], "activation": n}
            )
            for n in names
        ]
    )
    left, right = st.columns(2)
    left.plotly_chart(px.line(long, x="x", y="f(x)", color="activation", title="f(x)"), key="learn.act_f")
    right.plotly_chart(
        px.line(long, x="x", y="f'(x)", color="activation", title="f'(x) (autograd)"), key="learn.act_df"
    )


def optimizer_race() -> None:
    st.header("Optimizer race")
    cols = st.columns(3)
    problem = cols[0].selectbox("Problem", list(teach.PROBLEMS), key="learn.problem")
    steps = cols[1].slider("Steps", 10, 300, 100, key="learn.steps")
    lr = cols[2].select_slider(
        "Learning rate", [0.001, 0.003, 0.01, 0.03, 0.05, 0.1], value=0.01, key="learn.lr"
    )
    race = teach.optimizer_race(problem=problem, steps=steps, lr=lr)
    loss = pd.concat(
        [
            pd.DataFrame({"step": np.arange(len(r["loss"])), "loss": r["loss"], "optimizer": n})
            for n, r in race.items()
        ]
    )
    path = pd.concat(
        [pd.DataFrame({"x": r["path"][:, 0], "y": r["path"][:, 1], "optimizer": n}) for n, r in race.items()]
    )
    left, right = st.columns(2)
    left.plotly_chart(
        px.line(loss, x="step", y="loss", color="optimizer", log_y=True, title="loss"), key="learn.race_loss"
    )
    right.plotly_chart(
        px.line(path, x="x", y="y", color="optimizer", title="path in parameter space"), key="learn.race_path"
    )
    st.caption(
        "quadratic: 0.5(x² + 10y²), minimum at (0, 0); rosenbrock: (1−x)² + 100(y−x²)², minimum at (1, 1). "
        "momentum = SGD with momentum 0.9."
    )


def regularization() -> None:
    st.header("Dropout and batch normalisation on a tiny run")
    st.markdown(
        "A 64-wide MLP learns 40 noisy two-moons points (400 held out). Without regularisation it "
        "memorises them: the training loss keeps falling while the validation loss turns up."
    )
    epochs = st.slider("Epochs", 50, 300, 150, step=50, key="learn.reg_epochs")
    if st.button("Run the four variants", key="learn.reg_run"):
        runs = {
            "plain": (0.0, False),
            "dropout 0.5": (0.5, False),
            "batch norm": (0.0, True),
            "both": (0.5, True),
        }
        with st.spinner("Training four tiny networks..."):
            st.session_state[state.KEYS.learn_regularization] = {
                label: regularization_curves(p, bn, epochs, 0) for label, (p, bn) in runs.items()
            }
    curves = st.session_state[state.KEYS.learn_regularization]
    if curves:
        frames = [
            pd.DataFrame(
                {
                    "epoch": np.arange(1, len(c["val_loss"]) + 1),
                    "train loss": c["train_loss"],
                    "validation loss": c["val_loss"],
                    "variant": label,
                }
            )
            for label, c in curves.items()
        ]
        long = pd.concat(frames)
        left, right = st.columns(2)
        left.plotly_chart(
            px.line(long, x="epoch", y="train loss", color="variant", title="training loss"),
            key="learn.reg_train",
        )
        right.plotly_chart(
            px.line(long, x="epoch", y="validation loss", color="variant", title="validation loss"),
            key="learn.reg_val",
        )


def inside_a_cnn(sample: np.ndarray | None) -> None:
    """Feature maps of every convolution, first-layer kernels and Grad-CAM of a zoo or trained model."""
    st.header("Inside a CNN: feature maps, kernels, Grad-CAM")
    found = zoo()
    trained = [m.name for m in model_files.list_models(state.project_dir())]
    cols = st.columns(2)
    choices = (found[1]() if found else []) + trained
    name = cols[0].selectbox("Model", choices, format_func=inside.source_label, key="learn.inside_model")
    upload = cols[1].file_uploader("Your image (else the sample above)", type=state.IMAGE_TYPES,
                                   key="learn.inside_upload")  # fmt: skip
    if name is None:
        return
    if st.button("Show feature maps", key="learn.inside_run"):
        with views.friendly_errors("Feature maps"), st.spinner("Running the model..."):
            st.session_state[state.KEYS.learn_maps] = inside_compute(name, upload, sample)
    shown = st.session_state[state.KEYS.learn_maps]
    if shown:
        inside_show(shown)


def inside_compute(name: str, upload: Any, sample: np.ndarray | None) -> dict:
    """Pick the model and image, run them; the result is kept in this session only."""
    if upload is not None:
        if upload.size > state.MAX_UPLOAD_MB * 1024 * 1024:
            raise microcnn.MicrocnnError(f"{upload.name} is over the {state.MAX_UPLOAD_MB} MB upload cap.")
        pixels = microcnn.read_micrograph(upload.getvalue(), max_pixels=state.MAX_PIXELS).pixels
    elif sample is not None:
        pixels = sample
    else:
        raise microcnn.MicrocnnError("Upload an image first (no sample images in this checkout).")
    pixels, note = inside.gray(pixels)
    if name.endswith(".safetensors"):
        shared, meta = cnn.load(state.project_dir(), name)
        model = cnn.private_copy(shared)
        if int((meta.get("preprocessing") or {}).get("in_channels") or 1) != 1:
            raise microcnn.MicrocnnError(
                "This page shows 1-channel (gray) models; this one takes colour images."
            )
    else:
        model, meta = inside.zoo_model(name, 32 if name in ("lenet5",) else inside.MAX_SIDE), None
    x, crop = inside.model_input(model, pixels, meta)
    return {"name": name, "crop": crop, "note": note, "x": x, "model": model, **inside.inspect(model, x)}


def inside_show(shown: dict) -> None:
    from microcnn.analysis.explain import grad_cam

    if shown["note"]:
        st.caption(shown["note"])
    maps = shown["maps"]
    st.caption(
        f"{inside.source_label(shown['name'])}; input {shown['crop'].shape[0]}×{shown['crop'].shape[1]} px"
    )
    st.dataframe(pd.DataFrame(inside.layer_rows(maps)), hide_index=True, key="learn.inside_layers")
    layer = st.selectbox("Layer", list(maps), key="learn.inside_layer")
    st.plotly_chart(
        inside.channels_figure(maps[layer], f"{layer}: {maps[layer].shape[0]} channels (first 16)"),
        key="learn.inside_maps",
    )
    kernels = shown["kernels"]
    st.plotly_chart(
        inside.channels_figure(kernels[:, 0], f"first-layer kernels {kernels.shape[2]}×{kernels.shape[3]}"),
        key="learn.inside_kernels",
    )
    if st.button("Grad-CAM of the predicted class / output", key="learn.inside_cam"):
        with views.friendly_errors("Grad-CAM"):
            shown["cam"] = grad_cam(shown["model"], shown["x"])
    if "cam" in shown:
        left, right = st.columns(2)
        left.plotly_chart(heatmap(shown["crop"], "input", zmin=0, zmax=1), key="learn.inside_input")
        right.plotly_chart(heatmap(shown["cam"], "Grad-CAM", zmin=0, zmax=1), key="learn.inside_camfig")


st.title("Learn")
model_anatomy()
picked = pick_image()
if picked is not None:
    convolution_playground(picked)
    pooling_and_upsampling(picked)
inside_a_cnn(picked)
activations()
optimizer_race()
regularization()
