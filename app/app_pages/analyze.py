"""Analyze page: upload micrographs, set info bar and pixel size, run a method, see and download results.

Inputs are checked here (size against our cap, content by read_micrograph's magic bytes); everything
else is computed by microcnn (io, analysis). Per-session data lives only in st.session_state.
"""

from __future__ import annotations

from typing import Any

import cnn
import model_files
import results_view
import state
import streamlit as st
import views

import microcnn

K = state.KEYS
MB = 1024 * 1024


def read_upload(uploaded: Any) -> microcnn.Micrograph | None:
    """Check one upload (size, then content) and decode it; a friendly error is recorded on failure."""
    errors = st.session_state[K.analyze_errors]
    if uploaded.size > state.MAX_UPLOAD_MB * MB:
        errors[uploaded.file_id] = (
            f"{uploaded.name}: {uploaded.size / MB:.1f} MB is over the {state.MAX_UPLOAD_MB} MB upload cap; "
            "crop or compress the image, or use the CLI for large files."
        )
        return None
    try:
        return microcnn.read_micrograph(uploaded.getvalue(), max_pixels=state.MAX_PIXELS)
    except microcnn.MicrographError as exc:
        errors[uploaded.file_id] = f"{uploaded.name} could not be used: {exc}"
        return None


def load_uploads(uploads: list[Any]) -> dict[str, tuple[str, microcnn.Micrograph]]:
    """file_id -> (file name, Micrograph) for every good upload; decoded once per session and file."""
    store = st.session_state[K.micrographs]
    errors = st.session_state[K.analyze_errors]
    current = {u.file_id for u in uploads}
    for key in [k for k in store if k not in current]:
        store.pop(key)
    for key in [k for k in errors if k not in current]:
        errors.pop(key)
    for uploaded in uploads:
        if uploaded.file_id not in store and uploaded.file_id not in errors:
            micrograph = read_upload(uploaded)
            if micrograph is not None:
                store[uploaded.file_id] = (uploaded.name, micrograph)
    for message in errors.values():
        st.error(message)
    return dict(store)


def info_bar_section(m: microcnn.Micrograph) -> tuple[microcnn.Micrograph, Any]:
    """Detect the SEM data bar; toggle to crop it (on when found) with a preview. Returns (image, bar)."""
    from microcnn.io.infobar import detect_info_bar

    st.subheader("1. Info bar")
    bar = detect_info_bar(m.pixels)
    if bar is None:
        st.caption("No info bar found at the bottom of the image; nothing to crop.")
        return m, None
    crop = st.toggle("Crop the info bar", value=True, key="analyze.crop")
    st.image(
        views.to_display(m.pixels[bar.row :]),
        caption=f"Info bar: rows {bar.row}..{m.height - 1} ({bar.reason})",
    )
    return (microcnn.crop_info_bar(m) if crop else m), bar


def pixel_size_section(
    m: microcnn.Micrograph, bar: Any, original: microcnn.Micrograph
) -> microcnn.Micrograph:
    """Pixel size from the metadata, typed, or from the scale bar; or unknown (results in px)."""
    st.subheader("2. Pixel size")
    options = (["From the file's metadata"] if m.pixel_size_um else []) + ["Type it"]
    options += ["Measure the scale bar"] if bar is not None else []
    options += ["Unknown (report in px)"]
    source = st.radio("Pixel size", options, key="analyze.pixel_source", label_visibility="collapsed")
    if source.startswith("From"):
        st.caption(f"{m.pixel_size_um:.6g} µm/px ({m.meta.get('pixel_size_source')})")
        return m
    if source == "Type it":
        value = st.number_input(
            "µm per pixel", min_value=1e-6, value=0.1, format="%.6f", key="analyze.pixel_um"
        )
        return m.with_pixel_size(float(value), source="typed")
    if source.startswith("Measure"):
        return scale_bar_size(m, bar, original)
    return m.with_pixel_size(None, source="unknown")


