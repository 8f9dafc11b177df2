"""The committed data/samples are exactly what the documented commands produce (determinism end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from microcnn.cli import main

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"

COMMANDS = {
    "segmentation": "--task segmentation --n 24 --size 256 --seed 0 --info-bar",
    "classification": "--task classification --n 48 --size 128 --seed 1",
    "regression": "--task regression --n 24 --size 64 --seed 2",
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_committed_sample_regenerates_byte_identical(name, tmp_path):
    if not (SAMPLES / name).is_dir():
        pytest.skip(f"data/samples/{name} not in this checkout")
    assert f"--out data/samples/{name}" in (SAMPLES / "README.md").read_text()
    assert main(["synth", *COMMANDS[name].split(), "--out", str(tmp_path / name)]) == 0
    assert _tree(tmp_path / name) == _tree(SAMPLES / name)


def test_committed_samples_fit_in_5_mb():
    if not SAMPLES.is_dir():
        pytest.skip("data/samples not in this checkout")
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert 0 < total <= 5 * 2**20, f"data/samples holds {total / 2**20:.2f} MiB"
