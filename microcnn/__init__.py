"""microcnn: CNN-based analysis of materials micrographs.

The public API is what ``app/`` and ``cli.py`` may import. Names are resolved lazily so that
``import microcnn`` does not import torch, scikit-image or h5py.

Example:
    >>> import microcnn
    >>> m = microcnn.read_micrograph("sample.tif")          # doctest: +SKIP
    >>> m.pixels.shape, m.pixel_size_um                      # doctest: +SKIP
    ((484, 645), 0.161)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    # io
    "Micrograph": "microcnn.io.micrograph",
    "read_micrograph": "microcnn.io.images",
    "detect_info_bar": "microcnn.io.infobar",
    "crop_info_bar": "microcnn.io.infobar",
    "find_scale_bar": "microcnn.io.infobar",
    "InfoBar": "microcnn.io.infobar",
    "ArchiveWriter": "microcnn.io.hdf5",
    "open_archive": "microcnn.io.hdf5",
    "read_archive_info": "microcnn.io.hdf5",
    # data
    "open_dataset": "microcnn.data.datasets",
    "FolderDataset": "microcnn.data.datasets",
    "H5Dataset": "microcnn.data.datasets",
    "PatchDataset": "microcnn.data.patches",
    "make_splits": "microcnn.data.splits",
    "kfold_splits": "microcnn.data.splits",
    "save_split": "microcnn.data.splits",
    "load_split": "microcnn.data.splits",
    "build_transforms": "microcnn.data.transforms",
    "default_augmentations": "microcnn.data.transforms",
    "pack_folder": "microcnn.data.pack",
    # synthetic data
    "generate": "microcnn.synth",
    "make_dataset": "microcnn.synth",
    "SynthSample": "microcnn.synth",
    "CLASS_NAMES": "microcnn.synth",
    "write_dataset": "microcnn.synth.writer",
    # errors
    "MicrocnnError": "microcnn.errors",
    "MicrographError": "microcnn.errors",
    "ConfigError": "microcnn.errors",
    "DatasetError": "microcnn.errors",
    "ModelFileError": "microcnn.errors",
    # config
    "load_config": "microcnn.config",
    "ExperimentConfig": "microcnn.config",
    # models
    "build_model": "microcnn.models",
    "list_models": "microcnn.models",
    "describe": "microcnn.models.describe",
    "LayerTable": "microcnn.models.describe",
    "conv_output_size": "microcnn.models.describe",
    "conv_transpose_output_size": "microcnn.models.describe",
    "split_mean_logvar": "microcnn.models.regression",
    # training
    "save_config": "microcnn.config",
    "train": "microcnn.engine.api",
    "evaluate": "microcnn.engine.api",
    "cross_validate": "microcnn.engine.api",
    "RunResult": "microcnn.engine.api",
    "CVResult": "microcnn.engine.api",
    "save_weights": "microcnn.engine.checkpoint",
    "load_weights": "microcnn.engine.checkpoint",
    "load_model": "microcnn.engine.checkpoint",
    "select_device": "microcnn.engine.device",
    # model files and cards
    "export_run": "microcnn.cards",
    "read_card": "microcnn.cards",
    "list_cards": "microcnn.cards",
    # inference
    "Predictor": "microcnn.inference.predictor",
    "sliding_window": "microcnn.inference.tiling",
    "predict_archive": "microcnn.inference.batch",
    "BatchSummary": "microcnn.inference.batch",
    "predict_files": "microcnn.inference.files",
    # explanations
    "grad_cam": "microcnn.analysis.explain",
    "feature_maps": "microcnn.analysis.explain",
    "first_layer_kernels": "microcnn.analysis.explain",
    # analysis (quantification in µm or px, classical baselines)
    "SegmentationResult": "microcnn.analysis.results",
    "ClassificationResult": "microcnn.analysis.results",
    "RegressionResult": "microcnn.analysis.results",
    "phase_fractions": "microcnn.analysis.quantify",
    "measure_objects": "microcnn.analysis.quantify",
    "size_summary": "microcnn.analysis.quantify",
    "size_histogram": "microcnn.analysis.quantify",
    "astm_grain_size": "microcnn.analysis.stereology",
    "porosity": "microcnn.analysis.stereology",
    "boundary_length_per_area": "microcnn.analysis.stereology",
    "two_point_correlation": "microcnn.analysis.stereology",
    "quantify": "microcnn.analysis.report",
    "QuantReport": "microcnn.analysis.report",
    "CLASSICAL": "microcnn.analysis.classical",
    "otsu": "microcnn.analysis.classical",
    "multi_otsu": "microcnn.analysis.classical",
    "adaptive_threshold": "microcnn.analysis.classical",
    "watershed_particles": "microcnn.analysis.classical",
}


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'microcnn' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = sorted(_API)
