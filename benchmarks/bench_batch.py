"""Benchmark of HDF5 batch prediction: peak memory must not grow with the archive, and throughput.

Runs ``predict_archive`` on archives of 200 and 2,000 random images, each in a fresh process, and reports
the peak resident memory (``VmHWM``) and images/s. The acceptance bound: the 2,000-image peak is
within 10 % of the 200-image peak. The model is a toy U-Net (the cost around the forward shows) or
``--model`` weights (the harness uses the default phase segmenter on 256² images, a job as users run it).

Usage: ``python benchmarks/bench_batch.py [--sizes 200 2000] [--side 64] [--model M.safetensors]``
(figures of the harness run are in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child's peak RSS is its own VmHWM: Linux keeps ru_maxrss across fork + exec, so ru_maxrss of a child
# would report the (larger) parent's resident size at the fork and hide the job's own peak.
_CHILD = """
import json, sys, time
from microcnn.inference.batch import predict_archive
t = time.perf_counter()
s = predict_archive([sys.argv[1]], sys.argv[2], sys.argv[3], chunk=32, predictor_kwargs={"device": "cpu"})
dt = time.perf_counter() - t
peak = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))) / 1024
print(json.dumps({"n": s.n_items, "seconds": dt, "peak_rss_mb": peak}))
"""


def make_inputs(
    folder: Path, sizes: list[int], side: int, *, model_path: Path | None = None
) -> tuple[Path, dict[int, Path]]:
    """The weights and one archive of ``n`` random ``side``² images per size in ``sizes``.

    ``model_path``: a segmentation model to run (e.g. data/models/phase_segmenter.safetensors); None = a
    toy U-Net of depth 2 and 8 base channels (so small that the work around the forward dominates).
    """
    import numpy as np
    import torch

    from microcnn.engine.checkpoint import load_weights, save_weights
    from microcnn.io.hdf5 import ArchiveWriter
    from microcnn.models import build_model

    if model_path is None:
        spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 2, "base_channels": 8}
        torch.manual_seed(0)
        meta = {"model": spec, "task": "segmentation", "class_names": ["a", "b"]}
        model_path = save_weights(build_model(spec).eval(), folder / "m.safetensors", meta)
    class_names = load_weights(model_path)[1]["class_names"]
    rng = np.random.default_rng(0)
    archives = {}
    for n in sizes:
        path = folder / f"in{n}.h5"
        with ArchiveWriter(path, task="segmentation", image_shape=(side, side), class_names=class_names) as w:
            for _ in range(n):
                w.append(rng.random((side, side)).astype("float32"), mask=np.zeros((side, side), "uint8"))
        archives[n] = path
    return Path(model_path), archives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--side", type=int, default=64, help="image side in px")
    parser.add_argument("--model", type=Path, default=None, help="segmentation weights (default: toy U-Net)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        model, archives = make_inputs(folder, args.sizes, args.side, model_path=args.model)
        print(f"inputs made in {time.perf_counter() - t0:.1f} s")
        results = {}
        for n, path in archives.items():
            cmd = [sys.executable, "-c", _CHILD, str(model), str(path), str(folder / f"out{n}.h5")]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[n] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[n]
            print(f"{n:6d} images: {r['seconds']:.1f} s, {n / r['seconds']:.1f} img/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip
    small, large = min(results), max(results)
    ratio = results[large]["peak_rss_mb"] / results[small]["peak_rss_mb"]
    print(f"peak memory ratio {large} vs {small} images: {ratio:.3f} (bound 1.10)")
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
