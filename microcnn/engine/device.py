"""One device decision, made once and logged: ``auto`` = cuda > mps > cpu; a CUDA or MPS request that this
machine cannot serve is an error, never a quiet CPU fallback. Mixed precision is used on CUDA only.

Example:
    >>> select_device("cpu")
    device(type='cpu')
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from microcnn.errors import ConfigError

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(spec: str = "auto") -> torch.device:
    """``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` -> torch.device (logged the first time).

    Raises:
        ConfigError: CUDA/MPS asked for but not available, a GPU index out of range, or an unknown spec.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu")
    elif text == "cpu":
        device = torch.device("cpu")
    elif re.fullmatch(r"cuda(:\d+)?", text):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device '{spec}' was asked for, but CUDA is not available here (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda}). Use device: cpu or auto."
            )
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device '{spec}': only {torch.cuda.device_count()} GPU(s) here (cuda:0..."
                f"{torch.cuda.device_count() - 1})."
            )
    elif text == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps' was asked for, but Apple MPS is not available. Use cpu or auto.")
        device = torch.device("mps")
    else:
        raise ConfigError(f"Unknown device '{spec}'. Use auto, cpu, cuda, cuda:N or mps.")
    if text not in _LOGGED:
        _LOGGED.add(text)
        name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
        log.info("device '%s' -> %s%s", spec, device, name)
    return device


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("auto" | "off" | "bf16" | "fp16") on ``device``; None = full precision.

    auto: bf16 on CUDA GPUs that support it, else fp16 (with a GradScaler); never on CPU/MPS.
    """
    if amp == "off" or device.type != "cuda":
        if amp in ("bf16", "fp16") and device.type != "cuda":
            raise ConfigError(f"train.amp: {amp} needs a CUDA device; got {device}. Use amp: auto or off.")
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@contextmanager
def seeded_run(seed: int, *, deterministic: bool = False) -> Iterator[None]:
    """:func:`seed_everything` for the duration of a run, then restore the process-wide switches.

    ``torch.use_deterministic_algorithms`` is global: left on after a deterministic run it would make later
    work in the same process (the app, a test session, prediction with max-unpooling) fail.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_benchmark = torch.backends.cudnn.benchmark
    seed_everything(seed, deterministic=deterministic)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.backends.cudnn.benchmark = was_benchmark


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA) and switch deterministic algorithms on or off for this run.

    The switch is process-wide, so it is set both ways: an earlier deterministic run in the same process
    (the app, a test session) does not leak into this one. Some layers have no deterministic kernel
    (e.g. max-unpooling in SegNet); with ``deterministic=True`` torch refuses them with a clear error.
    NumPy's global state is not touched: microcnn passes explicit generators everywhere.
    """
    import os

    torch.manual_seed(int(seed))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(deterministic))
    torch.backends.cudnn.benchmark = False
