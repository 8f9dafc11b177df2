"""The model registry: ``build_model(name, **kwargs)`` or ``build_model({"name": ..., **kwargs})``.

Each entry records its task ("classification" | "segmentation" | "regression"). Unknown names and unknown
keyword arguments raise :class:`~microcnn.errors.ConfigError` (a ``ValueError``) that names what came, the
closest match and what is accepted (read from the builder's signature).

Example:
    >>> from microcnn.models import build_model
    >>> net = build_model({"name": "unet", "in_channels": 1, "num_classes": 3, "depth": 3})
    >>> net.task, net.output_stride
    ('segmentation', 8)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from microcnn.errors import ConfigError
from microcnn.registry import Registry, check_choice, suggest

MODELS = Registry("model")
TASKS = ("classification", "segmentation", "regression")
_TASK_OF: dict[str, str] = {}

T = TypeVar("T", bound=Callable[..., Any])


def register_model(name: str, *, task: str) -> Callable[[T], T]:
    """Register a builder (class or function) under ``name`` for ``task``."""
    check_choice("task", task, TASKS)

    def decorator(obj: T) -> T:
        MODELS.register(name)(obj)
        _TASK_OF[name] = task
        return obj

    return decorator


def _ensure_loaded() -> None:
    # The families register themselves on import; import them here so the registry is full.
    from microcnn.models import classifiers, googlenet, regression, resnet, segmentation  # noqa: F401


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``task`` when given."""
    _ensure_loaded()
    if task is not None:
        check_choice("task", task, TASKS)
    return [n for n in MODELS.names() if task is None or _TASK_OF[n] == task]


def model_task(name: str) -> str:
    """The task a registered model solves."""
    _ensure_loaded()
    MODELS.get(name)
    return _TASK_OF[name]


def accepted_kwargs(name: str) -> list[str]:
    """The keyword arguments the builder of ``name`` accepts (from its signature)."""
    _ensure_loaded()
    builder = MODELS.get(name)
    fixed = builder.keywords if isinstance(builder, functools.partial) else {}  # e.g. vgg16 = VGG(depth=16)
    params = inspect.signature(builder).parameters.values()
    return [
        p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed
    ]


def build_model(name_or_cfg: str | Mapping[str, Any], /, **kwargs: Any) -> nn.Module:
    """Build a registered model from a name and keyword arguments, or from a ``{"name": ..., **kw}`` mapping.

    Keyword arguments given here override those in the mapping. The returned module has ``task``,
    ``output_stride``, ``min_input_size`` and ``cam_layer``; its ``forward`` returns logits or values.

    Example:
        >>> net = build_model("resnet18", in_channels=1, num_classes=4)
        >>> net.task
        'classification'
    """
    _ensure_loaded()
    if isinstance(name_or_cfg, Mapping):
        cfg = dict(name_or_cfg)
        if "name" not in cfg:
            raise ConfigError(
                f"A model mapping needs a 'name' key; got keys {sorted(cfg)}. Add name: unet, ..."
            )
        name = cfg.pop("name")
        kwargs = {**cfg, **kwargs}
    else:
        name = name_or_cfg
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(str(_unknown(name)))
    accepted = accepted_kwargs(name)
    for key in kwargs:
        if key not in accepted:
            raise ConfigError(
                f"Unknown argument '{key}' for model '{name}'.{suggest(key, accepted)} "
                f"Accepted: {', '.join(accepted)}."
            )
    return MODELS.build(name, **kwargs)


def _unknown(name: object) -> ValueError:
    try:
        MODELS.get(str(name))
    except ValueError as exc:
        return exc
    return ValueError(f"Model name must be a string; got {name!r}.")
