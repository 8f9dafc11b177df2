"""The README's Python example runs as printed, on a file it names, and gives the hand-counted numbers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.draw import disk

REPO = Path(__file__).resolve().parents[1]


def readme_python() -> str:
    (code,) = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    return code


def test_readme_example_gives_hand_counted_fractions_and_diameters(tmp_path, monkeypatch, capsys) -> None:
    # steel.tif: three bright discs of radius 10 px on a dark ground, 0.25 µm/px in ImageJ's tags,
    # and a 20-row white info bar below that the example crops off
    image = np.full((120, 120), 30, np.uint8)
    discs = np.zeros((100, 120), bool)
    for centre in [(25, 25), (25, 90), (70, 55)]:
        discs[disk(centre, 10, shape=discs.shape)] = True
    image[:100][discs] = 220
    image[100:] = 255
    image[105:110, 10:60] = 0  # the scale bar inside the band
    tags = {"imagej": True, "resolution": (4.0, 4.0), "metadata": {"unit": "um"}}  # 4 px per µm
    tifffile.imwrite(tmp_path / "steel.tif", image, **tags)
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(readme_python(), "README.md", "exec"), namespace)  # our own README

    m, report = namespace["m"], namespace["report"]
    assert m.pixel_size_um == pytest.approx(0.25) and m.pixels.shape == (100, 120)  # the bar is gone
    shares = dict(zip(report.fractions["phase"], report.fractions["fraction"]))
    assert list(shares.values()) == pytest.approx([1 - discs.mean(), discs.mean()])
    # the three discs, measured in µm: equal-area diameter 2 sqrt(area / pi) x 0.25 µm/px
    assert report.size["n"] == 3 and report.size["unit"] == "µm"
    assert report.size["mean"] == pytest.approx(2 * np.sqrt(discs.sum() / 3 / np.pi) * 0.25, rel=1e-9)
    assert "'n': 3" in capsys.readouterr().out  # what the example prints
