"""Analyze page: 16-bit TIFF upload, pixel size (metadata, typed, scale bar), info bar, bad files, session
isolation, classical results against hand counts, overlay, downloads and stale results."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from .app_images import disc_image, three_phase_image, tiff16, two_phase_image, with_info_bar
from .helpers import array, chart

SQUARE_D_PX = np.sqrt(4 * 144 / np.pi)  # equivalent diameter of a 12x12 px square: sqrt(4A/π)


def upload(at, name: str, data: bytes, mime: str = "image/tiff"):
    at.file_uploader(key="analyze.uploader").upload(name, data, mime).run()
    return at


def run_analysis(at, method: str = "otsu"):
    at.radio(key="analyze.method").set_value(method)
    at.button(key="analyze.run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return next(iter(at.session_state["analyze.results"].values()))


def analyzed(new_session, method: str = "otsu", image: np.ndarray | None = None):
    pytest.importorskip("microcnn.analysis.classical", reason="the classical methods have not landed yet")
    image = two_phase_image() if image is None else image
    at = upload(new_session(), "steel.tif", tiff16(image, resolution_px_per_um=4.0))
    return at, run_analysis(at, method)


def test_16bit_tiff_is_read_with_its_bit_depth_and_pixel_size(new_session) -> None:
    at = upload(new_session(), "steel.tif", tiff16(two_phase_image(), resolution_px_per_um=4.0))
    assert not at.exception and not at.error
    assert "uint16 (16-bit)" in " ".join(c.value for c in at.caption)
    # ImageJ resolution 4 px/µm -> 0.25 µm/px, offered as "From the file's metadata"
    assert at.radio(key="analyze.pixel_source").value == "From the file's metadata"
    assert "0.25 µm/px" in " ".join(c.value for c in at.caption)


def test_typed_pixel_size_scales_the_diameters(new_session) -> None:
    at = upload(new_session(), "steel.tif", tiff16(two_phase_image()))  # no metadata: typed comes first
    assert at.radio(key="analyze.pixel_source").value == "Type it"
    at.number_input(key="analyze.pixel_um").set_value(0.37)
    outcome = run_analysis(at)
    # hand: diameter_px x pixel size
    assert outcome["objects"]["equivalent_diameter_um"].tolist() == pytest.approx([SQUARE_D_PX * 0.37] * 4)
    assert outcome["report"]["pixel_size_um"] == pytest.approx(0.37)
    assert outcome["report"]["pixel_size_source"] == "typed"


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


def hand_expectations(method: str) -> tuple[np.ndarray, list[float], float]:
    """(image, phase fractions, total particle area in px) by counting the drawn pixels."""
    n = 64 * 64
    if method == "multi_otsu":  # 3 phases; the brightest (two squares) is measured as particles
        return three_phase_image(), [1 - 576 / n, 288 / n, 288 / n], 288.0
    if method == "watershed_particles":
        image, drawn = disc_image()
        return image, [1 - drawn.sum() / n, drawn.sum() / n], float(drawn.sum())
    return two_phase_image(), [1 - 576 / n, 576 / n], 576.0


@pytest.mark.parametrize(("method", "count"), [("otsu", 4), ("multi_otsu", 2), ("watershed_particles", 3)])
def test_classical_methods_against_hand_counts(new_session, method: str, count: int) -> None:
    image, fractions, particle_px = hand_expectations(method)
    at, outcome = analyzed(new_session, method, image)
    table = at.dataframe[0].value  # the first table of the results: phase fractions ± CI
    assert table["fraction"].tolist() == pytest.approx(fractions)
    assert table["fraction"].sum() == pytest.approx(1.0)
    assert (table["ci_low"] <= table["fraction"] + 1e-12).all()
    assert (table["fraction"] <= table["ci_high"] + 1e-12).all()
    objects = outcome["objects"]
    assert len(objects) == count  # watershed splits the two touching discs: 3, where Otsu alone sees 2
    assert objects["area_um2"].sum() == pytest.approx(particle_px * 0.25**2)  # 0.25 µm/px from the TIFF
    if method == "watershed_particles":  # the lone disc keeps its drawn area (π·7² rasterised: 145 px)
        lone = objects.loc[objects["centroid_row_px"] > 32, "equivalent_diameter_um"]
        assert lone.tolist() == pytest.approx([np.sqrt(4 * 145 / np.pi) * 0.25])
    histogram = chart(at, "analyze.histogram")["data"][0]
    np.testing.assert_allclose(np.sort(array(histogram["x"])), np.sort(objects["equivalent_diameter_um"]))


def test_overlay_legend_and_downloads_are_built_once(new_session, media, monkeypatch) -> None:
    import results_view
    import views

    from microcnn.analysis.render import PALETTE, overlay

    at, outcome = analyzed(new_session)
    legend = " ".join(m.value for m in at.markdown)
    for i, name in enumerate(["background", "foreground"]):  # each class next to its palette colour
        r, g, b = (int(v) for v in PALETTE[i])
        assert f'rgb({r},{g},{b})"></span>&nbsp;{name}' in legend
    mask = np.asarray(Image.open(io.BytesIO(media(at, "dl.mask"))))
    np.testing.assert_array_equal(mask, outcome["mask"])
    particles = pd.read_csv(io.BytesIO(media(at, "dl.csv")))
    assert len(particles) == 4
    assert particles["equivalent_diameter_um"].tolist() == pytest.approx([SQUARE_D_PX * 0.25] * 4)
    report = json.loads(media(at, "dl.json"))
    assert report["pixel_size_um"] == 0.25 and report["unit"] == "µm" and report["file"] == "steel.tif"
    assert report["method"].startswith("otsu") and report["model_file"] is None
    assert report["objects"]["equivalent_diameter"]["unit"] == "µm"
    assert report["pixel_size_source"]

    encoded, png_bytes, report_json = [], views.png_bytes, results_view.report_json
    monkeypatch.setattr(views, "png_bytes", lambda a: encoded.append(a.shape) or png_bytes(a))
    monkeypatch.setattr(results_view, "report_json", lambda o: encoded.append("json") or report_json(o))
    at.run()  # a rerun with nothing changed encodes nothing
    assert encoded == []
    at.slider(key="analyze.opacity").set_value(0.75).run()
    assert encoded == [(64, 64, 3)]  # only the overlay, at its new opacity
    shown = np.asarray(Image.open(io.BytesIO(media(at, "dl.overlay"))))
    image = two_phase_image().astype(np.float32) / 65535
    np.testing.assert_array_equal(shown, overlay(image, outcome["mask"], opacity=0.75))
    assert not np.array_equal(shown, overlay(image, outcome["mask"], opacity=0.5))


def test_info_bar_crop_follows_the_toggle_and_old_results_are_marked(new_session) -> None:
    pytest.importorskip("microcnn.analysis.classical")
    image = with_info_bar(two_phase_image(), bar_px=40)  # 74 x 64: rows 64..73 are the bar
    at = upload(new_session(), "sem.tif", tiff16(image))
    assert at.toggle(key="analyze.crop").value  # on when a bar is found
    outcome = run_analysis(at)
    assert outcome["report"]["info_bar_cropped"] == {"row": 64, "height": 10}
    assert outcome["report"]["image_shape_px"] == [64, 64] and outcome["mask"].shape == (64, 64)
    assert at.dataframe[0].value["fraction"].tolist() == pytest.approx([1 - 576 / 4096, 576 / 4096])
    assert not at.warning

    at.toggle(key="analyze.crop").set_value(False).run()
    assert any("Stale results" in w.value and "info-bar crop" in w.value for w in at.warning)
    at.number_input(key="analyze.pixel_um").set_value(0.2).run()
    assert any("info-bar crop, pixel size" in w.value for w in at.warning)
    outcome = run_analysis(at)
    assert not at.warning
    assert outcome["report"]["info_bar_cropped"] is None
    assert outcome["report"]["image_shape_px"] == [74, 64] and outcome["mask"].shape == (74, 64)
    at.radio(key="analyze.method").set_value("multi_otsu").run()
    assert any("Stale results" in w.value and "method" in w.value for w in at.warning)


def test_scale_bar_measurement_gives_the_pixel_size(new_session) -> None:
    pytest.importorskip("microcnn.analysis.classical")
    at = upload(new_session(), "sem.tif", tiff16(with_info_bar(two_phase_image(), bar_px=40)))
    at.radio(key="analyze.pixel_source").set_value("Measure the scale bar").run()
    assert at.number_input(key="analyze.bar_px").value == 40  # the white line drawn 40 px long
    at.number_input(key="analyze.bar_um").set_value(10.0)
    at.number_input(key="analyze.bar_px").set_value(50)  # the user corrects it
    outcome = run_analysis(at)
    assert outcome["report"]["pixel_size_um"] == pytest.approx(10.0 / 50)  # bar µm / bar px
    assert outcome["report"]["pixel_size_source"] == "scale bar"
    assert outcome["objects"]["equivalent_diameter_um"].tolist() == pytest.approx([SQUARE_D_PX * 0.2] * 4)


def test_two_sessions_do_not_share_results(new_session) -> None:
    first, _ = analyzed(new_session)
    second = new_session()
    assert len(first.session_state["analyze.results"]) == 1
    assert second.session_state["analyze.results"] == {}
    assert not second.get("download_button")
