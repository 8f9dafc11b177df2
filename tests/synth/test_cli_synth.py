"""`microcnn synth` end to end through the CLI dispatcher."""

from __future__ import annotations

import csv
import json

import pytest

from microcnn.cli import main


def test_cli_writes_segmentation_folder(tmp_path, capsys):
    out = tmp_path / "seg"
    code = main(
        [
            "synth",
            "--task",
            "segmentation",
            "--n",
            "3",
            "--size",
            "48",
            "--seed",
            "1",
            "--kinds",
            "porous,lamellar",
            "--pixel-size",
            "0.2",
            "--info-bar",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "wrote 3 segmentation samples" in capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["pixel_size_um"] == 0.2
    with open(out / "samples.csv", newline="") as fh:
        kinds = [r["kind"] for r in csv.DictReader(fh)]
    assert kinds == ["porous", "lamellar", "porous"]
    assert json.loads((out / "synth.json").read_text())["info_bar_rows"] == 20


def test_cli_unknown_kind_says_did_you_mean(tmp_path, capsys):
    code = main(["synth", "--kinds", "lamelar", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "Did you mean 'lamellar'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_refuses_existing_output(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "f").write_text("x")
    assert main(["synth", "--n", "1", "--size", "32", "--out", str(tmp_path / "o")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_properties_choose_the_regression_targets_and_show_progress(tmp_path, capsys):
    out = tmp_path / "reg"
    args = [
        "synth",
        "--task",
        "regression",
        "--n",
        "4",
        "--size",
        "32",
        "--seed",
        "2",
        "--kinds",
        "dual_phase",
    ]
    assert main([*args, "--properties", "phase_fraction,mean_diameter_um", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    with open(out / "targets.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["file", "phase_fraction", "mean_diameter_um"]
    assert len(rows) == 5 and all(0 < float(r[1]) < 1 and float(r[2]) > 0 for r in rows[1:])
    assert json.loads((out / "dataset.json").read_text())["target_units"] == ["1", "µm"]
    # the progress bar (tqdm) goes to stderr and ends at n/n; the summary line goes to stdout
    assert "synth" in captured.err and "4/4" in captured.err
    assert "4/4" not in captured.out and "wrote 4 regression samples" in captured.out


def test_cli_refuses_an_unknown_device(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["synth", "--device", "gpu", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'gpu'" in capsys.readouterr().err
