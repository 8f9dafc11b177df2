"""Archive writer/reader: round trip, atomicity, refusal of bad files, checksums, pickling."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from microcnn.errors import DatasetError
from microcnn.io.hdf5 import ArchiveWriter, open_archive, read_archive_info


def _seg_archive(path, images, masks, **kwargs):
    with ArchiveWriter(path, task="segmentation", class_names=["a", "b", "c"], **kwargs) as w:
        for i, (im, m) in enumerate(zip(images, masks, strict=True)):
            w.append(im, mask=m, pixel_size_um=0.1 * (i + 1), sample_id=f"s{i // 2}", name=f"im{i}")
    return path


def test_round_trip_uint8_scaling_and_padding(tmp_path):
    # Hand values: uint8 7 -> 7/255; float 0.5 -> rint(127.5) = 128 -> 128/255.
    small = np.full((3, 4), 7, np.uint8)
    big = np.full((5, 6), 0.5, np.float32)
    m_small, m_big = np.arange(12).reshape(3, 4) % 3, np.ones((5, 6), np.uint8)
    path = _seg_archive(tmp_path / "a.h5", [small, big], [m_small, m_big], image_shape=(5, 6))
    with open_archive(path) as a:
        s0, s1 = a.read(0), a.read(1)
    assert s0["image"].shape == (3, 4) and s0["image"].dtype == np.float32
    np.testing.assert_allclose(s0["image"], 7 / 255, rtol=1e-6)
    np.testing.assert_allclose(s1["image"], 128 / 255, rtol=1e-6)
    np.testing.assert_array_equal(s0["mask"], m_small)
    assert s0["mask"].dtype == np.int64
    assert (s0["pixel_size_um"], s1["pixel_size_um"]) == (pytest.approx(0.1), pytest.approx(0.2))
    assert (s0["id"], s0["group"]) == ("im0", "s0")
    with h5py.File(path, "r") as f:  # padding convention of the spec: image 0, mask 255
        assert f["images"][0, 3:, :].max() == 0 and (f["masks"][0, 3:, :] == 255).all()
        assert f["images"].chunks == (1, 5, 6) and f["images"].fletcher32


def test_uint16_kept_exact_and_uint8_to_uint16_scaled(tmp_path):
    img16 = np.array([[0, 256, 65535]], np.uint16)
    img8 = np.array([[0, 255, 1]], np.uint8)
    with ArchiveWriter(tmp_path / "u16.h5", task="unlabelled", image_dtype="uint16") as w:
        w.append(img16)
        w.append(img8)
    with open_archive(tmp_path / "u16.h5") as a:
        np.testing.assert_allclose(a.read(0)["image"], [[0, 256 / 65535, 1.0]], rtol=1e-6)
        np.testing.assert_allclose(a.read(1)["image"], [[0, 1.0, 257 / 65535]], rtol=1e-6)
    with (
        pytest.raises(DatasetError, match="uint16"),
        ArchiveWriter(tmp_path / "u8.h5", task="unlabelled", image_dtype="uint8") as w,
    ):
        w.append(img16)
    assert not list(tmp_path.glob("*u8*"))


def test_classification_regression_and_info(tmp_path):
    with ArchiveWriter(tmp_path / "c.h5", task="classification", class_names=["x", "y"]) as w:
        for label in (0, 1, 1):
            w.append(np.zeros((2, 2), np.uint8), label=label, pixel_size_um=0.5)
    info = read_archive_info(tmp_path / "c.h5")
    assert info["label_counts"] == {"x": 1, "y": 2}
    assert info["count"] == 3 and info["complete"] is True
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert f.attrs["pixel_size_um"] == 0.5  # scalar attribute when all images agree
    with ArchiveWriter(tmp_path / "r.h5", task="regression", target_names=["tau"], target_units=["1"]) as w:
        w.append(np.zeros((2, 2), np.uint8), target=[1.25])
    with open_archive(tmp_path / "r.h5") as a:
        np.testing.assert_array_equal(a.read(0)["target"], np.array([1.25], np.float32))
        assert np.isnan(a.read(0)["pixel_size_um"])


def test_refuses_existing_output_unless_overwrite(tmp_path):
    path = _seg_archive(tmp_path / "a.h5", [np.zeros((2, 2))], [np.zeros((2, 2), np.uint8)])
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="already exists"):
        ArchiveWriter(path, task="segmentation")
    assert path.read_bytes() == before
    _seg_archive(path, [np.ones((2, 2))], [np.zeros((2, 2), np.uint8)], overwrite=True)
    with open_archive(path) as a:
        assert a.read(0)["image"].max() == 1.0


def test_failure_inside_with_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), ArchiveWriter(tmp_path / "a.h5", task="unlabelled") as w:
        w.append(np.zeros((2, 2), np.uint8))
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_second_writer_does_not_clobber_first(tmp_path):
    path = tmp_path / "a.h5"
    first, second = ArchiveWriter(path, task="unlabelled"), ArchiveWriter(path, task="unlabelled")
    with first as w1:
        w1.append(np.ones((2, 2), np.uint8))
        with pytest.raises(DatasetError, match="appeared"), second as w2:
            w2.append(np.zeros((2, 2), np.uint8))
            w1.close()
    with open_archive(path) as a:
        assert a.read(0)["image"].max() == pytest.approx(1 / 255)
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_mixed_sizes_without_image_shape_refused(tmp_path):
    with (
        pytest.raises(DatasetError, match="image_shape"),
        ArchiveWriter(tmp_path / "a.h5", task="unlabelled") as w,
    ):
        w.append(np.zeros((2, 2), np.uint8))
        w.append(np.zeros((3, 2), np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": None}, "needs 'mask'"),
        ({"mask": np.zeros((2, 3), np.uint8)}, "must match"),
        ({"mask": np.full((2, 2), 300)}, "0..254"),
        ({"mask": np.zeros((2, 2), np.uint8), "label": 1}, "no 'label'"),
    ],
)
def test_bad_labels_refused(tmp_path, kwargs, match):
    with pytest.raises(DatasetError, match=match), ArchiveWriter(tmp_path / "a.h5", task="segmentation") as w:
        w.append(np.zeros((2, 2), np.uint8), **kwargs)


def test_bad_task_has_did_you_mean(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'segmentation'"):
        ArchiveWriter(tmp_path / "a.h5", task="segmentaton")


def test_refuses_non_hdf5_truncated_incomplete(tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        open_archive(tmp_path / "text.h5")
    good = _seg_archive(tmp_path / "g.h5", [np.zeros((8, 8))], [np.zeros((8, 8), np.uint8)])
    data = good.read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"damaged or truncated|incomplete|not a microcnn"):
        open_archive(tmp_path / "trunc.h5")
    with h5py.File(good, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(DatasetError, match="incomplete"):
        open_archive(good)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a microcnn archive"):
        open_archive(tmp_path / "other.h5")
    with pytest.raises(FileNotFoundError):
        open_archive(tmp_path / "missing.h5")


def test_flipped_bytes_detected_by_checksum(tmp_path):
    pattern = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    with ArchiveWriter(tmp_path / "a.h5", task="unlabelled") as w:
        w.append(pattern)
    raw = bytearray((tmp_path / "a.h5").read_bytes())
    at = raw.find(pattern.tobytes()[:200])
    assert at > 0
    raw[at + 100] ^= 0xFF
    (tmp_path / "a.h5").write_bytes(bytes(raw))
    with open_archive(tmp_path / "a.h5") as a, pytest.raises(OSError):
        a.read(0)


def test_reader_pickles_without_handle(tmp_path):
    path = _seg_archive(tmp_path / "a.h5", [np.zeros((2, 2))] * 3, [np.zeros((2, 2), np.uint8)] * 3)
    reader = open_archive(path)
    reader.read(0)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._file is None
    assert clone.read(2)["id"] == "im2" and clone.groups() == ["s0", "s0", "s1"]
    with pytest.raises(IndexError, match="out of range"):
        clone.read(3)
    reader.close()
    clone.close()


def _single_index(selection, n: int) -> bool:
    """True when an h5py selection (what Dataset.__getitem__ receives) covers exactly one row along N."""
    first = selection[0] if isinstance(selection, tuple) and selection else selection
    if isinstance(first, int | np.integer):
        return True
    if isinstance(first, slice):
        return len(range(*first.indices(n))) == 1
    return False  # (), Ellipsis, a list or an array of indices: more than one image, or all of them


def test_iterating_an_archive_reads_one_image_per_access(tmp_path, monkeypatch):
    # "Nothing loads a whole archive into memory": every read of /images and /masks while iterating an
    # H5Dataset (directly and through a DataLoader) must select a single image index.
    import torch

    from microcnn.data.datasets import H5Dataset

    n, rng = 50, np.random.default_rng(0)
    images = [rng.integers(0, 256, (4 + i % 5, 6 + i % 3), dtype=np.uint8) for i in range(n)]
    masks = [rng.integers(0, 3, im.shape).astype(np.uint8) for im in images]
    path = _seg_archive(tmp_path / "many.h5", images, masks, image_shape=(8, 8))
    reads: list[tuple[str, object]] = []
    original = h5py.Dataset.__getitem__

    def recording(self, args, *rest, **kwargs):
        reads.append((self.name, args))
        return original(self, args, *rest, **kwargs)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    ds = H5Dataset(path)
    for i in range(n):
        np.testing.assert_array_equal(ds[i]["mask"], masks[i])
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=True, num_workers=0)
    assert sum(1 for _ in loader) == n
    for key in ("/images", "/masks"):
        selections = [args for name, args in reads if name == key]
        assert len(selections) == 2 * n  # one read per sample, per pass
        wide = [args for args in selections if not _single_index(args, n)]
        assert not wide, f"{key} read with selections covering several images: {wide[:3]}"
