"""``Predictor``: one or more trained models -> a result object for a micrograph of any size.

The preprocessing stored in the checkpoint (``metadata["preprocessing"]["augment"]``: only its
``Normalize`` entry is used at evaluation, per-image standardisation otherwise) is applied by the very same
``build_transforms(..., train=False)`` call that evaluation uses, so training and prediction cannot drift.

- Segmentation: sliding-window inference (:mod:`microcnn.inference.tiling`) with blended overlaps; the
  output is the mean per-class probability over members and TTA symmetries, its standard deviation, and
  the arg-max mask -> :class:`~microcnn.analysis.results.SegmentationResult`.
- Classification / regression: the whole image in one pass when it fits in one tile (and the model takes
  any size), otherwise the mean over tiles (of the model's fixed input size, if it has one).
  -> :class:`ClassificationResult` / :class:`RegressionResult`.
- Uncertainty: every (member, symmetry) pair is a sample; the std is the population standard deviation
  over samples. Regression with a heteroscedastic head adds the mean predicted variance (law of total
  variance, see :mod:`microcnn.inference.tta`).
- ``rescale=True`` resamples the image to the training pixel size first (both sizes must be known) and maps
  dense outputs back to the original rows/cols.

Example:
    >>> p = Predictor.from_checkpoint(["a.safetensors", "b.safetensors"], tta=True)   # doctest: +SKIP
    >>> result = p.predict(read_micrograph("steel.tif"))                           # doctest: +SKIP
    >>> result.mask.shape, result.std.shape                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microcnn.analysis.results import ClassificationResult, RegressionResult, SegmentationResult
from microcnn.errors import ModelFileError
from microcnn.inference import tta as tta_mod
from microcnn.inference.tiling import check_tiling, sliding_window, tile_grid
from microcnn.io.micrograph import Micrograph

Result = SegmentationResult | ClassificationResult | RegressionResult
# Pixels per forward pass for whole images on the CPU (predict_many). Measured on the 2-core CPU for the
# phase and gamma-prime segmenters (benchmarks `batch` section, forward img/s by batch size): the fastest
# batch holds 32 images of 64², 4-8 of 128², 2 of 256² and 1 of 512² (2^17 px, ±1 doubling); the former
# 2 x 1024² budget put 32 images of 256² in one pass, 1.5x slower than 2 at a time.
CPU_BATCH_PIXELS = 2**17


def images_per_pass(batch_pixels: int, rows: int, cols: int) -> int:
    """Whole images of rows x cols px that :meth:`Predictor.predict_many` sends through one forward pass
    with a budget of ``batch_pixels`` px (at least one)."""
    return max(1, batch_pixels // (rows * cols))


_SAME_KEYS = ("task", "class_names", "target_names", "target_units")


class Predictor:
    """Predict with an ensemble of models of one task (see the module docstring).

    Args:
        models: members (all the same task, classes and targets); put in eval mode on ``device``.
        metadata: the checkpoint metadata of the first member (task, class_names, target_names,
            target_units, preprocessing, pixel_size_um, model).
        device: "auto" | "cpu" | "cuda[:N]" | "mps" (a GPU asked for and missing is an error).
        tile: window side in px for large images; overlap: fraction shared by neighbouring windows. An
            image up to ``tile`` on each side goes through in one pass (tiling a 1024² image into 512²
            windows with overlap computes 2.25× its area).
        tta: average over the 8 flips/rotations of the square (8x the compute).
        batch_size: tiles per forward pass (bounds memory); blend: "gaussian" | "cosine" | "constant".
        batch_pixels: pixels per forward pass when :meth:`predict_many` batches whole images (at least one
            image per pass). None: ``batch_size * tile**2`` on a GPU; on the CPU the smaller of that and
            :data:`CPU_BATCH_PIXELS`, where larger batches run slower (their feature maps fall out of the
            cache).
        rescale: resample each image to the training pixel size before predicting.
        names: labels of the members for ``result.method`` (file names by default).
        channels_last: run the convolutions in NHWC memory layout (``torch.channels_last``). Measured on
            the 2-core CPU (docs/benchmarks.md): 1.4-1.6x faster at 1024² for every segmenter of the zoo,
            1.1-1.5x at 256². Results agree with the NCHW layout to float rounding (~1e-6), not bit for
            bit, so it is part of a batch job's options.
        fold_bn: predict with each batch norm folded into the convolution before it
            (:func:`microcnn.models.fuse.fold_batch_norm`, on a copy: the given models are not changed).
            Equal to float rounding; saves a pass over the feature maps.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        metadata: dict[str, Any],
        *,
        device: str = "auto",
        tile: int = 1024,
        overlap: float = 0.25,
        tta: bool = False,
        batch_size: int = 2,
        batch_pixels: int | None = None,
        blend: str = "gaussian",
        rescale: bool = False,
        names: Sequence[str] | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
    ) -> None:
        from microcnn.engine.device import select_device
        from microcnn.models.fuse import fold_batch_norm

        if not models:
            raise ValueError("Predictor needs at least one model.")
        check_tiling(tile=tile, overlap=overlap, batch_size=batch_size)
        self.device = select_device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        folded = [fold_batch_norm(m) if fold_bn else m for m in models]
        self.models = [m.to(self.device, memory_format=self.memory_format).eval() for m in folded]
        self.metadata = dict(metadata)
        self.task = str(metadata.get("task") or getattr(models[0], "task", ""))
        if self.task not in ("classification", "segmentation", "regression"):
            raise ModelFileError(f"Model metadata names no known task; got task={self.task!r}.")
        self.tile, self.overlap, self.batch_size, self.blend = tile, overlap, batch_size, blend
        if batch_pixels is not None and (not isinstance(batch_pixels, int) or batch_pixels < 1):
            raise ValueError(f"batch_pixels (pixels per forward pass) must be a positive int; got "
                             f"{batch_pixels!r}. Use e.g. {CPU_BATCH_PIXELS}.")  # fmt: skip
        if batch_pixels is None:
            batch_pixels = batch_size * tile * tile
            if self.device.type == "cpu":
                batch_pixels = min(batch_pixels, CPU_BATCH_PIXELS)
        self.batch_pixels = batch_pixels
        self.transforms = tta_mod.D4 if tta else tta_mod.IDENTITY
        self.rescale = rescale
        self.names = list(names) if names else [type(m).__name__ for m in models]
        self._transform = _eval_transform(self.metadata)

    @classmethod
    def from_checkpoint(cls, path: str | Path | Sequence[str | Path], **kwargs: Any) -> Predictor:
        """Load one ``.safetensors`` file or a list of them (an ensemble); ``kwargs`` as for ``__init__``.

        Raises:
            ModelFileError: a file is missing/corrupt, or the members disagree on task, classes or targets.

        Example:
            >>> Predictor.from_checkpoint("runs/seg/model.safetensors", tile=256)  # doctest: +SKIP
        """
        from microcnn.engine.checkpoint import load_model

        paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
        loaded = [load_model(p, device="cpu") for p in paths]
        first = loaded[0][1]
        for p, (_, meta) in zip(paths[1:], loaded[1:]):
            for key in (*_SAME_KEYS, "preprocessing"):
                if meta.get(key) != first.get(key):
                    raise ModelFileError(
                        f"Ensemble members must agree on '{key}': '{paths[0].name}' has {first.get(key)!r}, "
                        f"'{p.name}' has {meta.get(key)!r}. Use models trained for the same task and data."
                    )
        kwargs.setdefault("names", [p.name for p in paths])
        return cls([m for m, _ in loaded], first, **kwargs)

    @property
    def channels_last(self) -> bool:
        """Whether the models run in NHWC memory layout (the ``channels_last`` argument)."""
        return self.memory_format is torch.channels_last

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in self.metadata.get("class_names") or []]

    def preprocess(self, micrograph: Micrograph) -> tuple[torch.Tensor, float]:
        """Micrograph -> ((C, H', W') float32 normalised tensor, scale factor H'/H applied by ``rescale``)."""
        pixels = np.asarray(micrograph.pixels, dtype=np.float32)
        in_ch = int(getattr(self.models[0], "in_channels", 0) or (1 if pixels.ndim == 2 else pixels.shape[2]))
        have = 1 if pixels.ndim == 2 else pixels.shape[2]
        if have != in_ch:
            fix = "Read it with as_gray=True" if in_ch == 1 else f"Give a {in_ch}-channel image"
            raise ValueError(
                f"The model expects {in_ch}-channel images; this micrograph has {have} channel(s) "
                f"(shape {pixels.shape}). {fix}."
            )
        factor = self._scale_factor(micrograph)
        if factor != 1.0:
            from skimage.transform import rescale as sk_rescale

            axis = None if pixels.ndim == 2 else -1
            pixels = sk_rescale(pixels, factor, order=1, anti_aliasing=factor < 1, channel_axis=axis)
            pixels = np.clip(pixels, 0.0, 1.0).astype(np.float32)
        return self._transform({"image": pixels})["image"], factor

    def _scale_factor(self, micrograph: Micrograph) -> float:
        if not self.rescale:
            return 1.0
        train_um = self.metadata.get("pixel_size_um")
        if not train_um or micrograph.pixel_size_um is None:
            raise ValueError(
                f"rescale=True needs both pixel sizes; training: {train_um!r} µm, image: "
                f"{micrograph.pixel_size_um!r} µm. Set the image's pixel size, or predict without rescaling."
            )
        return float(micrograph.pixel_size_um) / float(train_um)

    def predict(
        self, micrograph: Micrograph, *, progress: Callable[[int, int], None] | None = None
    ) -> Result:
        """Predict one micrograph (any size) -> Segmentation-, Classification- or RegressionResult.

        ``progress(done, total)`` is called per batch of tiles.

        Example:
            >>> Predictor.from_checkpoint("m.safetensors").predict(micrograph).to_dict()   # doctest: +SKIP
        """
        image, factor = self.preprocess(micrograph)
        return self._predict_prepared(image, factor, micrograph, progress)

    def _predict_prepared(self, image: torch.Tensor, factor: float, micrograph: Micrograph,
                          progress: Any = None) -> Result:  # fmt: skip
        """predict() after preprocessing: ``image`` (C, H', W') is ``self.preprocess(micrograph)``."""
        with torch.inference_mode():
            if self.task == "segmentation":
                return self._segment(image, micrograph, factor, progress)
            stack = self._image_level_samples(image, progress)
        if self.task == "classification":
            return self._classification_result(stack, factor)
        return self._regression_result(stack, factor)

    def _classification_result(self, stack: torch.Tensor, factor: float) -> ClassificationResult:
        mean, std = tta_mod.mean_std(stack)
        return ClassificationResult(
            probabilities=mean.numpy(), class_names=self.class_names,
            std=std.numpy() if self.n_samples > 1 else None, method=self.method, meta=self._meta(factor),
        )  # fmt: skip

    @property
    def n_samples(self) -> int:
        """Samples per prediction: members x TTA symmetries."""
        return len(self.models) * len(self.transforms)

    @property
    def method(self) -> str:
        name = (self.metadata.get("model") or {}).get("name", type(self.models[0]).__name__)
        tta = "+tta" if len(self.transforms) > 1 else ""
        return f"{name}{tta}:{','.join(self.names)}"

    def _meta(self, factor: float) -> dict[str, Any]:
        return {"members": len(self.models), "tta": len(self.transforms) > 1, "tile": self.tile,
                "overlap": self.overlap, "rescale_factor": factor, "device": str(self.device),
                "channels_last": self.channels_last}  # fmt: skip

    def _samples(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, memory_format=self.memory_format)
        return tta_mod.samples(self.models, x, task=self.task, transforms=self.transforms).cpu()

    def _segment(
        self, image: torch.Tensor, micrograph: Micrograph, factor: float, progress: Any
    ) -> SegmentationResult:
        rows, cols = image.shape[-2:]
        fn = _SampleMeans(self, rows, cols) if self.n_samples > 1 else self._dense_fn
        out = sliding_window(fn, image, tile=self.tile, overlap=self.overlap, blend=self.blend,
                             batch_size=self.batch_size, progress=progress)  # fmt: skip
        members = fn.fractions() if isinstance(fn, _SampleMeans) else None
        return self._segmentation_result(out, micrograph, factor, members)

    def _dense_fn(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) tiles -> (N, K, h, w) mean probabilities, with their std stacked after when S > 1."""
        mean, std = tta_mod.mean_std(self._samples(tiles))
        return torch.cat([mean, std], dim=1) if self.n_samples > 1 else mean

    def _segmentation_result(
        self, out: torch.Tensor, micrograph: Micrograph, factor: float, members: np.ndarray | None = None
    ) -> SegmentationResult:
        """(K or 2K, H', W') blended mean [and std] -> SegmentationResult; ``members``: (S, K) fractions."""
        spread = self.n_samples > 1
        if factor != 1.0:  # back to the micrograph's own rows/cols
            out = nn.functional.interpolate(out[None], size=micrograph.pixels.shape[:2], mode="bilinear")[0]
        k = out.shape[0] // 2 if spread else out.shape[0]
        probs = out[:k]
        names = self.class_names or [f"class_{i}" for i in range(k)]
        return SegmentationResult(
            # numpy's arg-max over the class axis (same first-maximum rule) is ~10x faster than torch's here
            mask=probs.numpy().argmax(0).astype(np.uint8 if k < 255 else np.int32),
            class_names=names, probabilities=probs.numpy(), std=out[k:].numpy() if spread else None,
            pixel_size_um=micrograph.pixel_size_um, method=self.method, meta=self._meta(factor),
            member_fractions=members,
        )  # fmt: skip

    def predict_many(self, micrographs: Sequence[Micrograph]) -> list[Result]:
        """Predict several micrographs, batching those that fit in one tile and share a shape.

        Gives the same results as ``[self.predict(m) for m in micrographs]`` to float rounding, but, for
        many small images, with a few larger forward passes instead of one per image. A batch holds at most
        ``batch_pixels`` pixels (at least one image), so memory is bounded as in :meth:`predict`. Images
        larger than one tile go through :meth:`predict` one by one (preprocessed once). Any error (e.g. a
        wrong channel count) propagates; callers that must isolate a bad item retry it alone.

        Reproducibility: the convolution kernels round differently at another batch size, so an image's
        result may differ in the last bits (~1e-8) depending on which images share its batch. The batches
        are a fixed function of the list (same-shaped images in list order, split every
        ``batch_pixels // (rows * cols)``): the same list on the same device gives the same bits. Batch
        jobs therefore always pass the same absolute chunk of an archive (:mod:`microcnn.inference.batch`).

        Example:
            >>> results = predictor.predict_many([read_micrograph(p) for p in paths])   # doctest: +SKIP
        """
        prepared = [self.preprocess(m) for m in micrographs]
        results: list[Result | None] = [None] * len(micrographs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (image, factor) in enumerate(prepared):
            rows, cols = image.shape[-2:]
            if rows <= self.tile and cols <= self.tile and self._fits_whole(rows, cols):
                groups.setdefault(tuple(image.shape), []).append(i)
            else:
                results[i] = self._predict_prepared(image, factor, micrographs[i])
        with torch.inference_mode():
            for shape, members in groups.items():
                step = images_per_pass(self.batch_pixels, shape[-2], shape[-1])
                for first in range(0, len(members), step):
                    part = members[first : first + step]
                    batch = torch.stack([prepared[i][0] for i in part])
                    for i, value in zip(part, self._whole_image_outputs(batch)):
                        results[i] = self._result_of_whole(value, micrographs[i], prepared[i][1])
        return [r for r in results if r is not None]

    def _fits_whole(self, rows: int, cols: int) -> bool:
        """Whether predict() sends an image of this size through the network in one piece."""
        if self.task == "segmentation":
            return True
        size = getattr(self.models[0], "exact_input_size", None)
        return size is None or (rows == size and cols == size)

    def _whole_image_outputs(self, batch: torch.Tensor) -> list[Any]:
        """Per-image outputs of a batch of whole images, exactly as predict() computes them for one tile.

        Segmentation: (dense (K or 2K, H, W), per-sample fractions (S, K) or None) per image.
        """
        if self.task == "segmentation":
            fn = _SampleMeans(self, *batch.shape[-2:]) if self.n_samples > 1 else self._dense_fn
            out = fn(batch)
            members = fn.per_image() if isinstance(fn, _SampleMeans) else [None] * out.shape[0]
            return [(out[n].to(torch.float32), members[n]) for n in range(out.shape[0])]
        stack = self._samples(batch)  # (S, N, D): each image is a single "tile" of itself
        return [self._reduce_tiles(stack[:, n : n + 1]) for n in range(stack.shape[1])]

    def _result_of_whole(self, value: Any, micrograph: Micrograph, factor: float) -> Result:
        if self.task == "segmentation":
            return self._segmentation_result(value[0], micrograph, factor, value[1])
        if self.task == "classification":
            return self._classification_result(value, factor)
        return self._regression_result(value, factor)

    def _image_level_samples(self, image: torch.Tensor, progress: Any) -> torch.Tensor:
        """(S, D) per-sample outputs averaged over the tiles of the image (see module docstring)."""
        size = getattr(self.models[0], "exact_input_size", None)  # models with a fixed-size head
        rows, cols = image.shape[-2:]
        if size is None and rows <= self.tile and cols <= self.tile:
            boxes = [(0, 0, rows, cols)]
        else:
            side = int(size or self.tile)
            if rows < side or cols < side:
                raise ValueError(f"The model needs images of at least {side}x{side} px; got {rows}x{cols}.")
            boxes = tile_grid(rows, cols, tile=side, overlap=self.overlap)
        parts = []
        for first in range(0, len(boxes), self.batch_size):
            batch = boxes[first : first + self.batch_size]
            parts.append(self._samples(torch.stack([image[:, r : r + h, c : c + w] for r, c, h, w in batch])))
            if progress is not None:
                progress(min(first + self.batch_size, len(boxes)), len(boxes))
        return self._reduce_tiles(torch.cat(parts, dim=1))

    def _reduce_tiles(self, stack: torch.Tensor) -> torch.Tensor:
        """(S, tiles, D) -> (S, D): the mean over tiles (heteroscedastic regression: of the variances)."""
        if self.task == "regression" and stack.shape[-1] == 2 * self._num_targets():
            t = self._num_targets()  # average variances (not log-variances) over tiles
            var = stack[..., t:].exp().mean(dim=1)
            return torch.cat([stack[..., :t].mean(dim=1), var.log()], dim=-1)
        return stack.mean(dim=1)

    def _num_targets(self) -> int:
        names = self.metadata.get("target_names") or []
        return len(names) or int(getattr(self.models[0], "num_targets", 1))

    def _regression_result(self, stack: torch.Tensor, factor: float) -> RegressionResult:
        t = self._num_targets()
        mean, std = tta_mod.regression_mean_std(stack[:, None], num_targets=t)
        hetero = stack.shape[-1] == 2 * t
        names = list(self.metadata.get("target_names") or [f"target_{i}" for i in range(t)])
        units = list(self.metadata.get("target_units") or ["1"] * t)
        return RegressionResult(
            values=mean[0].numpy(), target_names=names, target_units=units,
            std=std[0].numpy() if (self.n_samples > 1 or hetero) else None,
            method=self.method, meta={**self._meta(factor), "heteroscedastic": hetero},
        )  # fmt: skip


def _eval_transform(metadata: dict[str, Any]) -> Any:
    """The evaluation pipeline of the checkpoint: its Normalize entry, else per-image standardisation."""
    from microcnn.data.transforms import build_transforms

    augment = (metadata.get("preprocessing") or {}).get("augment") or []
    return build_transforms(augment, train=False)


class _SampleMeans:
    """The dense fn for :func:`sliding_window` when there are S > 1 samples (members x TTA symmetries).

    Returns what ``Predictor._dense_fn`` returns (mean and std of the samples) and, on the side, adds up
    each sample's mean class probability over the image: its expected phase fractions. Blending is linear,
    so sample s's blended map is ``sum_t w_t p_st / W`` (W = sum of the window weights); its image mean is
    accumulated tile by tile with the weights ``w_t / (W * rows * cols)``, without keeping S maps.
    ``sliding_window`` calls fn on the windows in :func:`tile_grid` order, batch by batch (its contract).
    """

    def __init__(self, predictor: Predictor, rows: int, cols: int) -> None:
        from microcnn.inference.tiling import blend_window

        self.predictor, self.rows, self.cols = predictor, rows, cols
        grid = tile_grid(rows, cols, tile=predictor.tile, overlap=predictor.overlap)
        self.boxes, self.cursor, self.sums = [(r, c) for r, c, _, _ in grid], 0, None
        self.th, self.tw = grid[0][2], grid[0][3]
        self.window = self.total = None
        if len(self.boxes) > 1:
            self.window = blend_window(self.th, self.tw, blend=predictor.blend)
            self.total = torch.zeros(rows, cols)
            for r, c in self.boxes:
                self.total[r : r + self.th, c : c + self.tw] += self.window
        self.images: list[np.ndarray] = []

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        stack = self.predictor._samples(tiles)  # (S, N, K, h, w)
        if self.window is None:  # whole images (one tile each): plain means, one row of fractions each
            self.images += list(stack.double().mean(dim=(-2, -1)).permute(1, 0, 2).numpy())
        else:
            for n in range(stack.shape[1]):
                r, c = self.boxes[self.cursor + n]
                share = self.window / self.total[r : r + self.th, c : c + self.tw]
                part = (stack[:, n].double() * share.double()).sum(dim=(-2, -1)) / (self.rows * self.cols)
                self.sums = part if self.sums is None else self.sums + part
            self.cursor += stack.shape[1]
        mean, std = tta_mod.mean_std(stack)
        return torch.cat([mean, std], dim=1)

    def per_image(self) -> list[np.ndarray]:
        """(S, K) fractions of each whole image passed so far (one-tile case)."""
        return self.images

    def fractions(self) -> np.ndarray:
        """(S, K) fractions of the one image that was tiled (or passed whole)."""
        if self.window is None:
            return self.images[0]
        if self.cursor != len(self.boxes):
            raise RuntimeError(f"sliding_window passed {self.cursor} windows; {len(self.boxes)} expected.")
        return self.sums.numpy()
