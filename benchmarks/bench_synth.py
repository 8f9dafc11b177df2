"""Benchmark of microcnn.synth: 1,000 labelled 256 x 256 samples (no TauFactor); TauFactor cost per sample.

Run: ``python -m benchmarks.bench_synth [--n 1000] [--tau-samples 10] [--device cpu]``. Prints a JSON dict.
Targets (issue 3): 1,000 samples with masks and classes in < 120 s on the 2-core CPU (timed on 1,000
unless ``--n`` says otherwise, in which case the verdict is marked as an extrapolation); TauFactor labels
for 1,000 samples: report the time (cache them if > ~10 min). Only percolating samples are solved (the
others get tortuosity = inf from a connectivity check), so the solve is timed on those alone and the cost
per generated sample is reported next to it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

GOAL_N, GOAL_SECONDS = 1000, 120.0


def time_dataset(n: int, size: int = 256, seed: int = 0) -> dict[str, object]:
    """Generate and write ``n`` samples with masks and classes (segmentation layout) to a temp folder."""
    from microcnn.synth import make_dataset
    from microcnn.synth.writer import write_folder

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        samples = make_dataset("segmentation", n=n, size=size, seed=seed)
        write_folder(samples, Path(tmp) / "seg", task="segmentation")
        total = time.perf_counter() - start
    for_goal = total * GOAL_N / n
    return {
        "n": n,
        "size": size,
        "seconds": round(total, 2),
        "ms_per_sample": round(1000 * total / n, 2),
        f"seconds_for_{GOAL_N}": round(for_goal, 1),
        "extrapolated": n != GOAL_N,  # True: the verdict scales a smaller run linearly
        "under_2_min": for_goal < GOAL_SECONDS,
    }


def time_tortuosity(size: int, samples: int, seed: int = 0, device: str = "cpu") -> dict[str, object]:
    """TauFactor cost on generated porous structures of ``size`` x ``size`` px: per solved (percolating)
    sample, and per generated sample (non-percolating ones cost only the connectivity check)."""
    import numpy as np

    from microcnn.synth.generators import GENERATORS
    from microcnn.synth.properties import solver_device, transport

    structures = [
        GENERATORS.build("porous", shape=(size, size), rng=np.random.default_rng([seed, i])).mask
        for i in range(samples)
    ]
    transport(np.ones((16, 16), np.uint8), device=device)  # untimed: imports torch and TauFactor
    solved, total = [], 0.0
    for mask in structures:
        start = time.perf_counter()
        result = transport(mask, device=device)
        elapsed = time.perf_counter() - start
        total += elapsed
        if result["percolates"]:
            solved.append(elapsed)
    per_solved = float(np.mean(solved)) if solved else float("nan")
    per_sample = total / samples
    return {
        "size": size,
        "samples": samples,
        "percolating": len(solved),
        "device": solver_device(device),
        "s_per_solved_sample": round(per_solved, 3),
        "s_per_generated_sample": round(per_sample, 3),
        "minutes_for_1000_generated": round(per_sample * 1000 / 60, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=GOAL_N)
    parser.add_argument("--tau-samples", type=int, default=10)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"dataset_256": time_dataset(args.n)}
    figures["taufactor"] = [time_tortuosity(s, args.tau_samples, device=args.device) for s in (128, 256)]
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
