"""Paths typed on the Batch and Train pages: with MICROCNN_SERVER_DATA set, only files under those folders
can be read (``..`` and symbolic links resolved first); unset, any existing path is accepted (one user on
their own machine). Refusals say what was given, what is shared and what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import state

from .test_analyze_cnn import SEG_CLASSES, save_model
from .test_batch_page import SPEC, open_batch


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shared"
    (root / "images").mkdir(parents=True)
    (root / "a.h5").write_bytes(b"")
    (tmp_path / "secret.txt").write_text("not for visitors")
    monkeypatch.setenv("MICROCNN_SERVER_DATA", str(root))
    return root


def test_inside_is_accepted_outside_and_escapes_are_refused(shared: Path, tmp_path: Path) -> None:
    assert state.server_path(str(shared / "a.h5")) == ((shared / "a.h5").resolve(), "")
    assert state.server_path(f"  {shared / 'images'}  ")[0] == (shared / "images").resolve()
    for outside in (tmp_path / "secret.txt", shared / ".." / "secret.txt", Path("/")):
        path, message = state.server_path(str(outside))
        assert path is None
        assert str(outside) in message and str(shared.resolve()) in message
        assert "MICROCNN_SERVER_DATA" in message and "upload" in message
    link = shared / "link.txt"
    link.symlink_to(tmp_path / "secret.txt")
    assert state.server_path(str(link))[0] is None  # the link's target is outside


def test_several_roots_and_missing_paths(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("MICROCNN_SERVER_DATA", f"{shared}{os.pathsep}{other}")
    assert state.server_roots() == [shared.resolve(), other.resolve()]
    assert state.server_path(str(other))[0] == other.resolve()
    path, message = state.server_path(str(other / "nope.h5"))
    assert path is None and "does not exist" in message


def test_unset_accepts_any_existing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROCNN_SERVER_DATA", raising=False)
    (tmp_path / "x.h5").write_bytes(b"")
    assert state.server_roots() == []
    assert state.server_path(str(tmp_path / "x.h5"))[0] == (tmp_path / "x.h5").resolve()


def test_batch_page_refuses_a_path_outside_the_shared_folders(
    shared: Path, project: Path, tmp_path: Path, new_session
) -> None:
    save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES}, seed=3)
    at = open_batch(new_session, "Archive or image folder on the server")
    at.text_input(key="batch.path").input(str(tmp_path / "secret.txt")).run()
    assert not at.exception
    assert any("outside the folders this server shares" in e.value for e in at.error)
    assert at.button(key="batch.run").disabled


def test_train_page_refuses_a_path_outside_and_accepts_one_inside(
    shared: Path, tmp_path: Path, new_session
) -> None:
    at = new_session("train")
    at.radio(key="train.source").set_value("Folder on the server").run()
    at.text_input(key="train.folder").input(str(tmp_path)).run()
    assert not at.exception
    assert any("outside the folders this server shares" in e.value for e in at.error)
    assert at.button(key="train.start").disabled
    at.text_input(key="train.folder").input(str(shared)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.button(key="train.start").disabled
