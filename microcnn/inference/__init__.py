"""Inference: tiled prediction (:mod:`.tiling`), test-time augmentation and ensembles (:mod:`.tta`),
the :class:`~microcnn.inference.predictor.Predictor` and HDF5 batch prediction (:mod:`.batch`).

Submodules import torch; import them directly (``from microcnn.inference.predictor import Predictor``).
"""
