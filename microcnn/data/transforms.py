"""Augmentation and tensor conversion: albumentations pipelines built from a list of {"name": ..., ...} dicts.

A spec is what the YAML config holds, e.g. ``[{"name": "HorizontalFlip", "p": 0.5}, {"name": "CLAHE"}]``:
albumentations class names with their keyword arguments. Names and arguments are checked with a "did you
mean" error; "CLAHE" builds :class:`microcnn.data.clahe.PreciseCLAHE` (A.CLAHE's arguments, but 16-bit
data are equalised at 16-bit precision, not squeezed to 8 bits). Image and mask always go through one
call; masks are resampled by nearest neighbour only (``Compose(mask_interpolation=cv2.INTER_NEAREST)``
overrides every transform's own setting; a spec asking for another one gets a warning) and padded with
255 ("not labelled").

Input images are float32 in [0, 1] (what ``read_micrograph`` gives: 16-bit data divided by 65535, never
squeezed to 8 bits); raw uint8/uint16 arrays are accepted and scaled by their dtype maximum. Unless the spec
has its own ``Normalize``, each image is standardised on its own (zero mean, unit std: no ImageNet
statistics on grayscale micrographs). Output: image tensor (C, H, W) float32, mask tensor (H, W) int64.

Example:
    >>> t = build_transforms(default_augmentations(), train=True, patch_size=256, seed=0)
    >>> out = t({"image": pixels, "mask": mask})      # doctest: +SKIP
    >>> out["image"].shape, out["mask"].dtype         # doctest: +SKIP
    (torch.Size([1, 256, 256]), torch.int64)
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from microcnn.errors import ConfigError
from microcnn.registry import suggest, unknown_name_error

IGNORE_INDEX = 255
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def default_augmentations() -> list[dict[str, Any]]:
    """The micrograph defaults: D4 symmetries, mild scale, intensity jitter, noise, blur, CLAHE.

    Micrographs have no "up": flips and 90° rotations are label-preserving. Scale stays within ±10 % so
    that sizes in µm learnt from the pixel size are not distorted much. Gamma runs before additive
    changes, so it never sees negative values.
    """
    return [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "VerticalFlip", "p": 0.5},
        {"name": "RandomRotate90", "p": 0.5},
        {"name": "Affine", "scale": [0.9, 1.1], "p": 0.3},
        {"name": "CLAHE", "clip_limit": 2.0, "p": 0.1},
        {"name": "RandomGamma", "gamma_limit": [80, 120], "p": 0.3},
        {"name": "RandomBrightnessContrast", "brightness_limit": 0.1, "contrast_limit": 0.1, "p": 0.5},
        {"name": "GaussNoise", "std_range": [0.01, 0.04], "p": 0.3},
        {"name": "GaussianBlur", "blur_limit": [3, 5], "p": 0.2},
    ]


def _transform_classes() -> dict[str, type]:
    import albumentations as A

    classes = {
        name: obj
        for name, obj in vars(A).items()
        if inspect.isclass(obj) and issubclass(obj, A.BasicTransform) and not name.startswith("_")
    }
    from microcnn.data.clahe import PreciseCLAHE

    classes["CLAHE"] = PreciseCLAHE  # spec name "CLAHE": A.CLAHE would squeeze 16-bit data to 8 bits
    return classes


def _build_one(entry: dict[str, Any], classes: dict[str, type]) -> Any:
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"Each augmentation must be a mapping with a 'name'; got {entry!r}.")
    kwargs = {k: v for k, v in entry.items() if k != "name"}
    name = str(entry["name"])
    if name not in classes:
        raise ConfigError(str(unknown_name_error("augmentation", name, list(classes))))
    cls = classes[name]
    params = inspect.signature(cls.__init__).parameters
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"Augmentation {name} has no argument '{key}'.{suggest(key, list(params))} "
                f"Arguments: {', '.join(p for p in params if p != 'self')}."
            )
    if kwargs.get("mask_interpolation", 0) != 0:
        warnings.warn(
            f"Augmentation {name}: mask_interpolation={kwargs['mask_interpolation']} is overridden; masks "
            "are resampled by nearest neighbour only (class indices must not be blended). Remove the key.",
            UserWarning,
            stacklevel=3,
        )
    if "fill_mask" in params and "fill_mask" not in kwargs:
        kwargs["fill_mask"] = IGNORE_INDEX  # a border that a transform invents is "not labelled", not class 0
    if name == "Normalize" and "max_pixel_value" not in kwargs:
        kwargs["max_pixel_value"] = 1.0  # inputs are already in [0, 1]
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # pydantic validation errors are ValueErrors
        raise ConfigError(f"Invalid arguments for augmentation {name}: {exc}") from None


def build_transforms(
    spec: list[dict[str, Any]] | None,
    *,
    train: bool,
    patch_size: int | None = None,
    seed: int | None = None,
) -> Transform:
    """Build the pipeline: [pad + random crop to ``patch_size``] + spec (train only) + normalise + tensor.

    Args:
        spec: augmentations (albumentations names + kwargs); None or [] = none. Ignored when ``train`` is
            False, except a ``Normalize`` entry, which is kept so training and evaluation match.
        train: training pipeline (random) or evaluation (deterministic, whole image).
        patch_size: side in px of the square training crop; images smaller than it are padded (image 0,
            mask 255). Without it a train pipeline keeps each image's size, but ``RandomRotate90`` may swap
            rows and cols of non-square images.
        seed: seed of the pipeline's own random state (albumentations ignores global seeds).

    Example:
        >>> build_transforms([{"name": "HorizontalFlip", "p": 0.5}], train=True, patch_size=128, seed=0)
        ... # doctest: +SKIP
    """
    import albumentations as A
    import cv2

    classes = _transform_classes()
    built = [_build_one(entry, classes) for entry in (spec or [])]
    normalizers = [t for t in built if isinstance(t, A.Normalize)]
    steps: list[Any] = []
    if train and patch_size is not None:
        if int(patch_size) < 1:
            raise ConfigError(f"patch_size must be a positive number of px; got {patch_size}.")
        size = int(patch_size)
        steps += [
            A.PadIfNeeded(min_height=size, min_width=size, fill=0, fill_mask=IGNORE_INDEX, p=1.0),
            A.RandomCrop(height=size, width=size, p=1.0),
        ]
    steps += [t for t in built if not isinstance(t, A.Normalize)] if train else []
    steps += normalizers or [A.Normalize(normalization="image", p=1.0)]
    compose = A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST, seed=seed)
    return Transform(compose, train=train, patch_size=patch_size)


class Transform:
    """A built pipeline: ``transform(sample) -> sample`` with "image" (and "mask") converted.

    Other keys ("label", "target", "pixel_size_um", "id", ...) pass through unchanged.
    """

    def __init__(self, compose: Any, *, train: bool, patch_size: int | None) -> None:
        self.compose = compose
        self.train = train
        self.patch_size = patch_size

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        import torch

        out = dict(sample)
        inputs = {"image": to_unit_float(np.asarray(sample["image"]))}
        if sample.get("mask") is not None:
            inputs["mask"] = _mask_uint8(np.asarray(sample["mask"]))
        result = self.compose(**inputs)
        # Tensor conversion by hand, not ToTensorV2: flips leave negative strides that torch.from_numpy
        # refuses (ToTensorV2 fails on such masks in albumentations 2.0.8).
        image = np.asarray(result["image"], dtype=np.float32)
        image = image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
        out["image"] = torch.from_numpy(np.ascontiguousarray(image))
        if "mask" in inputs:
            out["mask"] = torch.from_numpy(np.ascontiguousarray(result["mask"], dtype=np.int64))
        return out

    def reseed(self, seed: int) -> None:
        """Give the pipeline a new random state (called per DataLoader worker by ``worker_init_fn``)."""
        self.compose.set_random_seed(int(seed))

    def to_dict(self) -> dict[str, Any]:
        import albumentations as A

        return {"train": self.train, "patch_size": self.patch_size, "albumentations": A.to_dict(self.compose)}

    def __repr__(self) -> str:
        return f"Transform(train={self.train}, patch_size={self.patch_size}, {self.compose!r})"


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """(H, W[, C]) uint8 / uint16 / float -> float32 in [0, 1] (integers divided by their dtype maximum)."""
    if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        raise ConfigError(f"Image must be (H, W) or (H, W, C) with H, W >= 1; got shape {image.shape}.")
    if image.dtype in _SCALE:
        return image.astype(np.float32) / np.float32(_SCALE[image.dtype])
    if image.dtype.kind != "f":
        raise ConfigError(
            f"Image dtype {image.dtype} is not supported; give uint8, uint16 or float in [0, 1]."
        )
    image = image.astype(np.float32)
    if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 1:
        raise ConfigError(
            "Float images must be finite and in [0, 1] (read_micrograph returns that); "
            f"got range [{np.nanmin(image):.4g}, {np.nanmax(image):.4g}]."
        )
    return image


def _mask_uint8(mask: np.ndarray) -> np.ndarray:
    if mask.ndim != 2 or mask.dtype.kind not in "uib" or mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
        raise ConfigError(
            f"Mask must be (H, W) integer class indices 0..255 (255 = not labelled); got {mask.dtype} "
            f"shape {mask.shape}."
        )
    return mask.astype(np.uint8)  # OpenCV warps do not take int64; values fit by the check above


def save_pipeline(transform: Transform, path: str | Path) -> Path:
    """Write the pipeline as JSON (``A.to_dict``) so a run folder records exactly what was applied."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(transform.to_dict(), indent=1), encoding="utf-8")
    return path


def load_pipeline(path: str | Path) -> Transform:
    """Rebuild a pipeline written by :func:`save_pipeline` (``A.from_dict``)."""
    import albumentations as A
    import cv2

    import microcnn.data.clahe  # noqa: F401  registers PreciseCLAHE, which saved pipelines may name

    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
        with warnings.catch_warnings():
            # albumentations 2.0.8 writes PadIfNeeded's derived 'padding' into to_dict and then warns about
            # it in from_dict; the value is recomputed from min_height/min_width, so nothing is lost.
            warnings.filterwarnings("ignore", message=r"Argument\(s\) 'padding' are not valid")
            compose = A.from_dict(payload["albumentations"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"Cannot load augmentation pipeline '{path}': {exc}. Save it with save_pipeline()."
        ) from None
    compose.set_mask_interpolation(cv2.INTER_NEAREST)  # A.to_dict does not record Compose's own setting
    return Transform(compose, train=bool(payload.get("train")), patch_size=payload.get("patch_size"))
