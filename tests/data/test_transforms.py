"""Augmentation pipelines: property test over dtypes/shapes, nearest-neighbour masks, one call for image
and mask, normalisation, uint16 awareness, name checking, save/load."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microcnn.data.transforms import build_transforms, default_augmentations, load_pipeline, save_pipeline
from microcnn.errors import ConfigError
from microcnn.io.images import read_micrograph

TOP = {"uint8": 255, "uint16": 65535}
MASK_VALUES = [0, 1, 3, 7, 254, 255]


@dataclass(frozen=True)
class Case:
    """One micrograph to generate: its stored dtype and shape, the values it is made of, its mask values."""

    dtype: str
    rows: int
    cols: int
    rgb: bool
    values: tuple[float, ...]
    mask_values: tuple[int, ...]
    seed: int

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        shape = (self.rows, self.cols, 3) if self.rgb else (self.rows, self.cols)
        image = rng.choice(np.array(self.values, dtype=self.dtype), size=shape)
        mask = rng.choice(np.array(self.mask_values, np.uint8), size=(self.rows, self.cols))
        return image, mask


@st.composite
def cases(draw) -> Case:
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    if dtype == "float32":  # any finite float32, from -3.4e38 to 3.4e38 and subnormals
        value = st.floats(allow_nan=False, allow_infinity=False, width=32)
    else:
        value = st.integers(0, TOP[dtype])
    return Case(
        dtype=dtype,
        rows=draw(st.integers(1, 2048)),
        cols=draw(st.integers(1, 2048)),
        rgb=draw(st.booleans()),
        values=tuple(draw(st.lists(value, min_size=1, max_size=6))),
        mask_values=tuple(draw(st.lists(st.sampled_from(MASK_VALUES), min_size=1, max_size=3, unique=True))),
        seed=draw(st.integers(0, 2**16)),
    )


def _tiff(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, photometric="rgb" if image.ndim == 3 else "minisblack")
    return buffer.getvalue()


F32_MAX = float(np.finfo(np.float32).max)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), patch=st.sampled_from([None, 1, 17, 64]))
@example(case=Case("uint8", 1, 1, False, (0, 255), (0,), 0), patch=None)
@example(case=Case("uint16", 1, 2048, True, (0, 255, 256, 65535), (1, 255), 1), patch=17)
@example(case=Case("float32", 2048, 1, False, (-F32_MAX, 0.0, 1e-45, F32_MAX), (3, 7), 2), patch=None)
@example(case=Case("float32", 2048, 2048, True, (-1e30, 0.5, 2.0, 7e37), (0, 1, 254), 3), patch=64)
def test_pipeline_property(case, patch):
    """Stored TIFF of any dtype and shape 1x1..2048x2048 -> read_micrograph -> augmentation pipeline:
    finite float32 of the promised shape; mask values within the input's plus 255 (not labelled)."""
    image, mask = case.arrays()
    micrograph = read_micrograph(_tiff(image))
    pixels = micrograph.pixels
    # the documented colour rule: RGB with three equal channels becomes gray, true colour stays RGB
    gray = not case.rgb or (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    )
    assert pixels.shape == ((case.rows, case.cols) if gray else (case.rows, case.cols, 3))
    assert pixels.dtype == np.float32 and np.isfinite(pixels).all()
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    channels = 1 if gray else 3
    t = build_transforms(default_augmentations(), train=True, patch_size=patch, seed=case.seed)
    out = t({"image": pixels, "mask": mask, "id": "x"})
    img, m = out["image"], out["mask"]
    assert img.dtype == torch.float32 and m.dtype == torch.int64 and out["id"] == "x"
    assert torch.isfinite(img).all()
    if patch is None:  # RandomRotate90 may swap rows and cols
        assert tuple(img.shape) in {(channels, case.rows, case.cols), (channels, case.cols, case.rows)}
    else:
        assert tuple(img.shape) == (channels, patch, patch)
    assert tuple(m.shape) == tuple(img.shape[1:])
    assert set(m.unique().tolist()) <= set(case.mask_values) | {255}
    evaluated = build_transforms(default_augmentations(), train=False)({"image": pixels, "mask": mask})
    assert tuple(evaluated["image"].shape) == (channels, case.rows, case.cols)
    assert torch.isfinite(evaluated["image"]).all()
    assert torch.equal(evaluated["mask"], torch.as_tensor(mask, dtype=torch.int64))


