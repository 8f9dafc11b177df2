"""Run every benchmark and write docs/benchmarks.md (``make bench`` = ``python -m benchmarks.run``).

Sections: speed (matmul peak, models, peer), batch (HDF5 batch prediction), gpu, dataload (time waiting on
data), profile, nasa (Super1 + out-of-distribution), super3 (one-shot), uhcs (DeCost folds),
synthetic (default models), io, synth and analyze (the other helpers' benchmarks). Every figure is measured in
this run; the machine, library versions, date, command line and the load average before and after each
section go into the report. Raw results: ``<out>/results.json``.

Examples:
  python -m benchmarks.run                                    # everything, default budgets
  python -m benchmarks.run --only speed,batch --seconds 1     # speed only, short timing windows
  python -m benchmarks.run --only nasa,uhcs --budget-minutes 4 --uhcs-folds 0
  python -m benchmarks.run --only nasa --seeds 0 1 2                # ours and the peer, 3 seeds each
  python -m benchmarks.run --from-results runs/bench/results.json    # re-render docs/benchmarks.md only
  python -m benchmarks.run --rescore runs/bench/results.json --out runs/again   # score saved models again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SECTIONS = (
    "speed",
    "batch",
    "gpu",
    "dataload",
    "profile",
    "nasa",
    "super3",
    "uhcs",
    "synthetic",
    "io",
    "synth",
    "analyze",
)


def environment() -> dict[str, Any]:
    """Machine, library versions and date of this run."""
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import segmentation_models_pytorch as smp

        versions["segmentation_models_pytorch"] = smp.__version__
    except ImportError:
        versions["segmentation_models_pytorch"] = "not installed"
    from microcnn import __version__

    versions["microcnn"] = __version__
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU in this run",
        "versions": versions,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
    }


def _speed(a: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import bench_speed as s

    section = s.speed_section(side=a.side, batch=a.batch, seconds=a.seconds)
    rows = section["models"]
    return {
        **section,
        "side": a.side,
        "batch": a.batch,
        "peer_ratios": s.peer_ratios(rows),
        "fold_speedup": s.fold_speedup(side=a.side, batch=a.batch),
    }


def _nasa_split() -> dict[str, list[str]]:
    from benchmarks.bench_accuracy import DATA, nasa_split

    roles = nasa_split(DATA / "nasa_super", "Super1")
    return {"train": roles["train"], "val": roles["val"]}


def _dataload(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from benchmarks.bench_accuracy import DATA, NASA_CONFIG
    from benchmarks.training import data_wait_fraction
    from microcnn.config import load_config

    if not (DATA / "nasa_super").is_dir():
        return {"skipped": "../shared/data/nasa_super not found"}
    cfg = load_config(NASA_CONFIG, overrides=a.set)
    out = {"cpu": data_wait_fraction(cfg, split=_nasa_split(), steps=a.dataload_steps)}
    if torch.cuda.is_available():
        out["cuda_bf16"] = data_wait_fraction(cfg, split=_nasa_split(), device="cuda", bf16=True, steps=50)
    return out


def _batch(a: argparse.Namespace) -> dict[str, Any]:
    """The default phase segmenter on ``--h5-side``² images (a job as users run it; the goal figures), and
    a toy U-Net on 64² images under "overhead" (the forward is tiny: the work around it shows)."""
    from benchmarks import bench_speed as s

    kw = {"sizes": tuple(a.h5_sizes), "seconds": a.seconds}
    weights = Path("data/models/phase_segmenter.safetensors")
    if not weights.exists():
        return {"skipped": f"{weights} not found (make models builds it)"}
    main = s.bench_batch_h5(side=a.h5_side, model_path=weights, **kw)
    # the toy's jobs take seconds, as long as their fixed cost: the fastest of 3 fresh processes counts
    overhead = s.bench_batch_h5(side=64, repeats=3, **kw)
    return {**main, "overhead": overhead, "forward_sweep": s.forward_by_batch(weights, seconds=a.seconds)}


def _profile(a: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import bench_speed as s

    builders = s.model_builders()
    names = ("unet (ours, default)", "resnet_unet resnet18 (ours)", "smp Unet resnet18 (peer)")
    kernels = {
        n: {
            layout: s.profile_kernels(builders[n](), side=a.side, batch=a.batch, channels_last=cl)
            for layout, cl in (("NCHW", False), ("channels_last", True))
        }
        for n in names
    }
    # The operator ranking of the NCHW forward: the same profiled calls as its kernel rates.
    ops = {n: kernels[n]["NCHW"]["forward"].pop("top_ops") for n in names}
    for n in names:
        kernels[n]["channels_last"]["forward"].pop("top_ops")
    return {"forward_ops": ops, "kernels": kernels, "batch_cprofile": s.profile_batch(n=32, side=64)}


def _runner(name: str, a: argparse.Namespace) -> Callable[[], Any]:
    from benchmarks import bench_accuracy as acc
    from benchmarks import bench_speed as s

    out = Path(a.out)
    return {
        "speed": lambda: _speed(a),
        "batch": lambda: _batch(a),
        "gpu": lambda: s.bench_gpu(side=a.side, batch=a.batch, seconds=a.seconds),
        "dataload": lambda: _dataload(a),
        "profile": lambda: _profile(a),
        "nasa": lambda: acc.bench_nasa(minutes=a.budget_minutes, out_dir=out, overrides=a.set, seeds=a.seeds),
        "super3": lambda: acc.bench_nasa(
            minutes=a.budget_minutes, out_dir=out, benchmark="Super3", overrides=a.set, seeds=a.seeds
        ),
        "uhcs": lambda: acc.bench_uhcs(
            minutes=a.budget_minutes, out_dir=out, folds=a.uhcs_folds, overrides=a.set
        ),
        "synthetic": lambda: acc.bench_synthetic(n=a.synthetic_n, out_dir=out),
        "io": lambda: __import__("benchmarks.bench_io", fromlist=["main"]).main(repeats=5),
        "synth": lambda: __import__("benchmarks.bench_synth", fromlist=["main"]).main([]),  # n = 1000
        "analyze": lambda: __import__("benchmarks.bench_analyze", fromlist=["main"]).main(["--repeats", "3"]),
    }[name]


def run_sections(
    a: argparse.Namespace, names: list[str], *, after: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run the named sections in order; each records its seconds and the load average around it.

    ``after(results)`` is called after each section (the report is rewritten as results come in).
    """
    results: dict[str, Any] = {}
    for name in names:
        before, t0 = os.getloadavg(), time.perf_counter()
        try:
            value = _runner(name, a)()
        except Exception as exc:  # one failing section is reported; the others still run
            value = {"error": f"{type(exc).__name__}: {exc}"}
        results[name] = {
            "result": value,
            "seconds": time.perf_counter() - t0,
            "load_before": before,
            "load_after": os.getloadavg(),
        }
        print(f"[benchmarks] {name} done in {results[name]['seconds']:.0f} s", file=sys.stderr)
        if after is not None:
            after(results)
    return results


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results dict from several runs: the first run's environment, every run's command, later sections
    replacing earlier ones of the same name; UHCS folds run in different runs are joined (a later run's
    fold i replaces an earlier fold i), so the 6 folds can be measured in several sittings; so are the
    seeds of nasa / super3 runs with other seeds of the same models and budget (:func:`_join_seeds`)."""
    merged = {"environment": dict(parts[0]["environment"]), "sections": {}}
    merged["environment"]["command"] = " ; then ".join(p["environment"]["command"] for p in parts)
    dates = sorted(p["environment"]["date"] for p in parts if p["environment"].get("date"))
    if dates and dates[0] != dates[-1]:
        merged["environment"]["date"] = f"{dates[0]} to {dates[-1]} ({len(parts)} runs)"
    if len(parts) > 1:  # which run (command, date, machine) each section comes from: machines differ
        merged["environment"]["runs"] = [
            {k: p["environment"].get(k) for k in ("command", "date", "machine")} for p in parts
        ]
        machines = list(dict.fromkeys(str(p["environment"].get("machine")) for p in parts))
        merged["environment"]["machine"] = " | ".join(machines)
    for k, part in enumerate(parts, 1):
        for name, section in part["sections"].items():
            before = merged["sections"].get(name)
            section = {**section, "run": str(k)} if len(parts) > 1 else section
            if name == "uhcs" and _has_folds(before) and _has_folds(section):
                folds = {**before["result"]["folds"], **section["result"]["folds"]}
                section = {**section, "result": {**section["result"], "folds": folds},
                           "seconds": before["seconds"] + section["seconds"]}  # fmt: skip
            elif name in ("nasa", "super3") and (joined := _join_seeds(before, section)) is not None:
                section = joined
            else:
                before = None
            if before is not None and "run" in before:
                section["run"] = f"{before['run']}+{k}"
            merged["sections"][name] = section
    return merged


def rescore_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The trained-model sections of earlier runs (merged as :func:`merge_results` does), every model
    re-scored now (:func:`benchmarks.bench_accuracy.rescore`); this run's environment, the earlier runs'
    budget. The command names the files and then the commands that trained the models, so that their
    ``--set`` overrides reach the report's reproduce lines. Each section keeps the seconds of its training
    run and records those of the re-scoring."""
    from benchmarks.bench_accuracy import rescore

    merged = merge_results(parts)
    env = environment()
    env["command"] += f" # re-scoring the models trained by: {merged['environment']['command']}"
    results: dict[str, Any] = {
        "environment": {**env, "budget_minutes": parts[0]["environment"].get("budget_minutes")},
        "sections": {},
    }
    for name, section in merged["sections"].items():
        if name not in ("nasa", "super3", "uhcs") or not isinstance(section.get("result"), dict):
            continue
        if "ours" not in section["result"] and "folds" not in section["result"]:
            continue
        before, t0 = os.getloadavg(), time.perf_counter()
        value = rescore(name, section["result"])
        results["sections"][name] = {**section, "result": value, "rescore_seconds": time.perf_counter() - t0,
                                     "load_before": before, "load_after": os.getloadavg()}  # fmt: skip
        print(f"[benchmarks] {name} re-scored", file=sys.stderr)
    return results