def scale_bar_size(m: microcnn.Micrograph, bar: Any, original: microcnn.Micrograph) -> microcnn.Micrograph:
    from microcnn.io.infobar import find_scale_bar

    found = find_scale_bar(original.pixels[bar.row :])
    cols = st.columns(2)
    bar_um = cols[0].number_input("Scale bar length (µm)", min_value=1e-6, value=1.0, key="analyze.bar_um")
    bar_px = cols[1].number_input(
        "Scale bar length (px)",
        min_value=1,
        value=int(found or 100),
        key="analyze.bar_px",
        help="Found automatically in the info bar; correct it if needed."
        if found
        else "No bar line found automatically: type its length in px.",
    )
    size = float(bar_um) / float(bar_px)
    st.caption(f"{bar_um:g} µm / {bar_px} px = {size:.6g} µm/px")
    return m.with_pixel_size(size, source="scale bar")


def method_section(image: microcnn.Micrograph) -> tuple[str | None, dict[str, Any]]:
    """Choose a classical method or a CNN model for ``image``; returns (method name, options)."""
    st.subheader("3. Method")
    models = [m.name for m in model_files.list_models(state.project_dir())]
    kind = st.radio(
        "Kind", ["Classical (no training needed)", "CNN model"], horizontal=True, key="analyze.kind",
        help=None if models else "No model files yet: defaults go to data/models/, trained runs to runs/.",
    )  # fmt: skip
    if kind == "CNN model":
        return cnn_section(models, image)
    try:
        from microcnn.analysis.classical import CLASSICAL
    except ImportError:
        st.warning("The classical methods (microcnn.analysis) are not part of this build yet.")
        return None, {}
    names = CLASSICAL.names()
    default = names.index("otsu") if "otsu" in names else 0
    name = st.radio("Method", names, index=default, key="analyze.method", horizontal=True)
    return name, classical_options(name)


def cnn_section(models: list[str], image: microcnn.Micrograph) -> tuple[str | None, dict[str, Any]]:
    """A model from data/models/ or runs/<run>/ (with its card's task and classes), TTA on or off, and
    resampling to the model's training pixel size when ``image``'s differs."""
    if not models:
        st.info("No CNN models yet: train one on the Train page, or add default weights to data/models/.")
        return None, {}
    name = st.selectbox("Model", models, key="analyze.model")
    card = views.guarded(
        "Reading the model card",
        lambda: model_files.read_card(model_files.resolve(state.project_dir(), name)),
    )
    if card:
        classes = card.get("class_names") or card.get("target_names") or []
        trained = card.get("pixel_size_um")
        arch = (card.get("model") or {}).get("name", "?")
        st.caption(
            f"{card.get('task', '?')} · {arch} · {', '.join(map(str, classes))}"
            + (f" · trained at {trained:.4g} µm/px" if isinstance(trained, float) else "")
        )
    tta = st.toggle(
        "Test-time augmentation (8 flips/rotations: uncertainty map, 8x slower)",
        value=False,
        key="analyze.tta",
    )
    options: dict[str, Any] = {"model": name, "tta": tta, **rescale_choice(image, card)}
    if card and card.get("task") == "segmentation" and len(card.get("class_names") or []) > 2:
        classes = list(card["class_names"])
        options["particle_class"] = st.selectbox(
            "Phase to measure as particles", classes, index=len(classes) - 1, key="analyze.cnn_particles"
        )
    return cnn.CNN, options


def rescale_choice(image: microcnn.Micrograph, card: dict[str, Any] | None) -> dict[str, Any]:
    """{"rescale": bool} when the image and the model's training pixel sizes are known and differ (on by
    default: a CNN sees features at the scale it learnt them); a note when only the model's is known."""
    trained = (card or {}).get("pixel_size_um")
    ratio = cnn.scale_mismatch(image.pixel_size_um, trained)
    if ratio is not None:
        on = st.toggle(
            f"Resample to the model's pixel size ({image.pixel_size_um:.4g} -> {trained:.4g} µm/px, "
            f"×{1 / ratio:.3g} in size); the phase map comes back at the image's own pixels",
            value=True,
            key="analyze.rescale",
        )
        if not on:
            st.warning(f"The image's pixels are {ratio:.3g}x the model's: features look {ratio:.3g}x "
                       "smaller to it than in training, which can cost accuracy.")  # fmt: skip
        return {"rescale": on}
    if isinstance(trained, int | float) and not image.pixel_size_um:
        st.caption(f"The model was trained at {trained:.4g} µm/px; give the image's pixel size above to "
                   "resample it to that scale.")  # fmt: skip
    return {}


