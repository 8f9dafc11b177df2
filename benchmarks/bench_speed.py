"""Speed benchmarks: matmul peak, model forward/training GFLOP/s as % of that peak, images/s, the peer.

Every figure is a ratio measured in the same process and the same run, so readers can compare them even
when the machine is loaded (the load average is recorded next to them by ``benchmarks.run``).

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch's own counter of matmul/conv FLOPs,
forward and backward), not from hand-written formulas. One multiply-add counts as 2 FLOPs, the same
convention as the ``2 n^3`` of the matrix-multiply reference.

Usage: ``python -m benchmarks.bench_speed [--side 256] [--batch 8] [--seconds 3]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Our three default architectures and the peer, at equal input (1 channel). The regressor is the default
# ``property_regressor`` backbone (configs/models/property_regressor.yaml).
REGRESSOR_SPEC = {
    "name": "regressor",
    "backbone": "vgg11",
    "backbone_kwargs": {"widths": [16, 32, 64, 64, 64], "norm": "batch"},
    "hidden": [64],
    "heteroscedastic": True,
    "num_targets": 3,
}


def smp_unet(*, in_channels: int = 1, num_classes: int = 3) -> nn.Module:
    """The peer: segmentation_models_pytorch ``Unet("resnet18", encoder_weights=None)`` (random init)."""
    import segmentation_models_pytorch as smp

    return smp.Unet(
        encoder_name="resnet18", encoder_weights=None, in_channels=in_channels, classes=num_classes
    )


def model_builders() -> dict[str, Callable[[], nn.Module]]:
    """Name -> builder of each benchmarked model (1 input channel)."""
    from microcnn.models import build_model

    return {
        "unet (ours, default)": lambda: build_model("unet", in_channels=1, num_classes=3),
        "resnet_unet resnet18 (ours)": lambda: build_model(
            "resnet_unet", encoder="resnet18", in_channels=1, num_classes=3
        ),
        "resnet18 classifier (ours)": lambda: build_model("resnet18", in_channels=1, num_classes=4),
        "regressor (ours, default)": lambda: build_model({**REGRESSOR_SPEC, "in_channels": 1}),
        "smp Unet resnet18 (peer)": smp_unet,
    }


def _fastest_round(fn: Callable[[], Any], seconds: float) -> float:
    """Mean seconds per call over one round: at least one call and ``seconds`` s."""
    calls, start = 0, time.perf_counter()
    while calls < 1 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def interleaved(
    fns: dict[Any, Callable[[], Any]], *, seconds: float, rounds: int = 5, warmup: int = 1
) -> dict[Any, float]:
    """Seconds per call of each of ``fns``: the fastest of ``rounds`` rounds (each the mean over its calls,
    at least one, and ``seconds / rounds`` s), the rounds taken in turn (round 1 of every fn, then round 2,
    ...) after ``warmup`` calls each.

    In turn, so that every fn is sampled across the whole measurement and a slow spell of a shared machine
    does not fall on one of them alone; the fastest round, as :mod:`timeit` advises: the slower rounds
    measure the other processes, not the fn.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for key, fn in fns.items():
            best[key] = min(best[key], _fastest_round(fn, seconds / rounds))
    return best


def timed(fn: Callable[[], Any], *, seconds: float, warmup: int = 1, rounds: int = 5) -> float:
    """Seconds per call of ``fn`` alone: the fastest of ``rounds`` rounds (see :func:`interleaved`)."""
    return interleaved({"fn": fn}, seconds=seconds, rounds=rounds, warmup=warmup)["fn"]


