"""Durable file publication: the one place that fsyncs files and folders for atomic writes."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush ``path`` (a file, or a folder after a rename in it) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str | Path, path: str | Path) -> None:
    """fsync ``tmp``, rename it over ``path`` atomically, then fsync the folder so the rename survives."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(Path(path).parent)
