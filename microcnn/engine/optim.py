"""Optimizers and learning-rate schedules by name, from :class:`~microcnn.config.OptimConfig` /
:class:`~microcnn.config.ScheduleConfig`; all are torch.optim's own classes.

A schedule is returned with its interval: "epoch" (stepped after each epoch; ``plateau`` gets the monitored
validation metric) or "step" (after each optimizer step: ``onecycle``, and ``cosine`` with its warm-up).

Example:
    >>> import torch
    >>> from microcnn.config import OptimConfig, ScheduleConfig
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = build_optimizer(net.parameters(), OptimConfig(name="sgd", lr=0.1, nesterov=True))
    >>> step = ScheduleConfig(name="step", step_size=2)
    >>> sched, interval = build_scheduler(opt, step, epochs=4, steps_per_epoch=5)
    >>> interval
    'epoch'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from microcnn.config import OptimConfig, ScheduleConfig
from microcnn.errors import ConfigError
from microcnn.registry import Registry

OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")


@OPTIMIZERS.register("sgd")
def _sgd(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
    )


@OPTIMIZERS.register("adam")
def _adam(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=c.lr, betas=tuple(c.betas), eps=c.eps, weight_decay=c.weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(
        params, lr=c.lr, alpha=c.alpha, eps=c.eps, momentum=c.momentum, weight_decay=c.weight_decay
    )


@OPTIMIZERS.register("adagrad")
def _adagrad(params: Any, c: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=c.lr, eps=c.eps, weight_decay=c.weight_decay)


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """torch optimizer ``cfg.name`` over ``params`` (SGD: momentum, Nesterov; Adam/AdamW: betas, eps...)."""
    if cfg.nesterov and (cfg.name != "sgd" or cfg.momentum <= 0):
        raise ConfigError(f"optim.nesterov needs name: sgd and momentum > 0; got {cfg.name}, {cfg.momentum}.")
    try:
        builder = OPTIMIZERS.get(cfg.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return builder(params, cfg)


@SCHEDULERS.register("none")
def _none(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    return None, "epoch"


@SCHEDULERS.register("step")
def _step(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma), "epoch"


@SCHEDULERS.register("multistep")
def _multistep(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c.milestones), gamma=c.gamma), "epoch"


@SCHEDULERS.register("cosine")
def _cosine(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    """Linear warm-up from lr/100 over ``warmup_epochs``, then cosine annealing to ``min_lr``, per step."""
    lrs = torch.optim.lr_scheduler
    total = max(epochs * steps, 1)
    warm = min(round(c.warmup_epochs * steps), total - 1)
    cosine = lrs.CosineAnnealingLR(opt, T_max=max(total - warm, 1), eta_min=c.min_lr)
    if warm <= 0:
        return cosine, "step"
    linear = lrs.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warm)
    return lrs.SequentialLR(opt, [linear, cosine], milestones=[warm]), "step"


@SCHEDULERS.register("onecycle")
def _onecycle(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    max_lr = c.max_lr if c.max_lr is not None else opt.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=max(epochs * steps, 2), pct_start=c.pct_start
    )
    return sched, "step"


@SCHEDULERS.register("plateau")
def _plateau(
    opt: torch.optim.Optimizer, c: ScheduleConfig, epochs: int, steps: int, mode: str
) -> tuple[Any, str]:
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=c.factor, patience=c.patience)
    return sched, "epoch"


def timed_cosine(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    *,
    steps_per_epoch: int,
    budget_s: float,
    clock: Callable[[], float],
) -> torch.optim.lr_scheduler.LambdaLR:
    """``cosine`` against a wall-clock budget: the lr is ``base · w · (m + (1 − m)(1 + cos πq) / 2)``, with
    the warm-up factor ``w`` rising linearly from 0.01 to 1 over ``warmup_epochs · steps_per_epoch`` steps,
    ``q = min(clock() / budget_s, 1)`` the fraction of the budget spent and ``m = min_lr / base``.

    The number of steps that fit a budget is not known in advance (it depends on the machine and its load),
    so the annealing follows the time; both inputs (the step count, kept by the scheduler, and the seconds
    spent) survive a resume. Stepped per optimizer step.
    """
    warm = max(round(cfg.warmup_epochs * max(steps_per_epoch, 1)), 0)

    def factor(base: float) -> Callable[[int], float]:
        floor = cfg.min_lr / base if base > 0 else 0.0

        def f(step: int) -> float:
            w = 1.0 if step >= warm else 0.01 + 0.99 * step / warm
            q = min(max(clock() / budget_s, 0.0), 1.0)
            return w * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * q)))

        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor(g["lr"]) for g in optimizer.param_groups])


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: ScheduleConfig,
    *,
    epochs: int,
    steps_per_epoch: int,
    mode: str = "min",
    budget_s: float | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[Any, str]:
    """(scheduler or None, "epoch" | "step"). ``steps_per_epoch`` counts optimizer steps; ``mode`` is the
    direction of the metric a ``plateau`` schedule watches. With a wall-clock ``budget_s`` (seconds) and
    ``clock`` (seconds spent so far), ``cosine`` anneals over the time (:func:`timed_cosine`); ``onecycle``,
    whose shape is fixed in steps, is refused."""
    if budget_s is not None and cfg.name == "onecycle":
        raise ConfigError(
            "schedule.name: onecycle needs the number of steps in advance, which train.max_minutes leaves "
            "open. Use schedule.name: cosine (it anneals over the time budget), or set train.epochs instead "
            "of train.max_minutes."
        )
    if budget_s is not None and cfg.name == "cosine":
        if clock is None:
            raise ValueError("build_scheduler: budget_s needs clock (seconds spent so far).")
        sched = timed_cosine(optimizer, cfg, steps_per_epoch=steps_per_epoch, budget_s=budget_s, clock=clock)
        return sched, "step"
    try:
        builder = SCHEDULERS.get(cfg.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return builder(optimizer, cfg, int(epochs), max(int(steps_per_epoch), 1), mode)