def test_masks_resampled_nearest_only_even_when_a_spec_asks_for_linear():
    # A linear resampling of a {0, 10} mask would create values between 0 and 10 at the edge, so each entry
    # asks for linear mask interpolation (cv2.INTER_LINEAR = 1): the pipeline must still use nearest.
    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 10
    spec = [
        {"name": "Affine", "scale": [1.3, 1.7], "rotate": [20, 40], "mask_interpolation": 1, "p": 1.0},
        {
            "name": "RandomResizedCrop",
            "size": [33, 33],
            "scale": [0.3, 0.6],
            "mask_interpolation": 1,
            "p": 1.0,
        },
    ]
    with pytest.warns(
        UserWarning, match="mask_interpolation=1 is overridden; masks are resampled by nearest"
    ):
        t = build_transforms(spec, train=True, seed=0)
    for _ in range(5):
        out = t({"image": np.zeros((40, 40), np.float32), "mask": mask})
        assert set(out["mask"].unique().tolist()) <= {0, 10, 255}


def test_linear_mask_interpolation_would_blend_classes():
    # The control for the test above: albumentations itself, with the linear setting honoured, does create
    # values between the classes, so the test above can fail.
    import albumentations as A

    mask = np.zeros((40, 40), np.uint8)
    mask[:, 20:] = 10
    linear = A.Compose([A.Affine(scale=(1.3, 1.7), rotate=(20, 40), mask_interpolation=1, p=1.0)], seed=0)
    values = set(np.unique(linear(image=np.zeros((40, 40), np.float32), mask=mask)["mask"]).tolist())
    assert values - {0, 10}


def test_default_augmentations_are_the_micrograph_defaults():
    # The list: flips, rot90, random crop/scale, brightness/contrast, gamma, Gaussian noise, blur,
    # CLAHE, by their albumentations names.
    spec = default_augmentations()
    names = {entry["name"] for entry in spec}
    expected = {
        "HorizontalFlip",
        "VerticalFlip",
        "RandomRotate90",
        "Affine",  # random scale
        "RandomBrightnessContrast",
        "RandomGamma",
        "GaussNoise",
        "GaussianBlur",
        "CLAHE",
    }
    assert expected <= names
    scale = next(entry["scale"] for entry in spec if entry["name"] == "Affine")
    assert min(scale) < 1 < max(scale)
    # the random crop comes with patch_size, ahead of the spec
    built = build_transforms(spec, train=True, patch_size=32, seed=0).compose.transforms
    assert [type(x).__name__ for x in built[:2]] == ["PadIfNeeded", "RandomCrop"]


def test_clahe_keeps_16_bit_levels_distinct():
    # A 16-bit image spanning the full range (a ramp 0..65535) with a block of the levels 256..259.
    # albumentations' own CLAHE squeezes to 8 bits: 256..259 / 65535 * 255 all round to 1 and merge.
    import albumentations as A

    image = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)
    image[30:32, 30:32] = [[256, 257], [258, 259]]
    spec = [{"name": "CLAHE", "clip_limit": 2.0, "p": 1.0}, {"name": "Normalize", "mean": 0.0, "std": 1.0}]
    out = build_transforms(spec, train=True, seed=0)({"image": image})["image"][0, 30:32, 30:32].numpy()
    assert len(np.unique(out)) == 4
    squeezed = A.CLAHE(clip_limit=2.0, p=1.0)(image=image.astype(np.float32) / 65535)["image"][30:32, 30:32]
    assert len(np.unique(squeezed)) == 1  # the bug this guards against


