"""Device choice: auto picks what exists; a CUDA request without CUDA is an error, never CPU."""

from __future__ import annotations

import pytest
import torch

from microcnn.engine.device import amp_dtype, select_device
from microcnn.errors import ConfigError


def test_cpu_and_auto():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert select_device("auto").type == "cuda"
    elif not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        assert select_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_an_error(spec):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device(spec)


@pytest.mark.skipif(
    hasattr(torch.backends, "mps") and torch.backends.mps.is_available(), reason="checks the no-MPS error"
)
def test_mps_without_mps_is_an_error():
    # on Linux (and on Macs without Metal) asking for MPS never falls back to the CPU
    with pytest.raises(ConfigError, match="device 'mps' was asked for, but Apple MPS is not available"):
        select_device("mps")


def test_unknown_spec():
    with pytest.raises(ConfigError, match="Unknown device 'gpu'"):
        select_device("gpu")


def test_no_amp_on_cpu():
    assert amp_dtype(torch.device("cpu"), "auto") is None
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        amp_dtype(torch.device("cpu"), "fp16")
