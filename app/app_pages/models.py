"""Models page: default and trained weights with their cards; rename, delete, download.

Lists ``*.safetensors`` in data/models/ and runs/<run>/ of the project folder. The card is the markdown file
next to the weights (``NAME.md``, written by ``microcnn.cards.export_run``) when there is one; the file's
safetensors metadata (no tensors loaded, nothing unpickled) is shown below it. Names typed or chosen in the
browser never leave those folders (app/model_files.resolve). The default models (model_files.DEFAULT_MODELS
in data/models/) cannot be renamed or deleted here; the user's own files can.
"""

from __future__ import annotations

from pathlib import Path

import model_files
import pandas as pd
import state
import streamlit as st
import views

CARD_FIELDS = (
    "task",
    "model",
    "classes",
    "class_names",
    "metrics",
    "pixel_size_um",
    "data",
    "date",
    "version",
)

st.title("Models")
project = state.project_dir()
st.caption(f"Weights in `data/models/` and `runs/<run>/` of the project folder `{project.name}`.")

if st.session_state[state.KEYS.models_message]:
    st.success(st.session_state[state.KEYS.models_message])
    st.session_state[state.KEYS.models_message] = ""

files = model_files.list_models(project)
if not files:
    st.info(
        "No model files yet. Trained runs appear here as runs/<run>/model.safetensors; "
        "default weights go to data/models/."
    )
    st.stop()

st.dataframe(
    pd.DataFrame([{"model": f.name, "size (MB)": round(f.size_bytes / 1e6, 3)} for f in files]),
    hide_index=True,
)
choice = st.selectbox("Model", [f.name for f in files], key="models.choice")


def show_markdown_card(path: Path, card: dict) -> None:
    """The model card written next to the weights (NAME.md), else the card stored in the metadata."""
    text = model_files.markdown_card(path)
    if text is not None:
        with st.container(border=True):
            st.markdown(text)  # HTML in the file is escaped by st.markdown (no unsafe_allow_html)
    elif isinstance(card.get("card"), dict):
        rows = [{"field": k, "value": str(v)} for k, v in card["card"].items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="models.card_table")


def show_card(card: dict) -> None:
    """Known card fields first (as a table), then the rest as JSON."""
    card = {k: v for k, v in card.items() if k != "card"}
    known = {k: card[k] for k in CARD_FIELDS if k in card}
    if known:
        rows = [{"field": k, "value": str(v)} for k, v in known.items()]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    rest = {k: v for k, v in card.items() if k not in known}
    if rest:
        st.json(rest, expanded=False)
    if not card:
        st.warning("This file has no model card (empty metadata): it cannot be used for prediction.")


with views.friendly_errors("Reading the model card"):
    path = model_files.resolve(project, choice)
    metadata = model_files.read_card(path)
    show_markdown_card(path, metadata)
    with st.expander("Metadata stored in the weights file", expanded=model_files.markdown_card(path) is None):
        show_card(metadata)
    st.download_button(
        "Download weights (.safetensors)",
        data=path.read_bytes,  # read on the click, not on every rerun (weights run to 100s of MB)
        file_name=path.name,
        mime="application/octet-stream",
        key="models.download",
    )

with st.expander("Rename or delete"):
    protected = model_files.is_default(project, project / choice)  # choice: a name from the list above
    if protected:
        st.info(
            "This is a default model shipped in data/models/ (rebuilt by `make models`): it cannot be "
            "renamed or deleted here. Your own models (runs/<run>/, your exports) can."
        )
    new_name = st.text_input(
        "New file name (without .safetensors)", key="models.new_name", disabled=protected
    )
    col_rename, col_delete = st.columns(2)
    if col_rename.button("Rename", key="models.rename", disabled=protected) and new_name:
        with views.friendly_errors("Rename"):
            target = model_files.rename(project, choice, new_name)
            st.session_state[state.KEYS.models_message] = f"Renamed {choice} to {target.name}."
            st.rerun()
    confirm = col_delete.checkbox("Yes, delete this file", key="models.confirm_delete", disabled=protected)
    if col_delete.button("Delete", key="models.delete", disabled=protected or not confirm):
        with views.friendly_errors("Delete"):
            model_files.delete(project, choice)
            st.session_state[state.KEYS.models_message] = f"Deleted {choice}."
            st.rerun()
