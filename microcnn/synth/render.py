"""Render a phase mask as an SEM-like image: contrast, edge brightening, charging, blur, noise, info bar.

Every random draw comes from the ``rng`` passed in. Brightness and contrast are drawn per image over wide,
overlapping ranges so that the morphology classes cannot be told apart by mean intensity alone.

Example:
    >>> import numpy as np
    >>> from microcnn.synth.render import render_sem
    >>> mask = np.zeros((32, 32), np.uint8); mask[8:24, 8:24] = 1
    >>> img = render_sem(mask, rng=np.random.default_rng(0))
    >>> img.dtype, img.shape, bool(img[16, 16] > img[2, 2])
    (dtype('float32'), (32, 32), True)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from microcnn.synth.generators import smooth_noise


def _base_intensity(
    mask: np.ndarray, grains: np.ndarray | None, contrast: int, rng: np.random.Generator
) -> np.ndarray:
    """Phase-dependent intensity plus per-grain channelling contrast; (H, W) float64."""
    sign = contrast if contrast != 0 else (1 if rng.uniform() < 0.5 else -1)
    matrix = rng.uniform(0.25, 0.65)
    second = float(np.clip(matrix + sign * rng.uniform(0.15, 0.35), 0.03, 0.97))
    img = np.where(mask == 1, second, matrix)
    if grains is not None:
        offsets = rng.normal(0.0, rng.uniform(0.01, 0.05), int(grains.max()) + 1)
        img = img + np.where(mask == 1, 0.0, offsets[grains])
    return img


def _edge_brightening(mask: np.ndarray, strength: float) -> np.ndarray:
    """The SEM edge effect: extra secondary-electron yield where the phase changes (a bright rim)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float64), 1.0)
    grad = np.hypot(ndimage.sobel(soft, 0), ndimage.sobel(soft, 1))
    peak = grad.max()
    return strength * grad / peak if peak > 0 else grad


def _charging_and_vignetting(
    shape: tuple[int, int], rng: np.random.Generator, *, vignetting: float | None, charging: float | None
) -> np.ndarray:
    """Multiplicative field: radial vignetting 1 - v·ρ²/2 (ρ² = 0 at the centre, 2 in the corners, so a
    corner is darker by the factor 1 - v) times 1 + c·(smooth unit-std charging pattern)."""
    rows, cols = shape
    rr, cc = np.mgrid[0:rows, 0:cols]
    r2 = ((rr - rows / 2) / (rows / 2)) ** 2 + ((cc - cols / 2) / (cols / 2)) ** 2
    v = rng.uniform(0.0, 0.15) if vignetting is None else vignetting
    vignette = 1.0 - v * r2 / 2
    if charging == 0:  # switched off: no pattern drawn
        return vignette
    c = rng.uniform(0.0, 0.06) if charging is None else charging
    return vignette * (1.0 + c * smooth_noise(shape, max(rows, cols) / 6, rng))


def render_sem(
    mask: np.ndarray,
    *,
    rng: np.random.Generator,
    grains: np.ndarray | None = None,
    contrast: int = 1,
    blur_px: float | None = None,
    photons: float | None = None,
    gaussian_noise: float | None = None,
    edge_strength: float | None = None,
    vignetting: float | None = None,
    charging: float | None = None,
) -> np.ndarray:
    """Turn a phase mask into an SEM-like image.

    Image model: I = (phase level + edge rim) × vignetting × charging, blurred, then Poisson shot noise
    (mean I, variance I / photons), then Gaussian detector noise and scan-line jitter, clipped to [0, 1].
    Every option drawn when None; the draws happen in a fixed order, so given options change the image
    only through what they set.

    Args:
        mask: (H, W) uint8 phase mask in {0, 1}.
        rng: the only source of randomness.
        grains: optional (H, W) int labels; each grain gets its own small brightness offset.
        contrast: +1 second phase brighter, -1 darker, 0 drawn at random.
        blur_px: Gaussian blur sigma in px (probe size); drawn in 0.5-1.2 when None.
        photons: mean detected electrons per pixel at intensity 1 (shot noise, Poisson); 40-250 when None.
        gaussian_noise: std of additive detector noise (and half of it per scan line); 0.005-0.03.
        edge_strength: intensity added at the steepest phase edge: the rim is edge_strength·|∇(G₁ * mask)|
            / max|∇(G₁ * mask)| (Sobel gradient of the mask smoothed with sigma 1 px); 0.05-0.2.
        vignetting: v in the factor 1 - v·ρ²/2 (corners darker by 1 - v); 0-0.15.
        charging: amplitude of the smooth multiplicative charging pattern; 0-0.06 (0 switches it off).

    Returns:
        (H, W) float32 image in [0, 1].
    """
    img = _base_intensity(mask, grains, contrast, rng)
    img = img + _edge_brightening(mask, rng.uniform(0.05, 0.2) if edge_strength is None else edge_strength)
    img = img * _charging_and_vignetting(mask.shape, rng, vignetting=vignetting, charging=charging)
    sigma = rng.uniform(0.5, 1.2) if blur_px is None else blur_px
    img = ndimage.gaussian_filter(img, sigma)
    n_photons = rng.uniform(40, 250) if photons is None else photons
    img = rng.poisson(np.clip(img, 0, None) * n_photons) / n_photons
    noise = rng.uniform(0.005, 0.03) if gaussian_noise is None else gaussian_noise
    img = img + rng.normal(0.0, noise, img.shape)
    img = img + rng.normal(0.0, noise / 2, (img.shape[0], 1))  # scan-line (row) jitter
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def nice_scale_bar_um(width_um: float) -> float:
    """The largest 1-2-5 x 10^k length (µm) not longer than a quarter of ``width_um``."""
    target = width_um / 4
    exp = np.floor(np.log10(target))
    for step in (5, 2, 1):
        if step * 10**exp <= target:
            return float(step * 10**exp)
    return float(10**exp)


def info_bar(cols: int, pixel_size_um: float, *, rows: int = 20) -> np.ndarray:
    """A dark SEM data bar with a white scale bar and its length as text: (rows, cols) float32 in [0, 1].

    The bar is ``nice_scale_bar_um(cols * pixel_size_um)`` long, i.e. ``round(length / pixel_size_um)`` px.
    """
    from PIL import Image, ImageDraw, ImageFont

    length_um = nice_scale_bar_um(cols * pixel_size_um)
    length_px = round(length_um / pixel_size_um)
    canvas = Image.new("L", (cols, rows), color=20)
    draw = ImageDraw.Draw(canvas)
    top = rows // 2 - 2
    draw.rectangle([6, top, 6 + length_px - 1, top + 3], fill=255)
    label = f"{length_um:g} um"  # the embedded font has no µ glyph
    font = ImageFont.load_default(size=max(rows - 8, 8))
    draw.text((12 + length_px, rows // 2), label, fill=255, font=font, anchor="lm")
    return np.asarray(canvas, dtype=np.float32) / 255.0
