"""Model files: bitwise round trip, strict loading, refusal of pickles / TorchScript / damaged files,
atomic resume state (a kill during a save leaves the previous file loadable)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from microcnn.engine.checkpoint import (
    load_resume_state,
    load_state_strict,
    load_weights,
    save_resume_state,
    save_weights,
)
from microcnn.errors import ModelFileError


class Payload:
    """Unpickling this would create ``path`` (a booby-trapped checkpoint)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_weights_round_trip_bit_for_bit(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    meta = {"model": {"name": "x", "k": 3}, "class_names": ["a", "b"], "metrics": {"iou": 0.5}}
    path = save_weights(net, tmp_path / "m.safetensors", meta)
    state, back = load_weights(path)
    assert back == meta
    for key, value in net.state_dict().items():
        assert torch.equal(state[key], value) and state[key].dtype == value.dtype
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_wrong_architecture_names_keys(tmp_path):
    save_weights(nn.Sequential(nn.Linear(2, 3)), tmp_path / "m.safetensors", {})
    state, _ = load_weights(tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError) as info:
        load_state_strict(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1)), state, where="m")
    text = str(info.value)
    assert "missing keys ['1.bias', '1.weight']" in text and "0.weight: (3, 2) vs (4, 2)" in text


def test_an_extra_key_is_named_also_through_load_model(tmp_path):
    from microcnn.engine.checkpoint import load_model
    from microcnn.models import build_model

    spec = {"name": "lenet5", "in_channels": 1, "num_classes": 2, "input_size": 32}
    state = {**build_model(dict(spec)).state_dict(), "extra.weight": torch.zeros(2)}
    with pytest.raises(ModelFileError, match=r"missing keys \[\], unexpected keys \['extra.weight'\]"):
        load_state_strict(build_model(dict(spec)), state, where="m")
    path = save_weights(state, tmp_path / "m.safetensors", {"model": spec})
    with pytest.raises(ModelFileError, match=r"unexpected keys \['extra.weight'\]") as info:
        load_model(path)
    assert str(path) in str(info.value) and "LeNet" in str(info.value)


def test_non_finite_weights_are_never_saved(tmp_path):
    net = nn.Linear(2, 1)
    with torch.no_grad():
        net.bias.fill_(float("nan"))
    with pytest.raises(ModelFileError, match="'bias' holds NaN"):
        save_weights(net, tmp_path / "m.safetensors", {})
    with pytest.raises(ModelFileError, match="NaN"):
        save_resume_state({"model": net.state_dict()}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("loader", [load_weights, load_resume_state])
def test_booby_trapped_pickle_is_refused(tmp_path, loader):
    marker = tmp_path / "pwned"
    for name, save in (("a.pt", torch.save), ("b.pkl", None)):
        path = tmp_path / name
        if save is torch.save:
            torch.save({"model": {}, "x": Payload(str(marker))}, path)
        else:
            import pickle

            path.write_bytes(pickle.dumps({"model": {}, "x": Payload(str(marker))}))
        with pytest.raises(ModelFileError, match=r"unsupported|Refused|could run code"):
            loader(path)
    assert not marker.exists()


def _torchscript(path):
    torch.jit.save(torch.jit.script(nn.Linear(2, 1)), str(path))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p: p.write_bytes(os.urandom(64)), id="random"),
        pytest.param(_torchscript, id="torchscript"),
        # header length says 2**40 bytes: corrupt header
        pytest.param(lambda p: p.write_bytes(struct.pack("<Q", 2**40) + b"{}"), id="bad-header-length"),
        pytest.param(lambda p: p.write_bytes(struct.pack("<Q", 10) + b"{not json}"), id="bad-header-json"),
    ],
)
def test_damaged_or_foreign_files(tmp_path, make):
    path = tmp_path / "model.safetensors"
    make(path)
    with pytest.raises(ModelFileError, match="corrupt or unsupported model file"):
        load_weights(path)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        pytest.param(_torchscript, "a TorchScript archive", id="torchscript"),
        pytest.param(lambda p: p.write_bytes(b"hello, not a checkpoint"), "unreadable", id="junk"),
    ],
)
def test_foreign_resume_files(tmp_path, make, why):
    path = tmp_path / "last.pt"
    make(path)
    with pytest.raises(ModelFileError, match=f"corrupt or unsupported resume file \\({why}"):
        load_resume_state(path)


def test_truncated_safetensors(tmp_path):
    path = save_weights(nn.Linear(64, 64), tmp_path / "m.safetensors", {"model": {"name": "x"}})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="corrupt or unsupported model file"):
        load_weights(path)
    last = tmp_path / "last.pt"
    save_resume_state({"model": nn.Linear(64, 64).state_dict()}, last)
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="corrupt or unsupported resume file"):
        load_resume_state(last)


def test_resume_state_round_trip_with_rng(tmp_path):
    net = nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    state = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "epoch": 2,
        "history": [{"loss": 0.5}],
        "name": "x",
    }
    back = load_resume_state(save_resume_state(state, tmp_path / "last.pt"))
    assert (
        torch.equal(back["rng"], state["rng"]) and back["epoch"] == 2 and back["history"] == [{"loss": 0.5}]
    )
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


KILL_DURING_SAVE = """
import os, sys, time, torch
from microcnn.engine import checkpoint
def stall(src, dst):  # the temp file is written and fsynced; die before the rename
    print("writing", flush=True)
    time.sleep(60)
os.replace = stall
checkpoint.save_resume_state({"model": {"w": torch.full((1000,), 2.0)}}, sys.argv[1])
"""


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    last = tmp_path / "last.pt"
    save_resume_state({"model": {"w": torch.ones(1000)}}, last)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DURING_SAVE, str(last)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert torch.equal(load_resume_state(last)["model"]["w"], torch.ones(1000))
