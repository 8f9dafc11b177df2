"""Analyze with CNN models saved in the test (save_weights) and with the committed default models: the
page's numbers equal an independent forward pass (torch + albumentations' per-image standardisation written
out by hand) or a direct microcnn call; results name their model; stale settings are marked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .app_images import tiff16, two_phase_image, with_info_bar
from .helpers import REPO, copy_default_model

SEG_CLASSES = ["matrix", "particle"]


def save_model(project: Path, run: str, spec: dict, meta: dict, *, seed: int = 0) -> torch.nn.Module:
    from microcnn.engine.checkpoint import save_weights
    from microcnn.models import build_model

    torch.manual_seed(seed)
    model = build_model(dict(spec)).eval()
    card = {"model": spec, "preprocessing": {"in_channels": 1, "augment": []}, "pixel_size_um": None, **meta}
    save_weights(model, project / "runs" / run / "model.safetensors", card)
    return model


def standardised(image: np.ndarray) -> torch.Tensor:
    """albumentations Normalize(normalization="image") by hand: (x - mean) / (std + 1e-4)."""
    x = image.astype(np.float32) / np.iinfo(image.dtype).max
    return torch.from_numpy((x - x.mean()) / (x.std() + 1e-4))[None, None]


def analyze_with(
    new_session, image: np.ndarray | bytes, model: str, *, tta: bool = False, name="img.tif", pixel_um=None
):
    at = new_session("analyze")
    data = image if isinstance(image, bytes) else tiff16(image, resolution_px_per_um=4.0)
    at.file_uploader[0].upload(name, data, "image/tiff").run()
    if pixel_um is not None:
        at.number_input(key="analyze.pixel_um").set_value(pixel_um)
    at.radio(key="analyze.kind").set_value("CNN model").run()
    at.selectbox(key="analyze.model").select(model)
    at.toggle(key="analyze.tta").set_value(tta).run()
    at.button(key="analyze.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def test_segmentation_model_fractions_match_an_independent_forward(project: Path, new_session) -> None:
    spec = {"name": "unet", "in_channels": 1, "num_classes": 2, "depth": 2, "base_channels": 4}
    model = save_model(project, "seg", spec, {"task": "segmentation", "class_names": SEG_CLASSES}, seed=3)
    image = two_phase_image()
    with torch.no_grad():
        mask = model(standardised(image))[0].argmax(0).numpy()
    expected = np.bincount(mask.ravel(), minlength=2) / mask.size

    # the info bar below the image is cropped (toggle on): the model sees the 64 x 64 image only
    at = analyze_with(new_session, with_info_bar(image, bar_px=40), "runs/seg/model.safetensors", tta=True)
    outcome = at.session_state["analyze.results"]
    (result,) = outcome.values()
    np.testing.assert_array_equal(result["mask"], mask)  # 64 px < one 512 px tile: no blending at all
    fractions = result["fractions"]
    got = fractions.set_index(fractions.columns[0]).iloc[:, 0].reindex(SEG_CLASSES).to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert result["unit"] == "µm"  # 4 px/µm from the TIFF travels to the CNN result
    assert result["report"]["method"] == "unet+tta:seg"  # the run's name, not its folder "runs"
    assert result["report"]["model_file"] == "runs/seg/model.safetensors"
    assert result["uncertainty"] is not None and result["uncertainty"].shape == image.shape
    assert float(result["uncertainty"].min()) >= 0.0

    # the crop is switched off after the analysis: the result is marked stale and Grad-CAM still runs on
    # the analysed (cropped) image, so the map and the mask cover the same pixels
    at.toggle(key="analyze.crop").set_value(False).run()
    assert any("Stale results" in w.value and "info-bar crop" in w.value for w in at.warning)
    at.button(key="analyze.cam_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    view = at.session_state["analyze.cnn_views"]
    (heat,) = [v["heat"] for v in view.values()]
    assert heat.shape == result["mask"].shape == (64, 64) and heat.min() >= 0.0 and heat.max() <= 1.0


def test_classification_probabilities_match_softmax_of_the_logits(project: Path, new_session) -> None:
    spec = {"name": "lenet5", "in_channels": 1, "num_classes": 3, "input_size": 32}
    classes = ["equiaxed", "lamellar", "porous"]
    model = save_model(project, "cls", spec, {"task": "classification", "class_names": classes}, seed=1)
    image = two_phase_image(32, 32)
    with torch.no_grad():
        logits = model(standardised(image))[0].double()
    expected = (logits.exp() / logits.exp().sum()).numpy()  # softmax by its definition

    at = analyze_with(new_session, image, "runs/cls/model.safetensors")
    (result,) = at.session_state["analyze.results"].values()
    np.testing.assert_allclose(result["table"]["probability"], expected, atol=1e-5)
    assert result["predicted"] == classes[int(np.argmax(expected))]
    report = result["report"]  # the JSON report names the model file and the pixel size (0.25 µm/px)
    assert report["model_file"] == "runs/cls/model.safetensors" and report["method"] == "lenet5:cls"
    assert report["pixel_size_um"] == 0.25 and report["pixel_size_source"]
    assert at.metric[0].value == classes[int(np.argmax(expected))]
    assert len(at.get("plotly_chart")) >= 1


@pytest.mark.parametrize("tta", [False, True])
def test_regression_values_have_units_and_tta_gives_a_spread(project: Path, new_session, tta: bool) -> None:
    spec = {"name": "regressor", "in_channels": 1, "num_targets": 2, "backbone": "tinyvgg",
            "backbone_kwargs": {"input_size": 32}, "hidden": [8]}  # fmt: skip
    meta = {"task": "regression", "target_names": ["porosity", "d_mean"], "target_units": ["1", "µm"]}
    model = save_model(project, "reg", spec, meta, seed=2)
    image = two_phase_image(32, 32)
    with torch.no_grad():
        expected = model(standardised(image))[0].numpy()

    at = analyze_with(new_session, image, "runs/reg/model.safetensors", tta=tta)
    (result,) = at.session_state["analyze.results"].values()
    assert result["table"]["unit"] == ["1", "µm"]
    if not tta:
        np.testing.assert_allclose(result["table"]["value"], expected, rtol=1e-5, atol=1e-6)
        assert all(np.isnan(result["table"]["std"]))
    else:
        assert all(s >= 0 for s in result["table"]["std"])
    assert "µm" in at.metric[1].value


def test_a_model_name_outside_the_models_folders_is_refused(project: Path) -> None:
    import cnn
    import model_files

    with pytest.raises(model_files.UnsafeModelPathError):
        cnn.load(project, "../outside.safetensors")


def test_a_corrupt_model_file_gives_a_message_and_classical_still_works(project: Path, new_session) -> None:
    (project / "runs" / "bad").mkdir()
    (project / "runs" / "bad" / "model.safetensors").write_bytes(b"\x00" * 64)
    at = new_session("analyze")
    at.file_uploader[0].upload("img.tif", tiff16(two_phase_image()), "image/tiff").run()
    at.radio(key="analyze.kind").set_value("CNN model").run()
    assert any("corrupt or unsupported" in e.value for e in at.error)
    at.button(key="analyze.run").click().run()
    assert not at.exception
    assert any("Analysis:" in e.value and "corrupt" in e.value for e in at.error)
    assert not at.session_state["analyze.results"]
    at.radio(key="analyze.kind").set_value("Classical (no training needed)").run()
    at.button(key="analyze.run").click().run()
    assert not at.exception and not at.error
    assert len(at.session_state["analyze.results"]) == 1


def test_default_phase_segmenter_names_itself_in_the_report(project: Path, new_session, media) -> None:
    import microcnn
    from microcnn.inference.predictor import Predictor

    name = copy_default_model(project, "phase_segmenter")
    sample = REPO / "data" / "samples" / "segmentation" / "images" / "synth_000000.png"
    at = new_session("analyze")
    at.file_uploader[0].upload("synth.png", sample.read_bytes(), "image/png").run()
    at.number_input(key="analyze.pixel_um").set_value(0.05)  # the PNG has no pixel size: typed
    at.radio(key="analyze.kind").set_value("CNN model").run()
    at.selectbox(key="analyze.model").select(name)
    at.button(key="analyze.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (result,) = at.session_state["analyze.results"].values()

    image = microcnn.crop_info_bar(microcnn.read_micrograph(sample, pixel_size_um=0.05))  # a direct call
    direct = Predictor.from_checkpoint(project / name, device="cpu").predict(image)
    np.testing.assert_array_equal(result["mask"], direct.mask)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(media(at, "dl.mask")))), direct.mask)
    report = json.loads(media(at, "dl.json"))
    assert report["method"] == "unet:phase_segmenter"  # was "unet:models" (the folder) before
    assert report["model_file"] == name and report["pixel_size_um"] == 0.05
    assert report["info_bar_cropped"]["row"] == image.height


def test_default_property_regressor_std_is_its_predicted_variance(project: Path, new_session, media) -> None:
    from microcnn.engine.checkpoint import load_model

    name = copy_default_model(project, "property_regressor")
    sample = REPO / "data" / "samples" / "regression" / "images" / "synth_000000.png"
    pixels = np.asarray(Image.open(sample))  # 64 x 64 uint8, the regressor's training size
    model, meta = load_model(project / name, device="cpu")
    with torch.no_grad():
        out = model.eval()(standardised(pixels))[0].double().numpy()
    t = len(meta["target_names"])
    mean, logvar = out[:t], out[t:]  # heteroscedastic head: [mean | log-variance] (models/regression.py)

    # typed at the model's own training pixel size (meta), so the app feeds the 64 x 64 pixels unchanged
    trained_um = meta["pixel_size_um"]
    at = analyze_with(new_session, sample.read_bytes(), name, name="porous.png", pixel_um=trained_um)
    assert "analyze.rescale" not in [t.key for t in at.toggle]  # same size: nothing to resample
    (result,) = at.session_state["analyze.results"].values()
    np.testing.assert_allclose(result["table"]["value"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result["table"]["std"], np.sqrt(np.exp(logvar)), rtol=1e-5, atol=1e-7)
    shown = [m.value for m in at.metric]
    assert shown[0].startswith(f"{mean[0]:.4g} ± {np.sqrt(np.exp(logvar[0])):.3g}")
    report = json.loads(media(at, "dl.json"))
    assert report["model_file"] == name and report["method"] == "regressor:property_regressor"
    assert report["pixel_size_um"] == pytest.approx(trained_um) and report["pixel_size_source"] == "typed"
    assert list(report["targets"]) == meta["target_names"]
    assert report["targets"]["porosity"]["std"] == pytest.approx(np.sqrt(np.exp(logvar[0])), rel=1e-5)


def test_an_image_at_another_pixel_size_is_resampled_to_the_models_by_default(project: Path, new_session):
    """phase_segmenter was trained at 0.05 µm/px; an image typed at 0.1 µm/px is resampled (rescale=True),
    and the mask equals a direct Predictor call with rescale on; switched off, the plain prediction and a
    warning."""
    import microcnn
    from microcnn.inference.predictor import Predictor

    name = copy_default_model(project, "phase_segmenter")
    sample = REPO / "data" / "samples" / "segmentation" / "images" / "synth_000001.png"
    at = new_session("analyze")
    at.file_uploader[0].upload("synth.png", sample.read_bytes(), "image/png").run()
    at.number_input(key="analyze.pixel_um").set_value(0.1)
    at.radio(key="analyze.kind").set_value("CNN model").run()
    at.selectbox(key="analyze.model").select(name).run()
    assert at.toggle(key="analyze.rescale").value is True  # on by default when the sizes differ
    at.button(key="analyze.run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (result,) = at.session_state["analyze.results"].values()
    image = microcnn.crop_info_bar(microcnn.read_micrograph(sample, pixel_size_um=0.1))
    direct = {
        r: Predictor.from_checkpoint(project / name, device="cpu", rescale=r).predict(image) for r in (1, 0)
    }
    assert direct[1].meta["rescale_factor"] == 2.0  # 0.1 / 0.05: twice the rows and columns
    np.testing.assert_array_equal(result["mask"], direct[1].mask)
    assert result["mask"].shape == image.pixels.shape  # back at the image's own pixels

    at.toggle(key="analyze.rescale").set_value(False).run()
    assert any("smaller to it than in training" in w.value for w in at.warning)
    at.button(key="analyze.run").click().run()
    (result,) = at.session_state["analyze.results"].values()
    np.testing.assert_array_equal(result["mask"], direct[0].mask)
