"""Model zoo: classifiers, segmentation encoder-decoders and regressors, built by name.

``build_model(name, **kwargs)`` or ``build_model(cfg.model)`` (a ``{"name": ..., **kwargs}`` mapping);
``list_models(task=None)`` lists what exists; ``describe(model, input_shape)`` gives the per-layer table.
models knows only torch and torchvision.

Example:
    >>> from microcnn.models import build_model, list_models
    >>> "unet" in list_models("segmentation")
    True
    >>> build_model("lenet5").min_input_size
    16
"""

from __future__ import annotations

from microcnn.models.zoo import MODELS, accepted_kwargs, build_model, list_models, model_task, register_model

__all__ = ["MODELS", "accepted_kwargs", "build_model", "list_models", "model_task", "register_model"]
