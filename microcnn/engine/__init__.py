"""Training engine: tasks, the Trainer, losses, metrics, optimizers, checkpoints, devices, distributed.

Entry points (import them from here; heavy modules load on first use):
``train(cfg, *, run_dir, resume, progress) -> RunResult``, ``evaluate(model_path, data) -> dict``,
``cross_validate(cfg, *, folds) -> CVResult``, ``load_model(path) -> (nn.Module, metadata)``.

Example:
    >>> from microcnn.engine import train            # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "train": "microcnn.engine.api",
    "evaluate": "microcnn.engine.api",
    "cross_validate": "microcnn.engine.api",
    "RunResult": "microcnn.engine.api",
    "CVResult": "microcnn.engine.api",
    "Trainer": "microcnn.engine.trainer",
    "NonFiniteError": "microcnn.engine.trainer",
    "OutOfMemoryFloorError": "microcnn.engine.trainer",
    "DataLoaderWorkerError": "microcnn.engine.sampling",
    "build_task": "microcnn.engine.tasks",
    "build_loss": "microcnn.engine.losses",
    "build_metrics": "microcnn.engine.metrics",
    "build_optimizer": "microcnn.engine.optim",
    "build_scheduler": "microcnn.engine.optim",
    "select_device": "microcnn.engine.device",
    "save_weights": "microcnn.engine.checkpoint",
    "load_weights": "microcnn.engine.checkpoint",
    "load_model": "microcnn.engine.checkpoint",
    "save_resume_state": "microcnn.engine.checkpoint",
    "load_resume_state": "microcnn.engine.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'microcnn.engine' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_API)
