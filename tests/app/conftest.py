"""AppTest helpers: a fresh app session per call, pointed at a temporary project folder."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
if str(APP.parent) not in sys.path:  # the app's helper modules (state, views, model_files) import by name
    sys.path.insert(0, str(APP.parent))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (data/models/, runs/) that the app's Models page reads."""
    (tmp_path / "data" / "models").mkdir(parents=True)
    (tmp_path / "runs").mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("MICROCNN_PROJECT_DIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the Batch page's work folders
    return tmp_path


@pytest.fixture
def new_session(project: Path) -> Callable[[str], AppTest]:
    """new_session(page) -> an AppTest (one browser session) already run on ``page`` ("analyze", ...)."""

    def make(page: str = "analyze") -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        if page != "analyze":
            at.switch_page(f"app_pages/{page}.py").run()
        return at

    return make


@pytest.fixture
def media(monkeypatch: pytest.MonkeyPatch) -> Callable[[AppTest, str], bytes]:
    """media(at, key) -> the bytes that the download button ``key`` serves (recorded as the app stores them).

    AppTest keeps media files in a throw-away in-memory store per run; this records what goes in, by id. A
    button whose data is a callable (served on click, ``deferred_file_id``) serves what the callable returns,
    converted as Streamlit converts it on the click (``convert_data_to_bytes_and_infer_mime``).
    """
    from streamlit.runtime.download_data_util import convert_data_to_bytes_and_infer_mime
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    stored: dict[str, bytes] = {}
    deferred: dict[str, Callable[[], Any]] = {}
    original = MemoryMediaFileStorage.load_and_get_id
    original_deferred = MediaFileManager.add_deferred

    def record_deferred(self, data_callable, *args, **kwargs):  # type: ignore[no-untyped-def]
        file_id = original_deferred(self, data_callable, *args, **kwargs)
        deferred[file_id] = data_callable
        return file_id

    def record(self, path_or_data, mimetype, kind, filename=None):  # type: ignore[no-untyped-def]
        file_id = original(self, path_or_data, mimetype, kind, filename)
        data = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        stored[file_id] = data
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)

    def served(at: AppTest, key: str) -> bytes:
        (button,) = [b for b in at.get("download_button") if b.key == key]
        if button.proto.deferred_file_id:
            data = deferred[button.proto.deferred_file_id]()
            return convert_data_to_bytes_and_infer_mime(data, unsupported_error=TypeError(type(data)))[0]
        return stored[Path(button.proto.url).stem]

    return served