def _join_seeds(before: Any, later: dict[str, Any]) -> dict[str, Any] | None:
    """``before`` with the seed runs of ``later`` added to its repeats, when both are nasa / super3
    sections of the same benchmark, models and budget and share no seed; None otherwise (``later``
    replaces ``before``)."""
    from benchmarks.goals import seed_runs

    def facts(section: Any) -> tuple[list[Any], set[Any]] | None:
        """(benchmark and the models and budgets of its runs, the seeds of ours) or None."""
        result = section.get("result") if isinstance(section, dict) else None
        if not isinstance(result, dict) or "ours" not in result or "peer" not in result:
            return None
        runs = [*seed_runs(result, "ours"), *seed_runs(result, "peer")]
        kind = [
            result.get("benchmark"),
            *sorted({json.dumps([r.get("model"), r.get("max_minutes")]) for r in runs}),
        ]
        return kind, {r.get("seed") for r in seed_runs(result, "ours")}

    a, b = facts(before), facts(later)
    if a is None or b is None or a[0] != b[0] or a[1] & b[1]:
        return None
    result, extra = before["result"], later["result"]
    repeats = {who: [*seed_runs(result, who)[1:], *seed_runs(extra, who)] for who in ("ours", "peer")}
    return {
        **before,
        "result": {**result, "repeats": repeats},
        "seconds": before["seconds"] + later["seconds"],
        "load_after": later.get("load_after", before.get("load_after")),
    }


