"""The app in a real browser: upload a 16-bit TIFF on Analyze, see overlay + tables + download; open Learn;
run a small training on Train (background process, live state, finished model)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e


SQUARES = ((6, 6), (6, 40), (40, 6), (40, 40))


def write_tiff16(path: Path) -> Path:
    """64x64 uint16 TIFF: background 10000 with four bright 12x12 squares (50000), 4 px/µm (ImageJ)."""
    import tifffile

    image = np.full((64, 64), 10_000, np.uint16)
    for r0, c0 in SQUARES:
        image[r0 : r0 + 12, c0 : c0 + 12] = 50_000
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, resolution=(4.0, 4.0), imagej=True, metadata={"unit": "um"})
    path.write_bytes(buffer.getvalue())
    return path


def test_analyze_16bit_tiff_in_the_browser(page, app_url: str, artifacts: Path, tmp_path: Path) -> None:
    pytest.importorskip("microcnn.analysis.classical", reason="the classical methods have not landed yet")
    from PIL import Image
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    page.goto(app_url)
    expect(page.get_by_text("Upload a micrograph to start.")).to_be_visible()
    uploader = page.get_by_test_id("stFileUploader").locator('input[type="file"]')
    uploader.set_input_files(str(write_tiff16(tmp_path / "steel16.tif")))
    expect(page.get_by_text("uint16 (16-bit)")).to_be_visible()
    page.get_by_role("button", name="Analyze").click()
    expect(page.get_by_text("Phase fractions")).to_be_visible()
    overlay = page.get_by_test_id("stImage").filter(has_text="steel16.tif: phase map over the image")
    expect(overlay.get_by_role("img")).to_be_visible()  # the overlay itself, found by its caption
    fractions = page.get_by_test_id("stDataFrame").first  # drawn on a canvas: its columns are listed
    fractions.hover()  # by the toolbar's "Show/hide columns" menu
    fractions.get_by_role("button", name="Show/hide columns").click()
    for column in ("fraction", "ci_low", "ci_high"):
        expect(page.get_by_role("checkbox", name=column, exact=True)).to_be_checked()
    page.keyboard.press("Escape")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Mask PNG").click()
    download = download_info.value
    assert download.suggested_filename == "steel16_mask.png"
    data = Path(download.path()).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    expected = np.zeros((64, 64), np.uint8)  # Otsu splits the two levels: the squares are class 1
    for r0, c0 in SQUARES:
        expected[r0 : r0 + 12, c0 : c0 + 12] = 1
    with Image.open(io.BytesIO(data)) as mask:
        assert mask.size == (64, 64)  # (cols, rows) of the uploaded image
        np.testing.assert_array_equal(np.asarray(mask), expected)
    page.screenshot(path=str(artifacts / "analyze_16bit.png"), full_page=True)


def test_learn_page_opens(page, app_url: str, artifacts: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    page.goto(f"{app_url}/learn")
    expect(page.get_by_text("Convolution playground")).to_be_visible()
    expect(page.get_by_text("Optimizer race")).to_be_visible()
    page.screenshot(path=str(artifacts / "learn.png"), full_page=True)


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")


def test_small_training_on_train_page(page, app_url: str, artifacts: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)
    page.goto(f"{app_url}/train")
    expect(page.get_by_text("No training jobs yet")).to_be_visible()
    set_number(page, "Images", 12)  # defaults: classification, synthetic data, LeNet-5
    set_number(page, "Epochs", 1)
    set_number(page, "Batch size", 4)
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text("Started")).to_be_visible()
    expect(page.get_by_text("Model saved")).to_be_visible(timeout=180_000)  # the live fragment sees it finish
    expect(page.get_by_test_id("stMarkdown").get_by_text("finished", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts / "train.png"), full_page=True)
    page.goto(f"{app_url}/models")
    expect(page.get_by_role("combobox", name="Model")).to_have_value(
        re.compile(r"^runs/run-.*/model\.safetensors$")
    )
    # the weights are read when the button is clicked (a deferred download), and arrive whole
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download weights (.safetensors)").click()
    download = download_info.value
    assert download.suggested_filename == "model.safetensors"
    from safetensors import safe_open

    with safe_open(download.path(), "pt") as weights:  # read by the safetensors library, not by microcnn
        card = json.loads(weights.metadata()["microcnn"])
        assert card["task"] == "classification" and card["model"]["name"] == "lenet5"
        assert len(list(weights.keys())) > 0
