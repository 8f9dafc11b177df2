"""Every process-wide random state (torch CPU and CUDA, NumPy's global generator, Python's ``random``) as
tensors and plain numbers, so that ``last.pt`` stays loadable with ``torch.load(weights_only=True)``.

microcnn itself draws from none of NumPy's or Python's global generators (it passes explicit generators),
but user code run during training may (a custom dataset, a model); a resume must continue their streams.

Example:
    >>> states = capture()
    >>> first = random.random()
    >>> restore(states)
    >>> random.random() == first
    True
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture() -> dict[str, Any]:
    """{"torch", "cuda", "numpy", "python"}: the current states, tensors / ints / floats / None only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore(states: dict[str, Any]) -> None:
    """Set the states :func:`capture` returned (entries that are absent are left alone)."""
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if "numpy" in states:
        n = states["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "python" in states:
        p = states["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
