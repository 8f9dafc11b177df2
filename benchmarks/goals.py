"""The issue's goals checked against one run's results: measured value, met or missed, and by how much."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.report import _f, _section, _table, fastest_forward


@dataclass
class Goal:
    """``value`` against ``target`` (higher is better unless ``lower``); value None = not measured."""

    text: str
    value: float | None
    target: float
    unit: str = ""
    lower: bool = False
    why: str = ""  # what limits it, from this run's measurements (shown when missed)
    sd: float | None = None  # sample sd over the training seeds when value is their mean (same unit)

    @property
    def met(self) -> bool | None:
        if self.value is None or not math.isfinite(self.value):
            return None
        return self.value <= self.target if self.lower else self.value >= self.target

    def row(self) -> list[str]:
        if self.met is None:
            return [self.text, "not measured in this run", "–", "–", ""]
        gap = abs(self.value - self.target)
        digits = 1 if self.unit in (" %", " pp") else 3
        while not self.met and round(gap, digits) == 0 and digits < 6:  # a miss never reads "short by 0.0"
            digits += 1
        gap_unit = " pp" if self.unit == " %" else self.unit
        spread = "" if self.sd is None else f" (sd {_f(self.sd, digits)} over the seeds)"
        return [
            self.text,
            f"{_f(self.value, digits)}{self.unit}{spread}",
            "met" if self.met else "**missed**",
            "–" if self.met else f"short by {_f(gap, digits)}{gap_unit}",
            "" if self.met else self.why,
        ]


def _get(d: Any, *keys: Any) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _speed_row(results: dict[str, Any], model: str, channels_last: bool) -> dict[str, Any]:
    rows = _get(_section(results, "speed"), "models") or []
    return next((r for r in rows if r["model"] == model and r["channels_last"] == channels_last), {})


def _memory_bound_why(results: dict[str, Any], model: str) -> str:
    ops = _get(_section(results, "profile"), "forward_ops", model)
    if not ops:
        return "no profile in this run"
    conv = sum(o["pct"] for o in ops if "conv" in o["op"] or "mm" in o["op"])
    other = sum(o["pct"] for o in ops) - conv
    return (
        f"forward: {_f(other)} % of time in memory-bound ops (batch norm, ReLU, pooling, cat), "
        f"{_f(conv)} % in conv kernels (profile); training adds their backward and the AdamW update"
    )


def _kernel_why(results: dict[str, Any], model: str, layout: str, phase: str) -> str:
    """What limits one speed goal, from the kernel profile (``bench_speed.profile_kernels``) of its model
    and layout; runs recorded before that profile existed get the forward-operator summary."""
    k = _get(_section(results, "profile"), "kernels", model, layout, phase)
    if not k:
        return _memory_bound_why(results, model)
    peak = _get(_section(results, "speed"), "matmul_peak_gflops")

    def rate(gflop_s: float) -> str:
        return f"{_f(gflop_s)} GFLOP/s" + (f" ({_f(100 * gflop_s / peak)} % of peak)" if peak else "")

    if phase == "forward":
        return (
            f"{layout} forward (profile): convolutions {_f(k['conv_pct'])} % of the time at "
            f"{rate(k['conv_gflop_s'])}; the other {_f(100 - k['conv_pct'])} % in memory-bound ops "
            "(ReLU, pooling, concatenation, padding)"
        )
    rest = 100 - k["conv_pct"] - k["conv_backward_pct"] - k["optimizer_pct"]
    return (
        f"{layout} training step (profile): conv backward {_f(k['conv_backward_pct'])} % of the time at "
        f"{rate(k['conv_backward_gflop_s'])}, conv forward {_f(k['conv_pct'])} % at "
        f"{rate(k['conv_gflop_s'])}, AdamW {_f(k['optimizer_pct'])} %; the other {_f(rest)} % in "
        "memory-bound ops and their backward (batch norm, ReLU, pooling, concatenation, the loss)"
    )


def speed_goals(results: dict[str, Any]) -> list[Goal]:
    """CPU % of peak, ours/peer images/s, batch HDF5 ratio and memory flatness."""
    goals = []
    for model in ("unet (ours, default)", "resnet_unet resnet18 (ours)"):
        for cl in (False, True):
            row, layout = _speed_row(results, model, cl), "channels_last" if cl else "NCHW"
            fwd, train = row.get("forward_pct_peak"), row.get("train_pct_peak")
            goals += [
                Goal(
                    f"CPU inference ≥ 80 % of peak: {model}, {layout}",
                    fwd,
                    80,
                    " %",
                    why=_kernel_why(results, model, layout, "forward"),
                ),
                Goal(
                    f"CPU training ≥ 50 % of peak: {model}, {layout}",
                    train,
                    50,
                    " %",
                    why=_kernel_why(results, model, layout, "train"),
                ),
            ]
    peer = {
        r["channels_last"]: r
        for r in (_get(_section(results, "speed"), "models") or [])
        if "peer" in r["model"]
    }
    for r in _get(_section(results, "speed"), "peer_ratios") or []:
        layout = "channels_last" if r["channels_last"] else "NCHW"
        ours, theirs = _speed_row(results, r["model"], r["channels_last"]), peer.get(r["channels_last"], {})
        why = (
            f"ours {_f(ours.get('forward_gflop_per_img'), 2)} vs the peer's "
            f"{_f(theirs.get('forward_gflop_per_img'), 2)} GFLOP/img (forward)"
        )
        goals += [
            Goal(
                f"≥ 1.0× the peer's inference img/s: {r['model']}, {layout}",
                r["forward_ratio"],
                1,
                "×",
                why=why,
            ),
            Goal(
                f"≥ 1.0× the peer's training img/s: {r['model']}, {layout}", r["train_ratio"], 1, "×", why=why
            ),
        ]
    return goals + batch_goals(results)


def batch_goals(results: dict[str, Any]) -> list[Goal]:
    b = _section(results, "batch") or {}
    ratio, why = None, ""
    if b.get("steady_img_s") is not None:
        best, at = fastest_forward(b)
        ratio = b["steady_img_s"] / best
        why = (
            f"per image the job takes {_f(1000 / b['steady_img_s'], 2)} ms in steady state, the fastest bare "
            f"forward ({at}) {_f(1000 / best, 2)} ms: the rest is reading, per-image standardisation, the "
            f"result objects and HDF5 writes (cProfile below); each job also pays {_f(b['startup_s'], 1)} s "
            f"once (imports, model, input hash)"
        )
    return [
        Goal(
            "Batch HDF5 ≥ 90 % of pure forward throughput (steady state; the fastest forward batch)",
            None if ratio is None else 100 * ratio,
            90,
            " %",
            why=why,
        ),
        Goal(
            "Memory flat in archive size (peak RSS ratio largest/smallest ≤ 1.10)",
            b.get("peak_rss_ratio"),
            1.10,
            lower=True,
        ),
    ]


def _fold_mean(results: dict[str, Any], who: str, part: str = "test") -> float | None:
    folds = _get(_section(results, "uhcs"), "folds") or {}
    values = [_get(f, who, part, "mean_iou") for f in folds.values()]
    values = [v for v in values if v is not None]
    return 100 * sum(values) / len(values) if values else None


def _budget_why(run: Any, small: str, label: str = "") -> str:
    """The training budget actually used, and the IoU of the thin, rare class ``small`` (after ``label``)."""
    if not isinstance(run, dict) or "train_seconds" not in run:
        return ""
    iou = _get(run, "test", "iou", small)
    return (
        f"{label}{_f(run['train_seconds'], 0)} s of CPU training from scratch "
        f"({run.get('epochs_done')} epochs, stopped by {run.get('stopped')}); the thin, rare class {small} "
        f"reaches {_f(iou, 1, 100)} % IoU and pulls the class mean down"
    )


def seed_runs(section: Any, who: str) -> list[dict[str, Any]]:
    """The runs of ``who`` ("ours", "peer") in a nasa or super3 section: the first seed's, then the
    repeats of ``--seeds``."""
    first = _get(section, who)
    return [first, *(_get(section, "repeats", who) or [])] if isinstance(first, dict) else []


def seed_mean(section: Any, who: str, part: str, metric: str) -> float | None:
    """``metric`` on set ``part`` averaged over the seed runs of ``who`` (None where none has it)."""
    values = [v for r in seed_runs(section, who) if (v := _get(r, part, metric)) is not None]
    return sum(values) / len(values) if values else None


def _seed_pairs(section: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(ours, peer) run of each seed, in seed order."""
    return list(zip(seed_runs(section, "ours"), seed_runs(section, "peer"), strict=False))


