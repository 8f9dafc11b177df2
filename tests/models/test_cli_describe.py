"""`microcnn describe` end to end through the CLI dispatcher."""

from __future__ import annotations

import csv
import io
import json

from microcnn.cli import main


def test_json_of_lenet5(capsys):
    assert main(["describe", "lenet5", "--input", "1x32x32", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["totals"]["params"] == 61_706
    assert data["totals"]["output_shape"] == [10]


def test_yaml_config_with_set_override_to_csv(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "model:\n  name: unet\n  depth: 2\n  base_channels: 4\ntrain:\n  epochs: 3\n", encoding="utf-8"
    )
    code = main(["describe", str(cfg), "--input", "1x20x24", "--set", "num_classes=5", "--format", "csv"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[-1]["output_shape"] == "5×20×24"  # the head sees the padded 20×24 (multiple of 4) input
    assert rows[0]["output_shape"] == "4×20×24"


def test_markdown_to_file(tmp_path):
    out = tmp_path / "t.md"
    assert main(["describe", "tinyvgg", "--input", "1x64x64", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| MaxPool2d | 10×13×13 |" in text  # CNN Explainer: 64 -> 62 -> 60 -> 30 -> 28 -> 26 -> 13
    assert "Total params:" in text


def test_unknown_model_fails_with_suggestion(capsys):
    assert main(["describe", "unte"]) == 2
    assert "Did you mean 'unet'" in capsys.readouterr().err


def test_bad_input_shape_fails_clearly(capsys):
    assert main(["describe", "unet", "--input", "256x256"]) == 2
    assert "C×H×W" in capsys.readouterr().err


def test_too_small_input_fails_clearly(capsys):
    assert main(["describe", "unet", "--input", "1x8x8"]) == 2
    assert "at least 16×16" in capsys.readouterr().err


def test_yaml_without_model_section(tmp_path, capsys):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("train: {epochs: 3}\n", encoding="utf-8")
    assert main(["describe", str(cfg)]) == 2
    assert "no 'model:' mapping" in capsys.readouterr().err
