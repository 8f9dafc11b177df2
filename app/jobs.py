"""Training jobs of the app: start ``microcnn train`` in a background process, find it again, stop it.

A job is a run folder ``<project>/runs/<name>/``. Its state lives in files there, never only in a browser
session, so a page reload (or a restarted server) finds it again:

=================  ==========================================================================
file               written by / meaning
=================  ==========================================================================
job_config.yaml    the page: the experiment config built from the form (``microcnn.config``)
job.pid            start(): process id of the job's process group leader
job.json           start() / stop(): ``state`` ("running" | "stopped"), pid, start time, epochs
train.log          the training process: stdout + stderr (tqdm lines, errors)
exit_code          the job's shell after ``microcnn train`` returns: its exit status
metrics.csv        the trainer, one row per epoch (read for live curves)
model.safetensors  the trainer: best weights + card metadata (then listed on the Models page); the
                   Models page may rename it (any one ``*.safetensors`` in the folder is the model)
=================  ==========================================================================

The process is ``/bin/sh -c '"$0" -m microcnn train "$1" --run-dir "$2"; echo $? > "$3"'`` started with
``start_new_session=True`` (its own process group, so it outlives the page and a stop reaches the
trainer too). Paths travel as positional arguments of the shell, never pasted into its script.
Displayed states: running, finished, failed, stopped, interrupted (the process vanished without an exit
status: killed from outside or the machine restarted).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microcnn.errors import ConfigError

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
JOB_CONFIG, PID_FILE, JOB_FILE = "job_config.yaml", "job.pid", "job.json"
LOG_FILE, EXIT_FILE, METRICS, MODEL = "train.log", "exit_code", "metrics.csv", "model.safetensors"
STATES = ("running", "finished", "failed", "stopped", "interrupted")
_SCRIPT = '"$0" -m microcnn train "$1" --run-dir "$2"; echo $? > "$3"'


@dataclass(frozen=True)
class Job:
    """What the run folder says about one job. ``epochs_done`` counts rows of metrics.csv."""

    name: str
    run_dir: Path
    state: str
    pid: int | None
    started_at: str
    epochs_done: int
    epochs_total: int
    exit_code: int | None = None
    model_file: str | None = None  # the weights file in the run folder (model.safetensors, or renamed)

    @property
    def running(self) -> bool:
        return self.state == "running"


def runs_dir(project: Path) -> Path:
    return Path(project).resolve() / "runs"


def check_run_name(name: str) -> str:
    """A run name is a plain folder name (letters, digits, '_' and '-'; up to 64); else ConfigError."""
    text = str(name).strip()
    if not RUN_NAME_RE.match(text):
        raise ConfigError(
            f"Run name {name!r} must be letters, digits, '_' or '-' (no spaces, dots or folders), up to 64 "
            "characters; e.g. 'steel_unet_1'."
        )
    return text


def new_run_dir(project: Path, name: str) -> Path:
    """``runs/<name>/`` for a new job: created if missing; refused if it already holds a job or a run."""
    run_dir = runs_dir(project) / check_run_name(name)
    if (run_dir / JOB_FILE).exists() or (run_dir / "last.pt").exists():
        raise ConfigError(f"A run named '{name}' already exists in runs/; choose another name.")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def start(project: Path, config: dict[str, Any], *, name: str) -> Job:
    """Validate ``config`` (the mapping of an experiment YAML), write it and start training in the background.

    The run goes to ``<project>/runs/<name>/``; relative paths in the config resolve against ``project``
    (the process runs there). Returns the job's state right after the start ("running").

    Example:
        >>> cfg = {"task": "classification", "model": {"name": "lenet5"}}
        >>> start(Path("."), cfg, name="t1").state   # doctest: +SKIP
        'running'
    """
    from microcnn.config import load_config, save_config

    project = Path(project).resolve()
    cfg = load_config({**config, "name": check_run_name(name)})
    run_dir = new_run_dir(project, name)
    cfg_path = save_config(cfg, run_dir / JOB_CONFIG)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, str(cfg_path), str(run_dir), str(run_dir / EXIT_FILE)]
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _SCRIPT, *args],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    (run_dir / PID_FILE).write_text(str(proc.pid), encoding="utf-8")
    _write_job(
        run_dir,
        {
            "state": "running",
            "pid": proc.pid,
            "start_ticks": _start_ticks(proc.pid),
            "started_at": dt.datetime.now().isoformat(timespec="seconds"),
            "epochs": cfg.train.epochs,
            "task": cfg.task,
            "model": cfg.model.get("name"),
        },
    )
    return status(run_dir)


def _write_job(run_dir: Path, info: dict[str, Any]) -> None:
    tmp = run_dir / (JOB_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2), encoding="utf-8")
    os.replace(tmp, run_dir / JOB_FILE)


def read_job(run_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((Path(run_dir) / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (/proc/<pid>/stat field 22), None off Linux."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and ')'
    return int(fields[19])


def is_alive(pid: int | None, start_ticks: int | None = None) -> bool:
    """True while ``pid`` runs and is the process we started (not a zombie, not a reused pid)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if this server process is its parent
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all we know
    if text[text.rindex(")") + 2 :].split()[0] == "Z":
        return False
    return start_ticks is None or _start_ticks(pid) == start_ticks


