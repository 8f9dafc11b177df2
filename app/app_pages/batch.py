"""Batch page: an HDF5 archive (uploaded or on the server), a zip of images or a folder of images on the
server -> predict_archive -> table, distributions, downloads (results.h5, CSV).

Uploads go to a temporary folder of this session only; a bad archive gives a friendly message (the batch
predictor checks the file before any work). Long archives belong to the CLI (``microcnn predict-h5``,
resumable, torchrun); the page shows the same command.
"""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path
from typing import Any

import batch_view
import model_files
import pandas as pd
import state
import streamlit as st
import uploads
import views

K = state.KEYS
MB = 1024 * 1024


def work_dir() -> Path:
    """A fresh folder for one batch job of this session (system temp; never shared between sessions).

    The folder of this session's previous job, finished or failed, is removed first (with its results), so
    a session keeps at most one; it goes when the session's state is dropped (uploads.ScratchFolder).
    """
    previous = st.session_state[K.batch_scratch]
    st.session_state[K.batch_results] = {}
    if previous is not None:
        previous.remove()
    scratch = uploads.ScratchFolder(prefix=f"microcnn-batch-{uuid.uuid4().hex[:8]}-")
    st.session_state[K.batch_scratch] = scratch
    return scratch.path


def input_section() -> dict[str, Any] | None:
    """What the user chose as input: {"kind": "path" | "folder" | "h5" | "zip", ...}; None until chosen."""
    choices = ["Upload an HDF5 archive", "Archive or image folder on the server", "Upload a zip of images"]
    source = st.radio("Input", choices, horizontal=True, key="batch.source")
    if source == choices[1]:
        return server_source(st.text_input("Path of an .h5 archive or a folder of images", key="batch.path"))
    zipped = source.startswith("Upload a zip")
    upload = st.file_uploader(
        f"{'Zip of images' if zipped else 'HDF5 archive'} (up to {state.MAX_UPLOAD_MB} MB)",
        type=["zip"] if zipped else ["h5", "hdf5"],
        key="batch.upload",
    )
    if upload is None:
        return None
    if upload.size > state.MAX_UPLOAD_MB * MB:
        st.error(
            f"{upload.name}: {upload.size / MB:.1f} MB is over the {state.MAX_UPLOAD_MB} MB cap; use the CLI."
        )
        return None
    return {"kind": "zip" if zipped else "h5", "upload": upload}


def server_source(text: str) -> dict[str, Any] | None:
    """A path on the server: a folder of images or an .h5 archive; a message when it is neither."""
    if not text:
        return None
    path, problem = state.server_path(text)
    if path is None:
        st.error(f"{problem} Give an .h5 archive or a folder of images.")
        return None
    if path.is_dir():
        count = len(batch_view.image_files(path))
        kinds = ", ".join(batch_view.IMAGE_SUFFIXES)
        if not count:
            st.warning(f"The folder '{text}' holds no image files ({kinds}, any depth).")
            return None
        st.caption(f"Folder with {count} image file(s) ({kinds}, any depth); packed into an archive first.")
        return {"kind": "folder", "path": path}
    return {"kind": "path", "path": path}


def materialise(source: dict[str, Any], folder: Path) -> tuple[Path, list[str]]:
    """The input as an archive file: a server archive as is, an upload written to ``folder``, a zip or a
    server folder of images packed (headers checked against the batch pixel budget before decoding)."""
    if source["kind"] == "path":
        return source["path"], []
    if source["kind"] == "h5":
        path = folder / "input.h5"
        path.write_bytes(source["upload"].getvalue())
        return path, []
    if source["kind"] == "folder":
        root = source["path"]
    else:
        root = uploads.unpack_zip(source["upload"].getvalue(), folder / "images")
    bar = st.progress(0.0, "Packing the images into an archive...")
    return batch_view.images_to_archive(
        root, folder / "input.h5", max_pixels=state.MAX_PIXELS, max_total_pixels=state.MAX_BATCH_PIXELS,
        progress=lambda d, n: bar.progress(d / n),
    )  # fmt: skip


def run_batch(model: str, source: dict[str, Any], *, tta: bool) -> dict[str, Any]:
    from microcnn.inference.batch import predict_archive

    path = model_files.resolve(state.project_dir(), model)
    folder = work_dir()
    archive, notes = materialise(source, folder)
    bar = st.progress(0.0, "Predicting...")
    summary = predict_archive(
        [path], archive, folder / "results.h5", predictor_kwargs={"device": "cpu", "tta": tta},
        progress=lambda done, total: bar.progress(done / max(1, total), f"Predicting: {done}/{total} images"),
    )  # fmt: skip
    task, table = batch_view.results_table(summary.output)
    return {"summary": summary, "task": task, "table": table, "output": summary.output, "notes": notes,
            "model": model}  # fmt: skip


def show_results(outcome: dict[str, Any]) -> None:
    summary = outcome["summary"]
    table: pd.DataFrame = outcome["table"]
    for note in outcome["notes"]:
        st.warning(note)
    st.subheader(f"Results: {summary.status}")
    cols = st.columns(3)
    cols[0].metric("Images", summary.n_items)
    cols[1].metric("Predicted", summary.n_done - summary.n_failed)
    cols[2].metric("Failed", summary.n_failed)
    st.dataframe(table, hide_index=True, key="batch.table")
    for i, fig in enumerate(batch_view.distribution_figures(outcome["task"], table)):
        st.plotly_chart(fig, key=f"batch.plot.{i}")
    left, right = st.columns(2)
    left.download_button(
        "results.h5",
        Path(outcome["output"]).read_bytes,  # read on the click, not on every rerun (archives grow to GBs)
        "results.h5",
        "application/x-hdf5",
        key="batch.dl_h5",
    )
    right.download_button(
        "results.csv", table.to_csv(index=False), "results.csv", "text/csv", key="batch.dl_csv"
    )


def cli_command(model: str) -> str:
    """The same job on the command line, run from the project folder (model names are relative to it)."""
    return f"microcnn predict-h5 --model {shlex.quote(model)} --input archive.h5 --output results.h5"


st.title("Batch")
st.markdown(
    "Predict every image of an archive with one model. Large archives belong to the command line, "
    "which is resumable and runs on several GPUs with torchrun (`docs/batch.md`)."
)
models = [m.name for m in model_files.list_models(state.project_dir())]
if not models:
    st.info("No CNN models yet: train one on the Train page, or add default weights to data/models/.")
    st.stop()
model = st.selectbox("Model", models, key="batch.model")
st.code(cli_command(model), language="bash")
tta = st.toggle("Test-time augmentation (8x slower; adds a spread per image)", value=False, key="batch.tta")
source = input_section()
if st.button("Run batch", type="primary", key="batch.run", disabled=source is None) and source:
    with views.friendly_errors("Batch prediction"):
        st.session_state[K.batch_results] = run_batch(model, source, tta=tta)
if st.session_state[K.batch_results]:
    show_results(st.session_state[K.batch_results])