def seed_sd(section: Any, part: str, metric: str, *, who: str = "ours", scale: float = 1.0) -> float | None:
    """Sample sd over the seeds of ``metric`` on ``part`` for ``who``, or (who="diff") of ours − peer seed by
    seed; times ``scale``. None with fewer than 2 seeds."""
    if who == "diff":
        values = [
            o - p
            for r, q in _seed_pairs(section)
            if None not in (o := _get(r, part, metric), p := _get(q, part, metric))
        ]
    else:
        values = [v for r in seed_runs(section, who) if (v := _get(r, part, metric)) is not None]
    return scale * statistics.stdev(values) if len(values) > 1 else None


def _peer_why(section: Any, part: str) -> str:
    """Why ours trails the peer on set ``part`` of a nasa or super3 section: ours − peer per seed (pp), the
    class with the largest deficit (mean over the seeds) and the epochs each got in the same budget."""
    pairs = [
        (o, p)
        for o, p in _seed_pairs(section)
        if _get(o, part, "mean_iou") is not None and _get(p, part, "mean_iou") is not None
    ]
    if not pairs:
        return ""
    diffs = ", ".join(_f(100 * (o[part]["mean_iou"] - p[part]["mean_iou"]), 1) for o, p in pairs)
    classes = pairs[0][0][part].get("iou") or {}
    gaps = {
        c: 100 * sum(o[part]["iou"][c] - p[part]["iou"][c] for o, p in pairs) / len(pairs)
        for c in classes
        if all(c in o[part].get("iou", {}) and c in p[part].get("iou", {}) for o, p in pairs)
    }
    worst = min(gaps, key=gaps.get) if gaps else None
    epochs = "; epochs in the same budget, ours " + "/".join(str(o.get("epochs_done")) for o, _ in pairs)
    epochs += " vs the peer " + "/".join(str(p.get("epochs_done")) for _, p in pairs)
    label = "per seed" if len(pairs) > 1 else "one seed"
    text = f"ours − peer {label}: {diffs} pp"
    if worst is not None and gaps[worst] < 0:
        text += f"; the largest class deficit: {worst} ({_f(gaps[worst], 1)} pp IoU, mean over the seeds)"
    return text + epochs


