"""Tiny dataset folders written on the fly (a few px per image, so every test stays fast)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def seg_folder(tmp_path: Path, rng: np.random.Generator) -> dict:
    """images/ + masks/ with 4 images of different sizes; pixel sizes from csv, TIFF tags and dataset.json."""
    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    shapes = {"a": (6, 7), "b": (5, 9), "c": (8, 8), "d": (4, 4)}
    truth = {}
    for stem, shape in shapes.items():
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        mask = rng.integers(0, 3, shape).astype(np.uint8)
        mask[0, 0] = 255
        if stem == "b":  # pixel size from the TIFF resolution tags: 20000 px/cm = 0.5 µm per px
            tifffile.imwrite(
                root / "images" / "b.tif", pixels, resolution=(20000, 20000), resolutionunit="CENTIMETER"
            )
        else:
            Image.fromarray(pixels).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
        truth[stem] = (pixels, mask)
    (root / "dataset.json").write_text(json.dumps({"class_names": ["m", "p", "q"], "pixel_size_um": 2.0}))
    write_csv(
        root / "samples.csv",
        ["file", "sample_id", "pixel_size_um"],
        [["images/a.png", "S1", 0.25], ["b", "S1", ""], ["c.png", "S2", ""]],
    )
    # expected pixel sizes: a from csv, b from the TIFF tag, c and d from dataset.json
    return {
        "root": root,
        "truth": truth,
        "sizes": {"a": 0.25, "b": 0.5, "c": 2.0, "d": 2.0},
        "groups": {"a": "S1", "b": "S1", "c": "S2", "d": "d"},
    }
