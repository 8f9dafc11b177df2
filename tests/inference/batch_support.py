"""Helpers shared by the batch-prediction tests: tiny archives and checkpoints, CLI runs, bitwise compare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

SPEC = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 1, "base_channels": 4}
META = {
    "model": SPEC,
    "task": "segmentation",
    "class_names": ["matrix", "pore"],
    "preprocessing": {"augment": []},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
# Prepended to the child scripts that measure memory: the child's own peak RSS (ru_maxrss would be inherited
# from pytest over fork + exec).
HWM_KIB = """
def hwm_kib():
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def make_archive(path: Path, n: int, *, seed: int = 0, side: int | None = None, dtype: str = "uint8") -> Path:
    """n random images: sizes 20..32 px, or all ``side`` x ``side`` (same shape: batching matters)."""
    from microcnn.io.hdf5 import ArchiveWriter

    rng = np.random.default_rng(seed)
    shape = (side, side) if side else (32, 32)
    with ArchiveWriter(path, task="segmentation", image_shape=shape, class_names=["matrix", "pore"],
                       image_dtype=dtype) as w:  # fmt: skip
        for i in range(n):
            rows, cols = (side, side) if side else (int(v) for v in rng.integers(20, 33, 2))
            image = rng.random((rows, cols)).astype(np.float32)
            w.append(image, mask=np.zeros((rows, cols), np.uint8), pixel_size_um=0.25, name=f"img{i:03d}")
    return path


def make_model(path: Path, *, seed: int = 3, spec: dict[str, Any] | None = None,
               meta: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """A seeded checkpoint of ``spec`` (default: the tiny 2-class U-Net) with ``meta``."""
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    spec = spec or SPEC
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_model(spec).eval()
    save_weights(net, path, {**(meta or META), "model": spec})
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "microcnn", "predict-h5", *args]
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout)


def datasets(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def assert_bitwise_equal(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for key in da:
        assert da[key].dtype == db[key].dtype, key
        assert da[key].tobytes() == db[key].tobytes(), f"/{key} differs"


class Stop(Exception):
    """Raised by :func:`stop_after` to interrupt a job in-process (its partial file stays, like a crash)."""


def stop_after(items: int):
    """A progress callback that interrupts the job once ``items`` rows are done."""

    def progress(done: int, _total: int) -> None:
        if done >= items:
            raise Stop(f"stopped after {done} items")

    return progress