def scale_means(section: Any, who: str, part: str) -> tuple[list[float], list[float]] | None:
    """(factors, joint IoU at each factor averaged over the seed runs) of the scale sweep of set ``part``
    (:func:`benchmarks.bench_accuracy.scale_sweep`), or None where no run of ``who`` has one."""
    sweeps = [
        r[f"{part}_scales"] for r in seed_runs(section, who) if isinstance(r.get(f"{part}_scales"), dict)
    ]
    if not sweeps:
        return None
    factors = sweeps[0]["factors"]
    return factors, [statistics.mean(s["joint_iou"][i] for s in sweeps) for i in range(len(factors))]


def _scale_why(section: Any, part: str) -> str:
    """What the scale sweep says about set ``part``: the factor where ours scores best, when that is not 1x
    and it is worth at least 0.005 joint IoU (plain prediction, mean over the seeds)."""
    means = scale_means(section, "ours", part)
    if means is None or 1.0 not in means[0]:
        return ""
    factors, joint = means
    best, at_one = max(range(len(factors)), key=joint.__getitem__), joint[factors.index(1.0)]
    if factors[best] == 1.0 or joint[best] - at_one < 0.005:
        return ""
    size = "smaller" if factors[best] < 1 else "larger"
    return (
        f"; resampled by {factors[best]:g}× before prediction these images score {_f(joint[best], 3)} joint "
        f"IoU, against {_f(at_one, 3)} as they are (plain, scale sweep): the model reads them better with "
        f"their features made {size} in px, and the PNGs carry no pixel size that `--rescale` could use"
    )


def _seeds_mark(section: Any) -> str:
    n = len(seed_runs(section, "ours"))
    return f" (mean of {n} seeds)" if n > 1 else ""