def _has_folds(section: Any) -> bool:
    return (
        isinstance(section, dict) and isinstance(section.get("result"), dict) and "folds" in section["result"]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    p.add_argument("--budget-minutes", type=float, default=8.0, help="CPU wall clock per training run")
    p.add_argument("--uhcs-folds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--seconds", type=float, default=3.0, help="timing window per speed measurement")
    p.add_argument("--side", type=int, default=256, help="speed: input side (px)")
    p.add_argument("--batch", type=int, default=8, help="speed: batch size")
    p.add_argument("--h5-sizes", type=int, nargs="+", default=[200, 2000], help="batch: archive sizes")
    p.add_argument("--h5-side", type=int, default=256, help="batch: image side (px) for the default model")
    p.add_argument("--dataload-steps", type=int, default=10)
    p.add_argument("--synthetic-n", type=int, default=100, help="images per fresh synthetic test set")
    p.add_argument("--set", action="append", default=[], help="config override for the real-data runs")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="nasa, super3: train ours and the peer once per seed; goals use the mean over the seeds "
        "(default: once, with the config's seed)",
    )
    p.add_argument("--out", default="runs/bench", help="run folders and results.json")
    p.add_argument("--doc", default="docs/benchmarks.md", help="the report to write")
    p.add_argument(
        "--rescore",
        nargs="+",
        help="re-score (plain and TTA) the models that the nasa, super3 and uhcs sections of these "
        "results.json files trained, without training again; written to --out and --doc",
    )
    p.add_argument(
        "--from-results",
        nargs="+",
        help="only rewrite the report from saved results.json files (no new runs); "
        "sections of later files replace those of earlier ones",
    )
    a = p.parse_args(argv)
    a.names = [n.strip() for n in a.only.split(",") if n.strip()]
    from microcnn.registry import check_choice

    for n in a.names:
        check_choice("benchmark section", n, SECTIONS)
    return a


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import write_report

    a = parse_args(argv)
    if a.from_results:
        write_report(merge_results([json.loads(Path(p).read_text()) for p in a.from_results]), Path(a.doc))
        return 0
    Path(a.out).mkdir(parents=True, exist_ok=True)
    if a.rescore:
        results = rescore_results([json.loads(Path(p).read_text()) for p in a.rescore])
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
        write_report(results, Path(a.doc))
        return 0
    results: dict[str, Any] = {"environment": {**environment(), "budget_minutes": a.budget_minutes}}

    def save(sections: dict[str, Any]) -> None:
        results["sections"] = sections
        (Path(a.out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
        write_report(results, Path(a.doc))

    save(run_sections(a, a.names, after=save))
    print(f"wrote {a.doc} and {Path(a.out) / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
