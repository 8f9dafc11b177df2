"""Analyze results: run a method through microcnn, then show overlay, tables, plots and downloads.

``analyze`` only calls microcnn (classical segmentation, quantification) and packs what came back into one
plain dict kept in the session; ``show`` displays it. Numbers carry their unit (µm when the pixel size is
known, else px) in column names and in the JSON report.
"""

from __future__ import annotations

import json
from typing import Any

import cnn
import numpy as np
import pandas as pd
import plotly.express as px
import state
import streamlit as st
import views

import microcnn

SEED = 0  # bootstrap seed for the phase-fraction CI, recorded in the report (same image -> same numbers)


def run_method(image: microcnn.Micrograph, method: str, options: dict[str, Any]) -> tuple[Any, str | None]:
    """(result, note): a classical method from CLASSICAL, or a CNN model (method ``cnn.CNN``)."""
    if method == cnn.CNN:
        return cnn.predict(state.project_dir(), options["model"], image, tta=bool(options.get("tta")),
                           rescale=bool(options.get("rescale")))  # fmt: skip
    from microcnn.analysis import CLASSICAL

    method_options = {k: v for k, v in options.items() if k != "particle_class"}
    return CLASSICAL.get(method)(image, **method_options), None


def provenance(
    image: microcnn.Micrograph, method: str, options: dict[str, Any], *, name: str
) -> dict[str, Any]:
    """The head of every JSON report: file, method and options, model file, pixel size and its source."""
    return {
        "file": name,
        "microcnn_version": microcnn.__version__,
        "method_choice": method,
        "options": options,
        "model_file": options.get("model") if method == cnn.CNN else None,
        "pixel_size_um": image.pixel_size_um,
        "unit": image.unit,
        "pixel_size_source": image.meta.get("pixel_size_source"),
        "info_bar_cropped": image.meta.get("info_bar"),
        "image_shape_px": list(image.shape),
    }


