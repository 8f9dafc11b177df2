"""Every session-state key of the app, declared in one place, plus the app-wide limits and folders.

Pages read and write ``st.session_state`` only through the names below, so a reader sees at a glance what
one browser session keeps. Per-session data (uploads, masks, numbers) lives ONLY in ``st.session_state``;
``st.cache_data`` is used only for pure functions of their arguments and ``st.cache_resource`` only for
read-only shared objects (models in eval mode). Nothing here computes: ``microcnn`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

# Upload cap in MB: the same number as server.maxUploadSize in .streamlit/config.toml (a test checks it).
MAX_UPLOAD_MB = 50
# Pixel budget per image, checked from the header before decoding (read_micrograph's max_pixels).
MAX_PIXELS = 40_000_000
# Pixel budget of one batch of loose images (zip or server folder), padded archive size n x rows x cols,
# checked from the headers before any image is decoded (app/batch_view.plan_archive). 400 Mpx of uint16.
MAX_BATCH_PIXELS = 400_000_000
IMAGE_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "dm3", "dm4"]


def project_dir() -> Path:
    """Folder holding data/models/ and runs/: $MICROCNN_PROJECT_DIR, else the working directory."""
    return Path(os.environ.get("MICROCNN_PROJECT_DIR", os.getcwd())).resolve()


def server_roots() -> list[Path]:
    """Folders whose files the Batch and Train pages may read by path: $MICROCNN_SERVER_DATA, a list
    separated by os.pathsep; empty (unset) = any path this server process can read, as for one user on
    their own machine. Set it when the app is shared, so that a visitor cannot read the server's other
    files by typing their path."""
    text = os.environ.get("MICROCNN_SERVER_DATA", "")
    return [Path(p).expanduser().resolve() for p in text.split(os.pathsep) if p.strip()]


def server_path(text: str) -> tuple[Path | None, str]:
    """(resolved path, "") for a path typed on a page, or (None, message) when it lies outside
    :func:`server_roots` (symbolic links and ``..`` resolved first) or does not exist."""
    path = Path(text.strip()).expanduser().resolve()
    roots = server_roots()
    if roots and not any(path.is_relative_to(root) for root in roots):
        shared = ", ".join(f"'{r}'" for r in roots)
        return None, (
            f"'{text}' is outside the folders this server shares ({shared}, set by MICROCNN_SERVER_DATA). "
            "Put the data in one of them, or upload it."
        )
    if not path.exists():
        return None, f"'{text}' does not exist on the server; check the path."
    return path, ""


@dataclass(frozen=True)
class Keys:
    """Session-state keys. Values are per browser session, never shared."""

    # Analyze page
    analyses: str = "analyze.results"  # dict[file_id, dict] -> results of the last run per uploaded file
    analyze_errors: str = "analyze.errors"  # dict[file_id, message] -> friendly messages for bad uploads
    micrographs: str = "analyze.micrographs"  # dict[file_id, (name, Micrograph)] -> decoded once per upload
    # Learn page
    learn_kernel: str = "learn.kernel"  # (k, k) list of floats: the edited convolution kernel
    learn_regularization: str = "learn.regularization"  # dict[label, curves] of the last tiny training runs
    # Models page
    models_message: str = "models.message"  # str: outcome of the last rename / delete
    # Train page (the jobs themselves live in runs/<name>/, see app/jobs.py; this is only the selection)
    train_job: str = "train.job"  # str: name of the run shown under "Jobs" (the last one started here)
    train_message: str = "train.message"  # str: outcome of the last start / stop
    # Analyze with a CNN
    cnn_views: str = "analyze.cnn_views"  # dict[file_id, dict] -> Grad-CAM maps computed on request
    # Batch page
    batch_results: str = "batch.results"  # dict: the last batch job of this session (summary, tables)
    batch_scratch: str = "batch.scratch"  # uploads.ScratchFolder of that job (removed with the session)
    # Learn page, "your model"
    learn_maps: str = "learn.maps"  # dict: feature maps / kernels / Grad-CAM of the last request
    # widget keys that tests and pages share
    uploader: str = "analyze.uploader"


KEYS = Keys()
DEFAULTS: dict[str, Any] = {
    KEYS.analyses: {},
    KEYS.analyze_errors: {},
    KEYS.micrographs: {},
    KEYS.learn_kernel: None,
    KEYS.learn_regularization: {},
    KEYS.models_message: "",
    KEYS.train_job: "",
    KEYS.train_message: "",
    KEYS.cnn_views: {},
    KEYS.batch_results: {},
    KEYS.batch_scratch: None,
    KEYS.learn_maps: {},
}


def init_session() -> None:
    """Create every declared key with its default (fresh objects per session, never shared)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = value.copy() if isinstance(value, dict) else value
