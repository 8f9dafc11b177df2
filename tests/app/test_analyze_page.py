"""Analyze page: 16-bit TIFF upload, pixel size, bad files, session isolation, results and downloads."""

from __future__ import annotations

import pytest
from app_images import tiff16, two_phase_image


def upload(at, name: str, data: bytes, mime: str = "image/tiff"):
    at.file_uploader(key="analyze.uploader").upload(name, data, mime).run()
    return at


def test_16bit_tiff_is_read_with_its_bit_depth_and_pixel_size(new_session) -> None:
    at = upload(new_session(), "steel.tif", tiff16(two_phase_image(), resolution_px_per_um=4.0))
    assert not at.exception and not at.error
    assert "uint16 (16-bit)" in " ".join(c.value for c in at.caption)
    # ImageJ resolution 4 px/µm -> 0.25 µm/px, offered as "From the file's metadata"
    assert at.radio(key="analyze.pixel_source").value == "From the file's metadata"
    assert "0.25 µm/px" in " ".join(c.value for c in at.caption)


def test_typed_pixel_size_overrides(new_session) -> None:
    at = upload(new_session(), "steel.tif", tiff16(two_phase_image()))
    assert at.radio(key="analyze.pixel_source").options[0] == "Type it"  # no metadata -> typed first


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("random.png", bytes(range(256)) * 4, "could not be used"),
        ("empty.tif", b"", "could not be used"),
        ("truncated.tif", tiff16(two_phase_image())[:200], "could not be used"),
        ("doc.png", b"%PDF-1.7 not an image", "PDF"),
    ],
)
def test_bad_file_gives_a_friendly_message_and_the_page_works(new_session, name, data, expected) -> None:
    at = upload(new_session(), name, data, "image/png")
    assert not at.exception
    assert any(expected in e.value for e in at.error)
    assert "Traceback" not in " ".join(e.value for e in at.error)
    # the page stays usable: a good file next to the bad one is read
    at.file_uploader(key="analyze.uploader").upload("good.tif", tiff16(two_phase_image()), "image/tiff").run()
    assert not at.exception
    assert at.selectbox(key="analyze.file").options == ["good.tif"]


def test_oversized_upload_is_refused_by_the_app(new_session, monkeypatch) -> None:
    import state

    monkeypatch.setattr(state, "MAX_UPLOAD_MB", 0.001)  # 1,048 bytes: a 64x64 16-bit TIFF is ~8 kB
    at = upload(new_session(), "big.tif", tiff16(two_phase_image()))
    assert any("upload cap" in e.value for e in at.error)
    assert not at.exception


def test_two_sessions_do_not_share_uploads(new_session) -> None:
    first = upload(new_session(), "mine.tif", tiff16(two_phase_image()))
    second = new_session()
    assert second.session_state["analyze.micrographs"] == {}
    assert any("Upload a micrograph" in i.value for i in second.info)
    assert [v[0] for v in first.session_state["analyze.micrographs"].values()] == ["mine.tif"]
