"""microcnn: CNN-based analysis of materials micrographs.

The public API is what ``app/`` and ``cli.py`` may import. Names are resolved lazily so that
``import microcnn`` does not import torch, scikit-image or h5py.

Example:
    >>> import microcnn
    >>> m = microcnn.read_micrograph("sample.tif")          # doctest: +SKIP
    >>> m.pixels.shape, m.pixel_size_um                      # doctest: +SKIP
    ((484, 645), 0.161)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    # io
    "Micrograph": "microcnn.io.micrograph",
    "read_micrograph": "microcnn.io.images",
    "detect_info_bar": "microcnn.io.infobar",
    "crop_info_bar": "microcnn.io.infobar",
    # errors
    "MicrocnnError": "microcnn.errors",
    "MicrographError": "microcnn.errors",
    "ConfigError": "microcnn.errors",
    "DatasetError": "microcnn.errors",
    "ModelFileError": "microcnn.errors",
    # config
    "load_config": "microcnn.config",
    "ExperimentConfig": "microcnn.config",
    # models
    "build_model": "microcnn.models",
    "list_models": "microcnn.models",
    "describe": "microcnn.models.describe",
}


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'microcnn' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted(_API)
