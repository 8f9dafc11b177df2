"""app/jobs: the job state comes from the run folder's files; stop ends the whole process group."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import jobs  # app/ helper module (tests/app/conftest.py puts app/ on sys.path)
import pytest

from microcnn.errors import ConfigError

TINY = {
    "task": "classification",
    "data": {"source": "synthetic", "synthetic": {"n": 12, "size": 32, "seed": 1}},
    "model": {"name": "lenet5"},
    "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
}


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def fake_run(tmp_path: Path, *, pid: int, state: str = "running", exit_code: str | None = None,
             model: str | None = None, epochs_rows: int = 0) -> Path:  # fmt: skip
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / jobs.JOB_FILE).write_text(json.dumps({"pid": pid, "state": state, "epochs": 5, "started_at": "t"}))
    if exit_code is not None:
        (run / jobs.EXIT_FILE).write_text(exit_code + "\n")
    if model:
        (run / model).write_bytes(b"weights")
    rows = "".join(f"{e + 1},{e},0.1,1.0,1.0\n" for e in range(epochs_rows))
    (run / jobs.METRICS).write_text("epoch,step,lr,train_loss,val_loss\n" + rows)
    return run


@pytest.mark.parametrize(
    ("state", "exit_code", "model", "expected"),
    [
        ("running", "0", jobs.MODEL, "finished"),
        ("running", "0", "steel_v2.safetensors", "finished"),  # renamed on the Models page: still the model
        ("running", "0", None, "failed"),  # exit 0 but no weights: nothing to use
        ("running", "0", "notes.txt", "failed"),
        ("running", "1", None, "failed"),
        ("running", None, None, "interrupted"),  # killed from outside: no exit status written
        ("stopped", None, None, "stopped"),
    ],
)
def test_state_of_a_finished_process_comes_from_its_files(
    tmp_path: Path, state: str, exit_code: str | None, model: str | None, expected: str
) -> None:
    run = fake_run(tmp_path, pid=dead_pid(), state=state, exit_code=exit_code, model=model, epochs_rows=3)
    job = jobs.status(run)
    assert (job.state, job.epochs_done, job.epochs_total) == (expected, 3, 5)
    assert job.model_file == (model if expected == "finished" else None)


def test_a_live_process_is_running_but_a_reused_pid_is_not(tmp_path: Path) -> None:
    ticks = jobs._start_ticks(os.getpid())
    assert jobs.is_alive(os.getpid(), ticks)
    if ticks is not None:  # Linux: the pid now belongs to another process started at another time
        assert not jobs.is_alive(os.getpid(), ticks + 1)
    assert not jobs.is_alive(dead_pid())


@pytest.mark.parametrize("name", ["", "a b", "../x", "a/b", ".hidden", "x" * 65])
def test_run_names_are_plain_folder_names(name: str) -> None:
    with pytest.raises(ConfigError):
        jobs.check_run_name(name)


def test_bad_config_is_refused_before_any_process_starts(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"optim\.name"):
        jobs.start(project, {**TINY, "optim": {"name": "adamm"}}, name="bad")
    assert not (project / "runs" / "bad").exists()


def test_stop_ends_the_process_group_and_says_stopped(project: Path) -> None:
    long = {**TINY, "train": {**TINY["train"], "epochs": 500}}
    job = jobs.start(project, long, name="long")
    assert job.state == "running" and (project / "runs" / "long" / jobs.PID_FILE).read_text() == str(job.pid)
    with pytest.raises(ConfigError, match="already exists"):
        jobs.start(project, long, name="long")
    stopped = jobs.stop(job.run_dir, grace_s=20)
    assert stopped.state == "stopped"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the trainer (child of the shell) is gone too
        try:
            os.killpg(job.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the job's process group is still alive after stop()")
    assert [j.state for j in jobs.list_jobs(project)] == ["stopped"]
