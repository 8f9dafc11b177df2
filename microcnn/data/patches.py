"""Random square patches from large micrographs for training (evaluation uses whole images).

Patch positions come from ``np.random.default_rng([seed, epoch, index])``: the same sample index gives the
same patch in any worker and with any ``num_workers``, and :meth:`PatchDataset.set_epoch` draws new ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from microcnn.errors import DatasetError

IGNORE_INDEX = 255


def random_patch(
    sample: dict[str, Any], *, patch_size: int, rng: np.random.Generator
) -> tuple[dict[str, Any], tuple[int, int]]:
    """Crop one ``patch_size`` x ``patch_size`` window (rows, cols) from a sample dict of numpy arrays.

    Images smaller than the patch are padded at the bottom/right (image 0, mask 255 = not labelled).
    Returns the cropped sample and the (row, col) of the window's top-left corner in the image.
    """
    image = np.asarray(sample["image"])
    rows, cols = image.shape[:2]
    r0 = int(rng.integers(0, max(rows - patch_size, 0) + 1))
    c0 = int(rng.integers(0, max(cols - patch_size, 0) + 1))
    out = dict(sample)
    out["image"] = _crop_pad(image, r0, c0, patch_size, 0)
    if sample.get("mask") is not None:
        out["mask"] = _crop_pad(np.asarray(sample["mask"]), r0, c0, patch_size, IGNORE_INDEX)
    return out, (r0, c0)


def _crop_pad(array: np.ndarray, r0: int, c0: int, size: int, fill: int) -> np.ndarray:
    window = array[r0 : r0 + size, c0 : c0 + size]
    if window.shape[:2] == (size, size):
        return np.ascontiguousarray(window)
    widths = [(0, size - window.shape[0]), (0, size - window.shape[1])] + [(0, 0)] * (array.ndim - 2)
    return np.pad(window, widths, constant_values=fill)


class PatchDataset(Dataset):
    """``patches_per_image`` random crops of each image of ``dataset``, then ``transform``.

    Args:
        dataset: a dataset returning numpy sample dicts (it must have no transform of its own).
        patch_size: side of the square patch in px.
        patches_per_image: patches per image and epoch; ``len = len(dataset) * patches_per_image``.
        seed: base seed of the patch positions.
        transform: applied to each patch sample (e.g. ``build_transforms(spec, train=True)``).

    Each sample gains "patch_origin": (2,) int64 (row, col) of the patch in its image.

    Example:
        >>> patches = PatchDataset(FolderDataset(root), patch_size=256, patches_per_image=8, seed=0)
        ... # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: Any,
        *,
        patch_size: int,
        patches_per_image: int = 8,
        seed: int = 0,
        transform: Any = None,
    ) -> None:
        if getattr(dataset, "transform", None) is not None:
            raise DatasetError(
                "The dataset given to PatchDataset already has a transform; give the transform to "
                "PatchDataset instead, so patches are cut from the raw image first."
            )
        if int(patch_size) < 1 or int(patches_per_image) < 1:
            raise DatasetError(
                f"patch_size and patches_per_image must be >= 1; got {patch_size}, {patches_per_image}."
            )
        self.dataset = dataset
        self.patch_size = int(patch_size)
        self.patches_per_image = int(patches_per_image)
        self.seed = int(seed)
        self.transform = transform
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw other patch positions for ``epoch`` (call it before each epoch, like DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset) * self.patches_per_image

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"Patch index {index} out of range 0..{len(self) - 1}.")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        sample, origin = random_patch(
            self.dataset[index // self.patches_per_image], patch_size=self.patch_size, rng=rng
        )
        sample["patch_origin"] = np.asarray(origin, dtype=np.int64)
        return self.transform(sample) if self.transform else sample
