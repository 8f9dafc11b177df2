"""The command line: every subcommand answers --help; `info` reports what is really installed."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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


# optional extra (distribution name) -> the module it installs, as each project documents it
EXTRA_MODULES = {
    "rosettasciio": "rsciio",
    "segmentation-models-pytorch": "segmentation_models_pytorch",
    "playwright": "playwright",
}


def test_info_json_matches_installed_versions(capsys):
    import torch

    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["torch"] == md.version("torch")
    assert info["versions"]["h5py"] == md.version("h5py")
    assert info["auto_device"].split()[0] in {"cpu", "cuda", "mps"}
    assert info["auto_device"].startswith("cuda") == torch.cuda.is_available()
    assert set(info["extras"]) == set(EXTRA_MODULES)
    for dist, module in EXTRA_MODULES.items():
        assert info["extras"][dist]["available"] == (importlib.util.find_spec(module) is not None), dist


def test_python_dash_m_microcnn_runs():
    out = subprocess.run([sys.executable, "-m", "microcnn", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"microcnn {md.version('microcnn')}"


def test_installed_console_script_runs():
    # the `microcnn` script pip wrote next to this interpreter ([project.scripts] in pyproject.toml)
    script = Path(sys.executable).parent / ("microcnn.exe" if sys.platform == "win32" else "microcnn")
    assert script.is_file(), f"console script {script} not installed; run: pip install -e ."
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: microcnn")
    assert "info" in out.stdout and "pack" in out.stdout


def test_import_microcnn_is_light():
    heavy = "('torch', 'h5py', 'skimage', 'streamlit')"
    code = f"import sys, microcnn; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
