"""Batch page: a tiny archive (ArchiveWriter), a zip of images or a server folder of images through
predict_archive; the table's phase fractions equal an independent forward pass; bad archives and batches
over the pixel budget give a friendly message; sessions do not see each other's results."""

from __future__ import annotations

import gc
import io
import shlex
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from microcnn.cli import build_parser

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


def test_uploaded_archive_gives_table_plots_and_downloads(
    project: Path, new_session, media, tmp_path: Path
) -> None:
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

    # the command shown for the same job is one the real CLI parses, with this model and the right flags
    (command,) = [c.value for c in at.code if "predict-h5" in c.value]
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command == "predict-h5" and args.model == ["runs/seg/model.safetensors"]
    assert (args.input, args.output) == ("archive.h5", "results.h5")

    other = new_session("batch")  # another browser session sees none of it
    assert other.session_state["batch.results"] == {}
    assert not other.get("download_button") and not other.dataframe

    # one scratch folder per session: the next job removes the last one's, a dropped session its own
    first = at.session_state["batch.scratch"].path
    assert (first / "results.h5").is_file()
    assert media(at, "batch.dl_h5") == (first / "results.h5").read_bytes()  # the archive, byte for byte
    at.button(key="batch.run").click().run()
    second = at.session_state["batch.scratch"].path
    assert second.is_dir() and second != first and not first.exists()
    del at
    gc.collect()
    assert not second.exists()


def write_pngs(folder: Path, pictures: list[np.ndarray]) -> Path:
    """a0.png, a1.png, ... and a broken PNG (signature only) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, image in enumerate(pictures):
        Image.fromarray(image).save(folder / f"a{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.writestr(f"batch/{path.name}", path.read_bytes())
    return buffer.getvalue()


def choose_images(at, kind: str, folder: Path) -> None:
    if kind == "zip":
        at.radio(key="batch.source").set_value("Upload a zip of images").run()
        at.file_uploader(key="batch.upload").upload("imgs.zip", zipped(folder), "application/zip").run()
    else:
        at.radio(key="batch.source").set_value("Archive or image folder on the server").run()
        at.text_input(key="batch.path").input(str(folder)).run()


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_images_skip_a_bad_file_and_say_so(project: Path, new_session, tmp_path: Path, kind: str) -> None:
    model = save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES}, seed=3)
    pictures = images()
    folder = write_pngs(tmp_path / "server_images", pictures)
    at = open_batch(new_session, "Upload an HDF5 archive")
    choose_images(at, kind, folder)
    at.button(key="batch.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    check_fractions(at, model, pictures, ["a0.png", "a1.png"])
    assert any("broken.png left out" in w.value for w in at.warning)


def test_a_batch_over_the_pixel_budget_is_refused_before_decoding(
    project: Path, new_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import state

    import microcnn

    save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES})
    pictures = [images(1)[0], np.full((16, 48), 90, np.uint8)]  # 32x32 + 16x48 = 1,792 px of images,
    folder = write_pngs(tmp_path / "big", pictures)  # but padded to 32x48 each: 2 x 1,536 = 3,072 px
    monkeypatch.setattr(state, "MAX_BATCH_PIXELS", 2_500)
    decoded = []
    monkeypatch.setattr(microcnn, "read_micrograph", lambda *a, **k: decoded.append(a) or 1 / 0)
    at = open_batch(new_session, "Upload an HDF5 archive")
    choose_images(at, "zip", folder)
    at.button(key="batch.run").click().run()
    assert not at.exception
    assert any("3,072 px" in e.value and "batch budget of 2,500 px" in e.value for e in at.error)
    assert decoded == []  # refused from the headers alone: no image was decoded
    assert not at.session_state["batch.results"]


def test_images_go_into_the_archive_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import batch_view

    import microcnn
    from microcnn.io.hdf5 import ArchiveWriter
    from microcnn.io.hdf5_reader import open_archive

    pictures = images(3)
    folder = write_pngs(tmp_path / "imgs", pictures)
    events, read, append = [], microcnn.read_micrograph, ArchiveWriter.append
    monkeypatch.setattr(microcnn, "read_micrograph", lambda *a, **k: events.append("decode") or read(*a, **k))
    monkeypatch.setattr(ArchiveWriter, "append", lambda *a, **k: events.append("write") or append(*a, **k))
    out, notes = batch_view.images_to_archive(
        folder, tmp_path / "in.h5", max_pixels=10_000, max_total_pixels=10_000
    )
    assert events == ["decode", "write"] * 3  # never a second image decoded before the first is written
    assert [n.split(" left out")[0] for n in notes] == ["broken.png"]
    with open_archive(out) as archive:
        for i, image in enumerate(pictures):
            # uint8 -> uint16 storage (x 257, exact) -> float32 on read: x / 255 to float32 rounding
            np.testing.assert_allclose(archive.read(i)["image"], image / 255.0, rtol=0, atol=1e-7)


@pytest.mark.parametrize("data", [b"not an hdf5 file at all", b"\x89HDF\r\n\x1a\n" + b"\0" * 40])
def test_bad_archives_get_a_friendly_message(project: Path, new_session, data: bytes) -> None:
    save_model(project, "seg", SPEC, {"task": "segmentation", "class_names": SEG_CLASSES})
    at = open_batch(new_session, "Upload an HDF5 archive")
    at.file_uploader(key="batch.upload").upload("bad.h5", data, "application/x-hdf5").run()
    at.button(key="batch.run").click().run()
    assert not at.exception
    assert any("Batch prediction:" in e.value and "unexpected" not in e.value for e in at.error)
    assert not at.session_state["batch.results"]
