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
        return cnn.predict(state.project_dir(), options["model"], image, tta=bool(options.get("tta")))
    from microcnn.analysis import CLASSICAL

    method_options = {k: v for k, v in options.items() if k != "particle_class"}
    return CLASSICAL.get(method)(image, **method_options), None


def analyze(image: microcnn.Micrograph, method: str, options: dict[str, Any], *, name: str) -> dict[str, Any]:
    """Segment / classify / regress ``image`` and quantify it. Returns the session's result bundle.

    ``options`` are the method's keyword arguments plus an optional "particle_class" for quantify; for a
    CNN: {"model": name relative to the project folder, "tta": bool}.
    """
    from microcnn.analysis import quantify

    result, note = run_method(image, method, options)
    model = options["model"] if method == cnn.CNN else None
    if not isinstance(result, microcnn.SegmentationResult):
        return {**cnn.image_level_bundle(result, name=name, note=note), "cnn_model": model}
    rep = quantify(result, particle_class=options.get("particle_class"), rng=SEED)
    report = {
        "file": name,
        "microcnn_version": microcnn.__version__,
        "options": options,
        "pixel_size_source": image.meta.get("pixel_size_source"),
        "info_bar_cropped": image.meta.get("info_bar"),
        "image_shape_px": list(image.shape),
        "phase_fraction_ci": {"method": "bootstrap over tiles", "seed": SEED},
        **rep.to_dict(),
        "segmentation": result.to_dict(),
    }
    objects = rep.objects if rep.objects is not None else pd.DataFrame()
    return {
        "kind": "segmentation",
        "cnn_model": model,
        "name": name,
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


def report_json(outcome: dict[str, Any]) -> str:
    """The JSON report: every number with its unit, the method and options, the pixel size and its source."""
    from microcnn.analysis.results import jsonable

    # twice: the first pass turns numpy scalars into floats, the second turns NaN/inf floats into null
    return json.dumps(jsonable(jsonable(outcome["report"])), indent=2, ensure_ascii=False, allow_nan=False)


def show(outcome: dict[str, Any]) -> None:
    """Segmentation: overlay, fractions, sizes, uncertainty, downloads; classification / regression views."""
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
        "JSON report", report_json(outcome), f"{stem}_report.json", "application/json", key="dl.json"
    )


def show_segmentation(outcome: dict[str, Any]) -> None:
    """Overlay with opacity and legend, phase fractions with CI, size histogram + table, downloads."""
    st.subheader(f"Results: {outcome['report']['method']} (lengths in {outcome['unit']})")
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="analyze.opacity")
    over = views.overlay(outcome["pixels"], outcome["mask"], opacity=opacity)
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
    downloads(outcome, over)


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


def downloads(outcome: dict[str, Any], over: np.ndarray) -> None:
    stem = outcome["name"].rsplit(".", 1)[0]
    cols = st.columns(4)
    cols[0].download_button(
        "Mask PNG",
        views.png_bytes(outcome["mask"].astype(np.uint8)),
        f"{stem}_mask.png",
        "image/png",
        key="dl.mask",
    )
    cols[1].download_button(
        "Overlay PNG", views.png_bytes(over), f"{stem}_overlay.png", "image/png", key="dl.overlay"
    )
    cols[2].download_button(
        "Particles CSV",
        outcome["objects"].to_csv(index=False),
        f"{stem}_particles.csv",
        "text/csv",
        key="dl.csv",
    )
    cols[3].download_button(
        "JSON report", report_json(outcome), f"{stem}_report.json", "application/json", key="dl.json"
    )
