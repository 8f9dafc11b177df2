"""The classical baseline on real micrographs, scored against the published NASA Super masks."""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.analysis import otsu, phase_fractions
from microcnn.io.images import read_micrograph

pytestmark = pytest.mark.shared_data


def test_otsu_baseline_on_nasa_superalloy_test_images(nasa_dir):
    from skimage.io import imread

    paths = sorted((nasa_dir / "images").glob("spot2_*.png"))  # the Super1 test images
    assert len(paths) == 4
    accuracies = []
    for path in paths:
        truth = imread(nasa_dir / "masks" / path.name) > 0  # secondary + tertiary γ′ vs γ matrix
        # etched γ′ is dark in these SE images, hence invert
        result = otsu(read_micrograph(path), invert=True, class_names=("gamma", "gamma_prime"))
        accuracies.append(np.mean(result.mask.astype(bool) == truth))
        fractions = phase_fractions(result, n_boot=200)
        assert fractions["fraction"].sum() == pytest.approx(1.0)
        assert fractions["ci_low"][1] < fractions["fraction"][1] < fractions["ci_high"][1]
    # a global threshold is a weak but real baseline: ~0.8 pixel accuracy against the expert masks,
    # well below the published CNN (joint IoU 0.942), which is what a CNN has to beat
    assert min(accuracies) > 0.75 and np.mean(accuracies) > 0.78
