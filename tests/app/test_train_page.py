"""Train page: a tiny training started from the form runs in the background, finishes, and its model is
listed with its card; a page reload finds the job again; Stop ends a running job."""

from __future__ import annotations

import time
from pathlib import Path

import jobs
import model_files
import numpy as np
import pandas as pd
import yaml

from .helpers import array, chart


def wait_until_done(run_dir: Path, timeout_s: float = 150.0) -> jobs.Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = jobs.status(run_dir)
        if not job.running:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job still running after {timeout_s} s:\n{jobs.log_tail(run_dir)}")


def fill_tiny_form(at, *, name: str, epochs: int) -> None:
    at.text_input(key="train.name").input(name)
    at.selectbox(key="train.task").select("classification").run()
    at.number_input(key="train.synth_n").set_value(12)
    at.select_slider(key="train.synth_size").set_value(32)
    at.selectbox(key="train.model").select("lenet5")
    at.number_input(key="train.epochs").set_value(epochs)
    at.number_input(key="train.batch").set_value(4)
    at.selectbox(key="train.optim").select("sgd")
    at.selectbox(key="train.device").select("cpu")
    at.checkbox(key="train.aug.RandomRotate90").uncheck()
    at.checkbox(key="train.aug.GaussNoise").check().run()


def test_tiny_training_finishes_and_its_model_is_listed(project: Path, new_session) -> None:
    at = new_session("train")
    assert not at.exception
    assert any("No training jobs yet" in i.value for i in at.info)
    fill_tiny_form(at, name="tiny", epochs=1)
    at.button(key="train.start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    run_dir = project / "runs" / "tiny"
    written = yaml.safe_load((run_dir / jobs.JOB_CONFIG).read_text())
    assert written["model"]["name"] == "lenet5" and written["optim"]["name"] == "sgd"
    assert written["train"]["epochs"] == 1 and written["data"]["synthetic"]["n"] == 12
    assert [a["name"] for a in written["augment"]] == ["HorizontalFlip", "VerticalFlip", "GaussNoise"]
    assert at.session_state["train.job"] == "tiny"

    job = wait_until_done(run_dir)
    assert job.state == "finished", jobs.log_tail(run_dir)
    assert job.epochs_done == 1

    reloaded = new_session("train")  # a new browser session (page reload) finds the job from its files
    assert not reloaded.exception
    assert any("finished" in m.value for m in reloaded.markdown)
    assert any("Model saved" in s.value for s in reloaded.success)
    assert "runs/tiny/model.safetensors" in [m.name for m in model_files.list_models(project)]
    card = model_files.read_card(run_dir / "model.safetensors")
    assert card["task"] == "classification" and card["model"]["name"] == "lenet5"

    models = new_session("models")
    shown = models.dataframe[1].value
    assert dict(zip(shown["field"], shown["value"]))["task"] == "classification"


def wait_for_epochs(run_dir: Path, n: int, timeout_s: float = 150.0) -> None:
    deadline = time.monotonic() + timeout_s
    while jobs.status(run_dir).epochs_done < n:
        assert time.monotonic() < deadline and jobs.status(run_dir).running, jobs.log_tail(run_dir)
        time.sleep(0.5)


def test_a_running_job_survives_a_reload_shows_live_curves_and_stops(project: Path, new_session) -> None:
    at = new_session("train")
    fill_tiny_form(at, name="long", epochs=500)
    at.button(key="train.start").click().run()
    run_dir = project / "runs" / "long"
    assert jobs.status(run_dir).running
    wait_for_epochs(run_dir, 1)

    reloaded = new_session("train")  # a page reload: a new session that knows nothing of the job
    assert not reloaded.exception
    assert any("**long**" in m.value and "running" in m.value for m in reloaded.markdown)
    figure = chart(reloaded, "train.curves.long")  # live curves once an epoch is logged
    logged = pd.read_csv(run_dir / jobs.METRICS)  # read after the page: it may have grown since
    train_loss = next(t for t in figure["data"] if t["name"] == "train_loss")
    shown = array(train_loss["y"])
    assert len(shown) >= 1
    np.testing.assert_allclose(shown, logged["train_loss"].to_numpy()[: len(shown)])
    reloaded.button(key="train.stop").click().run()  # Stop works from the new session
    assert not reloaded.exception
    assert jobs.status(run_dir).state == "stopped"
    assert any("**long**" in m.value and "stopped" in m.value for m in reloaded.markdown)