def epochs_done(run_dir: Path) -> int:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return 0
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return max(0, len(lines) - 1)


def _exit_code(run_dir: Path) -> int | None:
    try:
        return int((run_dir / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def model_file(run_dir: Path) -> Path | None:
    """The run's weights: model.safetensors, else the one ``*.safetensors`` the user renamed it to."""
    run_dir = Path(run_dir)
    if (run_dir / MODEL).is_file():
        return run_dir / MODEL
    found = sorted(p for p in run_dir.glob("*.safetensors") if p.is_file() and not p.is_symlink())
    return found[0] if found else None


def status(run_dir: Path) -> Job:
    """The job's state from its files (see the module docstring)."""
    run_dir = Path(run_dir)
    info = read_job(run_dir)
    pid = info.get("pid")
    code = _exit_code(run_dir)
    weights = model_file(run_dir)
    if is_alive(pid, info.get("start_ticks")):
        state = "running"
    elif info.get("state") == "stopped":
        state = "stopped"
    elif code is None:
        state = "interrupted"
    else:
        state = "finished" if code == 0 and weights is not None else "failed"
    return Job(
        name=run_dir.name,
        run_dir=run_dir,
        state=state,
        pid=pid,
        started_at=str(info.get("started_at", "")),
        epochs_done=epochs_done(run_dir),
        epochs_total=int(info.get("epochs", 0) or 0),
        exit_code=code,
        model_file=weights.name if weights is not None else None,
    )


def stop(run_dir: Path, *, grace_s: float = 10.0) -> Job:
    """SIGTERM the job's process group; SIGKILL it if it is still there after ``grace_s`` seconds."""
    run_dir = Path(run_dir)
    info = read_job(run_dir)
    pid = info.get("pid")
    if not is_alive(pid, info.get("start_ticks")):
        return status(run_dir)
    _write_job(
        run_dir, {**info, "state": "stopped", "stopped_at": dt.datetime.now().isoformat(timespec="seconds")}
    )
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while is_alive(pid, info.get("start_ticks")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_alive(pid, info.get("start_ticks")):
        _signal_group(pid, signal.SIGKILL)
    return status(run_dir)


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # start_new_session=True: the group id is the leader's pid


def list_jobs(project: Path) -> list[Job]:
    """Jobs started from the app (folders of runs/ with a job.json), newest first."""
    root = runs_dir(project)
    if not root.is_dir():
        return []
    found = [status(p) for p in root.iterdir() if p.is_dir() and (p / JOB_FILE).is_file()]
    return sorted(found, key=lambda j: (j.started_at, j.name), reverse=True)


def log_tail(run_dir: Path, *, lines: int = 15, max_bytes: int = 16_384) -> str:
    """The last ``lines`` lines of train.log; tqdm's carriage-return updates count as lines."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - max_bytes))
        text = fh.read().decode("utf-8", errors="replace")
    parts = [p.rstrip() for p in re.split(r"[\r\n]+", text) if p.strip()]
    return "\n".join(parts[-lines:])
