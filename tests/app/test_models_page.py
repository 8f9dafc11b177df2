"""Models page and app/model_files: cards from safetensors metadata; names never leave the models folders."""

from __future__ import annotations

import json
from pathlib import Path

import model_files  # app/ helper module; tests/app/conftest.py puts app/ on sys.path
import numpy as np
import pytest
from safetensors.numpy import save_file

CARD = {
    "task": "segmentation",
    "model": "unet",
    "class_names": ["ferrite", "cementite"],
    "pixel_size_um": 0.12,
}


def write_model(path: Path, card: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"microcnn": json.dumps(card or CARD)}
    save_file({"w": np.zeros((2, 2), np.float32)}, str(path), metadata=meta)
    return path


def test_lists_default_and_run_models_with_relative_names(project: Path) -> None:
    write_model(project / "data" / "models" / "default.safetensors")
    write_model(project / "runs" / "exp1" / "model.safetensors")
    (project / "runs" / "exp1" / "notes.txt").write_text("not a model")
    names = [m.name for m in model_files.list_models(project)]
    assert names == ["data/models/default.safetensors", "runs/exp1/model.safetensors"]


@pytest.mark.parametrize(
    "name",
    [
        "../secret.safetensors",
        "data/models/../../secret.safetensors",
        "runs/../../secret.safetensors",
        "/etc/passwd",
        "C:\\models\\x.safetensors",
        "data\\models\\default.safetensors",
        "data/models/missing.safetensors",
        "data/models/default.txt",
        "secret.safetensors",
        "",
    ],
)
def test_names_outside_the_models_folders_are_refused(project: Path, name: str) -> None:
    write_model(project / "data" / "models" / "default.safetensors")
    write_model(project.parent / "secret.safetensors")
    write_model(project / "secret.safetensors")
    (project / "data" / "models" / "default.txt").write_text("x")
    with pytest.raises(model_files.UnsafeModelPathError):
        model_files.resolve(project, name)


def test_absolute_path_of_a_real_model_is_refused(project: Path) -> None:
    path = write_model(project / "data" / "models" / "default.safetensors")
    with pytest.raises(model_files.UnsafeModelPathError, match="relative"):
        model_files.resolve(project, str(path))
    assert model_files.resolve(project, "data/models/default.safetensors") == path.resolve()


def test_symlink_escaping_the_folder_is_refused(project: Path) -> None:
    outside = write_model(project.parent / "outside.safetensors")
    (project / "data" / "models" / "link.safetensors").symlink_to(outside)
    with pytest.raises(model_files.UnsafeModelPathError):
        model_files.resolve(project, "data/models/link.safetensors")


def test_card_is_read_from_metadata_without_loading_tensors(project: Path) -> None:
    path = write_model(project / "data" / "models" / "m.safetensors")
    assert model_files.read_card(path) == CARD


def test_corrupt_header_gives_a_model_file_error(project: Path) -> None:
    path = project / "data" / "models" / "bad.safetensors"
    path.write_bytes(b"\xff" * 8 + b"{not json")
    with pytest.raises(model_files.ModelFileError, match="corrupt or unsupported"):
        model_files.read_card(path)


@pytest.mark.parametrize("new_name", ["../escape", "/tmp/x", "a/b", "..", ""])
def test_rename_refuses_folder_parts(project: Path, new_name: str) -> None:
    write_model(project / "data" / "models" / "m.safetensors")
    with pytest.raises(model_files.UnsafeModelPathError):
        model_files.rename(project, "data/models/m.safetensors", new_name)
    assert (project / "data" / "models" / "m.safetensors").exists()


def test_page_shows_card_renames_and_deletes(project: Path, new_session) -> None:
    write_model(project / "runs" / "exp1" / "model.safetensors")
    at = new_session("models")
    assert not at.exception
    shown = at.dataframe[1].value
    assert dict(zip(shown["field"], shown["value"]))["task"] == "segmentation"
    at.text_input(key="models.new_name").input("steel_v2")
    at.button(key="models.rename").click().run()
    assert (project / "runs" / "exp1" / "steel_v2.safetensors").exists()
    assert any("Renamed" in s.value for s in at.success)
    at.checkbox(key="models.confirm_delete").check().run()
    at.button(key="models.delete").click().run()
    assert not (project / "runs" / "exp1" / "steel_v2.safetensors").exists()
    assert any("No model files" in i.value for i in at.info)


def test_page_with_a_corrupt_file_stays_usable(project: Path, new_session) -> None:
    (project / "data" / "models" / "bad.safetensors").write_bytes(b"garbage")
    write_model(project / "data" / "models" / "good.safetensors")
    at = new_session("models")
    assert not at.exception
    assert any("corrupt or unsupported" in e.value for e in at.error)
    at.selectbox(key="models.choice").select("data/models/good.safetensors").run()
    assert not at.error and not at.exception


def test_markdown_card_next_to_the_weights_is_shown_and_travels_on_rename(project: Path, new_session) -> None:
    path = write_model(project / "data" / "models" / "phase_segmenter.safetensors")
    path.with_suffix(".md").write_text("# phase_segmenter\n\nMean IoU **0.91** on the held-out split.\n")
    at = new_session("models")
    assert not at.exception
    assert any("Mean IoU" in m.value for m in at.markdown)
    at.text_input(key="models.new_name").input("segmenter_v2")
    at.button(key="models.rename").click().run()
    folder = project / "data" / "models"
    assert sorted(p.name for p in folder.iterdir()) == ["segmenter_v2.md", "segmenter_v2.safetensors"]
    at.checkbox(key="models.confirm_delete").check().run()
    at.button(key="models.delete").click().run()
    assert list(folder.iterdir()) == []


def test_card_stored_in_the_metadata_is_shown_without_a_markdown_file(project: Path, new_session) -> None:
    write_model(project / "data" / "models" / "m.safetensors", {**CARD, "card": {"mean_iou": 0.91}})
    at = new_session("models")
    card_table = at.dataframe[1].value  # [0] lists the files
    assert dict(zip(card_table["field"], card_table["value"])) == {"mean_iou": "0.91"}
