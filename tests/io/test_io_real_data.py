"""The real micrographs in ../shared/data read with the documented shapes and values.

Expected values come from an independent decoder: Pillow for the UHCS TIFFs (microcnn reads TIFF with
tifffile) and OpenCV for the NASA PNGs (microcnn reads PNG with Pillow).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from microcnn.io.images import GRAY_RULE_EQUAL, read_micrograph

pytestmark = pytest.mark.shared_data


def test_uhcs_tiffs_are_484x645_8bit_gray(uhcs_dir):
    paths = sorted((uhcs_dir / "images").glob("*.tif"))
    assert len(paths) == 24
    for path in paths:
        m = read_micrograph(path)
        assert m.shape == (484, 645)
        assert (m.source_dtype, m.bit_depth, m.meta["format"]) == ("uint8", 8, "tiff")
        with Image.open(path) as reference:
            assert reference.mode == "L"
            expected = np.asarray(reference, np.float32) / 255.0
        np.testing.assert_allclose(m.pixels, expected, rtol=1e-6)


def test_nasa_pngs_are_512x512_rgb_with_equal_channels(nasa_dir):
    cv2 = pytest.importorskip("cv2")
    paths = sorted((nasa_dir / "images").glob("*.png"))
    assert len(paths) == 23
    for path in paths:
        m = read_micrograph(path)
        reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # (H, W, 3) BGR uint8
        assert reference.shape == (512, 512, 3)
        assert m.shape == (512, 512) and m.meta["shape_original"] == [512, 512, 3]
        assert m.meta["gray_rule"] == GRAY_RULE_EQUAL
        np.testing.assert_allclose(m.pixels, reference[..., 1] / 255.0, rtol=1e-6)
        assert read_micrograph(path, as_gray=False).shape == (512, 512, 3)
