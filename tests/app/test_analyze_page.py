"""Analyze page: 16-bit TIFF upload, pixel size, bad files, session isolation, results and downloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .app_images import tiff16, two_phase_image


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


def analyzed(new_session, method: str = "otsu"):
    pytest.importorskip("microcnn.analysis.classical", reason="the classical methods have not landed yet")
    at = upload(new_session(), "steel.tif", tiff16(two_phase_image(), resolution_px_per_um=4.0))
    at.radio(key="analyze.method").set_value(method)
    at.button(key="analyze.run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_otsu_results_fractions_sizes_and_downloads(new_session) -> None:
    at = analyzed(new_session)
    fractions = at.dataframe[0].value  # the first table of the results: phase fractions
    # hand count: four 12x12 squares in 64x64 -> 576 / 4096 bright pixels
    assert fractions["fraction"].tolist() == pytest.approx([1 - 576 / 4096, 576 / 4096])
    objects = at.session_state["analyze.results"]
    outcome = next(iter(objects.values()))
    table = outcome["objects"]
    assert len(table) == 4
    # equivalent diameter of a 144 px² square = sqrt(4·144/π) px, at 0.25 µm/px
    assert table["equivalent_diameter_um"].tolist() == pytest.approx([np.sqrt(4 * 144 / np.pi) * 0.25] * 4)
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Mask PNG", "Overlay PNG", "Particles CSV", "JSON report"]


def test_json_report_carries_units_method_and_pixel_size(new_session) -> None:
    import results_view

    at = analyzed(new_session)
    outcome = next(iter(at.session_state["analyze.results"].values()))
    report = json.loads(results_view.report_json(outcome))
    assert report["pixel_size_um"] == 0.25 and report["unit"] == "µm"
    assert report["method"].startswith("otsu")
    assert report["objects"]["equivalent_diameter"]["unit"] == "µm"
    assert report["pixel_size_source"]


def test_two_sessions_do_not_share_results(new_session) -> None:
    first = analyzed(new_session)
    second = new_session()
    assert len(first.session_state["analyze.results"]) == 1
    assert second.session_state["analyze.results"] == {}
    assert not second.get("download_button")
