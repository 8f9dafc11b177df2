"""Fixtures for the io tests; the file builders live in fixtures.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .fixtures import many_page_tiff


@pytest.fixture(scope="session")
def tiff_20000_pages() -> bytes:
    return many_page_tiff(20_000)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write bytes to a file of the given name under tmp_path and return its path."""

    def _write(name: str, data: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return _write