def test_clahe_on_8_bit_data_equals_albumentations():
    import albumentations as A

    image = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.float32) / 255
    spec = [
        {"name": "CLAHE", "clip_limit": [3.0, 3.0], "p": 1.0},
        {"name": "Normalize", "mean": 0.0, "std": 1.0},
    ]
    ours = build_transforms(spec, train=True, seed=0)({"image": image})["image"][0].numpy()
    reference = A.CLAHE(clip_limit=(3.0, 3.0), p=1.0)(image=image)["image"]
    np.testing.assert_array_equal(ours, reference)


def test_image_and_mask_share_one_random_draw():
    # The image encodes the mask (image = mask / 4), so any geometric disagreement shows up.
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 5, (24, 24)).astype(np.uint8)
    spec = [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 1.0},
        {"name": "Normalize", "mean": 0.0, "std": 1.0},
    ]
    t = build_transforms(spec, train=True, patch_size=16, seed=1)
    for _ in range(8):
        out = t({"image": mask.astype(np.float32) / 4, "mask": mask})
        np.testing.assert_allclose(out["image"][0].numpy() * 4, out["mask"].numpy(), atol=1e-5)


def test_per_image_standardisation_and_uint16_awareness():
    t = build_transforms(None, train=False)
    ramp = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    out = t({"image": ramp})["image"][0].numpy()
    x = ramp / 65535.0
    np.testing.assert_allclose(out, (x - x.mean()) / (x.std() + 1e-4), rtol=1e-4)  # eps of albumentations
    fixed = build_transforms([{"name": "Normalize", "mean": 0.5, "std": 0.25}], train=False)
    low = fixed({"image": np.array([[255, 256]], np.uint16)})["image"][0, 0].numpy()
    np.testing.assert_allclose(low, (np.array([255, 256]) / 65535 - 0.5) / 0.25, rtol=1e-6)
    assert low[0] != low[1]  # 16-bit values are not squeezed to 8 bits


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ([{"name": "HorizontalFlp"}], "Did you mean 'HorizontalFlip'"),
        ([{"name": "GaussNoise", "std_rang": [0.1, 0.2]}], "Did you mean 'std_range'"),
        ([{"p": 0.5}], "'name'"),
        ([{"name": "RandomGamma", "gamma_limit": "abc"}], "Invalid arguments"),
    ],
)
def test_bad_specs_explain(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_transforms(spec, train=True)


def test_bad_images_refused():
    t = build_transforms(None, train=False)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        t({"image": np.full((2, 2), 3.0, np.float32)})
    with pytest.raises(ConfigError, match=r"0\.\.255"):
        t({"image": np.zeros((2, 2), np.float32), "mask": np.full((2, 2), 300)})


def test_save_load_pipeline_reproduces(tmp_path):
    # CLAHE always applied, on 16-bit-like data, so the saved pipeline must rebuild the 16-bit CLAHE
    spec = [dict(e, p=1.0) if e["name"] == "CLAHE" else e for e in default_augmentations()]
    t = build_transforms(spec, train=True, patch_size=16, seed=5)
    loaded = load_pipeline(save_pipeline(t, tmp_path / "pipeline.json"))
    fresh = build_transforms(spec, train=True, patch_size=16, seed=5)
    assert loaded.patch_size == 16 and loaded.train
    assert [type(x) for x in loaded.compose.transforms] == [type(x) for x in fresh.compose.transforms]
    assert loaded.compose.mask_interpolation == 0  # cv2.INTER_NEAREST, also after loading
    assert all(
        x.mask_interpolation == 0 for x in loaded.compose.transforms if hasattr(x, "mask_interpolation")
    )
    image = np.random.default_rng(0).integers(0, 65536, (30, 30)).astype(np.uint16)
    loaded.reseed(11)
    fresh.reseed(11)
    for _ in range(4):
        assert torch.equal(loaded({"image": image})["image"], fresh({"image": image})["image"])
