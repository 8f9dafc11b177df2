"""The CLI end to end: SIGKILL + --resume gives the uninterrupted weights bit for bit, 2-process DDP (gloo,
float64, uneven rank shares) matches one process (subprocesses); train, evaluate and cv print their tables
(in-process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from microcnn.engine.checkpoint import load_resume_state

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def _config(tmp_path: Path, **train) -> Path:
    cfg = {
        "name": "cli",
        "task": "classification",
        "seed": 3,
        "data": {
            "source": "synthetic",
            "synthetic": {"n": 24, "size": 32, "seed": 1},
            "cache_dir": str(tmp_path / "cache"),
            "val_fraction": 0.25,
        },
        "model": {"name": "lenet5"},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomRotate90", "p": 0.5}],
        "optim": {"name": "adamw", "lr": 0.01},
        "schedule": {"name": "cosine", "warmup_epochs": 1},
        "train": {"epochs": 3, "batch_size": 2, "deterministic": True, **train},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _train(
    config: Path, run_dir: Path, *extra: str, launcher: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    cmd = [*launcher] if launcher else [sys.executable]
    cmd += ["-m", "microcnn", "train", str(config), "--run-dir", str(run_dir), *extra]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180, check=False)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_resume_state(run_dir / "last.pt")["model"]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    config = _config(tmp_path, checkpoint_every_steps=1, epochs=2)
    done = _train(config, tmp_path / "full")
    assert done.returncode == 0, done.stderr
    total = load_resume_state(tmp_path / "full" / "last.pt")["trainer"]["step"]

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microcnn", "train", str(config), "--run-dir", str(run)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    cut = load_resume_state(run / "last.pt")["trainer"]
    assert 0 < cut["step"] < total, "the kill should land mid-run"

    resumed = _train(config, run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    full, back = _weights(tmp_path / "full"), _weights(run)
    assert all(torch.equal(full[k], back[k]) for k in full)


def test_ddp_ranks_stop_together_at_the_time_budget(tmp_path):
    """Each rank's clock differs a little; they decide on their mean, so both stop after the same epoch
    (a rank that started another epoch alone would hang in its all-reduce until the timeout)."""
    config = _config(tmp_path, epochs=50, max_minutes=0.004, device="cpu")  # 0.24 s: passed after epoch 1
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    two = _train(config, tmp_path / "two", launcher=launcher)
    assert two.returncode == 0, two.stderr
    assert "(max_minutes)" in two.stdout
    rows = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert 2 <= len(rows) < 51  # header + the epochs that ran


def test_ddp_two_processes_match_one(tmp_path):
    # float64 and a model without dropout or batch norm; a global batch of 3 is split 2 + 1 between the
    # ranks, so only a loss weighted by each rank's share (not DDP's plain average) matches one process
    config = _config(tmp_path, dtype="float64", batch_size=3, epochs=1, max_steps=3, device="cpu")
    one = _train(config, tmp_path / "one")
    assert one.returncode == 0, one.stderr
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    two = _train(config, tmp_path / "two", launcher=launcher)
    assert two.returncode == 0, two.stderr
    assert "distributed: world size 2, backend gloo" in two.stderr
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert all(v.dtype == torch.float64 for v in a.values())
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-12)
    # validation metrics were reduced over both ranks' shares of the validation set
    rows_one = (tmp_path / "one" / "metrics.csv").read_text().splitlines()
    rows_two = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert rows_one[0] == rows_two[0]
    vals_one = [float(v) for v in rows_one[1].split(",")]
    vals_two = [float(v) for v in rows_two[1].split(",")]
    assert vals_one == pytest.approx(vals_two, rel=1e-9)


def test_train_summary_existing_run_resume_errors_evaluate_and_cv(tmp_path, capsys):
    from microcnn.cli import main

    config = _config(tmp_path, epochs=3)
    run = tmp_path / "r"
    assert main(["train", str(config), "--run-dir", str(run), "--set", "train.epochs=1"]) == 0
    out = capsys.readouterr().out
    # progress (one line per epoch, "epoch 1/1": the --set was respected) and the final summary table
    assert "epoch 1/1  train_loss " in out and "val_accuracy " in out
    assert f"best epoch 1 (epochs) -> {run}" in out and "\nval_loss " in out
    assert len((run / "metrics.csv").read_text().splitlines()) == 2  # header + 1 epoch
    assert main(["train", str(config), "--run-dir", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", str(config), "--run-dir", str(tmp_path / "new"), "--resume"]) == 2
    assert "Nothing to resume" in capsys.readouterr().err

    data = next((tmp_path / "cache").iterdir())
    assert main(["evaluate", str(run / "model.safetensors"), str(data), "--json"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["n"] == 24 and sum(map(sum, out["confusion_matrix"])) == 24
    assert main(["evaluate", str(run / "model.safetensors"), str(data), "--json", "--tta"]) == 0
    from microcnn.engine.api import evaluate  # --tta is passed on: the same figures as the API's

    tta = evaluate(run / "model.safetensors", data, device="cpu", tta=True)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed.pop("confusion_matrix") == tta.pop("confusion_matrix") and printed == pytest.approx(tta)

    short = ["--set", "train.epochs=1", "--set", "train.max_steps=2"]
    assert main(["cv", str(config), "--folds", "2", "--run-dir", str(tmp_path / "cv"), *short]) == 0
    printed = capsys.readouterr().out
    assert "2-fold cross-validation" in printed and "val_accuracy" in printed and "±" in printed
    assert "ddof = 1" in printed
    summary = (tmp_path / "cv" / "cv_summary.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in summary[1:]] == ["0", "1", "mean", "std (ddof=1)"]
