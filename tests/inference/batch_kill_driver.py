"""SIGKILL a batch job at seeded random times, resume it each time; print a JSON report (a test helper).

    python batch_kill_driver.py MODEL INPUT OUT_DIR --chunk 4 --kills 10 --seed 7

The driver imports microcnn, torch and the job's lazy imports once and runs no torch op itself; every
job is a ``fork`` of it (starting in milliseconds instead of the seconds an interpreter with torch and
torchvision needs), so ten kills fit in a fast test. First an uninterrupted baseline run measures the
job's duration D and its start-up S (until the first chunk is done); then each resumed run is killed from
outside (``os.kill(pid, SIGKILL)``) after a seeded random delay uniform in [0, S + 1.5·(D - S)/kills], so
the kills land anywhere in a run (start-up, lock, reads, forward passes, writes, flushes) while the job
cannot (on average) finish before the last one. A run that finishes
before its kill is reported, and the job starts over. The final resumed run must exit 0; the test then
compares its output with the baseline bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from microcnn.inference.batch import predict_archive  # imports torch once, before any fork


def warm_imports() -> None:
    """Import what a job imports lazily (torchvision, albumentations, h5py ...: seconds), running no op."""
    import albumentations  # noqa: F401
    import h5py  # noqa: F401

    import microcnn.data.transforms
    import microcnn.engine.checkpoint
    import microcnn.engine.device
    import microcnn.engine.distributed  # noqa: F401
    from microcnn.models.zoo import _ensure_loaded

    _ensure_loaded()


def run_job(model: str, archive: str, out: Path, chunk: int, *, mark: Path | None = None) -> int:
    """Fork a child that runs the job; return its pid. ``mark``: file for the time its first chunk is done."""
    pid = os.fork()
    if pid == 0:  # the child: run the job, exit with its code (never return into the driver)
        code = 99

        def progress(done: int, _total: int) -> None:
            if mark is not None and done > 0 and not mark.exists():
                mark.write_text(repr(time.monotonic()))

        try:
            summary = predict_archive([model], archive, out, chunk=chunk, progress=progress,
                                      predictor_kwargs={"device": "cpu"})  # fmt: skip
            code = summary.exit_code
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _done_rows(out: Path) -> int:
    import h5py

    partial = out.with_name(out.name + ".partial")
    if not partial.exists():
        return -1
    try:
        with h5py.File(partial, "r", locking=False) as f:
            return int(f["done"][()].sum())
    except OSError:  # killed while the partial file was being created
        return -1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    warm_imports()
    t0, mark = time.monotonic(), a.out_dir / "first_chunk_time"
    _, status = os.waitpid(run_job(a.model, a.input, a.out_dir / "baseline.h5", a.chunk, mark=mark), 0)
    duration = time.monotonic() - t0
    startup = float(mark.read_text()) - t0  # fork to first chunk done: start-up and one chunk
    span = startup + 1.5 * (duration - startup) / a.kills  # kills in start-up or in ~1.5 runs' share of work
    rng = np.random.default_rng(a.seed)
    out = a.out_dir / "resumed.h5"
    report = {"baseline_status": os.waitstatus_to_exitcode(status), "duration_s": duration,
              "startup_s": startup, "kills": [], "finished_early": 0}  # fmt: skip
    while len(report["kills"]) < a.kills and report["finished_early"] < 5:
        delay = float(rng.uniform(0.0, span))
        pid = run_job(a.model, a.input, out, a.chunk)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            report["kills"].append(
                {"delay_s": delay, "done_rows": _done_rows(out), "final_exists": out.exists()}
            )
        else:  # it finished before the kill: start over, so that every kill still finds work to cut
            report["finished_early"] += 1
            for p in (out, out.with_name(out.name + ".partial")):
                p.unlink(missing_ok=True)
    _, status = os.waitpid(run_job(a.model, a.input, out, a.chunk), 0)
    report["final_status"] = os.waitstatus_to_exitcode(status)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