def classical_options(name: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if name == "multi_otsu":
        options["classes"] = st.slider("Phases", 2, 5, 3, key="analyze.classes")
        phases = list(range(options["classes"]))
        options["particle_class"] = st.selectbox(
            "Phase to measure as particles (0 = darkest)",
            phases,
            index=len(phases) - 1,
            key="analyze.particles",
        )
    if name == "watershed_particles":
        options["min_distance_px"] = st.slider(
            "Minimum particle spacing (px)", 2, 50, 5, key="analyze.min_dist"
        )
    if name == "adaptive_threshold":
        options["block_size_px"] = st.slider(
            "Neighbourhood (px, odd)", 3, 201, 51, step=2, key="analyze.block"
        )
    if name != "multi_otsu":
        options["invert"] = st.toggle(
            "Dark objects on a bright background", value=False, key="analyze.invert"
        )
    return options


def grad_cam_section(file_id: str, image: microcnn.Micrograph, model: str, outcome: dict) -> None:
    """On request: Grad-CAM of one class / output of the CNN over ``image``, the image that was analysed
    (the result's own, so the map and the mask cover the same pixels even after the settings changed)."""
    from microcnn.analysis.explain import CAM_METHODS

    with st.expander("Grad-CAM: where did the model look?"):
        if outcome.get("kind") == "regression":
            targets = list(outcome["table"]["property"])
        else:
            targets = list(outcome.get("class_names") or outcome["table"]["class"])
        cols = st.columns(2)
        target = cols[0].selectbox("Class / output", range(len(targets)), format_func=lambda i: targets[i],
                                   key="analyze.cam_target")  # fmt: skip
        method = cols[1].selectbox("Method", CAM_METHODS, key="analyze.cam_method")
        if st.button("Compute Grad-CAM", key="analyze.cam_run"):
            with views.friendly_errors("Grad-CAM"), st.spinner("Computing Grad-CAM..."):
                heat = cnn.grad_cam(state.project_dir(), model, image, target=target, method=method)
                st.session_state[K.cnn_views][file_id] = {
                    "heat": heat,
                    "label": f"{method}: {targets[target]}",
                }
        view = st.session_state[K.cnn_views].get(file_id)
        if view is not None:
            left, right = st.columns(2)
            caption = f"analysed image ({image.width}×{image.height} px)"
            left.image(views.to_display(image.pixels), caption=caption)
            right.plotly_chart(
                cnn.heatmap_figure(view["heat"], view["label"], scale="inferno"), key="analyze.cam"
            )


st.title("Analyze")
st.markdown("Upload micrographs (PNG, JPEG, TIFF incl. 16-bit, BMP; DM3/DM4 with the `dm` extra).")
uploads = st.file_uploader(
    f"Micrographs (up to {state.MAX_UPLOAD_MB} MB each)",
    type=state.IMAGE_TYPES,
    accept_multiple_files=True,
    key=K.uploader,
)
loaded = load_uploads(uploads or [])
if not loaded:
    st.info("Upload a micrograph to start.")
    st.stop()

file_id = st.selectbox("Micrograph", list(loaded), format_func=lambda k: loaded[k][0], key="analyze.file")
name, original = loaded[file_id]
st.caption(
    f"{original.width}×{original.height} px, {original.source_dtype} ({original.bit_depth}-bit), {name}"
)
left, right = st.columns([1, 2])
with left:
    image, bar = info_bar_section(original)
    image = pixel_size_section(image, bar, original)
    method, options = method_section(image)
    run = st.button("Analyze", type="primary", key="analyze.run", disabled=method is None)
if run and method is not None:
    with views.friendly_errors("Analysis"), st.spinner("Analyzing..."):
        st.session_state[K.cnn_views].pop(file_id, None)
        st.session_state[K.analyses][file_id] = results_view.analyze(image, method, options, name=name)
with right:
    outcome = st.session_state[K.analyses].get(file_id)
    if outcome is None:
        st.image(views.to_display(image.pixels), caption=f"{name} ({image.unit})")
    else:
        results_view.show(outcome, results_view.inputs_of(image, method, options))
        if outcome.get("cnn_model"):
            grad_cam_section(file_id, outcome["image"], outcome["cnn_model"], outcome)
