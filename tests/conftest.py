"""Shared fixtures: paths to the real micrographs in ../shared/data (skipped clearly where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MICROCNN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path to ``../shared/data/<name>``; skips the test with a clear reason where it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data '{name}' not found at {path} (set MICROCNN_SHARED_DATA to its parent)")
    return path


@pytest.fixture
def uhcs_dir() -> Path:
    return shared_dataset("uhcs_seg24")


@pytest.fixture
def nasa_dir() -> Path:
    return shared_dataset("nasa_super")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _torch_global_state_is_left_as_found():
    """Fail a test that leaves torch's process-wide switches changed (they would leak into later tests)."""
    import sys

    torch = sys.modules.get("torch")
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()) if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is None:
        return
    after = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    expected = before or (False, after[1])
    if after != expected:
        torch.use_deterministic_algorithms(expected[0])
        torch.set_num_threads(expected[1])
        pytest.fail(f"torch global state changed by this test: (deterministic, threads) {expected}->{after}")
