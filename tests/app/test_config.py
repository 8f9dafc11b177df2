"""The Streamlit settings promised in RELIABILITY.md ("Streamlit"), read from .streamlit/config.toml."""

from __future__ import annotations

from pathlib import Path

import state
import tomllib

CONFIG = Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml"


def test_safety_settings_are_explicit() -> None:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert config["client"]["showErrorDetails"] == "none"  # tracebacks stay in the server log
    assert config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["maxUploadSize"] < 200  # below Streamlit's 200 MB default, i.e. set on purpose


def test_the_app_checks_the_same_upload_cap_as_the_server() -> None:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    assert config["server"]["maxUploadSize"] == state.MAX_UPLOAD_MB