def inputs_of(image: microcnn.Micrograph, method: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """What a result depends on besides the file; compared with the page's settings to spot stale results."""
    return {
        "info-bar crop": image.meta.get("info_bar"),
        "pixel size": (image.pixel_size_um, image.meta.get("pixel_size_source")),
        "method": method,
        "method options": dict(options),
    }


def stale_inputs(outcome: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the inputs that changed since ``outcome`` was computed (empty: the result is current)."""
    stored = outcome.get("inputs", {})
    return [key for key, value in current.items() if stored.get(key) != value]


def analyze(image: microcnn.Micrograph, method: str, options: dict[str, Any], *, name: str) -> dict[str, Any]:
    """Segment / classify / regress ``image`` and quantify it. Returns the session's result bundle.

    ``options`` are the method's keyword arguments plus an optional "particle_class" for quantify; for a
    CNN: {"model": name relative to the project folder, "tta": bool}. The bundle keeps the analysed image
    and its inputs (``inputs_of``) so a later change of the settings marks it stale, and the download
    files, built once here (not on every rerun).
    """
    result, note = run_method(image, method, options)
    head = provenance(image, method, options, name=name)
    common = {"cnn_model": head["model_file"], "image": image, "inputs": inputs_of(image, method, options)}
    if not isinstance(result, microcnn.SegmentationResult):
        outcome = {**cnn.image_level_bundle(result, name=name, note=note, provenance=head), **common}
    else:
        outcome = {**segmentation_bundle(result, image, options, head=head, note=note), **common}
    outcome["downloads"] = download_files(outcome)
    return outcome


def segmentation_bundle(
    result: Any,
    image: microcnn.Micrograph,
    options: dict[str, Any],
    *,
    head: dict[str, Any],
    note: str | None,
) -> dict[str, Any]:
    """Quantify a SegmentationResult (fractions with bootstrap CI, objects, sizes) into the session bundle."""
    from microcnn.analysis import quantify

    rep = quantify(result, particle_class=options.get("particle_class"), rng=SEED)
    report = {
        **head,
        "phase_fraction_ci": {"method": "bootstrap over tiles", "seed": SEED},
        **rep.to_dict(),
        "segmentation": result.to_dict(),
    }
    objects = rep.objects if rep.objects is not None else pd.DataFrame()
    return {
        "kind": "segmentation",
        "name": head["file"],
        "pixels": image.pixels,
        "mask": np.asarray(result.mask),
        "class_names": list(result.class_names),
        "uncertainty": cnn.uncertainty_map(result),
        "fractions": rep.fractions,
        "objects": objects,
        "size": rep.size,
        "astm": rep.astm,
        "notes": ([note] if note else []) + list(rep.notes),
        "unit": rep.unit,
        "report": report,
    }


def download_files(outcome: dict[str, Any]) -> dict[str, bytes | str]:
    """The files offered for download, built once per result: JSON report; mask PNG and CSV for masks."""
    files: dict[str, bytes | str] = {"json": report_json(outcome)}
    if outcome["kind"] == "segmentation":
        files["mask"] = views.png_bytes(outcome["mask"].astype(np.uint8))
        files["csv"] = outcome["objects"].to_csv(index=False)
    return files


def overlay_for(outcome: dict[str, Any], opacity: float) -> tuple[np.ndarray, bytes]:
    """(overlay image, its PNG bytes) at ``opacity``; cached in the result, rebuilt only when it changes."""
    cached = outcome.get("overlay")
    if cached is None or cached[0] != opacity:
        over = views.overlay(outcome["pixels"], outcome["mask"], opacity=opacity)
        cached = outcome["overlay"] = (opacity, over, views.png_bytes(over))
    return cached[1], cached[2]


def report_json(outcome: dict[str, Any]) -> str:
    """The JSON report: every number with its unit, the method and options, the pixel size and its source."""
    from microcnn.analysis.results import jsonable

    # twice: the first pass turns numpy scalars into floats, the second turns NaN/inf floats into null
    return json.dumps(jsonable(jsonable(outcome["report"])), indent=2, ensure_ascii=False, allow_nan=False)


def show(outcome: dict[str, Any], current: dict[str, Any] | None = None) -> None:
    """Segmentation: overlay, fractions, sizes, uncertainty, downloads; classification / regression views.

    ``current``: the page's inputs now (``inputs_of``); when they differ from the result's, it is stale.
    """
    changed = stale_inputs(outcome, current) if current is not None else []
    if changed:
        st.warning(
            f"Stale results: the {', '.join(changed)} changed since they were computed. They (and their "
            "downloads) still describe the earlier settings; press Analyze to update them."
        )
    kind = outcome.get("kind", "segmentation")
    for note in outcome["notes"] if kind != "segmentation" else []:
        st.caption(note)
    if kind == "classification":
        cnn.show_classification(outcome)
    elif kind == "regression":
        cnn.show_regression(outcome)
    else:
        show_segmentation(outcome)
        return
    stem = outcome["name"].rsplit(".", 1)[0]
    st.download_button(
        "JSON report", outcome["downloads"]["json"], f"{stem}_report.json", "application/json", key="dl.json"
    )


def show_segmentation(outcome: dict[str, Any]) -> None:
    """Overlay with opacity and legend, phase fractions with CI, size histogram + table, downloads."""
    st.subheader(f"Results: {outcome['report']['method']} (lengths in {outcome['unit']})")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="analyze.opacity")
    over, over_png = overlay_for(outcome, opacity)
    st.image(over, caption=f"{outcome['name']}: phase map over the image")
    st.markdown(views.legend_markdown(outcome["class_names"]), unsafe_allow_html=True)
    st.markdown("**Phase fractions** (area fraction, 95 % confidence interval)")
    st.dataframe(outcome["fractions"], hide_index=True, key="analyze.fractions")
    show_sizes(outcome)
    if outcome.get("uncertainty") is not None:
        with st.expander("Uncertainty map (std of the predicted class's probability over TTA)"):
            st.plotly_chart(
                cnn.heatmap_figure(outcome["uncertainty"], "std of p(predicted class)"), key="analyze.std_map"
            )
    downloads(outcome, over_png)


def show_sizes(outcome: dict[str, Any]) -> None:
    """Histogram of equivalent diameters, the size summary, ASTM G where it applies, per-object table."""
    objects: pd.DataFrame = outcome["objects"]
    unit = outcome["unit"]
    column = f"equivalent_diameter_{'um' if unit == 'µm' else 'px'}"
    for note in outcome["notes"]:
        st.caption(note)
    if outcome["astm"]:
        astm = outcome["astm"]
        st.metric(
            "ASTM E112 grain size G",
            f"{astm['G']:.2f}",
            help=f"mean lineal intercept {astm['mean_intercept_um']:.3g} µm",
        )
    if not len(objects):
        return
    st.markdown(f"**Particles / grains**: {len(objects)} objects")
    fig = px.histogram(objects, x=column, nbins=30, title=f"Equivalent diameter ({unit})")
    fig.update_layout(xaxis_title=f"equivalent diameter ({unit})", yaxis_title="count", height=300)
    st.plotly_chart(fig, key="analyze.histogram")
    if outcome["size"]:
        st.dataframe(pd.DataFrame([outcome["size"]]), hide_index=True, key="analyze.summary")
    with st.expander("Per-object table"):
        st.dataframe(objects, hide_index=True, key="analyze.objects")


def downloads(outcome: dict[str, Any], over_png: bytes) -> None:
    """The four download buttons; their bytes were built once (``download_files``, ``overlay_for``)."""
    stem = outcome["name"].rsplit(".", 1)[0]
    files = outcome["downloads"]
    cols = st.columns(4)
    cols[0].download_button("Mask PNG", files["mask"], f"{stem}_mask.png", "image/png", key="dl.mask")
    cols[1].download_button("Overlay PNG", over_png, f"{stem}_overlay.png", "image/png", key="dl.overlay")
    cols[2].download_button("Particles CSV", files["csv"], f"{stem}_particles.csv", "text/csv", key="dl.csv")
    cols[3].download_button(
        "JSON report", files["json"], f"{stem}_report.json", "application/json", key="dl.json"
    )
