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


def finished_job(run_dir: Path) -> None:
    """The files a finished training job leaves in its run folder (app/jobs.py), its process long gone."""
    import subprocess

    import jobs

    gone = subprocess.Popen(["true"])
    gone.wait()
    (run_dir / jobs.JOB_FILE).write_text(json.dumps({"pid": gone.pid, "state": "running", "epochs": 1}))
    (run_dir / jobs.EXIT_FILE).write_text("0\n")


def test_page_shows_card_downloads_renames_and_deletes(project: Path, new_session, media) -> None:
    path = write_model(project / "runs" / "exp1" / "model.safetensors")
    finished_job(path.parent)
    at = new_session("models")
    assert not at.exception
    shown = at.dataframe[1].value
    assert dict(zip(shown["field"], shown["value"]))["task"] == "segmentation"
    assert media(at, "models.download") == path.read_bytes()  # the weights, byte for byte
    at.text_input(key="models.new_name").input("steel_v2")
    at.button(key="models.rename").click().run()
    assert (project / "runs" / "exp1" / "steel_v2.safetensors").exists()
    assert any("Renamed" in s.value for s in at.success)

    train = new_session("train")  # the renamed weights are still the run's model: the job stays "finished"
    assert any("exp1" in m.value and "finished" in m.value for m in train.markdown)
    assert any("Model saved: runs/exp1/steel_v2.safetensors" in s.value for s in train.success)

    at.checkbox(key="models.confirm_delete").check().run()
    at.button(key="models.delete").click().run()
    assert not (project / "runs" / "exp1" / "steel_v2.safetensors").exists()
    assert any("No model files" in i.value for i in at.info)


def test_default_models_are_protected(project: Path, new_session) -> None:
    from .helpers import copy_default_model

    name = copy_default_model(project, "phase_segmenter")
    write_model(project / "data" / "models" / "my_export.safetensors")  # the user's own export
    at = new_session("models")
    at.selectbox(key="models.choice").select(name).run()
    assert any("default model" in i.value and "cannot be renamed or deleted" in i.value for i in at.info)
    assert at.button(key="models.rename").disabled and at.button(key="models.delete").disabled
    for action in (lambda: model_files.rename(project, name, "x"), lambda: model_files.delete(project, name)):
        with pytest.raises(model_files.ProtectedModelError, match="default models"):
            action()
    assert (project / name).is_file() and (project / name).with_suffix(".md").is_file()
    at.selectbox(key="models.choice").select("data/models/my_export.safetensors").run()
    assert not at.button(key="models.rename").disabled  # the user's own file in data/models/ is not
    at.checkbox(key="models.confirm_delete").check().run()
    at.button(key="models.delete").click().run()
    assert not (project / "data" / "models" / "my_export.safetensors").exists()


def test_the_protected_defaults_are_the_models_that_make_models_builds() -> None:
    from .helpers import REPO

    configs = {p.name.removesuffix(".card.yaml") for p in (REPO / "configs" / "models").glob("*.card.yaml")}
    assert set(model_files.DEFAULT_MODELS) == configs


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("data/models/phase_segmenter.safetensors", "phase_segmenter"),
        ("runs/exp1/model.safetensors", "exp1"),
        ("runs/exp1/steel_v2.safetensors", "exp1/steel_v2"),
    ],
)
def test_model_labels_name_the_model_not_its_folder(name: str, label: str) -> None:
    assert model_files.label(name) == label


def test_page_with_a_corrupt_file_stays_usable(project: Path, new_session) -> None:
    (project / "data" / "models" / "bad.safetensors").write_bytes(b"garbage")
    write_model(project / "data" / "models" / "good.safetensors")
    at = new_session("models")
    assert not at.exception
    assert any("corrupt or unsupported" in e.value for e in at.error)
    at.selectbox(key="models.choice").select("data/models/good.safetensors").run()
    assert not at.error and not at.exception


def test_markdown_card_next_to_the_weights_is_shown_and_travels_on_rename(project: Path, new_session) -> None:
    path = write_model(project / "data" / "models" / "my_segmenter.safetensors")  # the user's own export
    path.with_suffix(".md").write_text("# my_segmenter\n\nMean IoU **0.91** on the held-out split.\n")
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
