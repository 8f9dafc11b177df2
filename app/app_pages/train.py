"""Train page: a form -> an experiment config -> ``microcnn train`` in a background process; live curves.

The job is found again from its run folder (app/jobs.py), so a page reload or a second browser tab shows
the same job. The finished model (runs/<name>/model.safetensors) is listed on the Models and Analyze pages.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jobs
import pandas as pd
import plotly.graph_objects as go
import state
import streamlit as st
import uploads
import views

from microcnn.config import CHOICES

K = state.KEYS
MB = 1024 * 1024
REFRESH_S = 2.0  # seconds between refreshes of a running job's curves
TASKS = ("classification", "segmentation", "regression")
DECODERS = ("unet", "segnet")  # models whose decoder's up-sampling mode is a choice


def data_section(task: str) -> dict[str, Any] | None:
    """Where the images come from -> the ``data`` mapping of the config (None until it is usable)."""
    st.subheader("Data")
    source = st.radio(
        "Source", ["Synthetic", "Folder on the server", "Upload a zip"], horizontal=True, key="train.source"
    )
    if source == "Synthetic":
        cols = st.columns(2)
        n = int(cols[0].number_input("Images", 4, 2000, 48, key="train.synth_n"))
        size = int(
            cols[1].select_slider("Image side (px)", [32, 64, 96, 128, 256], 64, key="train.synth_size")
        )
        return {"source": "synthetic", "synthetic": {"n": n, "size": size, "seed": 0}}
    if source == "Folder on the server":
        text = st.text_input("Dataset folder (or .h5 archive) on the server", key="train.folder")
        st.caption(
            "Layouts: images/ + masks/, images/ + labels.csv, <class>/ folders, images/ + targets.csv."
        )
        if not text:
            return None
        path, problem = state.server_path(text)
        if path is None:
            st.error(problem)
            return None
        return {"source": str(path)}
    upload = st.file_uploader(
        f"Zip of the dataset folder (up to {state.MAX_UPLOAD_MB} MB)", type=["zip"], key="train.zip"
    )
    if upload is None:
        return None
    if upload.size > state.MAX_UPLOAD_MB * MB:
        st.error(f"{upload.name}: {upload.size / MB:.1f} MB is over the {state.MAX_UPLOAD_MB} MB cap.")
        return None
    return {"source": "zip", "zip": upload}


def model_section(task: str) -> dict[str, Any]:
    from microcnn.models import list_models
    from microcnn.models.blocks import UP_MODES

    st.subheader("Model")
    names = list_models(task)
    default = {"classification": "lenet5", "segmentation": "unet"}.get(task, names[0])
    name = st.selectbox("Architecture", names, index=names.index(default), key="train.model")
    spec: dict[str, Any] = {"name": name}
    if name in DECODERS:
        modes = list(UP_MODES)
        spec["upsample"] = st.selectbox(
            "Decoder up-sampling", modes, index=modes.index("unpool" if name == "segnet" else "transpose"),
            key="train.upsample",
        )  # fmt: skip
        spec["depth"] = int(st.slider("Depth (down-sampling stages)", 2, 5, 3, key="train.depth"))
        spec["base_channels"] = int(st.select_slider("Base channels", [8, 16, 32, 64], 16, key="train.base"))
    return spec


def training_section() -> dict[str, Any]:
    from microcnn.data.transforms import default_augmentations

    st.subheader("Training")
    cols = st.columns(3)
    epochs = int(cols[0].number_input("Epochs", 1, 1000, 10, key="train.epochs"))
    batch = int(cols[1].number_input("Batch size", 1, 256, 8, key="train.batch"))
    lr = float(cols[2].number_input("Learning rate", 1e-6, 1.0, 1e-3, format="%.6f", key="train.lr"))
    cols = st.columns(3)
    optim = cols[0].selectbox("Optimizer", CHOICES["optim.name"], index=2, key="train.optim")
    schedule = cols[1].selectbox("Schedule", CHOICES["schedule.name"], key="train.schedule")
    device = cols[2].selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train.device")
    st.markdown("**Augmentations** (applied to image and mask together)")
    chosen = []
    for i, entry in enumerate(default_augmentations()):
        options = ", ".join(f"{k}={v}" for k, v in entry.items() if k != "name")
        if st.checkbox(f"{entry['name']} ({options})", value=i < 3, key=f"train.aug.{entry['name']}"):
            chosen.append(entry)
    return {
        "augment": chosen,
        "optim": {"name": optim, "lr": lr},
        "schedule": {"name": schedule},
        "train": {"epochs": epochs, "batch_size": batch, "device": device},
    }


def start_job(project: Path, name: str, config: dict[str, Any], data: dict[str, Any]) -> None:
    """Unpack an uploaded zip into runs/<name>/data, then start the job; remember it in the session."""
    run_name = jobs.check_run_name(name)
    if data["source"] == "zip":
        run_dir = jobs.new_run_dir(project, run_name)
        root = uploads.unpack_zip(data["zip"].getvalue(), run_dir / "data")
        data = {"source": str(root)}
    job = jobs.start(project, {**config, "data": data}, name=run_name)
    st.session_state[K.train_job] = job.name
    st.session_state[K.train_message] = f"Started '{job.name}' (process {job.pid})."


def curves(frame: pd.DataFrame) -> go.Figure:
    """Loss (left axis) and validation metrics (right axis) per epoch from metrics.csv."""
    fig = go.Figure()
    for column in [c for c in frame.columns if c.endswith("loss")]:
        fig.add_trace(go.Scatter(x=frame["epoch"], y=frame[column], name=column, mode="lines+markers"))
    metrics = [c for c in frame.columns if c.startswith("val_") and not c.endswith("loss")]
    for column in metrics:
        fig.add_trace(
            go.Scatter(x=frame["epoch"], y=frame[column], name=column, yaxis="y2", line={"dash": "dot"})
        )
    fig.update_layout(
        height=320, xaxis_title="epoch", yaxis_title="loss", margin={"t": 20},
        yaxis2={"title": "metric", "overlaying": "y", "side": "right"},
    )  # fmt: skip
    return fig


def show_job(run_dir: Path, was_running: bool) -> None:
    """State, progress, live curves, log tail and the Stop button of one job."""
    job = jobs.status(run_dir)
    if was_running and not job.running:
        st.rerun(scope="app")  # stop polling; the Models list and the page pick up the new state
    badge = {"running": "blue", "finished": "green", "failed": "red", "stopped": "orange"}.get(
        job.state, "gray"
    )
    st.markdown(f"**{job.name}**: :{badge}[{job.state}] (started {job.started_at}, process {job.pid})")
    if job.epochs_total:
        st.progress(
            min(1.0, job.epochs_done / job.epochs_total), f"epoch {job.epochs_done}/{job.epochs_total}"
        )
    metrics = run_dir / jobs.METRICS
    if metrics.is_file() and job.epochs_done:
        st.plotly_chart(curves(pd.read_csv(metrics)), key=f"train.curves.{job.name}")
    if job.running and st.button("Stop", key="train.stop"):
        stopped = jobs.stop(run_dir)
        st.session_state[K.train_message] = f"Stopped '{stopped.name}': {stopped.state}."
        st.rerun(scope="app")
    if job.state == "finished":
        st.success(f"Model saved: runs/{job.name}/{job.model_file} (see the Models and Analyze pages).")
    with st.expander("Log", expanded=job.state in ("failed", "interrupted")):
        st.code(jobs.log_tail(run_dir) or "(empty)", language=None)


def jobs_section(project: Path) -> None:
    st.header("Jobs")
    found = jobs.list_jobs(project)
    if not found:
        st.info("No training jobs yet. Fill in the form and press Start.")
        return
    st.dataframe(
        pd.DataFrame(
            [{"run": j.name, "state": j.state, "epochs": f"{j.epochs_done}/{j.epochs_total}",
              "started": j.started_at} for j in found]
        ),
        hide_index=True, key="train.jobs",
    )  # fmt: skip
    names = [j.name for j in found]
    current = st.session_state[K.train_job]
    index = names.index(current) if current in names else 0
    chosen = st.selectbox("Job", names, index=index, key="train.job_choice")
    st.session_state[K.train_job] = chosen
    running = next(j for j in found if j.name == chosen).running
    fragment = st.fragment(run_every=REFRESH_S if running else None)(show_job)
    fragment(jobs.runs_dir(project) / chosen, running)


st.title("Train")
project = state.project_dir()
if st.session_state[K.train_message]:
    st.success(st.session_state[K.train_message])
    st.session_state[K.train_message] = ""
with st.expander("New training job", expanded=not jobs.list_jobs(project)):
    default_name = "run-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_name = st.text_input("Run name (folder under runs/)", value=default_name, key="train.name")
    task = st.selectbox("Task", TASKS, key="train.task")
    data = data_section(task)
    model = model_section(task)
    options = training_section()
    if st.button("Start training", type="primary", key="train.start", disabled=data is None):
        with views.friendly_errors("Starting the training"):
            start_job(project, run_name, {"task": task, "model": model, **options}, data)
            st.rerun()
    if data is None:
        st.caption("Choose the data to enable Start.")
jobs_section(project)