def matmul_fns(n: int = 1024) -> dict[str, tuple[Callable[[], Any], float]]:
    """The two fp32 GEMMs of :func:`matmul_rates`: name -> (call, FLOPs per call)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    x = torch.rand(1, n, 64, 64).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(n, n, 1, bias=False).eval().to(memory_format=torch.channels_last)

    def onednn() -> None:
        with torch.inference_mode():
            conv(x)

    return {"mm": (lambda: torch.mm(a, b), 2.0 * n**3), "onednn": (onednn, 2.0 * 64 * 64 * n**2)}


def matmul_rates(*, n: int = 1024, seconds: float = 2.0) -> dict[str, float]:
    """fp32 matrix-multiply rates (GFLOP/s) by PyTorch's two CPU GEMM back-ends.

    "mm": ``torch.mm`` of (n, n) @ (n, n), 2 n^3 FLOPs (BLAS). "onednn": the same product size as a 1x1
    convolution (n -> n channels over 64x64 pixels, channels_last), 2 * 4096 * n^2 FLOPs, which oneDNN runs
    with its own GEMM kernels. On some CPUs (measured: AMD EPYC with AVX-512) the BLAS path reaches well
    under half of what oneDNN does, so the peak is the better of the two.
    """
    return {k: flops / timed(fn, seconds=seconds) / 1e9 for k, (fn, flops) in matmul_fns(n).items()}


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs executed by ``fn`` (convolutions and matmuls, forward and backward) by PyTorch's counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def inference_copy(model: nn.Module) -> nn.Module:
    """The model as the Predictor runs it: eval mode, batch norm folded into the convolutions (a copy)."""
    from microcnn.models.fuse import fold_batch_norm

    return fold_batch_norm(model)


def _step_fns(
    model: nn.Module, x: torch.Tensor, *, channels_last: bool = False
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inference = inference_copy(model)
    if channels_last:
        inference = inference.to(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode():
            inference(x)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        model(x).float().square().mean().backward()  # a cheap loss: its cost is negligible next to the net
        optimizer.step()

    return forward, train_step


def fold_speedup(
    *, side: int = 256, batch: int = 8, rounds: int = 6, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """Forward time of each model with and without batch norm folded (channels_last, inference_mode),
    measured in alternation, ``rounds`` calls each: both see the same load of a shared CPU, so their ratio
    holds where the absolute rates drift. Per model: the fastest call of each and speedup = plain / folded.
    """
    rows = []
    for name, build in model_builders().items():
        if names is not None and name not in names:
            continue
        torch.manual_seed(0)
        plain = build().eval().to(memory_format=torch.channels_last)
        folded = inference_copy(plain).to(memory_format=torch.channels_last)
        x = torch.rand(batch, 1, side, side).contiguous(memory_format=torch.channels_last)
        times: dict[str, list[float]] = {"plain": [], "folded": []}
        with torch.inference_mode():
            plain(x), folded(x)  # warm-up
            for _ in range(rounds):
                for key, model in (("plain", plain), ("folded", folded)):
                    t0 = time.perf_counter()
                    model(x)
                    times[key].append(time.perf_counter() - t0)
        best = {k: min(v) for k, v in times.items()}
        rows.append({"model": name, "plain_s": best["plain"], "folded_s": best["folded"],
                     "speedup": best["plain"] / best["folded"]})  # fmt: skip
    return rows


def speed_section(
    *,
    side: int = 256,
    batch: int = 8,
    seconds: float = 3.0,
    names: list[str] | None = None,
    rounds: int = 5,
    builders: dict[str, Callable[[], nn.Module]] | None = None,
) -> dict[str, Any]:
    """Every (model, memory format) forward and training step and the two matmul peaks, timed in turn
    (:func:`interleaved`): ``rounds`` rounds of ``seconds / rounds`` s each.

    Returns "matmul_rates" (GFLOP/s per GEMM back-end), "matmul_peak_gflops" (the better one: the
    reference), "timing" (this method, in words) and "models": one row per (model, memory format) on
    (batch, 1, side, side) float32 input with images/s, GFLOP/s, GFLOP per image and % of that peak for
    "forward" (the Predictor's inference path) and "train" (forward, backward and an AdamW step). All of
    them measured over the same minutes, the ratios hold where a shared machine's speed drifts.
    ``builders``: name -> model (default :func:`model_builders`), ``names`` a subset of them.
    """
    fns: dict[Any, Callable[[], Any]] = {}
    flops: dict[Any, float] = {}
    for name, build in (builders or model_builders()).items():
        if names is not None and name not in names:
            continue
        for channels_last in (False, True):
            torch.manual_seed(0)
            model, x = build(), torch.rand(batch, 1, side, side)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            for phase, fn in zip(("forward", "train"), _step_fns(model, x, channels_last=channels_last)):
                fns[name, channels_last, phase], flops[name, channels_last, phase] = fn, count_flops(fn)
    for key, (fn, n) in matmul_fns().items():
        fns[key], flops[key] = fn, n
    per_call = interleaved(fns, seconds=seconds, rounds=rounds)
    rates = {k: flops[k] / per_call[k] / 1e9 for k in ("mm", "onednn")}
    peak = max(rates.values())
    rows = []
    for name, channels_last, phase in (k for k in fns if isinstance(k, tuple)):
        if phase == "forward":
            rows.append({"model": name, "channels_last": channels_last})
        row = rows[-1]
        t, n = per_call[name, channels_last, phase], flops[name, channels_last, phase]
        row[f"{phase}_img_s"] = batch / t
        row[f"{phase}_gflops"] = n / t / 1e9
        row[f"{phase}_gflop_per_img"] = n / batch / 1e9
        row[f"{phase}_pct_peak"] = 100 * row[f"{phase}_gflops"] / peak
    timing = (
        f"the fastest of {rounds} rounds of {seconds / rounds:g} s (at least one call each), the rounds of "
        "all rows and of the peak taken in turn"
    )
    return {"matmul_rates": rates, "matmul_peak_gflops": peak, "timing": timing, "models": rows}


def peer_ratios(
    rows: list[dict[str, Any]], *, peer: str = "smp Unet resnet18 (peer)"
) -> list[dict[str, Any]]:
    """ours/theirs images/s for each segmentation model of ours at the same memory format."""
    theirs = {r["channels_last"]: r for r in rows if r["model"] == peer}
    out = []
    for r in rows:
        if "unet" not in r["model"] or r["model"] == peer or r["channels_last"] not in theirs:
            continue
        t = theirs[r["channels_last"]]
        out.append(
            {
                "model": r["model"],
                "channels_last": r["channels_last"],
                "forward_ratio": r["forward_img_s"] / t["forward_img_s"],
                "train_ratio": r["train_img_s"] / t["train_img_s"],
            }
        )
    return out


def _pure_forward_img_s(model_path: Path, archive: Path, *, batch: int, seconds: float) -> float:
    """images/s of the bare model forward (inference_mode, :func:`inference_copy`) on the archive's images,
    ``batch`` at a time, in the memory layout the Predictor uses by default (channels_last)."""
    import h5py
    import numpy as np

    from microcnn.engine.checkpoint import load_model

    model, _ = load_model(model_path, device="cpu")
    model = inference_copy(model).to(memory_format=torch.channels_last)
    with h5py.File(archive, "r") as f:
        raw = f["images"][:batch]
    scale = float(np.iinfo(raw.dtype).max) if np.issubdtype(raw.dtype, np.integer) else 1.0
    images = torch.from_numpy(raw.astype("float32") / scale)
    x = images.reshape(len(images), 1, *images.shape[-2:]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        per_call = timed(lambda: model(x), seconds=seconds)
    return len(x) / per_call


# Appended to bench_batch's child: the pure forward of the same model on the same archive, in the same
# process right after the job, so both rates see the same machine load.
_FORWARD_AFTER = """
from pathlib import Path
from benchmarks.bench_speed import _pure_forward_img_s
kw = {"seconds": float(sys.argv[4])}
rates = {b: _pure_forward_img_s(Path(sys.argv[1]), Path(sys.argv[2]), batch=b, **kw)
         for b in sorted({1, int(sys.argv[5]), int(sys.argv[6])})}
print(json.dumps({"forward_img_s_batch1": rates[1], "forward_img_s_batched": rates[int(sys.argv[5])],
                  "forward_img_s_job": rates[int(sys.argv[6])]}))
"""


def job_batch(side: int, chunk: int) -> int:
    """Images per forward pass of a CPU batch job on ``side``² images in chunks of ``chunk`` (the Predictor's
    default pixel budget per pass, :data:`microcnn.inference.predictor.CPU_BATCH_PIXELS`)."""
    from microcnn.inference.predictor import CPU_BATCH_PIXELS, images_per_pass

    return min(chunk, images_per_pass(CPU_BATCH_PIXELS, side, side))


def forward_by_batch(
    model_path: Path,
    *,
    sides: tuple[int, ...] = (64, 128, 256, 512),
    batches: tuple[int, ...] = (1, 2, 4, 8, 16, 32),
    seconds: float = 2.0,
    max_pixels: int = 2**21,
) -> dict[str, Any]:
    """Bare forward images/s of a model (as the Predictor runs it: folded batch norm, channels_last) by
    batch size, per image side; batches above ``max_pixels`` (the GPU budget, 2 x 1024²) are not run. The
    batches of one side are timed in alternation (:func:`interleaved`), so they see the same load. What
    :data:`microcnn.inference.predictor.CPU_BATCH_PIXELS` was chosen from."""
    from microcnn.engine.checkpoint import load_model
    from microcnn.inference.predictor import CPU_BATCH_PIXELS

    model, _ = load_model(model_path, device="cpu")
    model = inference_copy(model).to(memory_format=torch.channels_last)
    rows = []
    for side in sides:
        fns = {}
        for b in (b for b in batches if b * side * side <= max_pixels):
            x = torch.rand(b, 1, side, side).contiguous(memory_format=torch.channels_last)

            def forward(x: torch.Tensor = x) -> None:
                with torch.inference_mode():
                    model(x)

            fns[b] = forward
        per_call = interleaved(fns, seconds=seconds, rounds=3)
        rows.append({"side": side, "img_s": {str(b): b / t for b, t in per_call.items()}})
    return {"model": Path(model_path).stem, "rows": rows, "cpu_batch_pixels": CPU_BATCH_PIXELS}


def steady_state(runs: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """(images/s, fixed seconds per job) from jobs of different sizes: t = startup + images / rate.

    The rate is the extra images of the largest job over its extra seconds, so the fixed cost of a job (lazy
    imports, loading the model, hashing the input) cancels. (None, None) for fewer than two sizes, and when
    the largest job was not slower than the smallest (the fixed cost varied by more than the extra images
    took: no rate can be read off).
    """
    if len({r["images"] for r in runs}) < 2:
        return None, None
    small, large = min(runs, key=lambda r: r["images"]), max(runs, key=lambda r: r["images"])
    t_small, t_large = small["images"] / small["img_s"], large["images"] / large["img_s"]
    if t_large <= t_small:
        return None, None
    rate = (large["images"] - small["images"]) / (t_large - t_small)
    return rate, t_small - small["images"] / rate


def bench_batch_h5(
    *,
    sizes: tuple[int, ...] = (200, 2000),
    side: int = 64,
    seconds: float = 3.0,
    chunk: int = 32,
    model_path: Path | None = None,
    repeats: int = 1,
) -> dict[str, Any]:
    """HDF5 batch prediction vs the pure forward of the same model on the same images.

    Each archive runs in a fresh process (``benchmarks.bench_batch``'s inputs and child, which reports the
    seconds and peak RSS of ``predict_archive``); the same process then times the bare model forward on the
    archive's images one at a time, as many at a time as the job's batches (:func:`job_batch`) and
    ``chunk`` at a time. Returns per size: images/s, peak RSS (MB) and the forward rates; for the largest
    archive the ratios archive / forward (the goal's: steady state / the fastest forward); and the peak-RSS
    ratio of the largest to the smallest archive. ``model_path``: segmentation weights to run (None: a toy
    U-Net).
    ``repeats``: jobs per archive, each in a fresh process; the fastest counts (as :func:`timed` keeps the
    fastest round) and the peak RSS is the largest of them. For short jobs, whose fixed cost of a few
    seconds (imports, model, input hash) varies from process to process by more than the images take.
    """
    import subprocess
    import sys
    import tempfile

    from benchmarks import bench_batch

    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, archives = bench_batch.make_inputs(folder, list(sizes), side, model_path=model_path)
        runs = {}
        for n, path in archives.items():
            tries = []
            for k in range(repeats):  # a fresh output each time: an existing one would be resumed (no work)
                code = bench_batch._CHILD + _FORWARD_AFTER
                outfile = str(folder / f"o{n}-{k}.h5")
                cmd = [sys.executable, "-c", code, str(model), str(path), outfile, str(seconds), str(chunk),
                       str(job_batch(side, chunk))]  # fmt: skip
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=repo)
                tries.append([json.loads(line) for line in out.stdout.strip().splitlines()[-2:]])
            job, forward = min(tries, key=lambda t: t[0]["seconds"])
            peak = max(t[0]["peak_rss_mb"] for t in tries)
            runs[n] = {"images": n, "img_s": n / job["seconds"], "peak_rss_mb": peak, **forward}
    largest, smallest = runs[max(runs)], runs[min(runs)]
    steady, startup = steady_state(list(runs.values()))
    return {
        "side": side,
        "model": "toy U-Net (depth 2, 8 channels)" if model_path is None else Path(model_path).stem,
        "runs": list(runs.values()),
        "steady_img_s": steady,
        "startup_s": startup,
        "steady_ratio_vs_batched": None if steady is None else steady / largest["forward_img_s_batched"],
        "job_batch": job_batch(side, chunk),
        "chunk": chunk,
        "forward_img_s_job": largest["forward_img_s_job"],
        "forward_img_s_batched": largest["forward_img_s_batched"],
        "forward_img_s_batch1": largest["forward_img_s_batch1"],
        "ratio_vs_batched": largest["img_s"] / largest["forward_img_s_batched"],
        "ratio_vs_batch1": largest["img_s"] / largest["forward_img_s_batch1"],
        "peak_rss_ratio": largest["peak_rss_mb"] / smallest["peak_rss_mb"],
    }


def bench_gpu(*, side: int = 256, batch: int = 8, seconds: float = 3.0) -> dict[str, Any]:
    """CUDA only: bf16 autocast inference and training images/s of our U-Net and the peer.

    Returns {"skipped": "no GPU in this run"} without CUDA.
    """
    if not torch.cuda.is_available():
        return {"skipped": "no GPU in this run"}
    dev = torch.device("cuda")
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(dev), "models": []}
    for name in ("unet (ours, default)", "resnet_unet resnet18 (ours)", "smp Unet resnet18 (peer)"):
        model = model_builders()[name]().to(dev)
        x = torch.rand(batch, 1, side, side, device=dev)
        forward, train_step = _step_fns(model, x)
        row: dict[str, Any] = {"model": name}
        for phase, fn in (("forward", forward), ("train", train_step)):

            def synced(fn: Callable[[], Any] = fn) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    fn()
                torch.cuda.synchronize()

            row[f"{phase}_img_s_bf16"] = batch / timed(synced, seconds=seconds, warmup=3)
        out["models"].append(row)
    return out


def profile_kernels(
    model: nn.Module, *, side: int = 256, batch: int = 8, channels_last: bool = True, top: int = 6
) -> dict[str, dict[str, Any]]:
    """Where the time of the forward and of the training step goes, and how fast the convolutions run.

    The same calls as :func:`speed_section` (the inference path; forward + backward + AdamW), two of
    each under torch.profiler, with FLOPs from FlopCounterMode per operator. Returns, per phase
    ("forward", "train"): ``seconds`` (per call), ``conv_pct`` and ``conv_gflop_s`` (the
    convolutions of the forward: their share of the call and their FLOP rate) and, for "train",
    ``conv_backward_pct``, ``conv_backward_gflop_s`` and ``optimizer_pct``. What remains is
    memory-bound work: batch norm, activations, pooling, concatenation, the loss. "forward" also holds
    ``top_ops``: the ``top`` operators by self CPU time, each with its share (%) and calls per forward.
    """
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, 1, side, side)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward, train_step = _step_fns(model, x, channels_last=channels_last)
    out: dict[str, dict[str, Any]] = {}
    for phase, fn in (("forward", forward), ("train", train_step)):
        fn()  # warm-up: kernel selection, optimizer state
        with FlopCounterMode(display=False) as counter:
            fn()
        calls = 2  # profiled calls, summed: one call alone is noisy on a shared CPU
        flops = {str(op): calls * n for op, n in counter.get_flop_counts().get("Global", {}).items()}
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                fn()
        events = prof.key_averages()
        total_us = sum(e.self_cpu_time_total for e in events) or 1.0
        us = {e.key: e.cpu_time_total for e in events}
        row: dict[str, Any] = {"seconds": total_us / 1e6 / calls}
        for key, op, name in (
            ("conv", "aten::convolution", "aten.convolution"),
            ("conv_backward", "aten::convolution_backward", "aten.convolution_backward"),
        ):
            if phase == "train" or key == "conv":
                t = us.get(op, 0.0)
                row[f"{key}_pct"] = 100 * t / total_us
                row[f"{key}_gflop_s"] = flops.get(name, 0) / t / 1e3 if t else float("nan")
        if phase == "train":
            step = sum(t for k, t in us.items() if k.startswith("Optimizer.step"))
            row["optimizer_pct"] = 100 * step / total_us
        else:
            ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
            row["top_ops"] = [
                {"op": e.key, "pct": 100 * e.self_cpu_time_total / total_us, "calls": e.count // calls}
                for e in ranked
            ]
        out[phase] = row
    return out


def profile_batch(*, n: int = 16, side: int = 64, top: int = 8) -> list[dict[str, Any]]:
    """cProfile of a warm ``predict_archive`` on ``n`` images: the ``top`` functions by cumulative time."""
    import cProfile
    import pstats
    import tempfile

    from benchmarks import bench_batch
    from microcnn.inference.batch import predict_archive

    with tempfile.TemporaryDirectory() as tmp:
        model, archives = bench_batch.make_inputs(Path(tmp), [2, n], side)
        # A first job pays the one-off imports and kernel set-up; the profiled second one is steady state.
        predict_archive([str(model)], archives[2], Path(tmp) / "warm.h5", predictor_kwargs={"device": "cpu"})
        prof = cProfile.Profile()
        prof.runcall(
            predict_archive,
            [str(model)],
            archives[n],
            Path(tmp) / "out.h5",
            chunk=32,
            predictor_kwargs={"device": "cpu"},
        )
    stats = pstats.Stats(prof)
    total = max(v[3] for v in stats.stats.values())  # the outermost call's cumulative time
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)
    out = []
    for (file, line, func), (_, _, _, cum, _) in rows:
        if "microcnn" in file or "torch/nn/modules/module.py" in file or "skimage" in file or "h5py" in file:
            out.append({"function": f"{Path(file).name}:{line} {func}", "pct": 100 * cum / total})
        if len(out) == top:
            break
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", type=int, default=256, help="input side in px")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    args = parser.parse_args(argv)
    result = speed_section(side=args.side, batch=args.batch, seconds=args.seconds)
    result["peer_ratios"] = peer_ratios(result["models"])
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
