"""Batch page: a tiny archive (ArchiveWriter) or a zip of images through predict_archive; the table's
phase fractions equal an independent forward pass; bad archives give a friendly message."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from .test_analyze_cnn import SEG_CLASSES, save_model

SPEC = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 2, "base_channels": 4}


def images(n: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        image = np.full((32, 32), 40, np.uint8)
        image[4 : 12 + 6 * i, 4:20] = 220  # a bright block of a different size per image
        out.append(np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8))
    return out


def expected_fractions(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    x = torch.from_numpy((x - x.mean()) / (x.std() + 1e-4))[None, None]  # albumentations' per-image norm
    with torch.no_grad():
        mask = model(x)[0].argmax(0).numpy()
    return np.bincount(mask.ravel(), minlength=2) / mask.size


def archive_bytes(tmp_path: Path, pictures: list[np.ndarray]) -> bytes:
    from microcnn.io.hdf5 import ArchiveWriter

    path = tmp_path / "tiny.h5"
    with ArchiveWriter(path, task="unlabelled") as writer:
        for i, image in enumerate(pictures):
            writer.append(image, pixel_size_um=0.5, name=f"img{i}")
    return path.read_bytes()


def open_batch(new_session, source: str):
    at = new_session("batch")
    assert not at.exception
    at.selectbox(key="batch.model").select("runs/seg/model.safetensors")
    at.radio(key="batch.source").set_value(source).run()
    return at


def check_fractions(at, model: torch.nn.Module, pictures: list[np.ndarray], ids: list[str]) -> None:
    table = at.session_state["batch.results"]["table"]
    assert list(table["id"]) == ids and list(table["status"]) == ["ok"] * len(ids)
    for row, image in zip(table.to_dict("records"), pictures):
        got = [row[f"fraction_{c}"] for c in SEG_CLASSES]
        np.testing.assert_allclose(got, expected_fractions(model, image), atol=1e-12)


def test_uploaded_archive_gives_table_plots_and_downloads(project: Path, new_session, tmp_path: Path) -> None:
    model = save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES}, seed=3)
    pictures = images()
    at = open_batch(new_session, "Upload an HDF5 archive")
    at.file_uploader(key="batch.upload").upload(
        "tiny.h5", archive_bytes(tmp_path, pictures), "application/x-hdf5"
    )
    at.run()
    at.button(key="batch.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    check_fractions(at, model, pictures, ["img0", "img1"])
    assert at.metric[0].value == "2" and at.metric[2].value == "0"
    assert [b.label for b in at.get("download_button")] == ["results.h5", "results.csv"]
    assert len(at.get("plotly_chart")) == len(SEG_CLASSES)


def test_zip_of_images_skips_a_bad_file_and_says_so(project: Path, new_session) -> None:
    from PIL import Image

    model = save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES}, seed=3)
    pictures = images()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, image in enumerate(pictures):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            archive.writestr(f"batch/a{i}.png", png.getvalue())
        archive.writestr("batch/broken.png", b"\x89PNG\r\n\x1a\n truncated")
    at = open_batch(new_session, "Upload a zip of images")
    at.file_uploader(key="batch.upload").upload("imgs.zip", buffer.getvalue(), "application/zip").run()
    at.button(key="batch.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    check_fractions(at, model, pictures, ["a0.png", "a1.png"])
    assert any("broken.png left out" in w.value for w in at.warning)


@pytest.mark.parametrize("data", [b"not an hdf5 file at all", b"\x89HDF\r\n\x1a\n" + b"\0" * 40])
def test_bad_archives_get_a_friendly_message(project: Path, new_session, data: bytes) -> None:
    save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES})
    at = open_batch(new_session, "Upload an HDF5 archive")
    at.file_uploader(key="batch.upload").upload("bad.h5", data, "application/x-hdf5").run()
    at.button(key="batch.run").click().run()
    assert not at.exception
    assert any("Batch prediction:" in e.value and "unexpected" not in e.value for e in at.error)
    assert not at.session_state["batch.results"]
