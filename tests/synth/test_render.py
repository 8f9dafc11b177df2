"""SEM rendering against its physics: Poisson shot noise, the edge rim, vignetting, each isolated by switching
the other effects off and compared with the formula it follows."""

from __future__ import annotations

import numpy as np
import pytest

from microcnn.synth.render import render_sem

QUIET = {"blur_px": 0.0, "gaussian_noise": 0.0, "charging": 0.0}  # what each test switches off
NOISELESS = {**QUIET, "photons": 1e12}  # shot noise ~1e-6 relative: below float32's resolution of [0, 1]


@pytest.mark.parametrize("photons", [100.0, 250.0])
def test_shot_noise_variance_is_mean_over_photons(photons):
    # Poisson counts N with mean I·n, image N / n: mean I and variance I / n
    flat = np.zeros((256, 256), np.uint8)
    img = render_sem(flat, rng=np.random.default_rng(3), photons=photons, vignetting=0.0, **QUIET)
    img = img.astype(np.float64)
    assert img.var() * photons / img.mean() == pytest.approx(1.0, abs=0.03)  # 65,536 px: 5 standard errors
    # counts are integers: every pixel is a multiple of 1/n
    np.testing.assert_allclose(img * photons, np.rint(img * photons), atol=1e-3)


def test_rim_of_a_step_edge_is_brighter_than_the_interior():
    step = np.zeros((128, 128), np.uint8)
    step[:, 64:] = 1  # second phase on the right, imaged brighter (contrast +1)
    img = render_sem(step, rng=np.random.default_rng(0), contrast=1, edge_strength=0.15).astype(np.float64)
    profile = img.mean(axis=0)  # average along the edge: noise / sqrt(128)
    assert profile[64] > profile[70:80].mean() + 0.05  # bright side: rim above its interior
    assert profile[63] > profile[48:58].mean() + 0.05  # dark side too: the rim is on both sides


def test_edge_rim_follows_the_gradient_of_the_smoothed_step():
    # rim = s·|Sobel(G₁ * mask)| / max. For a step between columns 63 | 64, the smoothed step's Sobel
    # difference at column 64 + i is g(i) + g(i + 1) with g(k) = exp(-k²/2) (sampled Gaussian, sigma 1),
    # so the rim decays as (g(i) + g(i + 1)) / (g(0) + g(1)) and equals s at the two edge columns
    step = np.zeros((32, 128), np.uint8)
    step[:, 64:] = 1
    strength = 0.12
    img = render_sem(step, rng=np.random.default_rng(1), edge_strength=strength, vignetting=0.0, **NOISELESS)
    profile = img.astype(np.float64).mean(axis=0)
    g = np.exp(-(np.arange(6) ** 2) / 2)
    expected = strength * (g[:-1] + g[1:]) / (g[0] + g[1])
    bright = profile[64:69] - profile[100]  # phase level far from the edge subtracted
    dark = profile[63:58:-1] - profile[20]
    np.testing.assert_allclose(bright, expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(dark, expected, rtol=1e-3, atol=1e-5)


def test_vignetting_darkens_the_corners_by_the_formula():
    # factor 1 - v·ρ²/2, ρ² = ((r - H/2)/(H/2))² + ((c - W/2)/(W/2))²: 1 at the centre, 1 - v at (0, 0)
    v = 0.12
    flat = np.zeros((64, 80), np.uint8)
    img = render_sem(flat, rng=np.random.default_rng(2), vignetting=v, **NOISELESS).astype(np.float64)
    centre = img[32, 40]
    assert img[0, 0] == pytest.approx(centre * (1 - v), rel=1e-5)
    assert img[0, 0] < img[32, 0] < centre and img[0, 0] < img[0, 40] < centre
    rr, cc = np.mgrid[0:64, 0:80]
    rho2 = ((rr - 32) / 32) ** 2 + ((cc - 40) / 40) ** 2
    np.testing.assert_allclose(img, centre * (1 - v * rho2 / 2), rtol=1e-5)
