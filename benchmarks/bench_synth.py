"""Benchmark of microcnn.synth: 1,000 labelled 256 x 256 samples (no TauFactor); TauFactor cost per sample.

Run: ``python -m benchmarks.bench_synth [--n 1000] [--tau-samples 10]``. Prints a JSON dict of figures.
Targets (issue 3): 1,000 samples with masks and classes in < 120 s on the 2-core CPU; TauFactor labels
for 1,000 samples: report the time (cache them if > ~10 min).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def time_dataset(n: int, size: int = 256, seed: int = 0) -> dict[str, float]:
    """Generate and write ``n`` classification samples with masks (segmentation layout) to a temp folder."""
    from microcnn.synth import make_dataset
    from microcnn.synth.writer import write_folder

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        samples = make_dataset("segmentation", n=n, size=size, seed=seed)
        write_folder(samples, Path(tmp) / "seg", task="segmentation")
        total = time.perf_counter() - start
    return {"n": n, "size": size, "seconds": round(total, 2), "ms_per_sample": round(1000 * total / n, 2)}


def time_tortuosity(size: int, samples: int, seed: int = 0) -> dict[str, float]:
    """Seconds per TauFactor solve on generated porous structures of ``size`` x ``size`` px."""
    import numpy as np

    from microcnn.synth.generators import GENERATORS
    from microcnn.synth.properties import solver_device, transport

    structures = [
        GENERATORS.build("porous", shape=(size, size), rng=np.random.default_rng([seed, i])).mask
        for i in range(samples)
    ]
    start = time.perf_counter()
    results = [transport(m) for m in structures]
    per = (time.perf_counter() - start) / samples
    return {
        "size": size,
        "samples": samples,
        "device": solver_device(),
        "s_per_sample": round(per, 3),
        "minutes_for_1000": round(per * 1000 / 60, 1),
        "percolating": sum(int(r["percolates"]) for r in results),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--tau-samples", type=int, default=10)
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"dataset_256": time_dataset(args.n)}
    figures["dataset_256"]["under_2_min"] = figures["dataset_256"]["seconds"] < 120
    figures["taufactor"] = [time_tortuosity(s, args.tau_samples) for s in (128, 256)]
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
