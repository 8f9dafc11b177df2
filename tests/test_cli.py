"""The command line: every subcommand answers --help; `info` reports what is really installed."""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys

import pytest

from microcnn.cli import COMMANDS, build_parser, main


def _subcommand_names() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_listed_command_module_is_wired():
    names = _subcommand_names()
    # module names use "_" where the command uses "-" (predict_h5 -> predict-h5)
    assert {n.replace("-", "_") for n in names} == set(COMMANDS)
    assert "info" in names


@pytest.mark.parametrize("name", _subcommand_names())
def test_help_of_every_subcommand(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: microcnn " + name)


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_info_json_matches_installed_versions(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"] == md.version("torch")
    assert info["versions"]["h5py"] == md.version("h5py")
    assert info["auto_device"].split()[0] in {"cpu", "cuda", "mps"}
    assert set(info["extras"]) == {"rosettasciio", "segmentation-models-pytorch", "playwright"}


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "microcnn", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"microcnn {md.version('microcnn')}"


def test_import_microcnn_is_light():
    heavy = "('torch', 'h5py', 'skimage', 'streamlit')"
    code = f"import sys, microcnn; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