def accuracy_goals(results: dict[str, Any]) -> list[Goal]:
    """Real-data goals and 'better than the peer at the same CPU budget on every set', each for the plain
    prediction and for test-time augmentation (the same trained models, rows marked "(TTA)")."""
    goals = []
    for tta in ("", "_tta"):
        goals += _accuracy_goals(results, tta, " (TTA)" if tta else "")
    return goals


def _accuracy_goals(results: dict[str, Any], tta: str, mark: str) -> list[Goal]:
    nasa = _section(results, "nasa")
    fold0 = next(iter((_get(_section(results, "uhcs"), "folds") or {}).values()), {})
    first = _get(nasa, "ours", "seed") if len(seed_runs(nasa, "ours")) > 1 else None
    nasa_why = _budget_why(
        _get(nasa, "ours"), "tertiary_gamma_prime", "" if first is None else f"seed {first}: "
    )
    uhcs_why = _budget_why(fold0.get("ours"), "widmanstatten")
    goals = [
        Goal(
            f"UHCS mean IoU ≥ 70 % from scratch (mean over the folds run){mark}",
            _fold_mean(results, "ours", f"test{tta}"),
            70,
            " %",
            why=uhcs_why,
        ),
        Goal(
            f"NASA Super1 joint IoU ≥ 0.95 from scratch{mark}{_seeds_mark(nasa)}",
            seed_mean(nasa, "ours", f"test{tta}", "joint_iou"),
            0.95,
            why=nasa_why,
            sd=seed_sd(nasa, f"test{tta}", "joint_iou"),
        ),
        Goal(
            f"NASA Super1 per-class mean IoU ≥ 0.90{mark}{_seeds_mark(nasa)}",
            seed_mean(nasa, "ours", f"test{tta}", "mean_iou"),
            0.90,
            why=nasa_why,
            sd=seed_sd(nasa, f"test{tta}", "mean_iou"),
        ),
        Goal(
            f"Out-of-distribution joint IoU ≥ 0.75 (Super1 model, 5 images){mark}{_seeds_mark(nasa)}",
            seed_mean(nasa, "ours", f"ood{tta}", "joint_iou"),
            0.75,
            why=nasa_why
            + "; other alloys, etches and imaging conditions than any training image"
            + _scale_why(nasa, "ood"),
            sd=seed_sd(nasa, f"ood{tta}", "joint_iou"),
        ),
    ]
    pairs = [
        ("NASA Super1 test", "nasa", "test"),
        ("NASA OOD (Super1 model)", "nasa", "ood"),
        ("NASA Super3 test", "super3", "test"),
        ("NASA OOD (Super3 model)", "super3", "ood"),
    ]
    for text, sec, part in pairs:
        s = _section(results, sec)
        ours, peer = (
            seed_mean(s, "ours", part + tta, "mean_iou"),
            seed_mean(s, "peer", part + tta, "mean_iou"),
        )
        diff = None if ours is None or peer is None else 100 * (ours - peer)
        text = f"Better than the peer (mean IoU, ours − peer): {text}{mark}{_seeds_mark(s)}"
        sd = seed_sd(s, part + tta, "mean_iou", who="diff", scale=100)
        goals.append(Goal(text, diff, 0, " pp", why=_peer_why(s, part + tta), sd=sd))
    ours, peer = _fold_mean(results, "ours", f"test{tta}"), _fold_mean(results, "peer", f"test{tta}")
    diff = None if ours is None or peer is None else ours - peer
    goals.append(Goal(f"Better than the peer (mean IoU, ours − peer): UHCS folds run{mark}", diff, 0, " pp"))
    return goals


def goal_lines(results: dict[str, Any]) -> list[str]:
    goals = accuracy_goals(results) + speed_goals(results)
    met = sum(g.met is True for g in goals)
    missed = sum(g.met is False for g in goals)
    lines = [
        "## Goals (from the issue) against this run",
        "",
        f"{met} met, {missed} missed, {len(goals) - met - missed} not measured in this run.",
        "",
    ]
    rows = [g.row() for g in goals]
    return lines + _table(["goal", "measured", "verdict", "gap", "what limits it (this run)"], rows) + [""]
