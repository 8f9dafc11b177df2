"""Helpers of the app tests: the data of a plotly chart the app drew; the committed default models."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def array(value: Any) -> np.ndarray:
    """A plotly data array: a plain list, or plotly's typed-array form {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            data = data.reshape([int(n) for n in str(shape).split(",")])
        return data
    return np.asarray(value)


def chart(at: Any, key: str) -> dict[str, Any]:
    """The figure (data + layout) of the plotly chart with widget key ``key``."""
    (element,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key)]
    return json.loads(element.proto.spec)


def copy_default_model(project: Path, name: str) -> str:
    """Copy the committed default model data/models/NAME.safetensors (+ card) into ``project``; its name."""
    source = REPO / "data" / "models"
    for suffix in (".safetensors", ".md"):
        shutil.copy2(source / f"{name}{suffix}", project / "data" / "models" / f"{name}{suffix}")
    return f"data/models/{name}.safetensors"
