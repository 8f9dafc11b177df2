"""Optimizers and schedules: one hand-checked update per optimizer family, lr curves vs closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from microcnn.config import OptimConfig, ScheduleConfig
from microcnn.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from microcnn.errors import ConfigError

EXPECTED_CLASS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def _one_step(name: str, **options) -> float:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer([w], OptimConfig(name=name, **options))
    (2.0 * w).sum().backward()  # gradient 2
    opt.step()
    return float(w.detach())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_class(name):
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(name=name, lr=0.01))
    assert type(opt) is EXPECTED_CLASS[name] and opt.param_groups[0]["lr"] == 0.01


def test_first_updates_by_hand():
    assert _one_step("sgd", lr=0.1, momentum=0.0) == pytest.approx(1 - 0.1 * 2)
    # Nesterov, first step: buffer = g; update = g + momentum * buffer = 2 + 0.9 * 2
    assert _one_step("sgd", lr=0.1, momentum=0.9, nesterov=True) == pytest.approx(1 - 0.1 * 3.8)
    # Adam's first step moves by lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|)
    assert _one_step("adam", lr=0.1) == pytest.approx(0.9, abs=1e-6)
    # AdamW: decoupled decay w <- w (1 - lr wd) before the Adam step
    assert _one_step("adamw", lr=0.1, weight_decay=0.5) == pytest.approx(1 * (1 - 0.05) - 0.1, abs=1e-6)
    # Adagrad, first step: lr * g / sqrt(g^2) = lr
    assert _one_step("adagrad", lr=0.1) == pytest.approx(0.9, abs=1e-6)
    # RMSprop (no momentum): v = (1 - alpha) g^2; step lr * g / sqrt(v)
    assert _one_step("rmsprop", lr=0.01, momentum=0.0, alpha=0.99) == pytest.approx(
        1 - 0.01 * 2 / math.sqrt(0.01 * 4), abs=1e-5
    )


def test_nesterov_needs_sgd_with_momentum():
    with pytest.raises(ConfigError, match="nesterov"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], OptimConfig(name="adam", nesterov=True))


def _lrs(cfg: ScheduleConfig, *, epochs: int, steps: int, lr: float = 1.0) -> tuple[list[float], str]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched, interval = build_scheduler(opt, cfg, epochs=epochs, steps_per_epoch=steps)
    out = []
    for _ in range(epochs * (steps if interval == "step" else 1)):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, interval


def test_step_and_multistep():
    lrs, interval = _lrs(ScheduleConfig(name="step", step_size=2, gamma=0.5), epochs=5, steps=3)
    assert interval == "epoch" and lrs == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    lrs, _ = _lrs(ScheduleConfig(name="multistep", milestones=[1, 3], gamma=0.1), epochs=4, steps=3)
    assert lrs == pytest.approx([1, 0.1, 0.1, 0.01])


def test_cosine_with_warmup_matches_closed_form():
    # 2 epochs x 5 steps, 2 warm-up steps from lr/100, then cosine over the 8 remaining steps to 0.1
    lrs, interval = _lrs(ScheduleConfig(name="cosine", warmup_epochs=0.4, min_lr=0.1), epochs=2, steps=5)
    assert interval == "step"
    assert lrs[0] == pytest.approx(0.01) and lrs[1] == pytest.approx(0.01 + 0.99 / 2)
    for t in range(8):
        assert lrs[2 + t] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / 8)), rel=1e-6)


def test_onecycle_peaks_at_max_lr():
    lrs, interval = _lrs(ScheduleConfig(name="onecycle", max_lr=2.0, pct_start=0.5), epochs=2, steps=10)
    assert interval == "step" and max(lrs) == pytest.approx(2.0, rel=1e-3)
    assert lrs[0] == pytest.approx(2.0 / 25)  # OneCycleLR's default div_factor 25
    assert lrs.index(max(lrs)) in (9, 10)


def test_plateau_watches_the_direction():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched, _ = build_scheduler(
        opt, ScheduleConfig(name="plateau", patience=1, factor=0.5), epochs=9, steps_per_epoch=1, mode="max"
    )
    for score in (0.5, 0.6, 0.6, 0.6):  # improves once, then two flat epochs > patience 1
        sched.step(score)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_registry_names():
    assert set(SCHEDULERS.names()) == {"none", "step", "multistep", "cosine", "onecycle", "plateau"}


def test_timed_cosine_follows_the_clock_and_equals_torchs_cosine_at_a_steady_pace():
    """At 0.5 s per step and a budget of 10 steps' time, the timed cosine gives the lr of torch's
    CosineAnnealingLR(T_max=10); a warm-up multiplies it by torch's LinearLR ramp (0.01 -> 1)."""
    now = [0.0]
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    cfg = ScheduleConfig(name="cosine", min_lr=0.1)
    sched, interval = build_scheduler(
        opt, cfg, epochs=99, steps_per_epoch=4, budget_s=5.0, clock=lambda: now[0]
    )
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=10, eta_min=0.1)
    assert interval == "step"
    for _ in range(10):
        assert opt.param_groups[0]["lr"] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-6)
        now[0] += 0.5
        sched.step()
        ref_opt.step()
        ref.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # budget spent: min_lr, and it stays there
    now[0] = 60.0
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)

    now[0] = 0.0
    opt = torch.optim.SGD([w], lr=1.0)
    warm = ScheduleConfig(name="cosine", warmup_epochs=0.5)  # 0.5 x 4 = 2 steps
    sched, _ = build_scheduler(opt, warm, epochs=99, steps_per_epoch=4, budget_s=5.0, clock=lambda: now[0])
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        now[0] += 1.0
        sched.step()
    cos = [0.5 * (1 + math.cos(math.pi * t / 5)) for t in range(4)]
    assert lrs == pytest.approx([0.01 * cos[0], (0.01 + 0.99 / 2) * cos[1], cos[2], cos[3]])


def test_a_time_budget_refuses_onecycle():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match=r"onecycle needs the number of steps.*schedule\.name: cosine"):
        build_scheduler(
            opt, ScheduleConfig(name="onecycle"), epochs=2, steps_per_epoch=3, budget_s=60, clock=lambda: 0.0
        )
