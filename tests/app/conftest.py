"""AppTest helpers: a fresh app session per call, pointed at a temporary project folder."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
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
    monkeypatch.setenv("MICROCNN_PROJECT_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def new_session(project: Path) -> Callable[[str], AppTest]:
    """new_session(page) -> an AppTest (one browser session) already run on ``page`` ("analyze", ...)."""

    def make(page: str = "analyze") -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        if page != "analyze":
            at.switch_page(f"pages/{page}.py").run()
        return at

    return make


def tiff16(pixels: np.ndarray, *, resolution_px_per_um: float | None = None) -> bytes:
    """uint16 (H, W) -> TIFF bytes; with a resolution the pixel size is 1 / resolution µm (ImageJ-style)."""
    import tifffile

    buffer = io.BytesIO()
    extra = {}
    if resolution_px_per_um:
        extra = {
            "resolution": (resolution_px_per_um, resolution_px_per_um),
            "imagej": True,
            "metadata": {"unit": "um"},
        }
    tifffile.imwrite(buffer, pixels.astype(np.uint16), **extra)
    return buffer.getvalue()


def two_phase_image(rows: int = 64, cols: int = 64) -> np.ndarray:
    """uint16 image: dark background (10000) with 4 bright 12x12 px squares (50000): phase 1 = 576 px."""
    image = np.full((rows, cols), 10_000, np.uint16)
    for r0, c0 in ((6, 6), (6, 40), (40, 6), (40, 40)):
        image[r0 : r0 + 12, c0 : c0 + 12] = 50_000
    return image
